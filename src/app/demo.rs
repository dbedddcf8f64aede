//! `siphon demo`: siphon's main job on a built-in default. An echo answering side runs in
//! this process on loopback; siphon calls it through the full SIP and RTP path with a tone
//! and reports the call flow, the codec, the RTP statistics, the round trip and a quality
//! estimate. No server and no sound card needed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::media::{CallMedia, MediaPlan};
use super::{Failure, Outcome, USER_AGENT, runtime, usage};
use crate::cli::{Cli, DemoArgs};
use crate::driver::{Driver, bind, bind_rtp_pair};
use crate::output::{CallStats, Event, Reporter};
use crate::sdp::{CodecChoice, LocalMediaConfig};
use crate::sip::call::{CallEvent, OutgoingCall};
use crate::sip::headers::NameAddr;
use crate::sip::transaction::TimerConfig;
use crate::sip::ua::{IncomingPolicy, UaConfig, UaEvent, UserAgent};
use crate::sip::uas::UasPolicy;
use crate::sip::uri::Uri;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const RTP_PORTS: std::ops::RangeInclusive<u16> = 16384..=32767;
/// The whole demo, ringing and hang-up included, ends within this.
const DEMO_LIMIT: Duration = Duration::from_secs(60);

fn user_agent(
    local: SocketAddr,
    timers: TimerConfig,
    incoming: Option<IncomingPolicy>,
) -> UserAgent {
    UserAgent::new(UaConfig {
        local_addr: local,
        user_agent: USER_AGENT.to_string(),
        timers,
        policy: UasPolicy::default(),
        incoming,
    })
}

/// The answering side: takes one call, echoes its audio, ends when the caller hangs up.
async fn echo_side(mut driver: Driver, plan: MediaPlan) -> Result<(), Failure> {
    let mut media = CallMedia::default();
    loop {
        let event = driver
            .next_event()
            .await
            .map_err(|e| runtime(format!("echo side socket: {e}")))?;
        let UaEvent::Call { handle, event, .. } = event else {
            continue;
        };
        let now = Instant::now();
        match event {
            CallEvent::Incoming { .. } => {
                let sockets = bind_rtp_pair(LOOPBACK, RTP_PORTS)
                    .map_err(|e| runtime(format!("echo side RTP port: {e}")))?;
                let mut config = LocalMediaConfig::new(LOOPBACK, sockets.port());
                config.codecs = CodecChoice::ALL.to_vec();
                media = CallMedia::reserved(sockets);
                driver.ua.answer(now, handle, config);
            }
            CallEvent::Answered(negotiated) | CallEvent::MediaUpdated(negotiated) => {
                media.apply(&negotiated, &plan)
            }
            CallEvent::Ended { .. } => {
                media.stop().await;
                // Let the last responses (the 200 for BYE) go out.
                let _ = tokio::time::timeout(Duration::from_millis(200), driver.next_event()).await;
                return Ok(());
            }
            _ => {}
        }
    }
}

