//! RTP receiver statistics (RFC 3550 §6.4, §A.1, §A.3, §A.8) and the RTCP packets that
//! carry them: SR, RR, SDES and BYE, alone or compound (§6.1, §6.4-§6.6).
//!
//! No clock is read: arrival times come in as RTP timestamp units or `Instant`s, wall-clock
//! time as a `SystemTime` value.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// RFC 3550 §A.1.
pub const RTP_SEQ_MOD: u32 = 1 << 16;
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;
const MIN_SEQUENTIAL: u32 = 2;

pub const RTCP_SR: u8 = 200;
pub const RTCP_RR: u8 = 201;
pub const RTCP_SDES: u8 = 202;
pub const RTCP_BYE: u8 = 203;
/// SDES item types (§6.5).
pub const SDES_END: u8 = 0;
pub const SDES_CNAME: u8 = 1;

/// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// A 64-bit NTP timestamp (§4): seconds since 1900 in the high word, fraction in the low.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NtpTime(pub u64);

impl NtpTime {
    pub fn from_parts(seconds: u32, fraction: u32) -> NtpTime {
        NtpTime((u64::from(seconds) << 32) | u64::from(fraction))
    }

    /// The NTP time of a wall-clock value (seconds wrap at the 2036 era boundary, §4).
    pub fn from_system_time(t: SystemTime) -> NtpTime {
        let since_1900 = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Duration::from_secs(NTP_UNIX_OFFSET).saturating_add(d),
            Err(e) => Duration::from_secs(NTP_UNIX_OFFSET).saturating_sub(e.duration()),
        };
        let fraction = (u64::from(since_1900.subsec_nanos()) << 32) / 1_000_000_000;
        NtpTime::from_parts(since_1900.as_secs() as u32, fraction as u32)
    }

    pub fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub fn fraction(self) -> u32 {
        self.0 as u32
    }

    /// The middle 32 bits, as used for LSR (§6.4.1).
    pub fn middle32(self) -> u32 {
        (self.0 >> 16) as u32
    }
}

/// A duration in the 16.16 fixed-point seconds of DLSR (§6.4.1), saturating.
pub fn to_ntp_short(d: Duration) -> u32 {
    let units =
        u128::from(d.as_secs()) * 65_536 + (u128::from(d.subsec_nanos()) * 65_536) / 1_000_000_000;
    u32::try_from(units).unwrap_or(u32::MAX)
}

/// The inverse of [`to_ntp_short`].
pub fn from_ntp_short(v: u32) -> Duration {
    Duration::from_nanos(u64::from(v) * 1_000_000_000 / 65_536)
}

/// RTT from a report block about our stream: `A - LSR - DLSR` (§6.4.1), where `arrival` is
/// the NTP time the block arrived. `None` if no SR was reflected or the result is negative.
pub fn round_trip_time(block: &ReportBlock, arrival: NtpTime) -> Option<Duration> {
    if block.lsr == 0 {
        return None;
    }
    let rtt = arrival
        .middle32()
        .wrapping_sub(block.lsr)
        .wrapping_sub(block.dlsr);
    (rtt < 0x8000_0000).then(|| from_ntp_short(rtt))
}

/// Cumulative loss as carried in a report block: 24-bit signed, clamped (§6.4.1, §A.3).
pub fn clamp_cumulative_lost(lost: i64) -> i32 {
    lost.clamp(-0x80_0000, 0x7F_FFFF) as i32
}

/// One reception report block (§6.4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// 24-bit signed.
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    pub lsr: u32,
    pub dlsr: u32,
}

/// Reception statistics for one RTP source.
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    ssrc: u32,
    started: bool,
    // RFC 3550 §A.1 `source`.
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    transit: Option<i32>,
    /// §A.8 jitter scaled by 16.
    jitter_q4: u64,
    /// Middle 32 bits of the last SR's NTP time, and when it arrived.
    last_sr: Option<(u32, Instant)>,
}

