//! Helpers for the media tests (`tests/media_peers.rs`): test speech made
//! with espeak-ng, resampling with sox, aligning a recording to its source by
//! normalised cross-correlation, RTP read out of pcap files, and media ports
//! for SIPp.
//!
//! Every external program runs bounded (`run_bounded`); every socket probed
//! here is on 127.0.0.1.

use std::f64::consts::PI;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use super::calls::{CallOutcome, read_wav_pcm16};
use super::{find_program, free_udp_port, require_peer, run_bounded, udp_port_in_use};

// ---------------------------------------------------------------------------
// One media test at a time
// ---------------------------------------------------------------------------

/// Media tests measure audio sent in real time by several processes; on a
/// two-core machine, running them side by side lets them starve each other
/// and measures the machine, not siphon. Hold this guard for a whole test.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A test that failed while holding the lock must not fail the others.
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------
// Test sound: speech and resampling
// ---------------------------------------------------------------------------

/// Whether espeak-ng and sox are installed (under CI a missing one fails,
/// as for any peer: see `require_peer`).
pub fn have_sound_tools() -> bool {
    require_peer("espeak-ng") & require_peer("sox")
}

fn run_tool(program: &str, args: &[&str]) {
    let binary = find_program(program).unwrap_or_else(|| panic!("`{program}` is not installed"));
    let (status, stdout, stderr) =
        run_bounded(Command::new(binary).args(args), Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "{program} {args:?} failed ({status:?})\n{stdout}\n{stderr}"
    );
}

/// Speak `text` with espeak-ng into `dir/<name>.wav`: 16 kHz, mono, 16-bit
/// (espeak-ng writes 22.05 kHz; sox converts). Check `have_sound_tools`
/// first.
pub fn make_speech(dir: &Path, name: &str, text: &str) -> PathBuf {
    let raw = dir.join(format!("{name}-espeak.wav"));
    let out = dir.join(format!("{name}.wav"));
    let raw_arg = raw.to_str().expect("utf-8 temp path");
    run_tool("espeak-ng", &["-v", "en", "-s", "150", "-w", raw_arg, text]);
    sox_resample(&raw, 16000, &out);
    out
}

/// `sox input -r rate -c 1 -b 16 output`: a mono 16-bit copy at `rate`.
pub fn sox_resample(input: &Path, rate: u32, output: &Path) {
    let rate = rate.to_string();
    run_tool(
        "sox",
        &[
            input.to_str().expect("utf-8 path"),
            "-r",
            &rate,
            "-c",
            "1",
            "-b",
            "16",
            output.to_str().expect("utf-8 path"),
        ],
    );
}

/// Mono audio as f64 samples (16-bit scale) with its rate.
#[derive(Debug, Clone)]
pub struct Sound {
    pub samples: Vec<f64>,
    pub rate: u32,
}

impl Sound {
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.rate)
    }

    /// Root mean square level (16-bit scale).
    pub fn rms(&self) -> f64 {
        rms(&self.samples)
    }

    /// The samples as i16 (saturating), for the tone detector.
    pub fn to_i16(&self) -> Vec<i16> {
        self.samples
            .iter()
            .map(|&x| x.round().clamp(-32768.0, 32767.0) as i16)
            .collect()
    }
}

fn rms(samples: &[f64]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|x| x * x).sum::<f64>() / samples.len() as f64).sqrt()
}

/// Read a mono 16-bit PCM WAV file; panics if it is anything else.
pub fn read_mono(path: &Path) -> Sound {
    let (samples, rate, channels) = read_wav_pcm16(path)
        .unwrap_or_else(|| panic!("{} is not a 16-bit PCM WAV file", path.display()));
    assert_eq!(channels, 1, "{} is not mono", path.display());
    Sound {
        samples: samples.into_iter().map(f64::from).collect(),
        rate,
    }
}

// ---------------------------------------------------------------------------
// Alignment by normalised cross-correlation
// ---------------------------------------------------------------------------

/// Where a recording best matches its source.
#[derive(Debug, Clone, Copy)]
pub struct Alignment {
    /// recording[n] ~ g * source[n - lag], in samples.
    pub lag: isize,
    /// Normalised cross-correlation over the overlap, at that lag: 1.0 for
    /// a scaled copy, about 0 for unrelated sound.
    pub ncc: f64,
    /// Samples in the overlap.
    pub overlap: usize,
}

impl Alignment {
    pub fn lag_ms(&self, rate: u32) -> f64 {
        self.lag as f64 * 1000.0 / f64::from(rate)
    }
}

