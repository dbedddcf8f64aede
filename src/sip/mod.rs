//! The SIP stack (RFC 3261), in layers: message syntax, transport rules, transactions,
//! dialogs, authentication and the user agent cores above them. Everything here is sans-IO.

pub mod auth;
pub mod call;
pub mod dialog;
pub mod headers;
pub mod message;
pub mod params;
pub mod registration;
pub mod transaction;
pub mod transport;
pub mod ua;
pub mod uas;
pub mod uri;

pub use headers::{CSeq, NameAddr, Via};
pub use message::{Header, HeaderName, Headers, Message, Method, ParseError, Request, Response};
pub use uri::{Host, SipUri, Uri};

/// Methods this user agent handles (RFC 3261 §20.5 Allow).
pub const ALLOWED_METHODS: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE";
