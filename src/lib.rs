//! siphon: a SIP user agent (softphone) library.
//!
//! Layers, data flowing one way: transport -> transaction -> dialog -> call/registration ->
//! user agent. The protocol cores in [`sip`] are sans-IO: they take `now` and bytes in, and
//! give datagrams, events and the next deadline out.

pub mod media;
pub mod sip;
