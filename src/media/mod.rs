//! Media engine, pure parts: G.711 codec, packet loss concealment, jitter buffer, RTP/RTCP
//! statistics, call quality and DTMF. Everything is sans-IO and clock-free: time comes in as
//! an `Instant` or an RTP timestamp, buffers are allocated up front, and no function panics
//! on any input.

pub mod dtmf;
pub mod g711;
pub mod jitter;
pub mod plc;
pub mod quality;
pub mod stats;

pub use dtmf::{DtmfDigit, DtmfPacket, DtmfReceiver, DtmfSender, TelephoneEvent};
pub use jitter::{JitterBuffer, JitterConfig, JitterStats, Playout};
pub use plc::Plc;
pub use quality::{Codec, Quality, QualityInput};
pub use stats::{NtpTime, ReceiverStats, ReportBlock, RtcpPacket};
