//! RTP packets on the wire (RFC 3550 §5.1) through the `rtp` crate's `Header`, with the
//! checks of RFC 3550 §A.1 done here: the crate reads 12 zero bytes as a version-0 header
//! and would panic on some malformed header extensions, so the raw bytes are validated
//! before it sees them. Neither reading nor writing allocates for ordinary packets (no
//! CSRC list, no header extension).

use rtp::header::Header;
use webrtc_util::marshal::{Marshal, MarshalSize, Unmarshal};

/// Fixed RTP header length (RFC 3550 §5.1).
pub const RTP_HEADER_LEN: usize = 12;
/// RFC 8285 §4.2 one-byte and §4.3 two-byte header extension profiles, as the crate
/// recognises them.
const PROFILE_ONE_BYTE: u16 = 0xBEDE;
const PROFILE_TWO_BYTE: u16 = 0x1000;

/// The parts of a received RTP packet the engine uses; `payload` is a range of the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpView {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload_start: usize,
    pub payload_end: usize,
}

/// Why a datagram is not an acceptable RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("shorter than an RTP header")]
    Truncated,
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    #[error("malformed header extension")]
    BadExtension,
    #[error("padding longer than the payload")]
    BadPadding,
    #[error("the rtp crate rejected the header")]
    Header,
}

/// RFC 5761 §4: with rtcp-mux, a second byte of 192..=223 marks RTCP (RTP payload types
/// 64..=95 with the marker bit are never used).
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && (192..=223).contains(&datagram[1])
}

/// Checks the header extension (RFC 3550 §5.3.1, RFC 8285) the way the crate will walk
/// it, so that it never reads past the extension. Returns the extension's total length.
fn check_extension(data: &[u8], offset: usize) -> Result<usize, RtpError> {
    let head = data.get(offset..offset + 4).ok_or(RtpError::BadExtension)?;
    let profile = u16::from_be_bytes([head[0], head[1]]);
    let len = usize::from(u16::from_be_bytes([head[2], head[3]])) * 4;
    let start = offset + 4;
    let end = start + len;
    if end > data.len() {
        return Err(RtpError::BadExtension);
    }
    let body = &data[start..end];
    let mut i = 0;
    match profile {
        PROFILE_ONE_BYTE => {
            while i < body.len() {
                let b = body[i];
                i += 1;
                if b == 0 {
                    continue; // padding
                }
                if b >> 4 == 15 {
                    break; // RFC 8285 §4.2: id 15 stops processing
                }
                let n = usize::from(b & 0x0F) + 1;
                if i + n > body.len() {
                    return Err(RtpError::BadExtension);
                }
                i += n;
            }
        }
        PROFILE_TWO_BYTE => {
            while i < body.len() {
                let b = body[i];
                i += 1;
                if b == 0 {
                    continue;
                }
                let n = usize::from(*body.get(i).ok_or(RtpError::BadExtension)?);
                i += 1;
                if i + n > body.len() {
                    return Err(RtpError::BadExtension);
                }
                i += n;
            }
        }
        _ => {}
    }
    Ok(4 + len)
}

/// Reads an RTP packet: version 2, complete CSRC list and extension, valid padding
/// (RFC 3550 §5.1, §A.1). Never panics.
pub fn parse_rtp(datagram: &[u8]) -> Result<RtpView, RtpError> {
    if datagram.len() < RTP_HEADER_LEN {
        return Err(RtpError::Truncated);
    }
    let version = datagram[0] >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion(version));
    }
    let padding = datagram[0] & 0x20 != 0;
    let extension = datagram[0] & 0x10 != 0;
    let cc = usize::from(datagram[0] & 0x0F);
    let mut start = RTP_HEADER_LEN + 4 * cc;
    if start > datagram.len() {
        return Err(RtpError::Truncated);
    }
    if extension {
        start += check_extension(datagram, start)?;
    }
    let mut end = datagram.len();
    if padding {
        // RFC 3550 §5.1: the last octet counts the padding, itself included.
        let pad = usize::from(datagram[end - 1]);
        if pad == 0 || start + pad > end {
            return Err(RtpError::BadPadding);
        }
        end -= pad;
    }
    let mut buf = datagram;
    let header = Header::unmarshal(&mut buf).map_err(|_| RtpError::Header)?;
    Ok(RtpView {
        marker: header.marker,
        payload_type: header.payload_type,
        sequence: header.sequence_number,
        timestamp: header.timestamp,
        ssrc: header.ssrc,
        payload_start: start,
        payload_end: end,
    })
}

