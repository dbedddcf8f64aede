//! The media engine end to end on loopback: two `MediaSession`s talking RTP/RTCP to each
//! other (directly or through an impairing relay), recordings compared with the source by
//! normalised cross-correlation, DTMF, hold, echo, latching, bad input, and real device
//! audio through a private PulseAudio server.
//!
//! Every socket binds 127.0.0.1; every wait is bounded.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use siphon::media::resample::resample_clip;
use siphon::media::{AudioSink, AudioSource, MediaConfig, MediaEvent, MediaSession, MediaStats};
use siphon::sdp::{CodecChoice, Direction, NegotiatedMedia, OpusParams};

const TE_PT: u8 = 101;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

struct Sockets {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

impl Sockets {
    fn bind() -> Sockets {
        Sockets {
            rtp: UdpSocket::bind("127.0.0.1:0").unwrap(),
            rtcp: UdpSocket::bind("127.0.0.1:0").unwrap(),
        }
    }

    fn rtp_addr(&self) -> SocketAddr {
        self.rtp.local_addr().unwrap()
    }

    fn rtcp_addr(&self) -> SocketAddr {
        self.rtcp.local_addr().unwrap()
    }
}

fn negotiated(codec: CodecChoice, rtp: SocketAddr, rtcp: SocketAddr) -> NegotiatedMedia {
    let codec = codec.offer_codec();
    let opus = (codec.name == "opus").then(|| OpusParams::parse("useinbandfec=1"));
    NegotiatedMedia {
        remote_rtp: rtp,
        remote_rtcp: rtcp,
        rtcp_mux: false,
        codec,
        opus,
        telephone_event_pt: Some(TE_PT),
        ptime_ms: 20,
        direction: Direction::SendRecv,
        remote_direction: Direction::SendRecv,
    }
}

fn start(
    s: Sockets,
    negotiated: NegotiatedMedia,
    source: AudioSource,
    sink: AudioSink,
) -> MediaSession {
    start_echo(s, negotiated, source, sink, false)
}

fn start_echo(
    s: Sockets,
    negotiated: NegotiatedMedia,
    source: AudioSource,
    sink: AudioSink,
    echo: bool,
) -> MediaSession {
    MediaSession::start(
        s.rtp,
        s.rtcp,
        MediaConfig {
            negotiated,
            source,
            sink,
            echo,
        },
    )
    .expect("session starts")
}

/// A scratch directory, removed on drop unless the test is failing (then it is kept for
/// a look at the recordings).
struct TempDir(PathBuf);

impl TempDir {
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn temp_dir(name: &str) -> TempDir {
    let dir = std::env::temp_dir().join(format!("siphon-media-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}

/// Synthetic speech-like signal: harmonics of a gliding pitch with a syllable envelope.
fn synthetic_speech(rate: u32, seconds: f32) -> Vec<f32> {
    let n = (rate as f32 * seconds) as usize;
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let pitch = 140.0 + 40.0 * (2.0 * std::f64::consts::PI * 0.7 * t).sin();
            phase += pitch / f64::from(rate);
            let syllable = (2.0 * std::f64::consts::PI * 3.0 * t).sin().max(0.0);
            let mut v = 0.0;
            for h in 1..=8 {
                v += (2.0 * std::f64::consts::PI * phase * f64::from(h)).sin() / f64::from(h);
            }
            (0.25 * syllable * v) as f32
        })
        .collect()
}

fn write_wav(path: &Path, samples: &[f32], rate: u32, channels: u16) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        for _ in 0..channels {
            w.write_sample((s * 32767.0) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// A 16 kHz stereo WAV of speech (espeak-ng + sox), or the synthetic signal if those
/// tools are missing. 16 kHz stereo exercises mix-down and resampling to 8 and 48 kHz.
fn speech_wav() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // Shared by all runs (same text, same tools): made once, moved into place whole.
        let dir = std::env::temp_dir().join("siphon-media-speech");
        std::fs::create_dir_all(&dir).unwrap();
        let done = dir.join("speech16k.wav");
        if hound::WavReader::open(&done).is_ok() {
            return done;
        }
        let raw = dir.join(format!("espeak-{}.wav", std::process::id()));
        let out = dir.join(format!("speech16k-{}.wav", std::process::id()));
        let made = std::process::Command::new("espeak-ng")
            .args(["-s", "150", "-w"])
            .arg(&raw)
            .arg("The quick brown fox jumps over the lazy dog. One, two, three.")
            .status()
            .is_ok_and(|s| s.success())
            && std::process::Command::new("sox")
                .arg(&raw)
                .args(["-r", "16000", "-c", "2"])
                .arg(&out)
                .status()
                .is_ok_and(|s| s.success());
        if !made {
            eprintln!("NOTE: espeak-ng/sox unavailable: using a synthetic speech-like signal");
            write_wav(&out, &synthetic_speech(16000, 3.0), 16000, 2);
        }
        let _ = std::fs::remove_file(&raw);
        std::fs::rename(&out, &done).unwrap();
        done
    })
}

fn read_wav(path: &Path) -> (Vec<f32>, u32) {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    let ch = usize::from(spec.channels);
    let v: Vec<f32> = r
        .samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect();
    let mono = v
        .chunks(ch)
        .map(|f| f.iter().sum::<f32>() / ch as f32)
        .collect();
    (mono, spec.sample_rate)
}

/// The source as it should sound at `rate`.
fn source_at(rate: u32) -> Vec<f32> {
    let (x, r) = read_wav(speech_wav());
    resample_clip(&x, r, rate).unwrap()
}

fn ncc_at(src: &[f32], rec: &[f32], lag: isize) -> f64 {
    let (mut sxy, mut sxx, mut syy) = (0.0f64, 0.0f64, 0.0f64);
    for (i, &x) in src.iter().enumerate() {
        let j = i as isize + lag;
        if j < 0 || j as usize >= rec.len() {
            continue;
        }
        let y = rec[j as usize];
        sxy += f64::from(x) * f64::from(y);
        sxx += f64::from(x) * f64::from(x);
        syy += f64::from(y) * f64::from(y);
    }
    if sxx == 0.0 || syy == 0.0 {
        return 0.0;
    }
    sxy / (sxx * syy).sqrt()
}

fn exhaustive_lag(src: &[f32], rec: &[f32], lags: std::ops::Range<isize>) -> (isize, f64) {
    lags.map(|lag| (lag, ncc_at(src, rec, lag)))
        .fold((0, f64::MIN), |best, c| if c.1 > best.1 { c } else { best })
}

/// Sums of 4 (a crude low-pass and decimation, for the coarse search only).
fn decimate4(x: &[f32]) -> Vec<f32> {
    x.chunks_exact(4).map(|c| c.iter().sum()).collect()
}

/// Lag (samples of `rec` after `src`) with the highest normalised cross-correlation:
/// coarse search on 4:1 decimated signals, then every lag within ±8 of the best.
fn best_lag(src: &[f32], rec: &[f32], lags: std::ops::Range<isize>) -> (isize, f64) {
    let (coarse, _) = exhaustive_lag(
        &decimate4(src),
        &decimate4(rec),
        lags.start.div_euclid(4)..lags.end.div_euclid(4) + 1,
    );
    let lo = (coarse * 4 - 8).max(lags.start);
    let hi = (coarse * 4 + 9).min(lags.end);
    exhaustive_lag(src, rec, lo..hi.max(lo + 1))
}

/// Alignment window by window (200 ms), each with its own lag searched within ±120 ms of
/// the previous one: when the jitter buffer grows or shrinks its delay (it does on a busy
/// machine: a sender delayed by 40 ms makes packets late), the alignment moves by a frame.
/// Returns the energy-weighted mean of the windows' normalised cross-correlations, and the
/// lags. This is the figure the tests require; the single-lag correlation over the whole
/// clip is printed too.
fn windowed_correlation(
    src: &[f32],
    rec: &[f32],
    rate: u32,
    first_lag: isize,
) -> (f64, Vec<isize>) {
    let win = rate as usize / 5;
    let reach = (rate as usize * 120 / 1000) as isize;
    let mut lag = first_lag;
    let (mut num, mut den) = (0.0, 0.0);
    let mut lags = Vec::new();
    for start in (0..src.len().saturating_sub(win)).step_by(win) {
        let seg = &src[start..start + win];
        let energy: f64 = seg.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        if energy / (win as f64) < 1e-4 {
            lags.push(lag);
            continue; // near-silent window: nothing to align on
        }
        let (l, c) = exhaustive_lag(
            seg,
            rec,
            (start as isize + lag - reach)..(start as isize + lag + reach),
        );
        lag = l - start as isize;
        lags.push(lag);
        num += c * energy;
        den += energy;
    }
    (if den > 0.0 { num / den } else { 0.0 }, lags)
}

/// Longest run (ms) of exact zeros in the recording where the aligned source has signal.
fn longest_zero_run_in_signal(src: &[f32], rec: &[f32], rate: u32, lags: &[isize]) -> f64 {
    let win = rate as usize / 5;
    let mut longest = 0usize;
    for (w, &lag) in lags.iter().enumerate() {
        let mut run = 0usize;
        for i in w * win..((w + 1) * win).min(src.len()) {
            let j = i as isize + lag;
            if j < 0 || j as usize >= rec.len() {
                run = 0;
                continue;
            }
            // Source has signal here and one frame (20 ms) either side (5 ms RMS above
            // −40 dBFS at each): a frame the jitter buffer slipped inside a window can
            // map a speech onset onto the source's own digital silence between words.
            let frame = rate as usize / 50;
            let local_rms = |c: usize| {
                let lo = c.saturating_sub(rate as usize / 400);
                let hi = (c + rate as usize / 400).min(src.len());
                if hi <= lo {
                    return 0.0;
                }
                (src[lo..hi].iter().map(|x| x * x).sum::<f32>() / (hi - lo) as f32).sqrt()
            };
            let signal = [i.saturating_sub(frame), i, i + frame]
                .iter()
                .all(|&c| c < src.len() && local_rms(c) > 0.01);
            if signal && rec[j as usize] == 0.0 {
                run += 1;
                longest = longest.max(run);
            } else {
                run = 0;
            }
        }
    }
    longest as f64 * 1000.0 / f64::from(rate)
}

fn clip_seconds() -> f64 {
    let (x, r) = read_wav(speech_wav());
    x.len() as f64 / f64::from(r)
}

async fn wait_for(mut cond: impl FnMut() -> bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// Watches how late a 5 ms sleep wakes up, on its own thread, while a test streams.
struct StallMonitor {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Duration>>,
}

impl StallMonitor {
    fn start() -> StallMonitor {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            let deadline = Instant::now() + Duration::from_secs(120);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                let t = Instant::now();
                std::thread::sleep(Duration::from_millis(5));
                worst = worst.max(t.elapsed().saturating_sub(Duration::from_millis(5)));
            }
            worst
        });
        StallMonitor {
            stop,
            thread: Some(thread),
        }
    }

