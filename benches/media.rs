//! Media path costs: `cargo bench --bench media [-- --quick] [FILTER]` (quick by itself
//! under `cargo test --all-targets`).
//!
//! Micro cases (same harness as `sip_message`: warm-up, `SAMPLES` samples of at least the
//! sample time, median): G.711 and Opus encode + decode of one 20 ms frame through the
//! engine's codec wrappers (G.711 includes the Appendix I concealment history; Opus is
//! 48 kHz mono, 32 kbit/s, in-band FEC on, complexity 5), and a jitter buffer push + pop
//! per packet.
//!
//! Load cases: N concurrent calls on loopback, each a pair of `MediaSession`s (A: tone
//! source; B: echo, sending back what it decodes), for 10 s (2 s with `--quick`) on a
//! 2-worker tokio runtime. CPU time comes from /proc/self/stat (utime + stime, whole
//! process) and memory from VmRSS in /proc/self/status, both measured against the idle
//! process before the sessions start; figures are per session, i.e. per call as one
//! siphon process sees it (the far end being another machine).

use std::alloc::{GlobalAlloc, Layout, System};

use std::net::UdpSocket;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use siphon::media::codec::{CodecKind, Decoder, Encoder, MAX_FRAME_SAMPLES};
use siphon::media::{
    AudioSink, AudioSource, JitterBuffer, JitterConfig, MediaConfig, MediaSession, Playout,
};
use siphon::sdp::{CodecChoice, Direction, NegotiatedMedia, OpusParams};

mod harness;
use harness::{Measurement, SAMPLES, Timing};

/// Live heap bytes, for the memory per call (std only: a counting wrapper of `System`).
struct Counting;

static HEAP_BYTES: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Mode {
    warm_up: Duration,
    sample: Duration,
    load_time: Duration,
    g711_calls: &'static [usize],
    opus_calls: &'static [usize],
}

const FULL: Mode = Mode {
    warm_up: Duration::from_millis(500),
    sample: Duration::from_secs(1),
    load_time: Duration::from_secs(10),
    g711_calls: &[50, 100, 200],
    opus_calls: &[50, 100],
};
const QUICK: Mode = Mode {
    warm_up: Duration::from_millis(10),
    sample: Duration::from_millis(20),
    load_time: Duration::from_secs(2),
    g711_calls: &[20],
    opus_calls: &[10],
};

/// Times `op` with the shared harness, at this mode's warm-up and sample times.
fn measure<R>(mode: &Mode, op: impl FnMut() -> R) -> Measurement {
    harness::measure(
        &Timing {
            warm_up: mode.warm_up,
            sample: mode.sample,
        },
        op,
    )
}

/// One second of a speech-like signal (harmonics of a gliding pitch, syllable envelope).
fn speechlike(rate: u32) -> Vec<i16> {
    let mut phase = 0.0f64;
    (0..rate)
        .map(|i| {
            let t = f64::from(i) / f64::from(rate);
            let pitch = 140.0 + 40.0 * (2.0 * std::f64::consts::PI * 0.7 * t).sin();
            phase += pitch / f64::from(rate);
            let env = (2.0 * std::f64::consts::PI * 3.0 * t).sin().abs();
            let v: f64 = (1..=8)
                .map(|h| (2.0 * std::f64::consts::PI * phase * f64::from(h)).sin() / f64::from(h))
                .sum();
            (8000.0 * env * v) as i16
        })
        .collect()
}

/// Encode + decode of successive 20 ms frames of the signal.
fn codec_case(kind: CodecKind) -> impl FnMut() -> usize {
    let rate = kind.clock_rate();
    let frame = kind.frame_samples(20);
    let signal = speechlike(rate);
    let params = OpusParams::parse("useinbandfec=1");
    let mut enc = Encoder::new(kind, Some(&params)).unwrap();
    let mut dec = Decoder::new(kind).unwrap();
    let mut payload = vec![0u8; 1500];
    let mut pcm = vec![0i16; MAX_FRAME_SAMPLES];
    let mut pos = 0;
    move || {
        if pos + frame > signal.len() {
            pos = 0;
        }
        let n = enc.encode(&signal[pos..pos + frame], &mut payload);
        pos += frame;
        dec.decode(&payload[..n], frame, &mut pcm)
    }
}