impl ReceiverStats {
    pub fn new(ssrc: u32) -> ReceiverStats {
        ReceiverStats {
            ssrc,
            started: false,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: RTP_SEQ_MOD + 1,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter_q4: 0,
            last_sr: None,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Accounts one RTP packet. `arrival` is its arrival time in timestamp units (any
    /// origin). Returns whether it counts as valid (§A.1: after probation, in sequence).
    pub fn on_rtp(&mut self, seq: u16, rtp_timestamp: u32, arrival: u32) -> bool {
        if !self.started {
            // §A.1: a new source starts on probation.
            self.started = true;
            self.init_seq(seq);
            self.max_seq = seq.wrapping_sub(1);
            self.probation = MIN_SEQUENTIAL;
        }
        let valid = self.update_seq(seq);
        // §A.8: J += (|D| - J) / 16, in integer form scaled by 16.
        let transit = arrival.wrapping_sub(rtp_timestamp) as i32;
        if let Some(prev) = self.transit {
            let d = u64::from(transit.wrapping_sub(prev).unsigned_abs());
            self.jitter_q4 = (self.jitter_q4 + d).saturating_sub((self.jitter_q4 + 8) >> 4);
        }
        self.transit = Some(transit);
        valid
    }

    /// Records a received SR from this source, for LSR/DLSR (§6.4.1).
    pub fn on_sender_report(&mut self, ntp: NtpTime, now: Instant) {
        self.last_sr = Some((ntp.middle32(), now));
    }

    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
    }

    /// RFC 3550 §A.1 `update_seq`.
    fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received = self.received.wrapping_add(1);
                    return true;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return false;
        } else if udelta < MAX_DROPOUT {
            // In order, with a permissible gap.
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            // A very large jump: restart if the next packet follows it.
            if u32::from(seq) == self.bad_seq {
                self.init_seq(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return false;
            }
        }
        // Otherwise a duplicate or reordered packet.
        self.received = self.received.wrapping_add(1);
        true
    }

    /// Whether the source has passed probation.
    pub fn is_valid(&self) -> bool {
        self.started && self.probation == 0
    }

    /// Extended highest sequence number received (§A.3).
    pub fn extended_highest_seq(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    pub fn expected(&self) -> u32 {
        self.extended_highest_seq()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    pub fn received(&self) -> u32 {
        self.received
    }

    /// Expected minus received; negative with duplicates (§A.3).
    pub fn cumulative_lost(&self) -> i64 {
        i64::from(self.expected()) - i64::from(self.received)
    }

    /// Interarrival jitter in timestamp units (§A.8).
    pub fn jitter(&self) -> u32 {
        u32::try_from(self.jitter_q4 >> 4).unwrap_or(u32::MAX)
    }

    pub fn jitter_duration(&self, clock_rate: u32) -> Duration {
        Duration::from_nanos(
            u64::from(self.jitter()) * 1_000_000_000 / u64::from(clock_rate.max(1)),
        )
    }

    /// The report block for this source, starting a new loss interval (§A.3). `None` until
    /// the source is valid.
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        if !self.is_valid() {
            return None;
        }
        let expected = self.expected();
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        self.expected_prior = expected;
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let (lsr, dlsr) = match self.last_sr {
            Some((lsr, at)) => (lsr, to_ntp_short(now.saturating_duration_since(at))),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: clamp_cumulative_lost(self.cumulative_lost()),
            highest_seq: self.extended_highest_seq(),
            jitter: self.jitter(),
            lsr,
            dlsr,
        })
    }
}

/// Why RTCP bytes could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("RTCP packet truncated")]
    Truncated,
    #[error("RTCP version {0}, expected 2")]
    BadVersion(u8),
    #[error("RTCP length inconsistent with contents")]
    BadLength,
    #[error("RTCP padding invalid")]
    BadPadding,
    #[error("more than 31 report blocks, chunks or sources")]
    TooMany,
    #[error("SDES item or BYE reason longer than 255 bytes")]
    TextTooLong,
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// Sender information of an SR (§6.4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderInfo {
    pub ntp: NtpTime,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderReport {
    pub ssrc: u32,
    pub info: SenderInfo,
    pub reports: Vec<ReportBlock>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverReport {
    pub ssrc: u32,
    pub reports: Vec<ReportBlock>,
}

/// One SDES item (§6.5); the value is UTF-8 text (invalid bytes replaced on decode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesItem {
    pub kind: u8,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdesChunk {
    pub ssrc: u32,
    pub items: Vec<SdesItem>,
}

impl SdesChunk {
    pub fn cname(ssrc: u32, cname: &str) -> SdesChunk {
        SdesChunk {
            ssrc,
            items: vec![SdesItem {
                kind: SDES_CNAME,
                value: cname.to_string(),
            }],
        }
    }

    pub fn get_cname(&self) -> Option<&str> {
        self.items
            .iter()
            .find(|i| i.kind == SDES_CNAME)
            .map(|i| i.value.as_str())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bye {
    pub sources: Vec<u32>,
    pub reason: Option<String>,
}

/// One RTCP packet. RTCP is low-rate (§6.2), so decoded packets own their contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    SenderReport(SenderReport),
    ReceiverReport(ReceiverReport),
    Sdes(Vec<SdesChunk>),
    Bye(Bye),
    /// Any other type (APP, feedback, XR...), body kept as received.
    Other {
        packet_type: u8,
        count: u8,
        body: Vec<u8>,
    },
}

struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, b: &[u8]) -> Result<(), RtcpError> {
        let end = self.pos + b.len();
        self.buf
            .get_mut(self.pos..end)
            .ok_or(RtcpError::BufferTooSmall)?
            .copy_from_slice(b);
        self.pos = end;
        Ok(())
    }

    fn u8(&mut self, v: u8) -> Result<(), RtcpError> {
        self.bytes(&[v])
    }

    fn u32(&mut self, v: u32) -> Result<(), RtcpError> {
        self.bytes(&v.to_be_bytes())
    }

    fn zeros(&mut self, n: usize) -> Result<(), RtcpError> {
        for _ in 0..n {
            self.u8(0)?;
        }
        Ok(())
    }

    /// Common header (§6.4.1): V=2, no padding, count, type, length in words minus one.
    fn header(&mut self, count: usize, packet_type: u8, len: usize) -> Result<(), RtcpError> {
        if count > 31 {
            return Err(RtcpError::TooMany);
        }
        let words = u16::try_from(len / 4 - 1).map_err(|_| RtcpError::BadLength)?;
        self.u8(0x80 | count as u8)?;
        self.u8(packet_type)?;
        self.bytes(&words.to_be_bytes())
    }

    fn block(&mut self, b: &ReportBlock) -> Result<(), RtcpError> {
        self.u32(b.ssrc)?;
        let lost = (clamp_cumulative_lost(i64::from(b.cumulative_lost)) as u32) & 0x00FF_FFFF;
        self.u32((u32::from(b.fraction_lost) << 24) | lost)?;
        self.u32(b.highest_seq)?;
        self.u32(b.jitter)?;
        self.u32(b.lsr)?;
        self.u32(b.dlsr)
    }
}

fn padded4(n: usize) -> usize {
    (n + 3) & !3
}

fn sdes_chunk_len(c: &SdesChunk) -> Result<usize, RtcpError> {
    let mut n = 4;
    for item in &c.items {
        if item.value.len() > 255 {
            return Err(RtcpError::TextTooLong);
        }
        n += 2 + item.value.len();
    }
    // At least one null octet ends the list, then pad to 32 bits (§6.5).
    Ok(padded4(n + 1))
}

impl RtcpPacket {
    /// Bytes [`RtcpPacket::encode`] will write.
    pub fn encoded_len(&self) -> Result<usize, RtcpError> {
        Ok(match self {
            RtcpPacket::SenderReport(sr) => 28 + 24 * sr.reports.len(),
            RtcpPacket::ReceiverReport(rr) => 8 + 24 * rr.reports.len(),
            RtcpPacket::Sdes(chunks) => {
                let mut n = 4;
                for c in chunks {
                    n += sdes_chunk_len(c)?;
                }
                n
            }
            RtcpPacket::Bye(bye) => {
                let reason = match &bye.reason {
                    Some(r) if r.len() > 255 => return Err(RtcpError::TextTooLong),
                    Some(r) => padded4(1 + r.len()),
                    None => 0,
                };
                4 + 4 * bye.sources.len() + reason
            }
            RtcpPacket::Other { body, .. } => {
                if body.len() % 4 != 0 {
                    return Err(RtcpError::BadLength);
                }
                4 + body.len()
            }
        })
    }