/// Writes an RTP header and payload into `out` (RFC 3550 §5.1); returns the length, or 0
/// if `out` is too small.
pub fn write_rtp(
    out: &mut [u8],
    payload_type: u8,
    marker: bool,
    sequence: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &[u8],
) -> usize {
    let header = Header {
        version: 2,
        marker,
        payload_type: payload_type & 0x7F,
        sequence_number: sequence,
        timestamp,
        ssrc,
        ..Header::default()
    };
    let len = header.marshal_size();
    if out.len() < len + payload.len() {
        return 0;
    }
    match header.marshal_to(&mut out[..len]) {
        Ok(n) if n == len => {
            out[len..len + payload.len()].copy_from_slice(payload);
            len + payload.len()
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = [0u8; 200];
        let n = write_rtp(
            &mut buf,
            8,
            true,
            0xFFFF,
            0xFFFF_FFF0,
            0xDEAD_BEEF,
            &[1, 2, 3],
        );
        assert_eq!(n, 15);
        let v = parse_rtp(&buf[..n]).unwrap();
        assert_eq!(
            v,
            RtpView {
                marker: true,
                payload_type: 8,
                sequence: 0xFFFF,
                timestamp: 0xFFFF_FFF0,
                ssrc: 0xDEAD_BEEF,
                payload_start: 12,
                payload_end: 15,
            }
        );
        assert!(!is_rtcp(&buf[..n]));
        assert_eq!(write_rtp(&mut buf[..14], 0, false, 0, 0, 0, &[1, 2, 3]), 0);
    }

    #[test]
    fn rejects_bad_versions_and_lengths() {
        assert_eq!(parse_rtp(&[0u8; 12]), Err(RtpError::BadVersion(0)));
        assert_eq!(parse_rtp(&[0x80; 11]), Err(RtpError::Truncated));
        // CC = 15 but no CSRCs.
        let mut p = [0u8; 20];
        p[0] = 0x8F;
        assert_eq!(parse_rtp(&p), Err(RtpError::Truncated));
        // Padding larger than the packet.
        let mut p = [0u8; 16];
        p[0] = 0xA0;
        p[15] = 10;
        assert_eq!(parse_rtp(&p), Err(RtpError::BadPadding));
        p[15] = 4;
        let v = parse_rtp(&p).unwrap();
        assert_eq!((v.payload_start, v.payload_end), (12, 12));
    }

    #[test]
    fn extensions_are_bounded() {
        // One-byte extension whose element claims 16 bytes inside a 4-byte block.
        let mut p = vec![0x90, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xBE, 0xDE, 0, 1];
        p.extend_from_slice(&[0x1F, 0, 0, 0]);
        assert_eq!(parse_rtp(&p), Err(RtpError::BadExtension));
        // A valid one: id 1, 2 bytes, padding.
        let mut p = vec![0x90, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xBE, 0xDE, 0, 1];
        p.extend_from_slice(&[0x11, 7, 7, 0, 0xAA]);
        let v = parse_rtp(&p).unwrap();
        assert_eq!(v.payload_start, 20);
        assert_eq!(&p[v.payload_start..v.payload_end], &[0xAA]);
        // Two-byte profile whose length byte is missing.
        let mut p = vec![0x90, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0x10, 0x00, 0, 1];
        p.extend_from_slice(&[0, 0, 0, 5]);
        assert_eq!(parse_rtp(&p), Err(RtpError::BadExtension));
        // Extension block longer than the datagram.
        let p = [0x90, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xBE, 0xDE, 0, 9];
        assert_eq!(parse_rtp(&p), Err(RtpError::BadExtension));
    }

    #[test]
    fn never_panics_on_mutations() {
        let mut base = vec![0x90, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xBE, 0xDE, 0, 2];
        base.extend_from_slice(&[0x21, 1, 2, 0x10, 3, 0, 0, 0, 9, 9, 9]);
        let mut state = 0x1234_5678_9ABC_DEF0u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut p = base.clone();
            let i = (state as usize) % p.len();
            p[i] = (state >> 32) as u8;
            p.truncate(((state >> 40) as usize) % (base.len() + 1));
            let _ = parse_rtp(&p);
            let _ = is_rtcp(&p);
        }
    }
}
