//! Adaptive jitter buffer, sans-IO.
//!
//! [`JitterBuffer::push`] stores RTP payloads in preallocated slots; the audio side calls
//! [`JitterBuffer::pop`] once per frame interval and gets the next frame, a loss to conceal,
//! or nothing. Times are `Instant`s passed in; no clock is read and no memory is allocated
//! after [`JitterBuffer::new`].
//!
//! Model. Each packet's relative transit `r = arrival - timestamp` (in timestamp units, RFC
//! 3550 §A.8) is smoothed into a mean `r̄` and the interarrival jitter `J`. The playout point
//! `P` (the timestamp due next) advances one frame per pop, so `offset = now - P` is how far
//! behind the sender we play and `delay = offset - r̄` is the mean time a packet waits. The
//! target is `clamp(3 J + frame, min, max)`: raised at once (also when a packet comes late),
//! lowered slowly. The delay is steered to the target during silence (by re-anchoring the
//! next talkspurt) or, in a talkspurt, by inserting or dropping one frame at a time. This
//! also absorbs clock drift between sender and receiver.

use std::time::{Duration, Instant};

/// RFC 3550 §A.1: packets more than this far behind are not "late" but a new sequence.
const MAX_MISORDER: i64 = 100;
/// Target = K * jitter + one frame.
const JITTER_K: f64 = 3.0;
/// Per-packet weight of the slow downward target correction (~5 s at 50 packets/s).
const TARGET_DECAY: f64 = 1.0 / 256.0;
/// RFC 3550 §A.8 estimator gain.
const JITTER_GAIN: f64 = 1.0 / 16.0;
/// In a talkspurt, at most one inserted frame per this many pops ...
const INSERT_INTERVAL: u32 = 2;
/// ... and at most one dropped frame per this many.
const DROP_INTERVAL: u32 = 5;
/// Consecutive empty pops reported as `Lost` (for the caller to conceal) before `Empty`.
const UNDERRUN_LOST_LIMIT: u32 = 5;
/// A jump in transit larger than this (seconds) is a timestamp discontinuity, not jitter.
const DISCONTINUITY_S: f64 = 3.0;
/// Size of the ring remembering recently received sequence numbers (duplicate detection).
const SEEN_LEN: usize = 1024;

/// Jitter buffer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP clock rate, Hz.
    pub clock_rate: u32,
    /// Timestamp units per packet (and per `pop`), e.g. 160 for 20 ms at 8 kHz.
    pub frame_samples: u32,
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Packets that fit in the buffer.
    pub capacity: usize,
    /// Largest payload accepted; larger ones are dropped and counted.
    pub max_payload: usize,
}

impl JitterConfig {
    /// Defaults: 20..200 ms delay, 32 packets of up to 1500 bytes.
    pub fn new(clock_rate: u32, frame_samples: u32) -> JitterConfig {
        JitterConfig {
            clock_rate,
            frame_samples,
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            capacity: 32,
            max_payload: 1500,
        }
    }
}

/// What to play for the next frame interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playout<'a> {
    /// A received frame.
    Frame { timestamp: u32, payload: &'a [u8] },
    /// No packet for this interval although the stream is running: conceal one frame.
    /// `timestamp` is the one due (when a frame is inserted to grow the delay, it is that of
    /// the frame that will follow).
    Lost { timestamp: u32 },
    /// Nothing to play: not started, silence between talkspurts, or a long underrun.
    Empty,
}

/// Counters and current figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets accepted (including late ones, excluding duplicates and rejects).
    pub received: u64,
    /// Sequence numbers whose playout time passed without the packet.
    pub lost: u64,
    /// Packets that arrived after their playout time (dropped; also counted in `lost`).
    pub late: u64,
    pub duplicate: u64,
    /// Packets that arrived after a higher sequence number and were put back in order.
    pub reordered: u64,
    /// Frames discarded to shrink the delay.
    pub dropped: u64,
    /// Concealed frames inserted to grow the delay.
    pub inserted: u64,
    /// Pops that found the buffer empty while playing.
    pub underruns: u64,
    pub oversize: u64,
    /// Packets outside the buffer window (a second one in sequence restarts the stream).
    pub overflow: u64,
    pub resyncs: u64,
    /// Mean time a packet waits in the buffer, as of the last pop.
    pub current_delay: Duration,
    pub target_delay: Duration,
    /// RFC 3550 §A.8 interarrival jitter.
    pub jitter: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Buffering,
    Playing,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    ext_seq: i64,
    ext_ts: i64,
    ts: u32,
    len: usize,
    used: bool,
}

const EMPTY_SLOT: Slot = Slot {
    ext_seq: 0,
    ext_ts: 0,
    ts: 0,
    len: 0,
    used: false,
};