    /// Writes the packet at the start of `out`; returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, RtcpError> {
        let len = self.encoded_len()?;
        if len > 4 * 65_536 {
            return Err(RtcpError::BadLength);
        }
        let mut w = Writer { buf: out, pos: 0 };
        match self {
            RtcpPacket::SenderReport(sr) => {
                w.header(sr.reports.len(), RTCP_SR, len)?;
                w.u32(sr.ssrc)?;
                w.u32(sr.info.ntp.seconds())?;
                w.u32(sr.info.ntp.fraction())?;
                w.u32(sr.info.rtp_timestamp)?;
                w.u32(sr.info.packet_count)?;
                w.u32(sr.info.octet_count)?;
                for b in &sr.reports {
                    w.block(b)?;
                }
            }
            RtcpPacket::ReceiverReport(rr) => {
                w.header(rr.reports.len(), RTCP_RR, len)?;
                w.u32(rr.ssrc)?;
                for b in &rr.reports {
                    w.block(b)?;
                }
            }
            RtcpPacket::Sdes(chunks) => {
                w.header(chunks.len(), RTCP_SDES, len)?;
                for c in chunks {
                    let start = w.pos;
                    w.u32(c.ssrc)?;
                    for item in &c.items {
                        w.u8(item.kind)?;
                        w.u8(item.value.len() as u8)?;
                        w.bytes(item.value.as_bytes())?;
                    }
                    let used = w.pos - start;
                    w.zeros(padded4(used + 1) - used)?;
                }
            }
            RtcpPacket::Bye(bye) => {
                w.header(bye.sources.len(), RTCP_BYE, len)?;
                for &s in &bye.sources {
                    w.u32(s)?;
                }
                if let Some(r) = &bye.reason {
                    w.u8(r.len() as u8)?;
                    w.bytes(r.as_bytes())?;
                    w.zeros(padded4(1 + r.len()) - 1 - r.len())?;
                }
            }
            RtcpPacket::Other {
                packet_type,
                count,
                body,
            } => {
                w.header(usize::from(*count), *packet_type, len)?;
                w.bytes(body)?;
            }
        }
        Ok(w.pos)
    }

