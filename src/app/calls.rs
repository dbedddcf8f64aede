//! `siphon call` and `siphon listen`: calls for a person at a keyboard or for a script.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::media::{CallMedia, MediaPlan};
use super::{
    Account, Failure, Outcome, USER_AGENT, report_registration, resolve_account, runtime,
    stop_signal, usage,
};
use crate::cli::{CallArgs, Cli, ListenArgs, MediaArgs};
use crate::config::ConfigFile;
use crate::driver::{Driver, bind, bind_rtp_pair, parse_port_range, resolve};
use crate::output::{CallStats, Event, Reporter};
use crate::sdp::{CodecChoice, Direction, LocalMediaConfig, NegotiatedMedia};
use crate::sip::call::{CallEvent, EndReason, OutgoingCall};
use crate::sip::headers::NameAddr;
use crate::sip::registration::{Registration, RegistrationConfig};
use crate::sip::transaction::TimerConfig;
use crate::sip::ua::{
    CallHandle, IncomingPolicy, UaConfig, UaEvent, UserAgent, new_call_id, new_tag,
};
use crate::sip::uas::UasPolicy;
use crate::sip::uri::{Host, SipUri, Uri};

/// How long calls get to end cleanly when we quit.
const HANGUP_WAIT: Duration = Duration::from_secs(5);

/// The media choices of the command line.
struct MediaOptions {
    codecs: Vec<CodecChoice>,
    ports: std::ops::RangeInclusive<u16>,
}

