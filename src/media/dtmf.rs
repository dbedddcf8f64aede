//! DTMF as RFC 4733 telephone-events: the payload (§2.3), a sender that turns queued digits
//! into packets (§2.5.1) and a receiver that reports each digit once (§2.5.2).
//!
//! Both sides are driven by RTP timestamps; nothing reads a clock or allocates.

use std::time::Duration;

/// Volume (power level, -dBm0) sent by default (RFC 4733 §2.3, range 0..=63).
pub const DEFAULT_VOLUME: u8 = 10;
/// Default tone length and pause after it.
pub const DEFAULT_TONE: Duration = Duration::from_millis(100);
pub const DEFAULT_GAP: Duration = Duration::from_millis(100);
/// §2.5.1.4: the final packet is sent three times.
const END_PACKETS: u8 = 3;
const QUEUE_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    #[error("telephone-event payload shorter than 4 bytes")]
    Truncated,
    #[error("{0:?} is not a DTMF digit")]
    InvalidDigit(char),
    #[error("DTMF queue full")]
    QueueFull,
}

/// RFC 4733 §3 event code of a DTMF digit: 0-9, * = 10, # = 11, A-D = 12-15.
pub fn event_for_digit(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        _ => None,
    }
}

/// The digit of an event code 0..=15.
pub fn digit_for_event(event: u8) -> Option<char> {
    match event {
        0..=9 => Some((b'0' + event) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + event - 12) as char),
        _ => None,
    }
}

/// One telephone-event payload (§2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    /// E bit: last packet(s) of the event.
    pub end: bool,
    /// 6 bits.
    pub volume: u8,
    /// In timestamp units since the event's RTP timestamp.
    pub duration: u16,
}

impl TelephoneEvent {
    /// `event | E R volume(6) | duration(16)`, R sent as zero.
    pub fn encode(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }

    /// Reads the first event of a payload; the reserved R bit is ignored (§2.3).
    pub fn decode(payload: &[u8]) -> Result<TelephoneEvent, DtmfError> {
        let b = payload.get(..4).ok_or(DtmfError::Truncated)?;
        Ok(TelephoneEvent {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3F,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }
}

/// A packet for the caller to send with the telephone-event payload type, in place of the
/// audio packet for that interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// RTP timestamp: the start of the event, the same for all its packets (§2.5.1).
    pub timestamp: u32,
    /// Set on the first packet of an event (§2.5.1).
    pub marker: bool,
    pub payload: [u8; 4],
    pub event: TelephoneEvent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    Idle,
    Tone { event: u8, start: u32 },
    Ending { event: u8, start: u32, left: u8 },
    Gap { until: u32 },
}

/// Turns queued digits into RFC 4733 packets, one call to [`DtmfSender::poll`] per packet
/// interval.
#[derive(Debug, Clone)]
pub struct DtmfSender {
    ptime: u32,
    tone: u32,
    gap: u32,
    volume: u8,
    queue: [u8; QUEUE_LEN],
    head: usize,
    len: usize,
    state: SendState,
}

fn samples(d: Duration, clock_rate: u32) -> u64 {
    (d.as_nanos() * u128::from(clock_rate) / 1_000_000_000).min(u128::from(u32::MAX)) as u64
}

impl DtmfSender {
    /// `ptime` is the packet interval; tones last [`DEFAULT_TONE`] with [`DEFAULT_GAP`] after.
    pub fn new(clock_rate: u32, ptime: Duration) -> DtmfSender {
        DtmfSender::with_timing(clock_rate, ptime, DEFAULT_TONE, DEFAULT_GAP)
    }

    /// Tones longer than the 16-bit duration field allows are shortened to fit.
    pub fn with_timing(
        clock_rate: u32,
        ptime: Duration,
        tone: Duration,
        gap: Duration,
    ) -> DtmfSender {
        let ptime = samples(ptime, clock_rate).clamp(1, 0xFFFF) as u32;
        let tone = samples(tone, clock_rate).clamp(u64::from(ptime), 0xFFFF) as u32;
        DtmfSender {
            ptime,
            tone,
            gap: samples(gap, clock_rate).min(1 << 30) as u32,
            volume: DEFAULT_VOLUME,
            queue: [0; QUEUE_LEN],
            head: 0,
            len: 0,
            state: SendState::Idle,
        }
    }

    pub fn set_volume(&mut self, volume: u8) {
        self.volume = volume.min(63);
    }