/// The next sequence number to play: its timestamp (estimated if missing).
#[derive(Debug, Clone, Copy)]
struct Item {
    seq: i64,
    ts: i64,
    present: bool,
}

enum Out {
    Frame { slot: usize },
    Lost(i64),
    Empty,
}

/// Adaptive jitter buffer for one RTP source; call [`JitterBuffer::reset`] on SSRC change.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    slots: Vec<Slot>,
    data: Vec<u8>,
    seen: Vec<i64>,
    state: State,
    base: Option<Instant>,
    /// Highest extended sequence number received, and its extended timestamp: the
    /// references for unwrapping (RFC 3550 §A.1).
    highest_seq: i64,
    highest_ts: i64,
    /// Lowest buffered sequence number while buffering.
    lowest_seq: i64,
    next_seq: i64,
    play_ts: i64,
    last_transit: Option<i64>,
    /// Jitter, mean transit, target and current delay, in timestamp units.
    jitter: f64,
    transit_mean: f64,
    target: f64,
    delay: f64,
    pops_since_adjust: u32,
    underrun_run: u32,
    bad_seq: Option<u16>,
    stats: JitterStats,
}

impl JitterBuffer {
    /// Allocates everything the buffer will use. Out-of-range settings are clamped.
    pub fn new(config: JitterConfig) -> JitterBuffer {
        let mut cfg = config;
        cfg.clock_rate = cfg.clock_rate.max(1);
        cfg.frame_samples = cfg.frame_samples.clamp(1, 1 << 20);
        cfg.capacity = cfg.capacity.clamp(2, 4096);
        cfg.max_payload = cfg.max_payload.min(65_536);
        cfg.min_delay = cfg.min_delay.min(Duration::from_secs(10));
        cfg.max_delay = cfg.max_delay.clamp(cfg.min_delay, Duration::from_secs(10));
        let mut jb = JitterBuffer {
            cfg,
            slots: vec![EMPTY_SLOT; cfg.capacity],
            data: vec![0; cfg.capacity * cfg.max_payload],
            seen: vec![i64::MIN; SEEN_LEN],
            state: State::Idle,
            base: None,
            highest_seq: 0,
            highest_ts: 0,
            lowest_seq: 0,
            next_seq: 0,
            play_ts: 0,
            last_transit: None,
            jitter: 0.0,
            transit_mean: 0.0,
            target: 0.0,
            delay: 0.0,
            pops_since_adjust: 0,
            underrun_run: 0,
            bad_seq: None,
            stats: JitterStats::default(),
        };
        jb.target = jb.min_target();
        jb
    }

    pub fn config(&self) -> &JitterConfig {
        &self.cfg
    }

    /// Forgets the stream (new SSRC): buffered packets, estimators and statistics.
    pub fn reset(&mut self) {
        self.slots.fill(EMPTY_SLOT);
        self.seen.fill(i64::MIN);
        self.state = State::Idle;
        self.base = None;
        self.last_transit = None;
        self.jitter = 0.0;
        self.transit_mean = 0.0;
        self.target = self.min_target();
        self.delay = 0.0;
        self.pops_since_adjust = 0;
        self.underrun_run = 0;
        self.bad_seq = None;
        self.stats = JitterStats::default();
    }

    pub fn stats(&self) -> JitterStats {
        let mut s = self.stats;
        s.current_delay = self.to_duration(self.delay);
        s.target_delay = self.to_duration(self.target);
        s.jitter = self.to_duration(self.jitter);
        s
    }