impl MediaOptions {
    fn from_args(args: &MediaArgs) -> Result<MediaOptions, Failure> {
        let codecs = args
            .codecs
            .iter()
            .map(|c| {
                c.parse::<CodecChoice>()
                    .map_err(|e| usage(format!("--codecs: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if codecs.is_empty() {
            return Err(usage("--codecs needs at least one codec"));
        }
        let ports = parse_port_range(&args.rtp_ports)
            .ok_or_else(|| usage(format!("--rtp-ports wants LO-HI, got '{}'", args.rtp_ports)))?;
        Ok(MediaOptions { codecs, ports })
    }

    fn local_config(&self, address: std::net::IpAddr, port: u16) -> LocalMediaConfig {
        let mut config = LocalMediaConfig::new(address, port);
        config.codecs = self.codecs.clone();
        config.direction = Direction::SendRecv;
        config
    }
}

/// Per-call state the command keeps beside the user agent.
struct CallSlot {
    call_id: String,
    answered_at: Option<Instant>,
    media: CallMedia,
    ringing_since: Instant,
    muted: bool,
}

/// Keys from the terminal (raw mode) or lines on a piped stdin, one char each.
struct Keys {
    receiver: mpsc::UnboundedReceiver<char>,
    saved_tty: Option<String>,
}

impl Keys {
    fn start() -> Keys {
        let stdin = std::io::stdin();
        let saved_tty = if stdin.is_terminal() {
            // Single key presses without Enter: the terminal in non-canonical mode.
            let saved = std::process::Command::new("stty")
                .arg("-g")
                .stdin(std::process::Stdio::inherit())
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
            let _ = std::process::Command::new("stty")
                .args(["-icanon", "-echo", "min", "1"])
                .stdin(std::process::Stdio::inherit())
                .status();
            saved
        } else {
            None
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let mut byte = [0u8; 1];
            let mut input = std::io::stdin().lock();
            // Ends at EOF or when the command is gone.
            while let Ok(1) = input.read(&mut byte) {
                let c = byte[0] as char;
                if !c.is_whitespace() && sender.send(c).is_err() {
                    break;
                }
            }
        });
        Keys {
            receiver,
            saved_tty,
        }
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved_tty {
            let _ = std::process::Command::new("stty")
                .arg(saved)
                .stdin(std::process::Stdio::inherit())
                .status();
        }
    }
}

fn codec_name(media: &NegotiatedMedia) -> String {
    media
        .codec
        .name
        .to_ascii_uppercase()
        .replace("OPUS", "opus")
}

/// Reports a call event and drives its media; returns the reason and status when the call
/// ended (then [`finish_call`] reports it).
fn report_call(
    reporter: Reporter,
    slot: &mut CallSlot,
    event: &CallEvent,
    now: Instant,
    plan: &MediaPlan,
) -> Option<(EndReason, Option<u16>)> {
    let call_id = slot.call_id.clone();
    match event {
        CallEvent::Incoming { from, to } => reporter.emit(&Event::IncomingCall {
            call_id,
            from: from.clone(),
            to: to.clone(),
        }),
        CallEvent::Ringing => reporter.emit(&Event::Ringing { call_id }),
        CallEvent::EarlyMedia(media) => {
            slot.media.apply(media, plan);
            reporter.emit(&Event::EarlyMedia {
                call_id,
                codec: codec_name(media),
                remote_rtp: media.remote_rtp.to_string(),
            })
        }
        CallEvent::Answered(media) => {
            slot.answered_at = Some(now);
            slot.media.apply(media, plan);
            reporter.emit(&Event::Answered {
                call_id,
                codec: codec_name(media),
                remote_rtp: media.remote_rtp.to_string(),
            })
        }
        CallEvent::MediaUpdated(media) => slot.media.apply(media, plan),
        CallEvent::Held { by_remote } => reporter.emit(&Event::Held {
            call_id,
            by: if *by_remote { "remote" } else { "local" },
        }),
        CallEvent::Resumed { by_remote } => reporter.emit(&Event::Resumed {
            call_id,
            by: if *by_remote { "remote" } else { "local" },
        }),
        CallEvent::Dtmf { digit } => reporter.emit(&Event::Dtmf {
            call_id,
            digit: digit.to_string(),
        }),
        CallEvent::Ended { reason, status } => return Some((*reason, *status)),
    }
    None
}

/// Stops the call's media and reports the end with what the media measured.
async fn finish_call(
    reporter: Reporter,
    slot: &mut CallSlot,
    reason: EndReason,
    status: Option<u16>,
    now: Instant,
) {
    let duration_s = slot
        .answered_at
        .map_or(0.0, |t| now.duration_since(t).as_secs_f64());
    let stats = slot.media.stop().await.map(CallStats::from);
    reporter.emit(&Event::Ended {
        call_id: slot.call_id.clone(),
        reason: reason.as_str(),
        status,
        duration_s: (duration_s * 1000.0).round() / 1000.0,
        stats,
    });
}

/// Keys that act on a call's media: DTMF digits and `m` (mute).
fn media_key(slot: &mut CallSlot, key: char) -> bool {
    match key {
        '0'..='9' | '*' | '#' | 'A'..='D' => {
            slot.media.send_dtmf(&key.to_string());
            true
        }
        'm' => {
            slot.muted = !slot.muted;
            slot.media.set_mute(slot.muted);
            eprintln!(
                "siphon: microphone {}",
                if slot.muted { "muted" } else { "on" }
            );
            true
        }
        _ => false,
    }
}

/// How often the commands look for media events (received DTMF and the like).
const MEDIA_POLL: Duration = Duration::from_millis(50);

/// `call` targets: a full URI, or a bare user name at the account's domain.
fn parse_target(text: &str, account: Option<&Account>) -> Result<Uri, Failure> {
    if text.contains(':') {
        return match Uri::parse(text) {
            Ok(uri @ Uri::Sip(_)) => Ok(uri),
            Ok(_) => Err(usage(format!("can only call sip: URIs, got '{text}'"))),
            Err(e) => Err(usage(format!("{e} in '{text}'"))),
        };
    }
    let account = account.ok_or_else(|| {
        usage(format!(
            "'{text}' is not a URI; give sip:{text}@HOST or an account"
        ))
    })?;
    let mut uri = SipUri::new(Some(text), account.aor.host.clone(), account.aor.port);
    uri.secure = account.aor.secure;
    Ok(Uri::Sip(uri))
}

fn local_identity(account: Option<&Account>, local: SocketAddr) -> (NameAddr, SipUri) {
    let user = account
        .and_then(|a| a.aor.user.clone())
        .unwrap_or_else(|| "siphon".to_string());
    let aor = match account {
        Some(a) => a.aor.clone(),
        None => SipUri::new(Some(&user), Host::from(local.ip()), Some(local.port())),
    };
    let contact = SipUri::new(Some(&user), Host::from(local.ip()), Some(local.port()));
    (NameAddr::new(Uri::Sip(aor)), contact)
}

pub async fn call(
    cli: &Cli,
    config: &ConfigFile,
    timers: TimerConfig,
    reporter: Reporter,
    args: &CallArgs,
) -> Outcome {
    let account = resolve_account(&args.account, config, false)?;
    let media_options = MediaOptions::from_args(&args.media)?;
    let plan = MediaPlan::from_args(&args.media)?;
    if let Some(d) = args.duration
        && !(d.is_finite() && d >= 0.0)
    {
        return Err(usage("--duration must be a number of seconds"));
    }
    let target = parse_target(&args.target, account.as_ref())?;
    let hop_uri = account
        .as_ref()
        .and_then(|a| a.outbound_proxy.clone())
        .unwrap_or_else(|| target.clone());
    let hop = hop_uri
        .as_sip()
        .ok_or_else(|| usage("the next hop must be a SIP URI"))?;
    let destination = resolve(&hop.host.to_string(), hop.port_or_default())
        .await
        .map_err(|e| runtime(format!("cannot resolve {}: {e}", hop.host)))?;
    let listen = super::listen_address(&args.account, config)?;
    let (socket, local) = bind(listen, Some(destination))
        .await
        .map_err(|e| runtime(format!("cannot open the SIP socket: {e}")))?;
    reporter.emit(&Event::Listening {
        address: local.to_string(),
    });
    let rtp = bind_rtp_pair(local.ip(), media_options.ports.clone())
        .map_err(|e| runtime(format!("cannot open an RTP port: {e}")))?;
    let media = media_options.local_config(local.ip(), rtp.port());
    let (from, contact) = local_identity(account.as_ref(), local);

    let mut ua = UserAgent::new(UaConfig {
        local_addr: local,
        user_agent: USER_AGENT.to_string(),
        timers,
        policy: UasPolicy::default(),
        incoming: None,
    });
    let handle = ua.place_call(
        Instant::now(),
        OutgoingCall {
            target,
            from,
            contact: Uri::Sip(contact),
            credentials: account.as_ref().and_then(|a| a.credentials.clone()),
            outbound_proxy: account.as_ref().and_then(|a| a.outbound_proxy.clone()),
            destination,
            media,
            user_agent: USER_AGENT.to_string(),
            timers,
        },
    );
    let call_id = ua
        .call(handle)
        .map(|c| c.call_id().to_string())
        .unwrap_or_default();
    let mut slot = CallSlot {
        call_id,
        answered_at: None,
        media: CallMedia::reserved(rtp),
        ringing_since: Instant::now(),
        muted: false,
    };
    let mut media_poll = tokio::time::interval(MEDIA_POLL);
    let mut driver = Driver::new(socket, ua, cli.sip_trace);
    let mut keys = Keys::start();
    let stop = stop_signal(None);
    tokio::pin!(stop);
    let mut hangup_at: Option<Instant> = None;
    let mut user_ended = false;
    let mut quit_deadline: Option<Instant> = None;

    loop {
        let wake = [hangup_at, quit_deadline].into_iter().flatten().min();
        let sleep = sleep_until(wake);
        tokio::select! {
            event = driver.next_event() => {
                let event = event.map_err(|e| runtime(format!("socket error: {e}")))?;
                let UaEvent::Call { event, .. } = event else { continue };
                let now = Instant::now();
                if let CallEvent::Answered(_) = &event
                    && let Some(d) = args.duration
                {
                    hangup_at = Some(now + Duration::from_secs_f64(d));
                }
                if let Some((reason, status)) = report_call(reporter, &mut slot, &event, now, &plan) {
                    finish_call(reporter, &mut slot, reason, status, now).await;
                    return call_outcome(reason, status, slot.answered_at.is_some(), user_ended);
                }
            }
            Some(key) = keys.receiver.recv() => {
                let now = Instant::now();
                match key {
                    'h' | 'q' => {
                        user_ended = true;
                        driver.ua.hangup(now, handle);
                        quit_deadline.get_or_insert(now + HANGUP_WAIT);
                    }
                    'H' => {
                        let held = driver.ua.call(handle).is_some_and(|c| c.is_held_locally());
                        driver.ua.set_hold(now, handle, !held);
                    }
                    other => {
                        media_key(&mut slot, other);
                    }
                }
            }
            _ = media_poll.tick() => slot.media.report_events(reporter, &slot.call_id),
            _ = sleep => {
                let now = Instant::now();
                if quit_deadline.is_some_and(|t| t <= now) {
                    return Err(runtime("the call did not end in time"));
                }
                if hangup_at.is_some_and(|t| t <= now) {
                    hangup_at = None;
                    user_ended = true;
                    driver.ua.hangup(now, handle);
                    quit_deadline = Some(now + HANGUP_WAIT);
                }
            }
            why = &mut stop, if quit_deadline.is_none() => {
                tracing::info!("stopping: {why}");
                let now = Instant::now();
                user_ended = true;
                driver.ua.hangup(now, handle);
                quit_deadline = Some(now + HANGUP_WAIT);
            }
        }
    }
}

/// Exit 0 when the call was answered and then ended, or when we gave up on it ourselves;
/// 1 when the far end or the network refused it.
fn call_outcome(
    reason: EndReason,
    status: Option<u16>,
    answered: bool,
    user_ended: bool,
) -> Outcome {
    if answered && reason != EndReason::MediaFailure {
        return Ok(());
    }
    if user_ended && matches!(reason, EndReason::Cancelled | EndReason::LocalBye) {
        return Ok(());
    }
    let status = status.map_or(String::new(), |s| {
        format!(" {s} {}", crate::sip::message::reason_phrase(s))
    });
    Err(runtime(format!("call failed: {}{status}", reason.as_str())))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

pub async fn listen(
    cli: &Cli,
    config: &ConfigFile,
    timers: TimerConfig,
    reporter: Reporter,
    args: &ListenArgs,
) -> Outcome {
    let account = resolve_account(&args.account, config, false)?;
    let media_options = MediaOptions::from_args(&args.media)?;
    let plan = MediaPlan::from_args(&args.media)?;
    if let Some(a) = args.auto_answer
        && !(a.is_finite() && a >= 0.0)
    {
        return Err(usage("--auto-answer must be a number of seconds"));
    }
    // Registered: bind towards the registrar. Peer to peer: --listen, else port 5060.
    let registrar = match &account {
        Some(a) => Some(super::next_hop(a).await?),
        None => None,
    };
    let listen = super::listen_address(&args.account, config)?.or(match registrar {
        Some(_) => None,
        None => Some(SocketAddr::from(([0, 0, 0, 0], 5060))),
    });
    let (socket, local) = bind(listen, registrar)
        .await
        .map_err(|e| runtime(format!("cannot open the SIP socket: {e}")))?;
    reporter.emit(&Event::Listening {
        address: local.to_string(),
    });
    let (_, contact) = local_identity(account.as_ref(), local);
    let users = account
        .as_ref()
        .and_then(|a| a.aor.user_unescaped())
        .into_iter()
        .collect();
    let mut ua = UserAgent::new(UaConfig {
        local_addr: local,
        user_agent: USER_AGENT.to_string(),
        timers,
        policy: UasPolicy { local_users: users },
        incoming: Some(IncomingPolicy {
            media: media_options.local_config(local.ip(), 9),
            max_calls: args.max_calls,
            contact: Uri::Sip(contact.clone()),
        }),
    });
    if let (Some(account), Some(registrar)) = (&account, registrar) {
        let registration = Registration::new(
            RegistrationConfig {
                aor: account.aor.clone(),
                registrar: account.registrar.clone(),
                credentials: account.credentials.clone(),
                expires: args.expires.or(account.expires).unwrap_or(3600),
                contact,
                outbound_proxy: account.outbound_proxy.clone(),
                user_agent: USER_AGENT.to_string(),
            },
            new_call_id(local),
            new_tag(),
        );
        ua.set_registration(registration, registrar);
        ua.register(Instant::now());
    }
    let mut driver = Driver::new(socket, ua, cli.sip_trace);
    let mut keys = Keys::start();
    let stop = stop_signal(args.duration);
    tokio::pin!(stop);
    let mut slots: HashMap<CallHandle, CallSlot> = HashMap::new();
    let mut answer_at: BTreeMap<(Instant, CallHandle), ()> = BTreeMap::new();
    let mut quit_deadline: Option<Instant> = None;
    let mut media_poll = tokio::time::interval(MEDIA_POLL);

    loop {
        let wake = answer_at
            .keys()
            .next()
            .map(|(t, _)| *t)
            .into_iter()
            .chain(quit_deadline)
            .min();
        let sleep = sleep_until(wake);
        tokio::select! {
            event = driver.next_event() => {
                let event = event.map_err(|e| runtime(format!("socket error: {e}")))?;
                let now = Instant::now();
                match event {
                    UaEvent::Call { handle, call_id, event } => {
                        let slot = slots.entry(handle).or_insert_with(|| CallSlot {
                            call_id,
                            answered_at: None,
                            media: CallMedia::default(),
                            ringing_since: now,
                            muted: false,
                        });
                        if matches!(event, CallEvent::Incoming { .. })
                            && let Some(delay) = args.auto_answer
                        {
                            answer_at.insert((now + Duration::from_secs_f64(delay), handle), ());
                        }
                        if let Some((reason, status)) = report_call(reporter, slot, &event, now, &plan) {
                            finish_call(reporter, slot, reason, status, now).await;
                            slots.remove(&handle);
                            answer_at.retain(|(_, h), _| *h != handle);
                        }
                    }
                    other => {
                        if let Some(failure) = report_registration(reporter, other) {
                            return Err(failure);
                        }
                    }
                }
                if quit_deadline.is_some() && slots.is_empty() {
                    break;
                }
            }
            Some(key) = keys.receiver.recv() => {
                let now = Instant::now();
                let ringing = oldest_ringing(&slots);
                let current = newest_answered(&slots);
                match key {
                    'a' => if let Some(h) = ringing {
                        answer(&mut driver, &mut slots, h, &media_options, local, now)?;
                    },
                    'd' => if let Some(h) = ringing { driver.ua.decline(now, h) },
                    'h' => if let Some(h) = current.or(ringing) { driver.ua.hangup(now, h) },
                    'H' => if let Some(h) = current {
                        let held = driver.ua.call(h).is_some_and(|c| c.is_held_locally());
                        driver.ua.set_hold(now, h, !held);
                    },
                    'q' => {
                        quit_deadline.get_or_insert(now + HANGUP_WAIT);
                        hang_up_all(&mut driver, now);
                        if slots.is_empty() { break; }
                    }
                    other => if let Some(slot) = current.and_then(|h| slots.get_mut(&h)) {
                        media_key(slot, other);
                    },
                }
            }
            _ = media_poll.tick() => {
                for slot in slots.values_mut() {
                    slot.media.report_events(reporter, &slot.call_id);
                }
            }
            _ = sleep => {
                let now = Instant::now();
                if quit_deadline.is_some_and(|t| t <= now) {
                    break;
                }
                while let Some((&(at, handle), _)) = answer_at.iter().next() {
                    if at > now {
                        break;
                    }
                    answer_at.remove(&(at, handle));
                    answer(&mut driver, &mut slots, handle, &media_options, local, now)?;
                }
            }
            why = &mut stop, if quit_deadline.is_none() => {
                tracing::info!("stopping: {why}");
                let now = Instant::now();
                quit_deadline = Some(now + HANGUP_WAIT);
                hang_up_all(&mut driver, now);
                if slots.is_empty() {
                    break;
                }
            }
        }
    }
    super::unregister_and_wait(&mut driver, reporter).await
}

fn oldest_ringing(slots: &HashMap<CallHandle, CallSlot>) -> Option<CallHandle> {
    slots
        .iter()
        .filter(|(_, s)| s.answered_at.is_none())
        .min_by_key(|(_, s)| s.ringing_since)
        .map(|(h, _)| *h)
}

fn newest_answered(slots: &HashMap<CallHandle, CallSlot>) -> Option<CallHandle> {
    slots
        .iter()
        .filter_map(|(h, s)| s.answered_at.map(|t| (t, *h)))
        .max()
        .map(|(_, h)| h)
}

fn hang_up_all(driver: &mut Driver, now: Instant) {
    let handles: Vec<CallHandle> = driver.ua.calls().map(|(h, _)| h).collect();
    for handle in handles {
        driver.ua.hangup(now, handle);
    }
}

/// Reserves RTP ports and answers a ringing call.
fn answer(
    driver: &mut Driver,
    slots: &mut HashMap<CallHandle, CallSlot>,
    handle: CallHandle,
    media: &MediaOptions,
    local: SocketAddr,
    now: Instant,
) -> Result<(), Failure> {
    let Some(slot) = slots.get_mut(&handle) else {
        return Ok(());
    };
    match bind_rtp_pair(local.ip(), media.ports.clone()) {
        Ok(rtp) => {
            let config = media.local_config(local.ip(), rtp.port());
            slot.media = CallMedia::reserved(rtp);
            driver.ua.answer(now, handle, config);
        }
        Err(e) => {
            // No port for media: refuse this call rather than answer without audio.
            tracing::warn!("no RTP port for an incoming call: {e}");
            driver.ua.decline(now, handle);
        }
    }
    Ok(())
}