    /// Reads one packet from the start of `data`; returns it and its length.
    pub fn decode(data: &[u8]) -> Result<(RtcpPacket, usize), RtcpError> {
        if data.len() < 4 {
            return Err(RtcpError::Truncated);
        }
        let version = data[0] >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion(version));
        }
        let padding = data[0] & 0x20 != 0;
        let count = usize::from(data[0] & 0x1F);
        let packet_type = data[1];
        let len = (usize::from(u16::from_be_bytes([data[2], data[3]])) + 1) * 4;
        let packet = data.get(..len).ok_or(RtcpError::Truncated)?;
        let mut body = &packet[4..];
        if padding {
            // §6.4.1: the last octet counts the padding, itself included.
            let pad = usize::from(*body.last().ok_or(RtcpError::BadPadding)?);
            if pad == 0 || pad > body.len() {
                return Err(RtcpError::BadPadding);
            }
            body = &body[..body.len() - pad];
        }
        let mut r = Reader { data: body, pos: 0 };
        let pkt = match packet_type {
            RTCP_SR => {
                let ssrc = r.u32()?;
                let seconds = r.u32()?;
                let fraction = r.u32()?;
                let info = SenderInfo {
                    ntp: NtpTime::from_parts(seconds, fraction),
                    rtp_timestamp: r.u32()?,
                    packet_count: r.u32()?,
                    octet_count: r.u32()?,
                };
                let reports = r.blocks(count)?;
                // Anything left is a profile-specific extension (§6.4.1), ignored.
                RtcpPacket::SenderReport(SenderReport {
                    ssrc,
                    info,
                    reports,
                })
            }
            RTCP_RR => {
                let ssrc = r.u32()?;
                let reports = r.blocks(count)?;
                RtcpPacket::ReceiverReport(ReceiverReport { ssrc, reports })
            }
            RTCP_SDES => {
                let mut chunks = Vec::with_capacity(count);
                for _ in 0..count {
                    chunks.push(r.sdes_chunk()?);
                }
                RtcpPacket::Sdes(chunks)
            }
            RTCP_BYE => {
                let mut sources = Vec::with_capacity(count);
                for _ in 0..count {
                    sources.push(r.u32()?);
                }
                let reason = if r.pos < r.data.len() {
                    let n = usize::from(r.u8()?);
                    Some(String::from_utf8_lossy(r.take(n)?).into_owned())
                } else {
                    None
                };
                RtcpPacket::Bye(Bye { sources, reason })
            }
            _ => RtcpPacket::Other {
                packet_type,
                count: count as u8,
                body: body.to_vec(),
            },
        };
        Ok((pkt, len))
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RtcpError> {
        let end = self.pos.checked_add(n).ok_or(RtcpError::BadLength)?;
        let s = self.data.get(self.pos..end).ok_or(RtcpError::BadLength)?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, RtcpError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, RtcpError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn blocks(&mut self, count: usize) -> Result<Vec<ReportBlock>, RtcpError> {
        let mut v = Vec::with_capacity(count);
        for _ in 0..count {
            let ssrc = self.u32()?;
            let word = self.u32()?;
            // Sign-extend the 24-bit cumulative loss.
            let lost = ((word << 8) as i32) >> 8;
            v.push(ReportBlock {
                ssrc,
                fraction_lost: (word >> 24) as u8,
                cumulative_lost: lost,
                highest_seq: self.u32()?,
                jitter: self.u32()?,
                lsr: self.u32()?,
                dlsr: self.u32()?,
            });
        }
        Ok(v)
    }

    /// One SDES chunk (§6.5): SSRC, items, a null octet, padding to 32 bits.
    fn sdes_chunk(&mut self) -> Result<SdesChunk, RtcpError> {
        let ssrc = self.u32()?;
        let mut items = Vec::new();
        loop {
            let kind = self.u8()?;
            if kind == SDES_END {
                break;
            }
            let n = usize::from(self.u8()?);
            let value = String::from_utf8_lossy(self.take(n)?).into_owned();
            items.push(SdesItem { kind, value });
        }
        // Skip the remaining nulls up to the next 32-bit boundary.
        let aligned = padded4(self.pos);
        self.take(aligned - self.pos)?;
        Ok(SdesChunk { ssrc, items })
    }
}

