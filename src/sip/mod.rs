//! The SIP stack (RFC 3261), in layers: message syntax, transaction, dialog and the user
//! agent cores above them. Everything here is sans-IO.

pub mod headers;
pub mod message;
pub mod params;
pub mod transaction;
pub mod uri;

pub use headers::{CSeq, NameAddr, Via};
pub use message::{Header, HeaderName, Headers, Message, Method, ParseError, Request, Response};
pub use uri::{Host, SipUri, Uri};