    /// Packets currently buffered.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.used).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores one RTP packet's payload. `now` is its arrival time.
    pub fn push(&mut self, now: Instant, seq: u16, timestamp: u32, marker: bool, payload: &[u8]) {
        // The marker only flags a talkspurt start; silence is detected from timestamps.
        let _ = marker;
        if payload.len() > self.cfg.max_payload {
            self.stats.oversize += 1;
            return;
        }
        if self.state == State::Idle {
            self.base.get_or_insert(now);
            self.begin(seq, timestamp);
        }
        let now_ts = self.now_ts(now);
        let mut s = self.unwrap_seq(seq);
        let mut t = self.unwrap_ts(timestamp);
        if self.seen[ring(s, SEEN_LEN)] == s {
            self.stats.duplicate += 1;
            return;
        }
        if !self.in_window(s, t) {
            // RFC 3550 §A.1: two sequential packets outside the window start a new sequence.
            if self.bad_seq == Some(seq) {
                self.stats.resyncs += 1;
                self.restart(seq, timestamp);
                s = self.unwrap_seq(seq);
                t = self.unwrap_ts(timestamp);
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
                self.stats.overflow += 1;
                return;
            }
        }
        self.bad_seq = None;
        self.seen[ring(s, SEEN_LEN)] = s;
        self.stats.received += 1;
        let transit = now_ts - t;
        self.update_estimators(transit);

        if self.state == State::Playing && (s < self.next_seq || t + self.half() <= self.play_ts) {
            self.stats.late += 1;
            if s >= self.next_seq {
                self.skip_to(s + 1);
            }
            // Grow at once to the delay this packet would have needed.
            let needed = transit as f64 - self.transit_mean + self.half() as f64;
            self.target = self.target.max(needed.min(self.max_target()));
            return;
        }
        if s < self.highest_seq {
            self.stats.reordered += 1;
        } else {
            self.highest_seq = s;
            self.highest_ts = t;
        }
        if self.state == State::Buffering && s < self.lowest_seq {
            self.lowest_seq = s;
        }
        let idx = ring(s, self.cfg.capacity);
        let start = idx * self.cfg.max_payload;
        self.data[start..start + payload.len()].copy_from_slice(payload);
        self.slots[idx] = Slot {
            ext_seq: s,
            ext_ts: t,
            ts: timestamp,
            len: payload.len(),
            used: true,
        };
    }