    /// Queues a digit (0-9 * # A-D).
    pub fn queue_digit(&mut self, digit: char) -> Result<(), DtmfError> {
        let event = event_for_digit(digit).ok_or(DtmfError::InvalidDigit(digit))?;
        if self.len == QUEUE_LEN {
            return Err(DtmfError::QueueFull);
        }
        self.queue[(self.head + self.len) % QUEUE_LEN] = event;
        self.len += 1;
        Ok(())
    }

    /// Whether a tone, its end packets, its gap or queued digits are pending.
    pub fn is_active(&self) -> bool {
        self.len > 0 || self.state != SendState::Idle
    }

    /// Drops queued digits; an event in progress still ends properly.
    pub fn clear_queue(&mut self) {
        self.len = 0;
    }

    /// Call once per packet interval with the RTP timestamp of that interval. `Some`: send
    /// this instead of audio; `None`: send audio.
    pub fn poll(&mut self, rtp_timestamp: u32) -> Option<DtmfPacket> {
        if let SendState::Gap { until } = self.state {
            if (rtp_timestamp.wrapping_sub(until) as i32) < 0 {
                return None;
            }
            self.state = SendState::Idle;
        }
        match self.state {
            SendState::Idle => {
                if self.len == 0 {
                    return None;
                }
                let event = self.queue[self.head];
                self.head = (self.head + 1) % QUEUE_LEN;
                self.len -= 1;
                self.state = SendState::Tone {
                    event,
                    start: rtp_timestamp,
                };
                Some(self.tone_packet(event, rtp_timestamp, rtp_timestamp, true))
            }
            SendState::Tone { event, start } => {
                Some(self.tone_packet(event, start, rtp_timestamp, false))
            }
            SendState::Ending { event, start, left } => {
                // §2.5.1.4: retransmit the final packet with the same duration.
                self.state = if left > 1 {
                    SendState::Ending {
                        event,
                        start,
                        left: left - 1,
                    }
                } else {
                    SendState::Gap {
                        until: start.wrapping_add(self.tone).wrapping_add(self.gap),
                    }
                };
                Some(self.packet(event, start, true, self.tone as u16, false))
            }
            SendState::Gap { .. } => None,
        }
    }

    /// A packet with the duration so far, or the first end packet once the tone is done.
    fn tone_packet(&mut self, event: u8, start: u32, now: u32, marker: bool) -> DtmfPacket {
        let elapsed = rtp_timestamp_diff(now, start);
        // §2.5.1: duration covers the event so far, including this packet's interval.
        let duration = (elapsed + u64::from(self.ptime)).min(u64::from(self.tone)) as u32;
        let end = duration >= self.tone;
        if end {
            self.state = SendState::Ending {
                event,
                start,
                left: END_PACKETS - 1,
            };
        }
        self.packet(event, start, end, duration as u16, marker)
    }

    fn packet(&self, event: u8, start: u32, end: bool, duration: u16, marker: bool) -> DtmfPacket {
        let ev = TelephoneEvent {
            event,
            end,
            volume: self.volume,
            duration,
        };
        DtmfPacket {
            timestamp: start,
            marker,
            payload: ev.encode(),
            event: ev,
        }
    }
}

/// `now - start` in timestamp units, 0 if `now` is before `start`.
fn rtp_timestamp_diff(now: u32, start: u32) -> u64 {
    let d = now.wrapping_sub(start);
    if d >= 0x8000_0000 { 0 } else { u64::from(d) }
}

/// A digit (or other event) reported by [`DtmfReceiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfDigit {
    pub event: u8,
    /// `None` for events outside 0..=15.
    pub digit: Option<char>,
    /// RTP timestamp of the event.
    pub timestamp: u32,
    pub volume: u8,
}

#[derive(Debug, Clone, Copy)]
struct LastEvent {
    timestamp: u32,
    event: u8,
    duration: u16,
    ended: bool,
}

/// Reports each received event once, keyed by its RTP timestamp (§2.5.2): on whichever of
/// its packets arrives first (start, update or only an end), ignoring repeats and
/// retransmitted ends.
#[derive(Debug, Clone, Default)]
pub struct DtmfReceiver {
    last: Option<LastEvent>,
}

impl DtmfReceiver {
    pub fn new() -> DtmfReceiver {
        DtmfReceiver::default()
    }

    /// Forget the last event (new SSRC).
    pub fn reset(&mut self) {
        self.last = None;
    }