pub async fn demo(cli: &Cli, timers: TimerConfig, reporter: Reporter, args: &DemoArgs) -> Outcome {
    let codec: CodecChoice = args
        .codec
        .parse()
        .map_err(|e| usage(format!("--codec: {e}")))?;
    if !(args.duration.is_finite() && args.duration > 0.0 && args.duration <= 3600.0) {
        return Err(usage("--duration must be between 0 and 3600 seconds"));
    }
    let caller_plan = MediaPlan::new(&args.audio_in, &args.audio_out, false, None)?;
    let echo_plan = MediaPlan::new("silence", "null", true, None)?;

    // The echo answering side, on its own socket and task.
    let (echo_socket, echo_addr) = bind(Some(SocketAddr::new(LOOPBACK, 0)), None)
        .await
        .map_err(|e| runtime(format!("cannot open a SIP socket: {e}")))?;
    let echo_contact = Uri::parse(&format!("sip:echo@{echo_addr}")).expect("valid URI");
    let echo_ua = user_agent(
        echo_addr,
        timers,
        Some(IncomingPolicy {
            media: LocalMediaConfig::new(LOOPBACK, 9),
            max_calls: Some(1),
            contact: echo_contact.clone(),
        }),
    );
    let echo = tokio::spawn(echo_side(
        Driver::new(echo_socket, echo_ua, false),
        echo_plan,
    ));

    // The caller: us.
    let (socket, local) = bind(Some(SocketAddr::new(LOOPBACK, 0)), None)
        .await
        .map_err(|e| runtime(format!("cannot open a SIP socket: {e}")))?;
    let sockets = bind_rtp_pair(LOOPBACK, RTP_PORTS)
        .map_err(|e| runtime(format!("cannot open an RTP port: {e}")))?;
    let mut config = LocalMediaConfig::new(LOOPBACK, sockets.port());
    config.codecs = vec![codec];
    let mut ua = user_agent(local, timers, None);
    let me = Uri::parse(&format!("sip:demo@{local}")).expect("valid URI");
    let handle = ua.place_call(
        Instant::now(),
        OutgoingCall {
            target: echo_contact,
            from: NameAddr::new(me.clone()),
            contact: me,
            credentials: None,
            outbound_proxy: None,
            destination: echo_addr,
            media: config,
            user_agent: USER_AGENT.to_string(),
            timers,
        },
    );
    if !reporter.json {
        println!(
            "siphon demo: calling an echo line at {echo_addr} from {local} ({} for {} s)",
            args.codec, args.duration
        );
    }
    let mut driver = Driver::new(socket, ua, cli.sip_trace);
    driver.show_flow(reporter);
    let mut media = CallMedia::reserved(sockets);
    let started = Instant::now();
    let mut answered_at: Option<Instant> = None;
    let mut hangup_at: Option<Instant> = None;
    let mut codec_name = String::new();
    let deadline = tokio::time::Instant::from_std(started + DEMO_LIMIT);

    let outcome = loop {
        let wake = hangup_at
            .map(tokio::time::Instant::from_std)
            .unwrap_or(deadline);
        tokio::select! {
            event = driver.next_event() => {
                let event = event.map_err(|e| runtime(format!("socket error: {e}")))?;
                let UaEvent::Call { event, .. } = event else { continue };
                let now = Instant::now();
                match event {
                    CallEvent::Answered(negotiated) => {
                        answered_at = Some(now);
                        hangup_at = Some(now + Duration::from_secs_f64(args.duration));
                        codec_name = negotiated.codec.name.clone();
                        media.apply(&negotiated, &caller_plan);
                        reporter.emit(&Event::Answered {
                            call_id: String::new(),
                            codec: codec_name.clone(),
                            remote_rtp: negotiated.remote_rtp.to_string(),
                        });
                    }
                    CallEvent::MediaUpdated(negotiated) => media.apply(&negotiated, &caller_plan),
                    CallEvent::Ended { reason, status } => break (reason, status),
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if hangup_at.take().is_some() {
                    driver.ua.hangup(now, handle);
                } else {
                    return Err(runtime("the demo call did not complete in time"));
                }
            }
        }
    };
    let stats = media.stop().await.map(CallStats::from);
    let _ = tokio::time::timeout(Duration::from_secs(2), echo).await;
    let (reason, status) = outcome;
    let received = stats.as_ref().map_or(0, |s| s.packets_received);
    let verdict = match (&stats, answered_at) {
        (Some(s), Some(_)) if received > 0 => format!(
            "demo call OK: {}; {} packets came back from the echo line for {} sent ({} lost), \
             jitter {:.1} ms, round trip {}, estimated MOS {:.2}",
            s.codec,
            s.packets_received,
            s.packets_sent,
            s.packets_lost,
            s.jitter_ms,
            s.rtt_ms.map_or(
                "not measured (no RTCP report yet)".to_string(),
                |r| format!("{r:.1} ms")
            ),
            s.mos
        ),
        _ => format!(
            "demo call FAILED: {}{}",
            reason.as_str(),
            status.map_or(String::new(), |s| format!(" ({s})"))
        ),
    };
    reporter.emit(&Event::DemoResult {
        codec: codec_name,
        answered: answered_at.is_some(),
        stats,
        verdict: verdict.clone(),
    });
    if answered_at.is_some() && received > 0 {
        Ok(())
    } else {
        Err(runtime(verdict))
    }
}

/// `siphon devices`: what cpal sees.
pub fn devices(reporter: Reporter) -> Outcome {
    let list = crate::media::list_devices();
    if reporter.json {
        println!(
            "{}",
            serde_json::to_string(&list).map_err(|e| runtime(e.to_string()))?
        );
        return Ok(());
    }
    println!("input devices:");
    for d in &list.inputs {
        println!("  {d}");
    }
    println!("output devices:");
    for d in &list.outputs {
        println!("  {d}");
    }
    Ok(())
}