    /// The next frame interval's playout. Call once per `frame_samples` of audio.
    pub fn pop(&mut self, now: Instant) -> Playout<'_> {
        let out = match self.state {
            State::Idle => Out::Empty,
            State::Buffering => {
                let now_ts = self.now_ts(now);
                if self.try_start(now_ts) {
                    self.play(now_ts)
                } else {
                    Out::Empty
                }
            }
            State::Playing => {
                let now_ts = self.now_ts(now);
                self.play(now_ts)
            }
        };
        match out {
            Out::Frame { slot } => {
                let sl = self.slots[slot];
                let start = slot * self.cfg.max_payload;
                Playout::Frame {
                    timestamp: sl.ts,
                    payload: &self.data[start..start + sl.len],
                }
            }
            Out::Lost(ts) => Playout::Lost {
                timestamp: ts as u32,
            },
            Out::Empty => Playout::Empty,
        }
    }

    fn begin(&mut self, seq: u16, timestamp: u32) {
        self.state = State::Buffering;
        self.highest_seq = i64::from(seq);
        self.highest_ts = i64::from(timestamp);
        self.lowest_seq = self.highest_seq;
        self.next_seq = self.highest_seq;
        self.play_ts = self.highest_ts;
        self.last_transit = None;
        self.underrun_run = 0;
        self.pops_since_adjust = 0;
    }

    /// A new sequence within the same source: flush, keep statistics and estimators.
    fn restart(&mut self, seq: u16, timestamp: u32) {
        self.slots.fill(EMPTY_SLOT);
        self.begin(seq, timestamp);
    }

    fn frame(&self) -> i64 {
        i64::from(self.cfg.frame_samples)
    }

    fn half(&self) -> i64 {
        self.frame() / 2
    }

    fn to_units(&self, d: Duration) -> f64 {
        d.as_secs_f64() * f64::from(self.cfg.clock_rate)
    }

    fn to_duration(&self, units: f64) -> Duration {
        let secs = units / f64::from(self.cfg.clock_rate);
        if secs.is_nan() || secs <= 0.0 {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(secs.min(1e9)).unwrap_or(Duration::ZERO)
    }

    fn min_target(&self) -> f64 {
        self.to_units(self.cfg.min_delay)
    }

    fn max_target(&self) -> f64 {
        self.to_units(self.cfg.max_delay)
    }

    /// Receiver time in timestamp units since the first packet.
    fn now_ts(&self, now: Instant) -> i64 {
        let Some(base) = self.base else { return 0 };
        let ns = now.saturating_duration_since(base).as_nanos();
        let units = ns * u128::from(self.cfg.clock_rate) / 1_000_000_000;
        i64::try_from(units).unwrap_or(i64::MAX / 4)
    }

    fn unwrap_seq(&self, seq: u16) -> i64 {
        let delta = seq.wrapping_sub(self.highest_seq as u16) as i16;
        self.highest_seq + i64::from(delta)
    }

    fn unwrap_ts(&self, ts: u32) -> i64 {
        let delta = ts.wrapping_sub(self.highest_ts as u32) as i32;
        self.highest_ts + i64::from(delta)
    }

    fn in_window(&self, s: i64, t: i64) -> bool {
        let cap = self.cfg.capacity as i64;
        match self.state {
            State::Idle => true,
            State::Buffering => s > self.highest_seq - cap && s < self.lowest_seq + cap,
            State::Playing => {
                let far = i64::from(self.cfg.clock_rate) * DISCONTINUITY_S as i64;
                s >= self.next_seq - MAX_MISORDER
                    && s < self.next_seq + cap
                    && t >= self.play_ts - far
            }
        }
    }

    /// RFC 3550 §A.8 jitter and the smoothed transit; then the target.
    fn update_estimators(&mut self, transit: i64) {
        let far = f64::from(self.cfg.clock_rate) * DISCONTINUITY_S;
        match self.last_transit {
            Some(prev) if ((transit - prev) as f64).abs() <= far => {
                let d = (transit - prev).abs() as f64;
                self.jitter += (d - self.jitter) * JITTER_GAIN;
                self.transit_mean += (transit as f64 - self.transit_mean) * JITTER_GAIN;
            }
            // First packet or a timestamp jump: restart the mean from here.
            _ => self.transit_mean = transit as f64,
        }
        self.last_transit = Some(transit);
        let raw = (JITTER_K * self.jitter + self.frame() as f64)
            .clamp(self.min_target(), self.max_target());
        if raw > self.target {
            self.target = raw;
        } else {
            self.target += (raw - self.target) * TARGET_DECAY;
        }
    }

    fn slot(&self, s: i64) -> Option<&Slot> {
        let sl = &self.slots[ring(s, self.cfg.capacity)];
        (sl.used && sl.ext_seq == s).then_some(sl)
    }

    /// The packet due next, or the missing one before the nearest buffered packet.
    fn next_item(&self) -> Option<Item> {
        let seq = self.next_seq;
        if let Some(sl) = self.slot(seq) {
            return Some(Item {
                seq,
                ts: sl.ext_ts,
                present: true,
            });
        }
        (1..self.cfg.capacity as i64).find_map(|k| {
            self.slot(seq + k).map(|sl| Item {
                seq,
                ts: sl.ext_ts - k * self.frame(),
                present: false,
            })
        })
    }

    /// Advances `next_seq` to `end`, counting what is skipped.
    fn skip_to(&mut self, end: i64) {
        while self.next_seq < end {
            let idx = ring(self.next_seq, self.cfg.capacity);
            if self.slots[idx].used && self.slots[idx].ext_seq == self.next_seq {
                self.slots[idx].used = false;
                self.stats.dropped += 1;
            } else {
                self.stats.lost += 1;
            }
            self.next_seq += 1;
        }
    }

    fn try_start(&mut self, now_ts: i64) -> bool {
        let Some(first) = self.slot(self.lowest_seq).copied() else {
            return false;
        };
        let waited = (now_ts - first.ext_ts) as f64 - self.transit_mean;
        let full = self.highest_seq - self.lowest_seq >= self.cfg.capacity as i64 - 1;
        if waited < self.target && !full {
            return false;
        }
        self.state = State::Playing;
        self.next_seq = first.ext_seq;
        self.play_ts = first.ext_ts;
        self.pops_since_adjust = 0;
        true
    }

    fn play(&mut self, now_ts: i64) -> Out {
        let f = self.frame();
        let half = self.half();
        self.pops_since_adjust = self.pops_since_adjust.saturating_add(1);
        self.delay = (now_ts - self.play_ts) as f64 - self.transit_mean;

        // Missing packets whose time passed during an underrun: already concealed.
        let item = loop {
            match self.next_item() {
                Some(it) if !it.present && it.ts + half <= self.play_ts => self.skip_to(it.seq + 1),
                other => break other,
            }
        };
        let Some(mut item) = item else {
            self.stats.underruns += 1;
            self.underrun_run = self.underrun_run.saturating_add(1);
            let ts = self.play_ts;
            self.play_ts += f;
            return if self.underrun_run <= UNDERRUN_LOST_LIMIT {
                Out::Lost(ts)
            } else {
                Out::Empty
            };
        };
        self.underrun_run = 0;

        if item.ts > self.play_ts + half {
            // Silence before the next talkspurt: start it when the wait equals the target.
            let desired = now_ts as f64 - (self.transit_mean + self.target);
            if item.ts as f64 > desired + half as f64 {
                self.play_ts = self.play_ts.max((self.play_ts + f).min(item.ts - f));
                return Out::Empty;
            }
            self.play_ts = item.ts;
            self.delay = (now_ts - self.play_ts) as f64 - self.transit_mean;
        } else if self.pops_since_adjust >= INSERT_INTERVAL
            && self.delay < self.target - half as f64
        {
            // Too little buffered: hold the playout point for one frame.
            self.pops_since_adjust = 0;
            self.stats.inserted += 1;
            return Out::Lost(self.play_ts);
        } else if self.pops_since_adjust >= DROP_INTERVAL
            && self.delay > self.target + (f as f64).max(self.target * 0.5)
            && item.present
        {
            // Too much buffered: drop this frame if the next one is here to replace it.
            let follower = self
                .slot(item.seq + 1)
                .map(|sl| sl.ext_ts)
                .filter(|&ts| ts <= item.ts + f + half);
            if let Some(ts) = follower {
                self.pops_since_adjust = 0;
                self.skip_to(item.seq + 1);
                item = Item {
                    seq: item.seq + 1,
                    ts,
                    present: true,
                };
            }
        }

        self.next_seq = item.seq + 1;
        self.play_ts = item.ts + f;
        if item.present {
            let idx = ring(item.seq, self.cfg.capacity);
            self.slots[idx].used = false;
            Out::Frame { slot: idx }
        } else {
            self.stats.lost += 1;
            Out::Lost(item.ts)
        }
    }
}