    /// One received telephone-event packet: its RTP timestamp and payload.
    pub fn on_packet(&mut self, timestamp: u32, payload: &[u8]) -> Option<DtmfDigit> {
        let ev = TelephoneEvent::decode(payload).ok()?;
        if let Some(last) = &mut self.last {
            if timestamp == last.timestamp {
                // An update, the end, or a retransmission of the current event.
                last.duration = last.duration.max(ev.duration);
                last.ended |= ev.end;
                return None;
            }
            let delta = timestamp.wrapping_sub(last.timestamp);
            if delta >= 0x8000_0000 {
                // Older than the current event: a late packet of a finished one.
                return None;
            }
            // §2.5.1: an event longer than the duration field continues in a new segment
            // whose timestamp is the old one plus 0xFFFF.
            if !last.ended && ev.event == last.event && delta == 0xFFFF {
                *last = LastEvent {
                    timestamp,
                    event: ev.event,
                    duration: ev.duration,
                    ended: ev.end,
                };
                return None;
            }
        }
        self.last = Some(LastEvent {
            timestamp,
            event: ev.event,
            duration: ev.duration,
            ended: ev.end,
        });
        Some(DtmfDigit {
            event: ev.event,
            digit: digit_for_event(ev.event),
            timestamp,
            volume: ev.volume,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PTIME: Duration = Duration::from_millis(20);

    #[test]
    fn payload_layout() {
        let ev = TelephoneEvent {
            event: 5,
            end: true,
            volume: 10,
            duration: 800,
        };
        // event 5 | E=1 R=0 volume 10 -> 0x8A | 800 = 0x0320.
        assert_eq!(ev.encode(), [0x05, 0x8A, 0x03, 0x20]);
        assert_eq!(TelephoneEvent::decode(&[0x05, 0x8A, 0x03, 0x20]), Ok(ev));
        // R bit ignored; extra bytes ignored; short payload rejected.
        let d = TelephoneEvent::decode(&[11, 0x7F, 0xFF, 0xFF, 9, 9]).unwrap();
        assert_eq!(
            (d.event, d.end, d.volume, d.duration),
            (11, false, 63, 0xFFFF)
        );
        assert_eq!(
            TelephoneEvent::decode(&[1, 2, 3]),
            Err(DtmfError::Truncated)
        );
        // Volume beyond 6 bits is masked on encode.
        let loud = TelephoneEvent {
            volume: 0xFF,
            end: false,
            ..ev
        };
        assert_eq!(loud.encode()[1], 0x3F);
    }

    #[test]
    fn digit_event_mapping() {
        let digits = "0123456789*#ABCD";
        for (code, c) in digits.chars().enumerate() {
            assert_eq!(event_for_digit(c), Some(code as u8));
            assert_eq!(digit_for_event(code as u8), Some(c));
        }
        assert_eq!(event_for_digit('b'), Some(13));
        assert_eq!(event_for_digit('E'), None);
        assert_eq!(event_for_digit('+'), None);
        assert_eq!(digit_for_event(16), None);
    }

    #[test]
    fn sender_packet_sequence() {
        let mut tx = DtmfSender::new(8000, PTIME);
        tx.queue_digit('5').unwrap();
        let t0 = 1000u32;
        let pkts: Vec<Option<DtmfPacket>> = (0..12).map(|k| tx.poll(t0 + 160 * k)).collect();
        // 100 ms at 20 ms: durations 160..800, the 800 one ends, then two repeats.
        let expect = [
            (true, false, 160),
            (false, false, 320),
            (false, false, 480),
            (false, false, 640),
            (false, true, 800),
            (false, true, 800),
            (false, true, 800),
        ];
        for (k, (marker, end, duration)) in expect.into_iter().enumerate() {
            let p = pkts[k].unwrap();
            assert_eq!(p.timestamp, t0, "packet {k}");
            assert_eq!(p.marker, marker, "packet {k}");
            assert_eq!(p.event.event, 5);
            assert_eq!(p.event.end, end, "packet {k}");
            assert_eq!(p.event.duration, duration, "packet {k}");
            assert_eq!(p.event.volume, DEFAULT_VOLUME);
            assert_eq!(p.payload, p.event.encode());
        }
        // Then audio: the gap lasts until 100 ms after the tone's end.
        assert!(pkts[7..].iter().all(Option::is_none));
        assert!(!tx.is_active());
    }

    #[test]
    fn queued_digits_follow_after_the_gap() {
        let mut tx = DtmfSender::new(8000, PTIME);
        for c in "1#".chars() {
            tx.queue_digit(c).unwrap();
        }
        let mut starts = Vec::new();
        for k in 0..40u32 {
            match tx.poll((u32::MAX - 1000).wrapping_add(160 * k)) {
                Some(p) if p.marker => starts.push((p.timestamp, p.event.event)),
                _ => {}
            }
        }
        // Second digit 200 ms (tone + gap = 1600 units) after the first, across the wrap.
        assert_eq!(starts.len(), 2);
        assert_eq!(starts[0], (u32::MAX - 1000, 1));
        assert_eq!(starts[1], ((u32::MAX - 1000).wrapping_add(1600), 11));
    }

    #[test]
    fn sender_rejects_bad_input_and_tolerates_odd_timing() {
        let mut tx = DtmfSender::new(8000, PTIME);
        assert_eq!(tx.queue_digit('x'), Err(DtmfError::InvalidDigit('x')));
        for _ in 0..QUEUE_LEN {
            tx.queue_digit('0').unwrap();
        }
        assert_eq!(tx.queue_digit('0'), Err(DtmfError::QueueFull));
        tx.clear_queue();
        assert!(!tx.is_active());
        // Irregular and backwards timestamps, zero and huge settings: no panic.
        let mut odd = DtmfSender::with_timing(0, Duration::ZERO, Duration::MAX, Duration::MAX);
        odd.queue_digit('9').unwrap();
        for ts in [5u32, 3, 0, u32::MAX, 1 << 31, 7, 7] {
            let _ = odd.poll(ts);
        }
        // A tone shorter than ptime is one packet, sent three times as the end.
        let mut short = DtmfSender::with_timing(8000, PTIME, Duration::from_millis(5), DEFAULT_GAP);
        short.queue_digit('2').unwrap();
        let p: Vec<_> = (0..4).map(|k| short.poll(160 * k)).collect();
        assert!(
            p[..3]
                .iter()
                .all(|p| p.unwrap().event.end && p.unwrap().event.duration == 160)
        );
        assert!(p[0].unwrap().marker);
        assert!(p[3].is_none());
    }

    #[test]
    fn receiver_reports_each_digit_once() {
        let mut tx = DtmfSender::new(8000, PTIME);
        for c in "55#".chars() {
            tx.queue_digit(c).unwrap();
        }
        let mut rx = DtmfReceiver::new();
        let mut got = Vec::new();
        for k in 0..60u32 {
            let Some(p) = tx.poll(160 * k) else { continue };
            if let Some(d) = rx.on_packet(p.timestamp, &p.payload) {
                got.push(d.digit.unwrap());
            }
        }
        // The same digit twice is two events (different timestamps).
        assert_eq!(got, vec!['5', '5', '#']);
    }

    #[test]
    fn receiver_handles_loss_and_retransmission() {
        let mut rx = DtmfReceiver::new();
        let ev = |event, end, duration| {
            TelephoneEvent {
                event,
                end,
                volume: 10,
                duration,
            }
            .encode()
        };
        // Start packet lost: the first update reports the digit.
        assert_eq!(
            rx.on_packet(100, &ev(1, false, 320)).unwrap().digit,
            Some('1')
        );
        assert_eq!(rx.on_packet(100, &ev(1, false, 480)), None);
        assert_eq!(rx.on_packet(100, &ev(1, true, 800)), None);
        assert_eq!(rx.on_packet(100, &ev(1, true, 800)), None);
        // Only end packets of the next event arrive.
        let d = rx.on_packet(2000, &ev(12, true, 800)).unwrap();
        assert_eq!((d.digit, d.timestamp), (Some('A'), 2000));
        assert_eq!(rx.on_packet(2000, &ev(12, true, 800)), None);
        // A late retransmission of the previous event is not a new digit.
        assert_eq!(rx.on_packet(100, &ev(1, true, 800)), None);
        // Garbage and non-DTMF events.
        assert_eq!(rx.on_packet(3000, &[1]), None);
        let flash = rx.on_packet(4000, &ev(16, false, 160)).unwrap();
        assert_eq!((flash.event, flash.digit), (16, None));
        // A long event continued in a new segment (timestamp + 0xFFFF) is the same press.
        assert_eq!(
            rx.on_packet(10_000, &ev(0, false, 0xFFFF)).unwrap().digit,
            Some('0')
        );
        assert_eq!(rx.on_packet(10_000 + 0xFFFF, &ev(0, false, 800)), None);
        assert_eq!(rx.on_packet(10_000 + 0xFFFF, &ev(0, true, 1600)), None);
        // Across the timestamp wrap.
        rx.reset();
        assert!(rx.on_packet(u32::MAX - 10, &ev(3, true, 800)).is_some());
        assert!(rx.on_packet(500, &ev(3, false, 160)).is_some());
        assert_eq!(rx.on_packet(u32::MAX - 10, &ev(3, true, 800)), None);
    }
}