/// Jitter buffer push of one 20 ms PCMU packet and pop of one frame, in a steady stream.
fn jitter_case() -> impl FnMut() -> usize {
    let mut jb = JitterBuffer::new(JitterConfig::new(8000, 160));
    let payload = [0xD5u8; 160];
    let t0 = Instant::now();
    let mut k: u32 = 0;
    move || {
        // Simulated time: packet k arrives at k * 20 ms (+ a little jitter).
        let now = t0 + Duration::from_millis(u64::from(k) * 20 + u64::from(k % 3));
        jb.push(now, k as u16, k.wrapping_mul(160), false, &payload);
        k = k.wrapping_add(1);
        match jb.pop(now) {
            Playout::Frame { payload, .. } => payload.len(),
            Playout::Lost { .. } => 1,
            Playout::Empty => 0,
        }
    }
}

/// (utime + stime) of the whole process, from /proc/self/stat, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ")".
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0 // USER_HZ is 100 on Linux
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn negotiated(codec: CodecChoice, peer: &UdpSocket, peer_rtcp: &UdpSocket) -> NegotiatedMedia {
    let codec = codec.offer_codec();
    NegotiatedMedia {
        remote_rtp: peer.local_addr().unwrap(),
        remote_rtcp: peer_rtcp.local_addr().unwrap(),
        rtcp_mux: false,
        opus: (codec.name == "opus").then(|| OpusParams::parse("useinbandfec=1")),
        codec,
        telephone_event_pt: Some(101),
        ptime_ms: 20,
        direction: Direction::SendRecv,
        remote_direction: Direction::SendRecv,
    }
}

struct Load {
    sessions: usize,
    cpu_percent_per_session: f64,
    rss_kib_per_session: f64,
    heap_kib_per_session: f64,
    packets_per_session_per_s: f64,
    lost: u64,
}

fn load_case(
    rt: &tokio::runtime::Runtime,
    codec: CodecChoice,
    calls: usize,
    time: Duration,
) -> Load {
    rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rss0 = rss_kib();
        let heap0 = HEAP_BYTES.load(Ordering::Relaxed);
        let mut sessions = Vec::with_capacity(2 * calls);
        for _ in 0..calls {
            let bind = || UdpSocket::bind("127.0.0.1:0").unwrap();
            let (a_rtp, a_rtcp, b_rtp, b_rtcp) = (bind(), bind(), bind(), bind());
            let na = negotiated(codec, &b_rtp, &b_rtcp);
            let nb = negotiated(codec, &a_rtp, &a_rtcp);
            let config = |negotiated, source, echo| MediaConfig {
                negotiated,
                source,
                sink: AudioSink::Null,
                echo,
            };
            sessions.push(
                MediaSession::start(a_rtp, a_rtcp, config(na, AudioSource::Tone(440.0), false))
                    .unwrap(),
            );
            sessions.push(
                MediaSession::start(b_rtp, b_rtcp, config(nb, AudioSource::Silence, true)).unwrap(),
            );
        }
        // Settle (jitter buffers start, allocator warms), then measure.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss = rss_kib();
        let heap = HEAP_BYTES.load(Ordering::Relaxed);
        let sent0: u64 = sessions.iter().map(|s| s.stats().packets_sent).sum();
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        tokio::time::sleep(time).await;
        let cpu = cpu_seconds() - cpu0;
        let wall = t0.elapsed().as_secs_f64();
        let sent: u64 = sessions.iter().map(|s| s.stats().packets_sent).sum::<u64>() - sent0;
        let mut lost = 0;
        for s in sessions {
            lost += s.stop().await.packets_lost;
        }
        let n = (2 * calls) as f64;
        Load {
            sessions: 2 * calls,
            cpu_percent_per_session: cpu / wall * 100.0 / n,
            rss_kib_per_session: rss.saturating_sub(rss0) as f64 / n,
            heap_kib_per_session: (heap - heap0) as f64 / 1024.0 / n,
            packets_per_session_per_s: sent as f64 / wall / n,
            lost,
        }
    })
}