fn ring(s: i64, len: usize) -> usize {
    s.rem_euclid(len as i64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 8000;
    const FRAME: u32 = 160;
    const PTIME: Duration = Duration::from_millis(20);

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
    struct Pkt {
        arrival: Duration,
        seq: u16,
        ts: u32,
        marker: bool,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Out {
        Frame { ts: u32, seq: u16 },
        Lost(u32),
        Empty,
    }

    fn payload(seq: u16) -> [u8; 160] {
        let mut p = [0xD5u8; 160];
        p[..2].copy_from_slice(&seq.to_be_bytes());
        p
    }

    /// A stream of `n` packets from (`seq0`, `ts0`), sent every `ptime * scale`, arriving
    /// after `latency(k)`.
    fn stream(
        n: usize,
        seq0: u16,
        ts0: u32,
        scale: f64,
        mut latency: impl FnMut(usize) -> Duration,
    ) -> Vec<Pkt> {
        (0..n)
            .map(|k| Pkt {
                arrival: PTIME.mul_f64(k as f64 * scale) + latency(k),
                seq: seq0.wrapping_add(k as u16),
                ts: ts0.wrapping_add(FRAME * k as u32),
                marker: k == 0,
            })
            .collect()
    }

    /// Pushes packets as they arrive and pops every 20 ms from `phase`; returns the
    /// playouts and the largest current delay seen.
    fn simulate(
        jb: &mut JitterBuffer,
        base: Instant,
        mut pkts: Vec<Pkt>,
        phase: Duration,
        pops: usize,
    ) -> (Vec<Out>, Duration) {
        pkts.sort_by_key(|p| p.arrival);
        let mut next = 0;
        let mut out = Vec::with_capacity(pops);
        let mut max_delay = Duration::ZERO;
        for j in 0..pops {
            let t = phase + PTIME * j as u32;
            while next < pkts.len() && pkts[next].arrival <= t {
                let p = pkts[next];
                jb.push(base + p.arrival, p.seq, p.ts, p.marker, &payload(p.seq));
                next += 1;
            }
            let o = match jb.pop(base + t) {
                Playout::Frame { timestamp, payload } => {
                    assert_eq!(payload.len(), 160);
                    Out::Frame {
                        ts: timestamp,
                        seq: u16::from_be_bytes([payload[0], payload[1]]),
                    }
                }
                Playout::Lost { timestamp } => Out::Lost(timestamp),
                Playout::Empty => Out::Empty,
            };
            if matches!(o, Out::Frame { .. }) {
                max_delay = max_delay.max(jb.stats().current_delay);
            }
            out.push(o);
        }
        (out, max_delay)
    }

    fn frames(out: &[Out]) -> Vec<u16> {
        out.iter()
            .filter_map(|o| match o {
                Out::Frame { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect()
    }

    /// Playouts up to and including the last frame (the tail is an underrun).
    fn until_last_frame(out: &[Out]) -> &[Out] {
        let last = out
            .iter()
            .rposition(|o| matches!(o, Out::Frame { .. }))
            .unwrap();
        &out[..=last]
    }

    /// Like `assert_eq!` for long vectors, reporting only the first difference.
    fn assert_same(got: &[u16], want: &[u16]) {
        if let Some(i) = (0..got.len().min(want.len())).find(|&i| got[i] != want[i]) {
            panic!("differ at {i}: got {} want {}", got[i], want[i]);
        }
        assert_eq!(got.len(), want.len(), "lengths differ");
    }

    fn seqs(seq0: u16, n: usize) -> Vec<u16> {
        (0..n).map(|k| seq0.wrapping_add(k as u16)).collect()
    }

    #[test]
    fn in_order_stream_plays_everything() {
        let base = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(RATE, FRAME));
        let pkts = stream(500, 1000, 5000, 1.0, |_| Duration::from_millis(7));
        let (out, max_delay) = simulate(&mut jb, base, pkts, Duration::from_millis(3), 520);
        let played = until_last_frame(&out);
        assert_same(&frames(played), &seqs(1000, 500));
        assert!(played.iter().all(|o| !matches!(o, Out::Lost(_))));
        // Timestamps come out as sent.
        if let Out::Frame { ts, .. } = played[played.len() - 1] {
            assert_eq!(ts, 5000 + 499 * FRAME);
        }
        let st = jb.stats();
        assert_eq!(
            (st.received, st.lost, st.late, st.dropped, st.inserted),
            (500, 0, 0, 0, 0)
        );
        assert_eq!(st.target_delay, Duration::from_millis(20));
        assert!(max_delay <= Duration::from_millis(40), "{max_delay:?}");
    }

    #[test]
    fn random_loss_is_reported_exactly() {
        let base = Instant::now();
        let mut rng = Rng(0x5EED_1234_ABCD_0001);
        let mut jb = JitterBuffer::new(JitterConfig::new(RATE, FRAME));
        let n = 3000;
        let all = stream(n, 40_000, 77, 1.0, |_| Duration::from_millis(12));
        let mut lost_ts = Vec::new();
        let mut kept = Vec::new();
        for (k, p) in all.iter().enumerate() {
            if k > 0 && k < n - 3 && rng.uniform() < 0.05 {
                lost_ts.push(p.ts);
            } else {
                kept.push(*p);
            }
        }
        let expected: Vec<u16> = kept.iter().map(|p| p.seq).collect();
        let (out, _) = simulate(&mut jb, base, kept, Duration::from_millis(1), n + 20);
        let played = until_last_frame(&out);
        let reported: Vec<u32> = played
            .iter()
            .filter_map(|o| match o {
                Out::Lost(ts) => Some(*ts),
                _ => None,
            })
            .collect();
        assert!(lost_ts.len() > 100, "{}", lost_ts.len());
        assert_eq!(reported, lost_ts);
        assert_same(&frames(played), &expected);
        let st = jb.stats();
        assert_eq!(st.lost, lost_ts.len() as u64);
        assert_eq!((st.late, st.inserted, st.dropped), (0, 0, 0));
    }

    #[test]
    fn reordering_within_60ms_is_fixed() {
        let base = Instant::now();
        let mut cfg = JitterConfig::new(RATE, FRAME);
        cfg.min_delay = Duration::from_millis(80);
        let mut jb = JitterBuffer::new(cfg);
        // Every 7th packet is held back 55 ms: it arrives after the next two.
        let pkts = stream(700, 9, 0, 1.0, |k| {
            Duration::from_millis(if k % 7 == 3 { 65 } else { 10 })
        });
        let (out, _) = simulate(&mut jb, base, pkts, Duration::from_millis(5), 730);
        let played = until_last_frame(&out);
        assert_same(&frames(played), &seqs(9, 700));
        assert!(played.iter().all(|o| !matches!(o, Out::Lost(_))));
        let st = jb.stats();
        assert_eq!(st.reordered, 100);
        assert_eq!((st.late, st.lost), (0, 0));
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let base = Instant::now();
        let mut rng = Rng(99);
        let mut jb = JitterBuffer::new(JitterConfig::new(RATE, FRAME));
        let mut pkts = stream(400, 65_000, 1, 1.0, |_| Duration::from_millis(5));
        let copies: Vec<Pkt> = pkts
            .iter()
            .map(|p| Pkt {
                arrival: p.arrival + Duration::from_micros((rng.uniform() * 40_000.0) as u64),
                ..*p
            })
            .collect();
        pkts.extend(copies);
        let (out, _) = simulate(&mut jb, base, pkts, Duration::from_millis(2), 450);
        assert_same(&frames(until_last_frame(&out)), &seqs(65_000, 400));
        let st = jb.stats();
        assert_eq!(st.duplicate, 400);
        assert_eq!(st.received, 400);
        assert_eq!(st.lost, 0);
    }

    #[test]
    fn adapts_to_30ms_jitter() {
        let base = Instant::now();
        let mut rng = Rng(0xC0FF_EE00_1234_5678);
        let mut jb = JitterBuffer::new(JitterConfig::new(RATE, FRAME));
        let n = 6000; // two minutes
        let pkts = stream(n, 1, 1, 1.0, |_| {
            Duration::from_micros((50_000.0 + (rng.uniform() - 0.5) * 60_000.0) as u64)
        });
        let (out, _) = simulate(&mut jb, base, pkts, Duration::from_millis(9), n + 30);
        let st = jb.stats();
        let played = frames(until_last_frame(&out));
        // In order, nothing repeated.
        assert!(played.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(played.len() as u64 + st.lost + st.dropped, n as u64);
        assert!(st.late * 100 < n as u64, "late {} of {n}", st.late);
        // RFC 3550 jitter of uniform ±30 ms is E|U1-U2| = 20 ms; target 3 J + 20 ms.
        let j = st.jitter.as_secs_f64() * 1000.0;
        assert!((12.0..32.0).contains(&j), "jitter {j} ms");
        let target = st.target_delay.as_millis();
        assert!((50..=120).contains(&target), "target {target} ms");
        assert!(
            st.current_delay <= Duration::from_millis(140),
            "{:?}",
            st.current_delay
        );
        eprintln!(
            "jitter ±30 ms: J {j:.1} ms, target {target} ms, delay {:?}, late {}, lost {}, \
             inserted {}, dropped {}",
            st.current_delay, st.late, st.lost, st.inserted, st.dropped
        );
    }

    #[test]
    fn late_packet_is_dropped_counted_and_raises_the_target() {
        let base = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(RATE, FRAME));
        let pkts = stream(300, 0, 0, 1.0, |k| {
            Duration::from_millis(if k == 100 { 150 } else { 10 })
        });
        let (out, _) = simulate(&mut jb, base, pkts, Duration::from_millis(1), 320);
        let played = until_last_frame(&out);
        assert!(played.contains(&Out::Lost(100 * FRAME)));
        let got = frames(played);
        assert_same(&got[..100], &seqs(0, 100));
        assert!(!got.contains(&100));
        assert!(got.windows(2).all(|w| w[0] < w[1]));
        let st = jb.stats();
        assert_eq!((st.late, st.lost, st.received), (1, 1, 300));
        // The delay grew by inserted frames and shrinks back by dropped ones.
        assert!(st.inserted > 0);
        assert_eq!(got.len() as u64 + st.lost + st.dropped, 300);
        // It needed ~150 ms; the target jumped there and is decaying slowly.
        assert!(
            st.target_delay > Duration::from_millis(60),
            "{:?}",
            st.target_delay
        );
    }

    #[test]
    fn fast_sender_clock_is_absorbed() {
        let base = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(RATE, FRAME));
        let n = 30_000; // ten minutes of 20 ms packets, sent 0.1 % fast
        let pkts = stream(n, 100, 100, 1.0 / 1.001, |_| Duration::from_millis(25));
        let (out, max_delay) = simulate(&mut jb, base, pkts, Duration::from_millis(4), n);
        let st = jb.stats();
        let played = frames(until_last_frame(&out));
        assert!(played.windows(2).all(|w| w[0] < w[1]));
        // 600 s * 0.1 % = 600 ms to shed: about 30 frames.
        assert!((25..=40).contains(&st.dropped), "dropped {}", st.dropped);
        assert_eq!((st.lost, st.late), (0, 0));
        assert!(
            max_delay <= Duration::from_millis(60),
            "max delay {max_delay:?}"
        );
        eprintln!(
            "0.1 % fast sender: dropped {}, max delay {max_delay:?}",
            st.dropped
        );
    }

    #[test]
    fn slow_sender_clock_is_absorbed() {
        let base = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(RATE, FRAME));
        let n = 30_000;
        let pkts = stream(n, 100, 100, 1.001, |_| Duration::from_millis(25));
        let (out, max_delay) = simulate(&mut jb, base, pkts, Duration::from_millis(4), n + 40);
        let st = jb.stats();
        let played = frames(until_last_frame(&out));
        assert_same(&played, &seqs(100, n));
        assert!((25..=40).contains(&st.inserted), "inserted {}", st.inserted);
        eprintln!(
            "0.1 % slow sender: inserted {}, max delay {max_delay:?}",
            st.inserted
        );
        assert_eq!((st.lost, st.late), (0, 0));
        assert!(
            max_delay <= Duration::from_millis(60),
            "max delay {max_delay:?}"
        );
    }

    #[test]
    fn sequence_and_timestamp_wrap_mid_stream() {
        let base = Instant::now();
        let seq0 = 65_535 - 200;
        let ts0 = u32::MAX - 150 * FRAME + 17;
        let mut pkts = stream(400, seq0, ts0, 1.0, |_| Duration::from_millis(15));
        // Reorder a few around both wraps.
        for k in [148, 150, 199, 200, 201] {
            pkts[k].arrival += Duration::from_millis(30);
        }
        // Held packets arrive 30 ms late: buffer at least 60 ms.
        let mut jb = JitterBuffer::new(JitterConfig {
            min_delay: Duration::from_millis(60),
            ..JitterConfig::new(RATE, FRAME)
        });
        let mut out = simulate(&mut jb, base, pkts, Duration::from_millis(3), 440).0;
        out.truncate(until_last_frame(&out).len());
        assert_same(&frames(&out), &seqs(seq0, 400));
        let ts: Vec<u32> = out
            .iter()
            .filter_map(|o| match o {
                Out::Frame { ts, .. } => Some(*ts),
                _ => None,
            })
            .collect();
        let expect: Vec<u32> = (0..400).map(|k| ts0.wrapping_add(FRAME * k)).collect();
        assert_eq!(ts, expect);
        let st = jb.stats();
        assert_eq!((st.lost, st.late, st.duplicate, st.overflow), (0, 0, 0, 0));
    }

    #[test]
    fn silence_between_talkspurts_is_not_loss() {
        let base = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(RATE, FRAME));
        let mut pkts = stream(50, 10, 0, 1.0, |_| Duration::from_millis(8));
        // One second of silence: timestamps jump, sequence numbers continue.
        let mut second = stream(50, 60, 50 * FRAME + 8000, 1.0, |_| {
            Duration::from_millis(1000 + 1000 + 8)
        });
        second[0].marker = true;
        pkts.extend(second);
        let (out, _) = simulate(&mut jb, base, pkts, Duration::from_millis(1), 200);
        assert_same(&frames(&out), &seqs(10, 100));
        let st = jb.stats();
        assert_eq!((st.lost, st.late), (0, 0));
    }

    #[test]
    fn reset_on_ssrc_change() {
        let base = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(RATE, FRAME));
        let a = stream(100, 500, 1_000_000, 1.0, |_| Duration::from_millis(5));
        let (out, _) = simulate(&mut jb, base, a, Duration::from_millis(2), 105);
        assert_same(&frames(&out), &seqs(500, 100));
        // New SSRC: unrelated numbering, and a later clock.
        jb.reset();
        assert_eq!(jb.stats().received, 0);
        let later = Duration::from_secs(3);
        let b = stream(100, 3, 42, 1.0, |_| later + Duration::from_millis(5));
        let (out, _) = simulate(&mut jb, base, b, later + Duration::from_millis(2), 105);
        assert_same(&frames(&out), &seqs(3, 100));
        let st = jb.stats();
        assert_eq!((st.received, st.lost, st.late), (100, 0, 0));
    }

    #[test]
    fn sequence_jump_restarts_after_two_packets() {
        let base = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(RATE, FRAME));
        let mut pkts = stream(50, 100, 0, 1.0, |_| Duration::from_millis(5));
        let jumped = stream(50, 30_000, 3_000_000, 1.0, |_| Duration::from_millis(5));
        pkts.extend(jumped.into_iter().map(|p| Pkt {
            arrival: p.arrival + Duration::from_secs(1),
            ..p
        }));
        let (out, _) = simulate(&mut jb, base, pkts, Duration::from_millis(2), 160);
        let played = frames(&out);
        assert_same(&played[..50], &seqs(100, 50)[..]);
        assert_same(&played[50..], &seqs(30_001, 49)[..]);
        let st = jb.stats();
        assert_eq!((st.resyncs, st.overflow), (1, 1));
    }

    #[test]
    fn oversize_and_odd_configs_never_panic() {
        let base = Instant::now();
        let mut cfg = JitterConfig::new(RATE, FRAME);
        cfg.max_payload = 100;
        let mut jb = JitterBuffer::new(cfg);
        jb.push(base, 1, 1, false, &[0; 101]);
        assert_eq!(jb.stats().oversize, 1);
        assert_eq!(jb.pop(base), Playout::Empty);
        let mut rng = Rng(3);
        for cfg in [
            JitterConfig {
                clock_rate: 0,
                frame_samples: 0,
                min_delay: Duration::MAX,
                max_delay: Duration::ZERO,
                capacity: 0,
                max_payload: 0,
            },
            JitterConfig::new(48_000, 960),
            JitterConfig::new(u32::MAX, u32::MAX),
        ] {
            let mut jb = JitterBuffer::new(cfg);
            for i in 0..5000u64 {
                let now = base + Duration::from_millis(i * 7 + rng.next() % 50);
                let len = (rng.next() % 4) as usize;
                jb.push(
                    now,
                    rng.next() as u16,
                    rng.next() as u32,
                    i % 9 == 0,
                    &[1, 2, 3][..len.min(3)],
                );
                if rng.next() % 2 == 0 {
                    let _ = jb.pop(now);
                }
                // Time going backwards is tolerated.
                let _ = jb.pop(base);
            }
            let _ = jb.stats();
        }
    }
}
