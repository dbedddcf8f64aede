//! Media: the pure parts (G.711 codec, packet loss concealment, jitter buffer, RTP/RTCP
//! statistics, call quality, DTMF) are sans-IO and clock-free: time comes in as an
//! `Instant` or an RTP timestamp, buffers are allocated up front, and no function panics
//! on any input. The engine ([`MediaSession`], in [`io`]) does the IO: sockets, timers,
//! devices and files, one tokio task per call.

pub mod codec;
pub mod dtmf;
pub mod g711;
pub mod io;
pub mod jitter;
pub mod packet;
pub mod plc;
pub mod quality;
pub mod resample;
pub mod stats;

pub use dtmf::{DtmfDigit, DtmfPacket, DtmfReceiver, DtmfSender, TelephoneEvent};
pub use io::device::{DeviceList, list_devices};
pub use io::endpoints::{AudioSink, AudioSource};
pub use io::engine::{MediaConfig, MediaError, MediaEvent, MediaSession, MediaStats};
pub use jitter::{JitterBuffer, JitterConfig, JitterStats, Playout};
pub use plc::Plc;
pub use quality::{Codec, Quality, QualityInput};
pub use stats::{NtpTime, ReceiverStats, ReportBlock, RtcpPacket};