/// Runs one load case in this process and prints its figures on one line (the parent
/// runs each case in a fresh child, so that memory figures start from a clean process).
fn load_child(codec: &str, calls: usize, seconds: u64) {
    let codec: CodecChoice = codec.parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let l = load_case(&rt, codec, calls, Duration::from_secs(seconds));
    println!(
        "LOAD {} {} {} {} {} {}",
        l.sessions,
        l.cpu_percent_per_session,
        l.rss_kib_per_session,
        l.heap_kib_per_session,
        l.packets_per_session_per_s,
        l.lost
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--load-child") {
        let codec = &args[i + 1];
        let calls = args[i + 2].parse().unwrap();
        let seconds = args[i + 3].parse().unwrap();
        load_child(codec, calls, seconds);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not, and then a quick
    // run checks that the cases still work.
    let mut quick = !args.iter().any(|a| a == "--bench");
    let mut filter: Option<String> = None;
    for arg in &args {
        match arg.as_str() {
            "--quick" => quick = true,
            a if a.starts_with('-') => {}
            a => filter = Some(a.to_string()),
        }
    }
    let mode = if quick { &QUICK } else { &FULL };
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));

    println!(
        "media: {} mode, {SAMPLES} samples of >= {} ms per micro case, median",
        if quick { "quick" } else { "full" },
        mode.sample.as_millis()
    );
    println!(
        "{:<32} {:>12} {:>12} {:>8}",
        "case", "ns/op", "ops/s", "spread"
    );
    type Case = (&'static str, Box<dyn Fn() -> Measurement>);
    let cases: Vec<Case> = vec![
        (
            "g711_pcmu_encode_decode_20ms",
            Box::new(|| measure(mode, codec_case(CodecKind::Pcmu))),
        ),
        (
            "g711_pcma_encode_decode_20ms",
            Box::new(|| measure(mode, codec_case(CodecKind::Pcma))),
        ),
        (
            "opus_encode_decode_20ms",
            Box::new(|| measure(mode, codec_case(CodecKind::Opus))),
        ),
        (
            "jitter_push_pop_per_packet",
            Box::new(|| measure(mode, jitter_case())),
        ),
    ];
    for (name, run) in &cases {
        if !wanted(name) {
            continue;
        }
        let m = run();
        println!(
            "{:<32} {:>12.1} {:>12.0} {:>7.1}%",
            name,
            m.ns_per_op,
            1e9 / m.ns_per_op,
            m.spread * 100.0
        );
    }

    println!();
    println!(
        "load: {} s per case, each in a fresh process; per session = per call; CPU in % of one core",
        mode.load_time.as_secs()
    );
    println!(
        "{:<24} {:>9} {:>11} {:>13} {:>14} {:>11} {:>5}",
        "case", "sessions", "CPU %/call", "RSS KiB/call", "heap KiB/call", "pkt/s/call", "lost"
    );
    let loads = mode
        .g711_calls
        .iter()
        .map(|&n| (CodecChoice::Pcmu, n))
        .chain(mode.opus_calls.iter().map(|&n| (CodecChoice::Opus, n)));
    let exe = std::env::current_exe().unwrap();
    for (codec, calls) in loads {
        let name = format!("session_{codec}_echo_x{calls}");
        if !wanted(&name) {
            continue;
        }
        let out = std::process::Command::new(&exe)
            .args(["--load-child", &codec.to_string(), &calls.to_string()])
            .arg(mode.load_time.as_secs().to_string())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(line) = text.lines().find_map(|l| l.strip_prefix("LOAD ")) else {
            println!("{name}: failed: {}", String::from_utf8_lossy(&out.stderr));
            continue;
        };
        let v: Vec<f64> = line
            .split(' ')
            .map(|x| x.parse().unwrap_or(f64::NAN))
            .collect();
        println!(
            "{:<24} {:>9} {:>11.3} {:>13.1} {:>14.1} {:>11.1} {:>5}",
            name, v[0], v[1], v[2], v[3], v[4], v[5]
        );
    }
}