/// In-place iterative radix-2 FFT (`re.len()` a power of two). `twiddles`
/// holds exp(-2 pi i k / n) for k < n/2; `inverse` conjugates them (no 1/n).
fn fft(re: &mut [f64], im: &mut [f64], twiddles: &[(f64, f64)], inverse: bool) {
    let n = re.len();
    debug_assert!(n.is_power_of_two() && im.len() == n && twiddles.len() == n / 2);
    let bits = n.trailing_zeros();
    for i in 0..n {
        let j = i.reverse_bits() >> (usize::BITS - bits);
        if j > i {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let half = len / 2;
        let stride = n / len;
        for start in (0..n).step_by(len) {
            for k in 0..half {
                let (wr, wi) = twiddles[k * stride];
                let wi = if inverse { -wi } else { wi };
                let (a, b) = (start + k, start + k + half);
                let tr = re[b] * wr - im[b] * wi;
                let ti = re[b] * wi + im[b] * wr;
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
            }
        }
        len *= 2;
    }
}

/// c[lag] = sum over n of recording[n] * source[n - lag], for every lag in
/// -(source.len()-1) ..= recording.len()-1, through the FFT. Returned with
/// the offset of lag 0 in the vector (`source.len() - 1`).
fn cross_correlation(source: &[f64], recording: &[f64]) -> (Vec<f64>, usize) {
    let n = (source.len() + recording.len()).next_power_of_two();
    let twiddles: Vec<(f64, f64)> = (0..n / 2)
        .map(|k| {
            let angle = -2.0 * PI * k as f64 / n as f64;
            (angle.cos(), angle.sin())
        })
        .collect();
    let (mut rr, mut ri) = (vec![0.0; n], vec![0.0; n]);
    rr[..recording.len()].copy_from_slice(recording);
    let (mut sr, mut si) = (vec![0.0; n], vec![0.0; n]);
    sr[..source.len()].copy_from_slice(source);
    fft(&mut rr, &mut ri, &twiddles, false);
    fft(&mut sr, &mut si, &twiddles, false);
    // R * conj(S)
    for k in 0..n {
        let (a, b, c, d) = (rr[k], ri[k], sr[k], si[k]);
        rr[k] = a * c + b * d;
        ri[k] = b * c - a * d;
    }
    fft(&mut rr, &mut ri, &twiddles, true);
    let zero = source.len() - 1;
    let mut out = vec![0.0; source.len() + recording.len() - 1];
    for (i, value) in out.iter_mut().enumerate() {
        let lag = i as isize - zero as isize;
        let index = if lag >= 0 {
            lag as usize
        } else {
            (n as isize + lag) as usize
        };
        *value = rr[index] / n as f64;
    }
    (out, zero)
}

fn prefix_energy(samples: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(samples.len() + 1);
    let mut sum = 0.0;
    out.push(0.0);
    for x in samples {
        sum += x * x;
        out.push(sum);
    }
    out
}

/// The lag within `-max_lag..=max_lag` at which `recording` best matches
/// `source` (same rate), by normalised cross-correlation over the overlap.
/// Only lags whose overlap is at least `min_overlap` samples and holds at
/// least half of the recording's energy count, so that a few loud samples
/// or a stretch of silence cannot win. None if no lag qualifies (e.g. the
/// recording is silent).
pub fn align(
    source: &[f64],
    recording: &[f64],
    max_lag: usize,
    min_overlap: usize,
) -> Option<Alignment> {
    if source.is_empty() || recording.is_empty() {
        return None;
    }
    let (corr, zero) = cross_correlation(source, recording);
    let ps = prefix_energy(source);
    let pr = prefix_energy(recording);
    let total_r = pr[recording.len()];
    if total_r <= 0.0 {
        return None;
    }
    let (ls, lr) = (source.len() as isize, recording.len() as isize);
    let max_lag = max_lag as isize;
    let mut best: Option<Alignment> = None;
    for lag in (-max_lag).max(1 - ls)..=max_lag.min(lr - 1) {
        // recording n in [n_lo, n_hi), source m = n - lag
        let n_lo = lag.max(0);
        let n_hi = lr.min(ls + lag);
        if n_hi - n_lo < min_overlap as isize {
            continue;
        }
        let (m_lo, m_hi) = (n_lo - lag, n_hi - lag);
        let er = pr[n_hi as usize] - pr[n_lo as usize];
        let es = ps[m_hi as usize] - ps[m_lo as usize];
        if er < 0.5 * total_r || es <= 0.0 {
            continue;
        }
        let ncc = corr[(zero as isize + lag) as usize] / (er * es).sqrt();
        if best.is_none_or(|b| ncc > b.ncc) {
            best = Some(Alignment {
                lag,
                ncc,
                overlap: (n_hi - n_lo) as usize,
            });
        }
    }
    best
}

/// A recording aligned piece by piece: each segment at its own best lag
/// near the global one. An adaptive jitter buffer may shift its playout by
/// whole frames (after a scheduling stall, say), which no single lag can
/// follow; this measures whether the sound itself came through, and counts
/// the shifts.
#[derive(Debug, Clone)]
pub struct Segmented {
    /// Sum of the segments' correlations / sqrt(sum of their recording
    /// energies x sum of their source energies): the global NCC when every
    /// segment has the same lag.
    pub ncc: f64,
    /// Each segment: start in the recording (samples), lag, NCC, whether
    /// it is loud (no more than 12 dB below the mean power) and whether it
    /// carries sound that matches (loud and NCC >= 0.5), which is what
    /// counts for slips.
    pub segments: Vec<Segment>,
    /// Changes of lag by more than 1 ms between consecutive segments with
    /// sound: timeline slips (frames inserted or dropped).
    pub slips: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Segment {
    pub start: usize,
    pub lag: isize,
    pub ncc: f64,
    pub loud: bool,
    pub sound: bool,
}

impl Segmented {
    /// Loud segments that match nothing (NCC < 0.5): holes.
    pub fn holes(&self) -> usize {
        self.segments.iter().filter(|s| s.loud && !s.sound).count()
    }

    /// The median NCC of the loud segments (0 if none).
    pub fn median_ncc(&self) -> f64 {
        let mut v: Vec<f64> = self
            .segments
            .iter()
            .filter(|s| s.loud)
            .map(|s| s.ncc)
            .collect();
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }

    /// Whether the recording shows the marks of a transient disturbance (a
    /// stall of a process): a slip, or a hole in a recording whose
    /// segments otherwise reach `min_ncc` (the median does).
    pub fn disturbed(&self, min_ncc: f64) -> bool {
        self.slips > 0 || (self.holes() > 0 && self.median_ncc() >= min_ncc)
    }

    /// "+20.0 ms at 2.10 s, ..." (the lag changes), for messages.
    pub fn slip_list(&self, rate: u32) -> String {
        let ms = |lag: isize| lag as f64 * 1000.0 / f64::from(rate);
        let mut out = Vec::new();
        let mut previous: Option<isize> = None;
        for seg in self.segments.iter().filter(|s| s.sound) {
            if let Some(p) = previous
                && is_slip(p, seg.lag, rate)
            {
                out.push(format!(
                    "{:+.1} ms at {:.2} s",
                    ms(seg.lag - p),
                    seg.start as f64 / f64::from(rate)
                ));
            }
            previous = Some(seg.lag);
        }
        if out.is_empty() {
            "none".to_string()
        } else {
            out.join(", ")
        }
    }
}

fn is_slip(previous: isize, lag: isize, rate: u32) -> bool {
    (lag - previous).unsigned_abs() * 1000 > rate as usize
}

/// Align each `segment`-sample piece of `recording` to `source` (both at
/// `rate`) within `span` samples of `global.lag`.
pub fn align_segments(
    source: &[f64],
    recording: &[f64],
    rate: u32,
    global: &Alignment,
    segment: usize,
    span: usize,
) -> Segmented {
    let mean_power = recording.iter().map(|x| x * x).sum::<f64>() / recording.len().max(1) as f64;
    let (mut corr, mut er_sum, mut es_sum) = (0.0, 0.0, 0.0);
    let mut segments: Vec<Segment> = Vec::new();
    let mut start = 0;
    while segment > 0 && start + segment / 2 < recording.len() {
        // The last piece may be shorter, down to half a segment.
        let piece = &recording[start..(start + segment).min(recording.len())];
        // The source around where the global lag puts this piece.
        let lo = start as isize - global.lag - span as isize;
        let hi = (start + piece.len()) as isize - global.lag + span as isize;
        let w0 = lo.clamp(0, source.len() as isize);
        let w1 = hi.clamp(w0, source.len() as isize);
        let er_piece: f64 = piece.iter().map(|x| x * x).sum();
        // Where the global lag puts the piece in the source: [m0, m1).
        let m0 = (start as isize - global.lag).clamp(0, source.len() as isize);
        let m1 = ((start + piece.len()) as isize - global.lag).clamp(m0, source.len() as isize);
        if ((m1 - m0) as usize) < piece.len() / 2 {
            // At an end of the source: judged at the global lag only, and
            // never a hole or a slip.
            let n0 = (m0 + global.lag - start as isize).clamp(0, piece.len() as isize) as usize;
            let inside = &piece[n0..(n0 + (m1 - m0) as usize).min(piece.len())];
            let theirs = &source[m0 as usize..m1 as usize];
            corr += inside.iter().zip(theirs).map(|(a, b)| a * b).sum::<f64>();
            er_sum += er_piece;
            es_sum += theirs.iter().map(|x| x * x).sum::<f64>();
            start += segment;
            continue;
        }
        let window = &source[w0 as usize..w1 as usize];
        match align(window, piece, window.len() + piece.len(), piece.len() / 2) {
            Some(a) => {
                // piece[n] ~ window[n - a.lag] = source[start + n - lag]
                let lag = start as isize - w0 + a.lag;
                let n_lo = a.lag.max(0) as usize;
                let n_hi = n_lo + a.overlap;
                let m_lo = (n_lo as isize - a.lag) as usize;
                let er: f64 = piece[n_lo..n_hi].iter().map(|x| x * x).sum();
                let es: f64 = window[m_lo..m_lo + a.overlap].iter().map(|x| x * x).sum();
                corr += a.ncc * (er * es).sqrt();
                // What of the piece has no source beside it counts as unmatched.
                er_sum += er_piece;
                es_sum += es;
                let loud = er_piece / piece.len() as f64 >= mean_power / 16.0;
                segments.push(Segment {
                    start,
                    lag,
                    ncc: a.ncc,
                    loud,
                    sound: loud && a.ncc >= 0.5,
                });
            }
            // Sound where the source is silent or absent: nothing matches it.
            None => {
                er_sum += er_piece;
                segments.push(Segment {
                    start,
                    lag: global.lag,
                    ncc: 0.0,
                    loud: er_piece / piece.len() as f64 >= mean_power / 16.0,
                    sound: false,
                });
            }
        }
        start += segment;
    }
    let mut slips = 0;
    let mut previous: Option<isize> = None;
    for seg in segments.iter().filter(|s| s.sound) {
        if previous.is_some_and(|p| is_slip(p, seg.lag, rate)) {
            slips += 1;
        }
        previous = Some(seg.lag);
    }
    let ncc = if er_sum > 0.0 && es_sum > 0.0 {
        corr / (er_sum * es_sum).sqrt()
    } else {
        0.0
    };
    Segmented {
        ncc,
        segments,
        slips,
    }
}

/// Check of the alignment on made-up signals (no peers needed).
pub fn self_check() {
    // A chirp-like signal, delayed by 123 samples and scaled, with a
    // little noise; and the same against an unrelated signal.
    let source: Vec<f64> = (0..8000)
        .map(|n| {
            let t = n as f64 / 8000.0;
            8000.0 * (2.0 * PI * (300.0 + 400.0 * t) * t).sin() * (1.0 + (7.0 * t).sin()) / 2.0
        })
        .collect();
    let mut state = 12345u32;
    let mut noise = || {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        f64::from((state >> 16) & 0x7fff) / 32768.0 - 0.5
    };
    let recording: Vec<f64> = (0..7000)
        .map(|n| {
            let m = n as isize - 123;
            let s = if m >= 0 { source[m as usize] } else { 0.0 };
            0.5 * s + 50.0 * noise()
        })
        .collect();
    let a = align(&source, &recording, 2000, 2000).expect("an alignment");
    assert_eq!(a.lag, 123, "{a:?}");
    assert!(a.ncc > 0.99, "{a:?}");
    let other: Vec<f64> = (0..7000).map(|_| 8000.0 * noise()).collect();
    let b = align(&source, &other, 2000, 2000).expect("an alignment");
    assert!(b.ncc < 0.2, "{b:?}");
    // Negative lag: the recording starts inside the source.
    let late: Vec<f64> = source[500..].to_vec();
    let c = align(&source, &late, 2000, 2000).expect("an alignment");
    assert_eq!(c.lag, -500, "{c:?}");
    assert!(c.ncc > 0.999, "{c:?}");

    // A slip: 160 samples (20 ms at 8 kHz) inserted halfway. No single lag
    // fits all; the segments do, and the slip is counted.
    let long: Vec<f64> = (0..24000)
        .map(|n| 6000.0 * (0.37 * n as f64 + 0.0001 * (n as f64).powi(2)).sin())
        .collect();
    let mut slipped: Vec<f64> = vec![0.0; 100];
    slipped.extend_from_slice(&long[..10000]);
    slipped.extend(std::iter::repeat_n(0.0, 160));
    slipped.extend_from_slice(&long[10000..20000]);
    let g = align(&long, &slipped, 2000, 8000).expect("an alignment");
    let s = align_segments(&long, &slipped, 8000, &g, 2000, 800);
    assert!(g.ncc < 0.9, "{g:?}");
    assert!(s.ncc > 0.97, "{s:?}");
    assert_eq!(s.slips, 1, "{s:?}");
    assert!(s.disturbed(0.9) && s.holes() == 0, "{s:?}");
    assert!(
        s.slip_list(8000).contains("20.0 ms"),
        "{}",
        s.slip_list(8000)
    );
    // A recording that runs on past the end of its source.
    let mut longer = long[..20000].to_vec();
    longer.extend(std::iter::repeat_n(0.0, 9000));
    let past = align(&long[..20000], &longer, 100, 8000).expect("an alignment");
    let past = align_segments(&long[..20000], &longer, 8000, &past, 2000, 800);
    assert!(past.ncc > 0.999 && past.slips == 0, "{past:?}");
    let none = align_segments(
        &long,
        &long[..20000],
        8000,
        &align(&long, &long[..20000], 10, 8000).unwrap(),
        2000,
        800,
    );
    assert_eq!(none.slips, 0, "{none:?}");
    assert!(!none.disturbed(0.9), "{none:?}");
    // A hole: 0.25 s of noise in place of the signal, the rest intact.
    let mut holed = long[..20000].to_vec();
    for (n, x) in holed[10000..12000].iter_mut().enumerate() {
        *x = 6000.0 * ((n * 7919 % 113) as f64 / 56.0 - 1.0);
    }
    let h = align(&long, &holed, 10, 8000).expect("an alignment");
    let h = align_segments(&long, &holed, 8000, &h, 2000, 800);
    assert_eq!((h.slips, h.holes()), (0, 1), "{h:?}");
    assert!(h.disturbed(0.9), "{h:?}");
    assert!(none.ncc > 0.999, "{none:?}");
}

// ---------------------------------------------------------------------------
// RTP out of pcap files
// ---------------------------------------------------------------------------

/// One RTP packet from a capture.
#[derive(Debug, Clone)]
pub struct RtpPacket {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

/// The RTP packets (UDP over IPv4 or IPv6) of a classic libpcap file, in
/// capture order. Link types: Ethernet (1, with 802.1Q tags), BSD loopback
/// (0), raw IP (101) and Linux cooked (113). Panics on anything it cannot
/// read, naming the file.
pub fn pcap_rtp_packets(path: &Path) -> Vec<RtpPacket> {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let fail = |why: &str| -> ! { panic!("{}: {why}", path.display()) };
    if bytes.len() < 24 {
        fail("shorter than a pcap global header");
    }
    let magic = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
    let little = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        _ => fail("not a classic pcap file (pcapng?)"),
    };
    let u32_at = |at: usize| -> u32 {
        let b: [u8; 4] = bytes[at..at + 4].try_into().unwrap();
        if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let link_type = u32_at(20);
    let mut packets = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let captured = u32_at(at + 8) as usize;
        let frame_start = at + 16;
        let frame_end = frame_start + captured;
        if frame_end > bytes.len() {
            fail("truncated record");
        }
        let frame = &bytes[frame_start..frame_end];
        at = frame_end;
        let ip = match link_type {
            1 => {
                let mut offset = 12;
                let mut ether_type = be16(frame, offset);
                while ether_type == Some(0x8100) {
                    offset += 4;
                    ether_type = be16(frame, offset);
                }
                frame.get(offset + 2..)
            }
            0 => frame.get(4..),
            101 => Some(frame),
            113 => frame.get(16..),
            other => fail(&format!("link type {other} not supported")),
        };
        if let Some(rtp) = ip.and_then(udp_payload).and_then(parse_rtp) {
            packets.push(rtp);
        }
    }
    packets
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

/// The UDP payload of an IPv4 or IPv6 packet, or None.
fn udp_payload(ip: &[u8]) -> Option<&[u8]> {
    let version = ip.first()? >> 4;
    let udp = match version {
        4 => {
            let header = usize::from(ip[0] & 0x0f) * 4;
            if *ip.get(9)? != 17 {
                return None;
            }
            ip.get(header..)?
        }
        6 => {
            if *ip.get(6)? != 17 {
                return None;
            }
            ip.get(40..)?
        }
        _ => return None,
    };
    let length = usize::from(be16(udp, 4)?);
    udp.get(8..length.max(8).min(udp.len()))
}

/// An RTP packet (version 2; CSRCs, extension and padding stripped).
fn parse_rtp(data: &[u8]) -> Option<RtpPacket> {
    if data.len() < 12 || data[0] >> 6 != 2 {
        return None;
    }
    let csrc = usize::from(data[0] & 0x0f);
    let mut start = 12 + 4 * csrc;
    if data[0] & 0x10 != 0 {
        let words = usize::from(be16(data, start + 2)?);
        start += 4 + 4 * words;
    }
    let mut end = data.len();
    if data[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*data.last()?))?;
    }
    Some(RtpPacket {
        payload_type: data[1] & 0x7f,
        marker: data[1] & 0x80 != 0,
        sequence: u16::from_be_bytes([data[2], data[3]]),
        timestamp: u32::from_be_bytes(data[4..8].try_into().ok()?),
        ssrc: u32::from_be_bytes(data[8..12].try_into().ok()?),
        payload: data.get(start..end)?.to_vec(),
    })
}

/// The audio of the packets of `payload_type` (a G.711 stream, 8 kHz), each
/// placed at its RTP timestamp (gaps are silence), decoded with `decode`
/// (e.g. `siphon::media::g711::decode_alaw`).
pub fn g711_audio(
    packets: &[RtpPacket],
    payload_type: u8,
    decode: fn(&[u8], &mut [i16]) -> usize,
) -> Sound {
    let stream: Vec<&RtpPacket> = packets
        .iter()
        .filter(|p| p.payload_type == payload_type)
        .collect();
    let Some(first) = stream.first() else {
        return Sound {
            samples: Vec::new(),
            rate: 8000,
        };
    };
    let mut samples: Vec<f64> = Vec::new();
    let mut decoded = Vec::new();
    for packet in &stream {
        let offset = packet.timestamp.wrapping_sub(first.timestamp) as usize;
        decoded.resize(packet.payload.len(), 0i16);
        let n = decode(&packet.payload, &mut decoded);
        if samples.len() < offset + n {
            samples.resize(offset + n, 0.0);
        }
        for (slot, &s) in samples[offset..offset + n].iter_mut().zip(&decoded[..n]) {
            *slot = f64::from(s);
        }
    }
    Sound {
        samples,
        rate: 8000,
    }
}

/// When `SIPHON_MEDIA_KEEP` names a folder, copy the files of `dir` (the
/// sounds and recordings of a test) into `<that folder>/<label>/`, to look
/// at after the test (its temp folder is removed on drop).
pub fn keep_artifacts(dir: &Path, label: &str) {
    let Some(keep) = std::env::var_os("SIPHON_MEDIA_KEEP").filter(|k| !k.is_empty()) else {
        return;
    };
    let target = PathBuf::from(keep).join(label);
    let _ = fs::create_dir_all(&target);
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let _ = fs::copy(entry.path(), target.join(entry.file_name()));
        }
    }
    eprintln!("media files of {label} kept in {}", target.display());
}

// ---------------------------------------------------------------------------
// SIPp media ports and siphon's events
// ---------------------------------------------------------------------------

/// A port for SIPp's `-mp` with the three above it free too: SIPp's media
/// socket and, with `-rtp_echo`, the video echo socket at port + 2.
pub fn sipp_media_port() -> u16 {
    for _ in 0..50 {
        let port = free_udp_port();
        if port <= u16::MAX - 3 && (1..=3).all(|d| !udp_port_in_use(port + d)) {
            return port;
        }
    }
    panic!("no free UDP port with three free ports above it on 127.0.0.1");
}

/// The "stats" of the one "ended" event of a call (panics, with the
/// report, unless there is exactly one with stats).
pub fn ended_stats(outcome: &CallOutcome) -> Value {
    let ended = outcome.single("ended");
    let stats = ended["stats"].clone();
    assert!(
        stats.is_object(),
        "\"ended\" without stats: {ended}\n{}",
        outcome.report()
    );
    stats
}

/// The digits of the "dtmf" events, in order.
pub fn dtmf_digits(outcome: &CallOutcome) -> Vec<String> {
    outcome
        .events_named("dtmf")
        .iter()
        .map(|e| e["digit"].as_str().unwrap_or("?").to_string())
        .collect()
}