/// Writes packets back to back as one compound packet (§6.1); returns the length.
pub fn encode_compound(packets: &[RtcpPacket], out: &mut [u8]) -> Result<usize, RtcpError> {
    let mut pos = 0;
    for p in packets {
        pos += p.encode(out.get_mut(pos..).ok_or(RtcpError::BufferTooSmall)?)?;
    }
    Ok(pos)
}

/// Reads a compound packet (§6.1, checks of §A.2: version 2, lengths adding up exactly).
pub fn decode_compound(data: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    let mut packets = Vec::new();
    let mut rest = data;
    if rest.is_empty() {
        return Err(RtcpError::Truncated);
    }
    while !rest.is_empty() {
        let (p, len) = RtcpPacket::decode(rest)?;
        packets.push(p);
        rest = &rest[len..];
    }
    Ok(packets)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 3550 §6.4.1 figure 2 values.
    const SR_NTP: u64 = 0xb44d_b705_2000_0000; // 3024992005.125 s
    const A: u32 = 0xb710_8000; // 46864.500 s
    const LSR: u32 = 0xb705_2000; // 46853.125 s
    const DLSR: u32 = 0x0005_4000; // 5.250 s

    #[test]
    fn ntp_from_system_time() {
        // 1995-11-10 11:33:25.125 UTC = 816003205.125 s after the Unix epoch.
        let t = UNIX_EPOCH + Duration::new(816_003_205, 125_000_000);
        let ntp = NtpTime::from_system_time(t);
        assert_eq!(ntp, NtpTime(SR_NTP));
        assert_eq!((ntp.seconds(), ntp.fraction()), (0xb44d_b705, 0x2000_0000));
        assert_eq!(ntp.middle32(), LSR);
        // Before 1970 and far future: no panic.
        let early = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(NtpTime::from_system_time(early).seconds(), 2_208_988_790);
        let _ = NtpTime::from_system_time(UNIX_EPOCH + Duration::from_secs(1 << 40));
    }

    #[test]
    fn rtt_matches_rfc_example() {
        let block = ReportBlock {
            lsr: LSR,
            dlsr: DLSR,
            ..ReportBlock::default()
        };
        let arrival = NtpTime((u64::from(A)) << 16);
        assert_eq!(
            round_trip_time(&block, arrival),
            Some(Duration::from_millis(6125))
        );
        // No SR reflected yet, or arrival before LSR + DLSR.
        assert_eq!(round_trip_time(&ReportBlock::default(), arrival), None);
        assert_eq!(round_trip_time(&block, NtpTime(u64::from(LSR) << 16)), None);
    }

    #[test]
    fn ntp_short_conversions() {
        assert_eq!(to_ntp_short(Duration::from_millis(5250)), DLSR);
        assert_eq!(from_ntp_short(DLSR), Duration::from_millis(5250));
        assert_eq!(to_ntp_short(Duration::MAX), u32::MAX);
    }

    #[test]
    fn probation_then_valid() {
        let mut s = ReceiverStats::new(7);
        assert!(!s.on_rtp(1000, 0, 0));
        assert!(s.report_block(Instant::now()).is_none());
        assert!(s.on_rtp(1001, 160, 160));
        assert!(s.is_valid());
        // §A.1: counting starts at the packet that ends probation.
        assert_eq!(
            (s.received(), s.expected(), s.extended_highest_seq()),
            (1, 1, 1001)
        );
        // A broken sequence during probation restarts it.
        let mut s = ReceiverStats::new(7);
        assert!(!s.on_rtp(5, 0, 0));
        assert!(!s.on_rtp(9, 0, 0));
        assert!(s.on_rtp(10, 0, 0));
    }

    #[test]
    fn sequence_wrap_extends() {
        let mut s = ReceiverStats::new(1);
        for seq in [65_533u16, 65_534, 65_535, 0, 1, 2] {
            s.on_rtp(seq, 0, 0);
        }
        assert_eq!(s.extended_highest_seq(), 65_536 + 2);
        assert_eq!((s.expected(), s.received(), s.cumulative_lost()), (5, 5, 0));
    }

    #[test]
    fn loss_fraction_per_interval() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(0xABCD);
        // Seqs 0..=99 minus ten; probation ends at 1, so 99 are expected from 1 to 99.
        for seq in 0u16..100 {
            if (20..30).contains(&seq) {
                continue;
            }
            s.on_rtp(seq, u32::from(seq) * 160, u32::from(seq) * 160);
        }
        let b = s.report_block(t0).unwrap();
        assert_eq!(b.ssrc, 0xABCD);
        assert_eq!(b.cumulative_lost, 10);
        assert_eq!(b.fraction_lost, (10 * 256 / 99) as u8); // 25
        assert_eq!(b.highest_seq, 99);
        assert_eq!((b.lsr, b.dlsr), (0, 0));
        // A clean interval: fraction 0, cumulative unchanged.
        for seq in 100u16..150 {
            s.on_rtp(seq, 0, 0);
        }
        let b = s.report_block(t0).unwrap();
        assert_eq!((b.fraction_lost, b.cumulative_lost), (0, 10));
        // Duplicates count as received: 10 - 3.
        for _ in 0..3 {
            s.on_rtp(149, 0, 0);
        }
        let b = s.report_block(t0).unwrap();
        assert_eq!((b.fraction_lost, b.cumulative_lost), (0, 7));
        // ... and can make it negative.
        for _ in 0..20 {
            s.on_rtp(149, 0, 0);
        }
        assert_eq!(s.report_block(t0).unwrap().cumulative_lost, -13);
        // Nothing in an interval: expected_interval 0 -> fraction 0.
        assert_eq!(s.report_block(t0).unwrap().fraction_lost, 0);
    }

    #[test]
    fn cumulative_lost_clamps_to_24_bits() {
        assert_eq!(clamp_cumulative_lost(10_000_000), 0x7F_FFFF);
        assert_eq!(clamp_cumulative_lost(-10_000_000), -0x80_0000);
        assert_eq!(clamp_cumulative_lost(-5), -5);
    }

    #[test]
    fn large_jump_needs_two_packets() {
        let mut s = ReceiverStats::new(1);
        for seq in 0u16..10 {
            s.on_rtp(seq, 0, 0);
        }
        // §A.1: a jump beyond MAX_DROPOUT is rejected once ...
        assert!(!s.on_rtp(40_000, 0, 0));
        assert_eq!(s.extended_highest_seq(), 9);
        // ... and accepted as a restart if the next packet follows it.
        assert!(s.on_rtp(40_001, 0, 0));
        assert_eq!(
            (s.extended_highest_seq(), s.received(), s.expected()),
            (40_001, 1, 1)
        );
        // A small reorder is counted but does not move the highest.
        assert!(s.on_rtp(40_000, 0, 0));
        assert_eq!(s.extended_highest_seq(), 40_001);
    }

    #[test]
    fn jitter_estimator() {
        let mut s = ReceiverStats::new(1);
        // Constant transit: no jitter.
        for k in 0u32..50 {
            s.on_rtp(k as u16, k * 160, k * 160 + 1234);
        }
        assert_eq!(s.jitter(), 0);
        // Transit alternating by 40 units: |D| = 40 every packet, J converges to 40.
        for k in 50u32..400 {
            let wobble = if k % 2 == 0 { 40 } else { 0 };
            s.on_rtp(k as u16, k * 160, k * 160 + 1234 + wobble);
        }
        assert!((38..=40).contains(&s.jitter()), "{}", s.jitter());
        assert_eq!(
            s.jitter_duration(8000),
            Duration::from_micros(u64::from(s.jitter()) * 125)
        );
        // Arrival clock wrapping is fine.
        s.on_rtp(400, 400 * 160, u32::MAX);
        s.on_rtp(401, 401 * 160, 159);
    }

    #[test]
    fn lsr_and_dlsr_from_last_sr() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(1);
        s.on_rtp(1, 0, 0);
        s.on_rtp(2, 0, 0);
        s.on_sender_report(NtpTime(SR_NTP), t0);
        let b = s.report_block(t0 + Duration::from_millis(5250)).unwrap();
        assert_eq!((b.lsr, b.dlsr), (LSR, DLSR));
    }

    fn sr_bytes() -> Vec<u8> {
        vec![
            0x81, 200, 0x00, 0x0C, // V=2, RC=1, SR, 13 words
            0x12, 0x34, 0x56, 0x78, // SSRC
            0xb4, 0x4d, 0xb7, 0x05, // NTP seconds
            0x20, 0x00, 0x00, 0x00, // NTP fraction
            0x00, 0x01, 0xE2, 0x40, // RTP timestamp 123456
            0x00, 0x00, 0x00, 0x64, // packets 100
            0x00, 0x00, 0x3E, 0x80, // octets 16000
            0x9A, 0xBC, 0xDE, 0xF0, // SSRC_1
            0x40, 0xFF, 0xFF, 0xFE, // fraction 64/256, cumulative -2
            0x00, 0x01, 0x00, 0x05, // highest seq: 1 cycle, seq 5
            0x00, 0x00, 0x00, 0x2A, // jitter 42
            0xb7, 0x05, 0x20, 0x00, // LSR
            0x00, 0x05, 0x40, 0x00, // DLSR
        ]
    }

    #[test]
    fn sender_report_decodes_and_round_trips() {
        let bytes = sr_bytes();
        let (p, len) = RtcpPacket::decode(&bytes).unwrap();
        assert_eq!(len, 52);
        let RtcpPacket::SenderReport(sr) = &p else {
            panic!("{p:?}")
        };
        assert_eq!(sr.ssrc, 0x1234_5678);
        assert_eq!(sr.info.ntp, NtpTime(SR_NTP));
        assert_eq!(sr.info.rtp_timestamp, 123_456);
        assert_eq!(sr.info.packet_count, 100);
        assert_eq!(sr.info.octet_count, 16_000);
        assert_eq!(sr.reports.len(), 1);
        let b = sr.reports[0];
        assert_eq!(b.ssrc, 0x9ABC_DEF0);
        assert_eq!(b.fraction_lost, 0x40);
        assert_eq!(b.cumulative_lost, -2);
        assert_eq!(b.highest_seq, 0x0001_0005);
        assert_eq!(b.jitter, 42);
        assert_eq!((b.lsr, b.dlsr), (LSR, DLSR));
        let mut out = [0u8; 64];
        assert_eq!(p.encode(&mut out), Ok(52));
        assert_eq!(&out[..52], &bytes[..]);
    }

    #[test]
    fn receiver_report_empty_and_with_block() {
        let bytes = [0x80, 201, 0x00, 0x01, 0xDE, 0xAD, 0xBE, 0xEF];
        let (p, len) = RtcpPacket::decode(&bytes).unwrap();
        assert_eq!(len, 8);
        assert_eq!(
            p,
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: 0xDEAD_BEEF,
                reports: vec![]
            })
        );
        let rr = RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 1,
            reports: vec![ReportBlock {
                ssrc: 2,
                fraction_lost: 255,
                cumulative_lost: 0x7F_FFFF,
                highest_seq: 3,
                jitter: 4,
                lsr: 5,
                dlsr: 6,
            }],
        });
        let mut out = [0u8; 32];
        assert_eq!(rr.encode(&mut out), Ok(32));
        assert_eq!(&out[..4], &[0x81, 201, 0x00, 0x07]);
        assert_eq!(&out[12..16], &[0xFF, 0x7F, 0xFF, 0xFF]);
        assert_eq!(RtcpPacket::decode(&out).unwrap().0, rr);
    }

    #[test]
    fn sdes_cname() {
        let bytes = [
            0x81, 202, 0x00, 0x04, // V=2, SC=1, SDES, 5 words
            0x12, 0x34, 0x56, 0x78, // SSRC
            0x01, 0x09, b'u', b's', b'e', b'r', b'@', b'h', b'o', b's', b't', // CNAME
            0x00, // end of list (already aligned after it)
        ];
        let (p, len) = RtcpPacket::decode(&bytes).unwrap();
        assert_eq!(len, 20);
        let RtcpPacket::Sdes(chunks) = &p else {
            panic!("{p:?}")
        };
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].ssrc, 0x1234_5678);
        assert_eq!(chunks[0].get_cname(), Some("user@host"));
        let mut out = [0u8; 20];
        assert_eq!(p.encode(&mut out), Ok(20));
        assert_eq!(out, bytes);
        // Items ending on a word boundary still get a full word of nulls.
        let p = RtcpPacket::Sdes(vec![SdesChunk::cname(9, "ab")]);
        let mut out = [0xFFu8; 16];
        assert_eq!(p.encode(&mut out), Ok(16));
        assert_eq!(
            out,
            [0x81, 202, 0, 3, 0, 0, 0, 9, 1, 2, b'a', b'b', 0, 0, 0, 0]
        );
        assert_eq!(RtcpPacket::decode(&out).unwrap().0, p);
    }

    #[test]
    fn bye_with_and_without_reason() {
        let bytes = [
            0x81, 203, 0x00, 0x03, // V=2, SC=1, BYE, 4 words
            0x12, 0x34, 0x56, 0x78, // SSRC
            0x04, b'd', b'o', b'n', b'e', 0, 0, 0, // reason, padded
        ];
        let (p, _) = RtcpPacket::decode(&bytes).unwrap();
        assert_eq!(
            p,
            RtcpPacket::Bye(Bye {
                sources: vec![0x1234_5678],
                reason: Some("done".into())
            })
        );
        let mut out = [0u8; 16];
        assert_eq!(p.encode(&mut out), Ok(16));
        assert_eq!(out, bytes);
        let bare = [0x81, 203, 0x00, 0x01, 0, 0, 0, 5];
        assert_eq!(
            RtcpPacket::decode(&bare).unwrap().0,
            RtcpPacket::Bye(Bye {
                sources: vec![5],
                reason: None
            })
        );
    }

    #[test]
    fn compound_packet() {
        let mut bytes = vec![0x80, 201, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01]; // RR, no blocks
        bytes.extend_from_slice(&[
            0x81, 202, 0x00, 0x02, 0, 0, 0, 1, 1, 1, b'x', 0, // SDES CNAME "x"
        ]);
        bytes.extend_from_slice(&[0x81, 203, 0x00, 0x01, 0, 0, 0, 1]); // BYE
        let packets = decode_compound(&bytes).unwrap();
        assert_eq!(packets.len(), 3);
        assert!(matches!(&packets[0], RtcpPacket::ReceiverReport(rr) if rr.ssrc == 1));
        assert!(matches!(&packets[1], RtcpPacket::Sdes(c) if c[0].get_cname() == Some("x")));
        assert!(matches!(&packets[2], RtcpPacket::Bye(b) if b.sources == [1]));
        let mut out = [0u8; 64];
        let n = encode_compound(&packets, &mut out).unwrap();
        assert_eq!(&out[..n], &bytes[..]);
        // With an SR first, as a sender would send it.
        let mut sr_first = sr_bytes();
        sr_first.extend_from_slice(&bytes[8..]);
        let packets = decode_compound(&sr_first).unwrap();
        assert!(matches!(packets[0], RtcpPacket::SenderReport(_)));
        assert_eq!(packets.len(), 3);
    }

    #[test]
    fn padding_and_unknown_types() {
        // RR with 4 octets of padding (P bit, last octet = 4).
        let bytes = [0xA0, 201, 0x00, 0x02, 0, 0, 0, 7, 0, 0, 0, 4];
        let (p, len) = RtcpPacket::decode(&bytes).unwrap();
        assert_eq!(len, 12);
        assert!(matches!(p, RtcpPacket::ReceiverReport(rr) if rr.ssrc == 7));
        // APP (204) is kept as is.
        let app = [0x80, 204, 0x00, 0x02, 1, 2, 3, 4, b'n', b'a', b'm', b'e'];
        let (p, _) = RtcpPacket::decode(&app).unwrap();
        assert!(matches!(&p, RtcpPacket::Other { packet_type: 204, body, .. } if body.len() == 8));
        let mut out = [0u8; 12];
        assert_eq!(p.encode(&mut out), Ok(12));
        assert_eq!(out, app);
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert_eq!(decode_compound(&[]), Err(RtcpError::Truncated));
        assert_eq!(RtcpPacket::decode(&[0x80, 201]), Err(RtcpError::Truncated));
        assert_eq!(
            RtcpPacket::decode(&[0x40, 201, 0, 1, 0, 0, 0, 0]),
            Err(RtcpError::BadVersion(1))
        );
        // Length claims more than there is.
        assert_eq!(
            RtcpPacket::decode(&[0x80, 201, 0, 5, 0, 0, 0, 0]),
            Err(RtcpError::Truncated)
        );
        // Report count larger than the body.
        assert_eq!(
            RtcpPacket::decode(&[0x81, 201, 0, 1, 0, 0, 0, 0]),
            Err(RtcpError::BadLength)
        );
        // Padding count of zero or beyond the body.
        assert_eq!(
            RtcpPacket::decode(&[0xA0, 201, 0, 1, 0, 0, 0, 0]),
            Err(RtcpError::BadPadding)
        );
        assert_eq!(
            RtcpPacket::decode(&[0xA0, 201, 0, 1, 0, 0, 0, 9]),
            Err(RtcpError::BadPadding)
        );
        // SDES item running past the end.
        assert_eq!(
            RtcpPacket::decode(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 9, b'x', 0]),
            Err(RtcpError::BadLength)
        );
        // A trailing partial packet in a compound.
        let mut c = sr_bytes();
        c.extend_from_slice(&[0x80, 201]);
        assert_eq!(decode_compound(&c), Err(RtcpError::Truncated));
        // Every prefix and byte flip of a valid compound is handled without panic.
        let good = sr_bytes();
        for n in 0..good.len() {
            let _ = decode_compound(&good[..n]);
            for bit in 0..8 {
                let mut m = good.clone();
                m[n] ^= 1 << bit;
                let _ = decode_compound(&m);
            }
        }
    }

    #[test]
    fn encode_errors() {
        let too_many = RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 1,
            reports: vec![ReportBlock::default(); 32],
        });
        assert_eq!(too_many.encode(&mut [0u8; 2048]), Err(RtcpError::TooMany));
        let long = RtcpPacket::Sdes(vec![SdesChunk::cname(1, &"x".repeat(256))]);
        assert_eq!(long.encode(&mut [0u8; 512]), Err(RtcpError::TextTooLong));
        let rr = RtcpPacket::ReceiverReport(ReceiverReport::default());
        assert_eq!(rr.encode(&mut [0u8; 7]), Err(RtcpError::BufferTooSmall));
        assert_eq!(
            encode_compound(&[rr.clone(), rr], &mut [0u8; 12]),
            Err(RtcpError::BufferTooSmall)
        );
    }
}
