//! The media engine's IO: the RTP/RTCP sockets and timers of a call (one tokio task per
//! call), sound devices through cpal (lock-free rings to the callbacks) and WAV files.
//! Everything it computes comes from the sans-IO modules beside it.

pub mod device;
pub mod endpoints;
pub mod engine;
