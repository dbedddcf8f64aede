//! SDP (RFC 8866, formerly RFC 4566) and the offer/answer model (RFC 3264) for one
//! audio stream. Pure: text in, descriptions and negotiated parameters out.

pub mod codec;
pub mod negotiation;
pub mod session;

#[cfg(test)]
mod tests;

pub use codec::{Codec, CodecChoice, OpusParams, Rtpmap, UnknownCodec};
pub use negotiation::{
    LocalMediaConfig, NegotiatedMedia, NegotiationError, answer_offer, build_offer, process_answer,
};
pub use session::{
    Attribute, Bandwidth, Connection, Direction, MediaDescription, Origin, RtcpAttribute, SdpError,
    SessionDescription, Timing,
};