    /// The largest wake-up delay seen.
    fn finish(mut self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

/// A host stall at least this long spoils a quality measurement (the jitter buffer floor
/// is 40 ms: a sender held up longer than ~25 ms makes packets late).
const HOST_STALL: Duration = Duration::from_millis(25);

/// Runs a timing-sensitive check up to 3 times, retrying only when it failed *and* the
/// host was seen to stall (another process hogging the two cores); a failure on a quiet
/// host fails at once.
async fn retry_on_host_stall<F, Fut>(name: &str, mut run: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    for attempt in 1..=3 {
        let monitor = StallMonitor::start();
        let result = run().await;
        let stall = monitor.finish();
        match result {
            Ok(()) => return,
            Err(e) if stall >= HOST_STALL && attempt < 3 => {
                eprintln!(
                    "{name}: attempt {attempt} failed ({e}) during a {stall:?} host stall: retrying"
                );
            }
            Err(e) => panic!("{name}: {e} (largest host stall {stall:?}, attempt {attempt})"),
        }
    }
}

/// Streaming tests run one at a time: they are timing-sensitive, the machine has two
/// cores, and the correlation analysis of one test would otherwise delay another's timers
/// and make its jitter buffer adapt.
static STREAMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------------------------------
// Impairing UDP relay
// ---------------------------------------------------------------------------------------

/// xorshift64*, seeded.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Clone, Copy)]
struct Impairment {
    seed: u64,
    loss: f64,
    /// Extra chance of holding a packet back by one and a half packet times.
    reorder: f64,
    /// Uniform extra delay 0..jitter.
    jitter: Duration,
}

#[derive(Debug, Default, Clone, Copy)]
struct RelayCounts {
    forwarded: u64,
    dropped: u64,
}

/// Forwards RTP between A and B with loss, reordering and jitter (the kernel here has no
/// netem). A sends to `for_a`, B to `for_b`; each side sees the relay as its peer.
struct Relay {
    for_a: SocketAddr,
    for_b: SocketAddr,
    stop: Arc<AtomicBool>,
    counts: Arc<Mutex<RelayCounts>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(a: SocketAddr, b: SocketAddr, imp: Impairment) -> Relay {
        let sa = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sb = UdpSocket::bind("127.0.0.1:0").unwrap();
        sa.set_nonblocking(true).unwrap();
        sb.set_nonblocking(true).unwrap();
        let for_a = sa.local_addr().unwrap();
        let for_b = sb.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(RelayCounts::default()));
        let (stop2, counts2) = (stop.clone(), counts.clone());
        let thread = std::thread::spawn(move || {
            let mut rng = Rng(imp.seed);
            // (due, towards B?, bytes)
            let mut queue: Vec<(Instant, bool, Vec<u8>)> = Vec::new();
            let mut buf = [0u8; 2048];
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
                for (sock, to_b) in [(&sa, true), (&sb, false)] {
                    while let Ok((n, _)) = sock.recv_from(&mut buf) {
                        if rng.uniform() < imp.loss {
                            counts2.lock().unwrap().dropped += 1;
                            continue;
                        }
                        let mut delay = imp.jitter.mul_f64(rng.uniform());
                        if rng.uniform() < imp.reorder {
                            delay += Duration::from_millis(30);
                        }
                        queue.push((Instant::now() + delay, to_b, buf[..n].to_vec()));
                    }
                }
                let now = Instant::now();
                let mut i = 0;
                while i < queue.len() {
                    if queue[i].0 <= now {
                        let (_, to_b, data) = queue.swap_remove(i);
                        let _ = if to_b {
                            sb.send_to(&data, b)
                        } else {
                            sa.send_to(&data, a)
                        };
                        counts2.lock().unwrap().forwarded += 1;
                    } else {
                        i += 1;
                    }
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        });
        Relay {
            for_a,
            for_b,
            stop,
            counts,
            thread: Some(thread),
        }
    }

    fn counts(&self) -> RelayCounts {
        *self.counts.lock().unwrap()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// A plays the speech file to B, which records it.
// ---------------------------------------------------------------------------------------

struct Transfer {
    _dir: TempDir,
    recording: PathBuf,
    a: MediaStats,
    b: MediaStats,
    relay: Option<RelayCounts>,
}

async fn transfer(codec: CodecChoice, impairment: Option<Impairment>, name: &str) -> Transfer {
    let dir = temp_dir(name);
    let recording = dir.join("b.wav");
    let (sa, sb) = (Sockets::bind(), Sockets::bind());
    let relay = impairment.map(|imp| Relay::start(sa.rtp_addr(), sb.rtp_addr(), imp));
    let (a_peer, b_peer) = match &relay {
        Some(r) => (r.for_a, r.for_b),
        None => (sb.rtp_addr(), sa.rtp_addr()),
    };
    let na = negotiated(codec, a_peer, sb.rtcp_addr());
    let nb = negotiated(codec, b_peer, sa.rtcp_addr());
    let a = start(
        sa,
        na,
        AudioSource::File(speech_wav().to_path_buf()),
        AudioSink::Null,
    );
    let b = start(
        sb,
        nb,
        AudioSource::Silence,
        AudioSink::File(recording.clone()),
    );
    tokio::time::sleep(Duration::from_secs_f64(clip_seconds() + 0.8)).await;
    let a = a.stop().await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let b = b.stop().await;
    let relay = relay.map(|r| r.counts());
    Transfer {
        _dir: dir,
        recording,
        a,
        b,
        relay,
    }
}

struct Score {
    lag_ms: f64,
    global: f64,
    windowed: f64,
    zero_run_ms: f64,
}

fn score(recording: &Path) -> Score {
    let (rec, rate) = read_wav(recording);
    // Compare at 8 kHz: the band every codec here carries.
    let rec = resample_clip(&rec, rate, 8000).unwrap();
    let src = source_at(8000);
    let (lag, global) = best_lag(&src, &rec, -400..4000);
    let (windowed, lags) = windowed_correlation(&src, &rec, 8000, lag);
    let (rec_native, native_rate) = read_wav(recording);
    let src_native = source_at(native_rate);
    let scale = native_rate as isize / 8000;
    let native_lags: Vec<isize> = lags.iter().map(|l| l * scale).collect();
    let zero_run_ms =
        longest_zero_run_in_signal(&src_native, &rec_native, native_rate, &native_lags);
    Score {
        lag_ms: lag as f64 / 8.0,
        global,
        windowed,
        zero_run_ms,
    }
}

/// Checks a condition of a quality test: `Err` (with the message) instead of a panic, so
/// that a run spoilt by a host stall can be retried.
macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        let ok: bool = $cond;
        if !ok {
            return Err(format!($($msg)+));
        }
    };
}

async fn clean_transfer(codec: CodecChoice, name: &str) {
    let _serial = STREAMING.lock().await;
    retry_on_host_stall(name, || async {
        let t = transfer(codec, None, name).await;
        let s = score(&t.recording);
        eprintln!(
            "{name}: lag {:.1} ms, correlation {:.4} (windowed {:.4}); A {:?}; B {:?}",
            s.lag_ms, s.global, s.windowed, t.a, t.b
        );
        // Threshold: normalised cross-correlation after lag-search alignment (per 200 ms
        // window) >= 0.9.
        check!(
            s.windowed >= 0.9,
            "{name}: correlation {:.4} < 0.9",
            s.windowed
        );
        check!(t.a.packets_sent > 100, "{:?}", t.a);
        check!(
            t.a.packets_sent.abs_diff(t.b.packets_received) <= 2,
            "A sent {} / B received {}",
            t.a.packets_sent,
            t.b.packets_received
        );
        // B runs 150 ms longer than A: up to ~8 of its packets find A gone.
        check!(
            t.a.packets_received <= t.b.packets_sent
                && t.b.packets_sent - t.a.packets_received <= 12,
            "B sent {} / A received {}",
            t.b.packets_sent,
            t.a.packets_received
        );
        check!(t.b.packets_lost == 0, "{:?}", t.b);
        check!(t.b.packets_discarded == 0, "{:?}", t.b);
        check!(t.b.mos > 4.0, "MOS {}", t.b.mos);
        // RTCP: the first reports go out after 1.25-3.75 s (RFC 3550 §6.2); by the end one
        // side has had its SR reflected.
        if clip_seconds() > 3.0 {
            check!(
                t.a.rtt_ms.is_some() || t.b.rtt_ms.is_some(),
                "no RTT: {:?} {:?}",
                t.a,
                t.b
            );
        }
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcmu_file_to_file() {
    clean_transfer(CodecChoice::Pcmu, "pcmu").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcma_file_to_file() {
    clean_transfer(CodecChoice::Pcma, "pcma").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_file_to_file() {
    clean_transfer(CodecChoice::Opus, "opus").await;
}

const IMPAIRED: Impairment = Impairment {
    seed: 0x5EED_0001,
    loss: 0.05,
    reorder: 0.05,
    jitter: Duration::from_millis(30),
};

async fn impaired_transfer(codec: CodecChoice, name: &str, threshold: f64) {
    let _serial = STREAMING.lock().await;
    retry_on_host_stall(name, || async {
        let t = transfer(codec, Some(IMPAIRED), name).await;
        let s = score(&t.recording);
        eprintln!(
            "{name}: relay {:?}; lag {:.1} ms, correlation {:.4}, windowed {:.4}, longest zero run in speech {:.2} ms; B {:?}",
            t.relay, s.lag_ms, s.global, s.windowed, s.zero_run_ms, t.b
        );
        let relay = t.relay.unwrap();
        check!(relay.dropped > 0, "the relay dropped nothing");
        // Threshold stated per codec (see the callers).
        check!(
            s.windowed >= threshold,
            "{name}: windowed correlation {:.4} < {threshold}",
            s.windowed
        );
        // No lost packet became silence: no run of exact zeros over 5 ms inside speech.
        check!(s.zero_run_ms <= 5.0, "{name}: {:.2} ms of zeros in speech", s.zero_run_ms);
        check!(t.b.packets_lost > 0, "{:?}", t.b);
        check!(t.b.jitter_ms > 1.0, "{:?}", t.b);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcmu_through_impaired_relay() {
    impaired_transfer(CodecChoice::Pcmu, "pcmu-impaired", 0.85).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_through_impaired_relay() {
    impaired_transfer(CodecChoice::Opus, "opus-impaired", 0.8).await;
}

// ---------------------------------------------------------------------------------------
// Echo, DTMF, hold, latching, bad input, devices that are not there
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_returns_the_audio() {
    let _serial = STREAMING.lock().await;
    retry_on_host_stall("echo", || async {
        let dir = temp_dir("echo");
        let recording = dir.join("a.wav");
        let (sa, sb) = (Sockets::bind(), Sockets::bind());
        let na = negotiated(CodecChoice::Pcmu, sb.rtp_addr(), sb.rtcp_addr());
        let nb = negotiated(CodecChoice::Pcmu, sa.rtp_addr(), sa.rtcp_addr());
        let a = start(
            sa,
            na,
            AudioSource::File(speech_wav().to_path_buf()),
            AudioSink::File(recording.clone()),
        );
        let b = start_echo(sb, nb, AudioSource::Tone(1000.0), AudioSink::Null, true);
        tokio::time::sleep(Duration::from_secs_f64(clip_seconds() + 1.0)).await;
        let b = b.stop().await;
        let a = a.stop().await;
        let (rec, rate) = read_wav(&recording);
        check!(rate == 8000, "rate {rate}");
        let src = source_at(8000);
        let (lag, global) = best_lag(&src, &rec, 0..8000);
        let (c, _) = windowed_correlation(&src, &rec, 8000, lag);
        eprintln!(
            "echo: round trip {:.1} ms, correlation {global:.4} (windowed {c:.4}); A {a:?}; B {b:?}",
            lag as f64 / 8.0
        );
        // Threshold: >= 0.85 (aligned per window) after two G.711 passes and two jitter
        // buffers; the round trip includes both.
        check!(c >= 0.85, "echo correlation {c:.4}");
        check!(lag > 0, "lag {lag}");
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtmf_digits_arrive_once_each() {
    let _serial = STREAMING.lock().await;
    for codec in [CodecChoice::Pcmu, CodecChoice::Opus] {
        let (sa, sb) = (Sockets::bind(), Sockets::bind());
        let na = negotiated(codec, sb.rtp_addr(), sb.rtcp_addr());
        let nb = negotiated(codec, sa.rtp_addr(), sa.rtcp_addr());
        let a = start(sa, na, AudioSource::Tone(440.0), AudioSink::Null);
        let mut b = start(sb, nb, AudioSource::Silence, AudioSink::Null);
        tokio::time::sleep(Duration::from_millis(200)).await;
        a.send_dtmf("12#");
        let mut digits = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            while let Some(e) = b.try_event() {
                match e {
                    MediaEvent::Dtmf { digit } => digits.push(digit),
                    other => panic!("unexpected {other:?}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        a.stop().await;
        b.stop().await;
        assert_eq!(digits, vec!['1', '2', '#'], "{codec}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_stops_packets_and_resume_restarts_them() {
    let _serial = STREAMING.lock().await;
    let (sa, sb) = (Sockets::bind(), Sockets::bind());
    let na = negotiated(CodecChoice::Pcma, sb.rtp_addr(), sb.rtcp_addr());
    let nb = negotiated(CodecChoice::Pcma, sa.rtp_addr(), sa.rtcp_addr());
    let a = start(sa, na.clone(), AudioSource::Tone(440.0), AudioSink::Null);
    let b = start(sb, nb, AudioSource::Silence, AudioSink::Null);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(b.stats().packets_received > 10);
    // Hold: we only receive (RFC 3264 §8.4, a=recvonly from our side).
    a.update(NegotiatedMedia {
        direction: Direction::RecvOnly,
        ..na.clone()
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (sent, received) = (a.stats().packets_sent, b.stats().packets_received);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(a.stats().packets_sent, sent, "A sends while on hold");
    assert_eq!(
        b.stats().packets_received,
        received,
        "B receives while A holds"
    );
    // A still receives B's audio.
    let a_received = a.stats().packets_received;
    assert!(a_received > 40, "{a_received}");
    // Resume.
    a.update(na);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let resumed = a.stats().packets_sent - sent;
    assert!(
        (40..=60).contains(&resumed),
        "{resumed} packets in 1 s after resume"
    );
    assert!(b.stats().packets_received >= received + 40);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latches_onto_the_real_source_and_drops_bad_datagrams() {
    let _serial = STREAMING.lock().await;
    let (sa, sb) = (Sockets::bind(), Sockets::bind());
    let a_addr = sa.rtp_addr();
    let b_addr = sb.rtp_addr();
    // B was told a wrong address for A (as behind a NAT): it must latch onto A's packets.
    let stale = UdpSocket::bind("127.0.0.1:0").unwrap();
    let na = negotiated(CodecChoice::Pcmu, b_addr, sb.rtcp_addr());
    let nb = negotiated(
        CodecChoice::Pcmu,
        stale.local_addr().unwrap(),
        sa.rtcp_addr(),
    );
    let a = start(sa, na, AudioSource::Tone(440.0), AudioSink::Null);
    let b = start(sb, nb, AudioSource::Tone(300.0), AudioSink::Null);
    assert!(
        wait_for(|| a.stats().packets_received > 20, Duration::from_secs(3)).await,
        "A receives nothing: B did not latch"
    );
    // Garbage at B: 12 zero bytes (version 0), a wrong payload type, RTP from a stranger.
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    let before = b.stats().packets_discarded;
    stranger.send_to(&[0u8; 12], b_addr).unwrap();
    let mut wrong_pt = [0u8; 172];
    wrong_pt[0] = 0x80;
    wrong_pt[1] = 96;
    stranger.send_to(&wrong_pt, b_addr).unwrap();
    let mut good = [0u8; 172];
    good[0] = 0x80;
    good[1] = 0;
    stranger.send_to(&good, b_addr).unwrap();
    stranger.send_to(&[0x80], b_addr).unwrap();
    assert!(
        wait_for(
            || b.stats().packets_discarded >= before + 4,
            Duration::from_secs(2)
        )
        .await,
        "{:?}",
        b.stats()
    );
    let _ = a_addr;
    let sa_stats = a.stop().await;
    let sb_stats = b.stop().await;
    assert!(sa_stats.packets_received > 20);
    assert_eq!(sb_stats.packets_discarded, before + 4, "{sb_stats:?}");
    // The stale address got nothing once B had latched (at most packets sent before).
    stale.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let mut stale_packets = 0;
    while stale.recv_from(&mut buf).is_ok() {
        stale_packets += 1;
    }
    assert!(
        stale_packets <= 3,
        "{stale_packets} packets went to the stale address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssrc_change_and_sequence_wrap_keep_playing() {
    let _serial = STREAMING.lock().await;
    // A hand-made sender: 40 packets from SSRC 1 across the sequence and timestamp wrap,
    // then 40 from SSRC 2 starting elsewhere.
    let dir = temp_dir("ssrc");
    let recording = dir.join("b.wav");
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sb = Sockets::bind();
    let b_addr = sb.rtp_addr();
    let nb = negotiated(
        CodecChoice::Pcmu,
        sender.local_addr().unwrap(),
        sb.rtcp_addr(),
    );
    let b = start(
        sb,
        nb,
        AudioSource::Silence,
        AudioSink::File(recording.clone()),
    );
    let tone: Vec<u8> = (0..160)
        .map(|i| {
            let v =
                (8000.0 * (2.0 * std::f32::consts::PI * 500.0 * i as f32 / 8000.0).sin()) as i16;
            siphon::media::g711::linear_to_ulaw(v)
        })
        .collect();
    let mut next = Instant::now();
    for (ssrc, seq0, ts0) in [(1u32, 65_520u16, u32::MAX - 3 * 160), (2, 100, 5_000)] {
        for k in 0..40u16 {
            let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            p[2..4].copy_from_slice(&seq0.wrapping_add(k).to_be_bytes());
            p[4..8].copy_from_slice(&ts0.wrapping_add(u32::from(k) * 160).to_be_bytes());
            p[8..12].copy_from_slice(&ssrc.to_be_bytes());
            p.extend_from_slice(&tone);
            sender.send_to(&p, b_addr).unwrap();
            next += Duration::from_millis(20);
            tokio::time::sleep_until(next.into()).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = b.stop().await;
    assert_eq!(stats.packets_received, 80, "{stats:?}");
    assert_eq!(stats.packets_lost, 0, "{stats:?}");
    let (rec, _) = read_wav(&recording);
    let loud = rec
        .chunks(160)
        .filter(|c| c.iter().map(|x| x * x).sum::<f32>() / 160.0 > 0.01)
        .count();
    assert!(loud >= 74, "only {loud} loud frames of 80 in the recording");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_device_is_reported_once_and_the_call_goes_on() {
    let _serial = STREAMING.lock().await;
    let (sa, sb) = (Sockets::bind(), Sockets::bind());
    let na = negotiated(CodecChoice::Pcmu, sb.rtp_addr(), sb.rtcp_addr());
    let nb = negotiated(CodecChoice::Pcmu, sa.rtp_addr(), sa.rtcp_addr());
    let mut a = start(
        sa,
        na,
        AudioSource::Device(Some("no-such-device-siphon".into())),
        AudioSink::Device(Some("no-such-device-siphon".into())),
    );
    let b = start(sb, nb, AudioSource::Tone(440.0), AudioSink::Null);
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline && events.is_empty() {
        while let Some(e) = a.try_event() {
            events.push(e);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Some(e) = a.try_event() {
        events.push(e);
    }
    let a_stats = a.stop().await;
    let b_stats = b.stop().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        matches!(events[0], MediaEvent::DeviceUnavailable { .. }),
        "{events:?}"
    );
    // No stall: A kept sending (silence) and receiving.
    assert!(a_stats.packets_sent > 20, "{a_stats:?}");
    assert!(b_stats.packets_received > 20, "{b_stats:?}");
    assert!(a_stats.packets_received > 20, "{a_stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtcp_mux_and_ptime_30_and_recording_valid_before_stop() {
    let _serial = STREAMING.lock().await;
    let dir = temp_dir("mux");
    let recording = dir.join("b.wav");
    let (sa, sb) = (Sockets::bind(), Sockets::bind());
    let mut na = negotiated(CodecChoice::Pcma, sb.rtp_addr(), sb.rtp_addr());
    let mut nb = negotiated(CodecChoice::Pcma, sa.rtp_addr(), sa.rtp_addr());
    na.rtcp_mux = true;
    nb.rtcp_mux = true;
    na.ptime_ms = 30;
    nb.ptime_ms = 30;
    let a = start(sa, na, AudioSource::Tone(440.0), AudioSink::Null);
    let b = start(
        sb,
        nb,
        AudioSource::Tone(700.0),
        AudioSink::File(recording.clone()),
    );
    tokio::time::sleep(Duration::from_millis(6500)).await;
    // Readable while the call runs (header updated every second).
    let live = hound::WavReader::open(&recording).unwrap().len();
    assert!(live >= 8000 * 5, "{live} samples in the live recording");
    let a_stats = a.stop().await;
    let b_stats = b.stop().await;
    // 30 ms packets: ~33 per second.
    assert!((200..=230).contains(&a_stats.packets_sent), "{a_stats:?}");
    assert_eq!(
        b_stats.packets_discarded, 0,
        "RTCP on the RTP port was taken for RTP"
    );
    // The first reports go out after 1.25-3.75 s (RFC 3550 §6.2): by then one side has
    // had its SR reflected.
    assert!(
        a_stats.rtt_ms.is_some() || b_stats.rtt_ms.is_some(),
        "{a_stats:?} {b_stats:?}"
    );
    let (rec, rate) = read_wav(&recording);
    assert_eq!(rate, 8000);
    assert!(rec.len() >= 8000 * 6, "{}", rec.len());
}

// ---------------------------------------------------------------------------------------
// PulseAudio without hardware
// ---------------------------------------------------------------------------------------

/// A private PulseAudio server with a 48 kHz null sink `vsink` as default sink and its
/// monitor as default source. Reusable: `PulseServer::start()`, `env()` for a child.
mod pulse {
    use std::path::PathBuf;
    use std::process::Command;
    use std::time::{Duration, Instant};

    pub struct PulseServer {
        dir: PathBuf,
        pid: Option<u32>,
    }

    impl PulseServer {
        /// Starts `pulseaudio` with `XDG_RUNTIME_DIR` and `HOME` in a fresh temp dir and
        /// loads `vsink`. Err if the program is missing or does not come up in 10 s.
        pub fn start(name: &str) -> Result<PulseServer, String> {
            let dir =
                std::env::temp_dir().join(format!("siphon-pulse-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("home")).map_err(|e| e.to_string())?;
            let mut server = PulseServer { dir, pid: None };
            let status = server
                .command("pulseaudio")
                .args(["--daemonize=yes", "--exit-idle-time=-1", "--system=false"])
                .status()
                .map_err(|e| format!("cannot run pulseaudio: {e}"))?;
            if !status.success() {
                return Err(format!("pulseaudio exited with {status}"));
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            let pid_file = server.dir.join("pulse/pid");
            while server.pid.is_none() && Instant::now() < deadline {
                server.pid = std::fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                std::thread::sleep(Duration::from_millis(50));
            }
            if server.pid.is_none() {
                return Err("pulseaudio wrote no pid file".into());
            }
            server.pactl(&[
                "load-module",
                "module-null-sink",
                "sink_name=vsink",
                "rate=48000",
            ])?;
            server.pactl(&["set-default-sink", "vsink"])?;
            server.pactl(&["set-default-source", "vsink.monitor"])?;
            Ok(server)
        }

        /// Environment that points a client (cpal's PulseAudio host, pactl) at this server.
        pub fn env(&self) -> Vec<(&'static str, PathBuf)> {
            vec![
                ("XDG_RUNTIME_DIR", self.dir.clone()),
                ("HOME", self.dir.join("home")),
                (
                    "PULSE_SERVER",
                    PathBuf::from(format!("unix:{}", self.dir.join("pulse/native").display())),
                ),
            ]
        }

        pub fn command(&self, program: &str) -> Command {
            let mut c = Command::new(program);
            for (k, v) in self.env() {
                c.env(k, v);
            }
            c
        }

        pub fn pactl(&self, args: &[&str]) -> Result<String, String> {
            let out = self
                .command("pactl")
                .args(args)
                .output()
                .map_err(|e| format!("pactl: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "pactl {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        }
    }

    impl Drop for PulseServer {
        fn drop(&mut self) {
            if let Some(pid) = self.pid {
                // Stop our server by its pid only.
                let _ = Command::new("kill").arg(pid.to_string()).status();
                let deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < deadline
                    && std::path::Path::new(&format!("/proc/{pid}")).exists()
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// The server, or `None` after a loud skip. Under CI=true a missing server fails.
    pub fn require(name: &str) -> Option<PulseServer> {
        match PulseServer::start(name) {
            Ok(s) => Some(s),
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("PulseAudio is required under CI=true: {e}")
            }
            Err(e) => {
                eprintln!(
                    "SKIPPED {name}: no PulseAudio ({e}); install pulseaudio pulseaudio-utils"
                );
                None
            }
        }
    }

    /// Runs the ignored test `inner` of this test binary in a child process pointed at
    /// the server (the environment must not change under the other tests' threads).
    pub fn run_child(server: &PulseServer, inner: &str) {
        let exe = std::env::current_exe().unwrap();
        let out = server
            .command(exe.to_str().unwrap())
            .args([
                inner,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SIPHON_PULSE_CHILD", "1")
            .output()
            .unwrap();
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "{inner} failed in the PulseAudio child"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "{inner} did not run in the child"
        );
    }

    pub fn in_child() -> bool {
        std::env::var("SIPHON_PULSE_CHILD").is_ok_and(|v| v == "1")
    }
}

#[test]
fn pulseaudio_tone_through_device_sink_and_source() {
    let _serial = STREAMING.blocking_lock();
    let Some(server) = pulse::require("tone") else {
        return;
    };
    pulse::run_child(&server, "pulse_child_tone");
}

#[test]
fn pulseaudio_list_devices_sees_vsink() {
    let _serial = STREAMING.blocking_lock();
    let Some(server) = pulse::require("list") else {
        return;
    };
    pulse::run_child(&server, "pulse_child_list_devices");
}

#[test]
#[ignore = "run by pulseaudio_list_devices_sees_vsink in a child process"]
fn pulse_child_list_devices() {
    if !pulse::in_child() {
        return;
    }
    let list = siphon::media::list_devices();
    eprintln!("{list:?}");
    assert_eq!(list.host, "PulseAudio");
    assert!(list.outputs.iter().any(|d| d == "vsink"), "{list:?}");
    assert!(list.inputs.iter().any(|d| d == "vsink.monitor"), "{list:?}");
    assert_eq!(list.default_output.as_deref(), Some("vsink"));
    assert_eq!(list.default_input.as_deref(), Some("vsink.monitor"));
}

/// Goertzel power of `hz` relative to the total power.
fn tone_share(x: &[f32], rate: u32, hz: f32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * f64::from(hz) / f64::from(rate);
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    let total: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    2.0 * power / (x.len() as f64 * total.max(1e-12))
}

#[test]
#[ignore = "run by pulseaudio_tone_through_device_sink_and_source in a child process"]
fn pulse_child_tone() {
    if !pulse::in_child() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = temp_dir("pulse-tone");
        let recording = dir.join("captured.wav");
        // T (tone 440 Hz) -> P (plays to the default device, vsink), PCMU: 8 -> 48 kHz.
        let (st, sp) = (Sockets::bind(), Sockets::bind());
        let nt = negotiated(CodecChoice::Pcmu, sp.rtp_addr(), sp.rtcp_addr());
        let np = negotiated(CodecChoice::Pcmu, st.rtp_addr(), st.rtcp_addr());
        // C (captures vsink.monitor, by name) -> R (records), PCMA: 48 -> 8 kHz.
        let (sc, sr) = (Sockets::bind(), Sockets::bind());
        let nc = negotiated(CodecChoice::Pcma, sr.rtp_addr(), sr.rtcp_addr());
        let nr = negotiated(CodecChoice::Pcma, sc.rtp_addr(), sc.rtcp_addr());
        let t = start(st, nt, AudioSource::Tone(440.0), AudioSink::Null);
        let mut p = start(sp, np, AudioSource::Silence, AudioSink::Device(None));
        let mut c = start(
            sc,
            nc,
            AudioSource::Device(Some("vsink.monitor".into())),
            AudioSink::Null,
        );
        let r = start(
            sr,
            nr,
            AudioSource::Silence,
            AudioSink::File(recording.clone()),
        );
        tokio::time::sleep(Duration::from_secs(4)).await;
        let events: Vec<_> = std::iter::from_fn(|| p.try_event())
            .chain(std::iter::from_fn(|| c.try_event()))
            .collect();
        for s in [t, p, c, r] {
            eprintln!("{:?}", s.stop().await);
        }
        assert!(events.is_empty(), "{events:?}");
        let (rec, rate) = read_wav(&recording);
        assert_eq!(rate, 8000);
        // The last 1.5 s: the path is established by then.
        let tail = &rec[rec.len().saturating_sub(12_000)..];
        let rms = (tail
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            / tail.len() as f64)
            .sqrt();
        let dbfs = 20.0 * rms.log10();
        let share = tone_share(tail, rate, 440.0);
        let crossings = tail
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        let hz = crossings as f64 * f64::from(rate) / (2.0 * tail.len() as f64);
        eprintln!(
            "captured: {dbfs:.2} dBFS RMS, {hz:.1} Hz by zero crossings, 440 Hz share {share:.3}"
        );
        // A −10 dBFS peak sine is −13 dBFS RMS; allow ±3 dB for the round trip.
        assert!((dbfs + 13.0).abs() <= 3.0, "level {dbfs:.2} dBFS");
        assert!((hz - 440.0).abs() <= 10.0, "frequency {hz:.1} Hz");
        assert!(share > 0.8, "440 Hz carries only {share:.3} of the power");
    });
}
