//! siphon: a SIP user agent (softphone) library.

pub mod sip;
