//! siphon: a SIP user agent (softphone) library.
//!
//! Layers, data flowing one way: transport -> transaction -> dialog -> call/registration ->
//! user agent. The protocol cores in [`sip`] and [`sdp`] are sans-IO: they take `now` and
//! bytes in, and give datagrams, events and the next deadline out. [`driver`] is the thin
//! tokio layer that owns the socket and the clock.

pub mod app;
pub mod cli;
pub mod config;
pub mod driver;
pub mod media;
pub mod output;
pub mod sdp;
pub mod sip;
