//! siphon: a SIP user agent (softphone) library.
