//! Transport rules that do not need a socket (RFC 3261 §18, RFC 3581): what a receiver
//! writes into the top Via, and where a response goes. The socket itself lives in the
//! driver.

use std::net::{IpAddr, SocketAddr};

use super::headers::Via;
use super::message::{HeaderName, Headers, Request};
use super::uri::Host;

/// RFC 3261 §18.2.1 and RFC 3581 §4: note the source in the top Via of a received request.
/// `received` is added when the sent-by host is not the source address, and always when
/// the client asked for `rport`; a bare `rport` gets the source port.
pub fn stamp_received(request: &mut Request, source: SocketAddr) {
    stamp_via_headers(&mut request.headers, source);
}

fn stamp_via_headers(headers: &mut Headers, source: SocketAddr) {
    let Ok(mut via) = headers.top_via() else {
        return;
    };
    let wants_rport = via.params.get("rport") == Some(None);
    let host_matches = via.host.ip() == Some(source.ip());
    if wants_rport {
        via.params.set("rport", Some(&source.port().to_string()));
    }
    if !host_matches || wants_rport {
        via.params.set("received", Some(&ip_param(source.ip())));
    }
    replace_top_via(headers, &via);
}

fn replace_top_via(headers: &mut Headers, via: &Via) {
    let mut rebuilt = Headers::new();
    let mut replaced = false;
    for h in headers.iter() {
        if h.name == HeaderName::Via && !replaced {
            rebuilt.push(HeaderName::Via, via.to_string());
            replaced = true;
        } else {
            rebuilt.push(h.name.clone(), h.value.clone());
        }
    }
    *headers = rebuilt;
}

/// An address as written in a `received` parameter (IPv6 without brackets, RFC 5118 §4.5
/// allows both; we write the plain form as RFC 3261 §20.42 `IPv6address`).
fn ip_param(ip: IpAddr) -> String {
    ip.to_string()
}

/// RFC 3261 §18.2.2 (unreliable transport) with RFC 3581 §4: where to send a response to a
/// request whose (stamped) top Via is `via`, received from `source`.
pub fn response_destination(via: &Via, source: SocketAddr) -> SocketAddr {
    let ip = via.received().unwrap_or(match &via.host {
        // A name in sent-by without `received` cannot be the source's: answer the source.
        Host::Domain(_) => source.ip(),
        host => host.ip().unwrap_or(source.ip()),
    });
    let port = match via.rport() {
        Some(Some(port)) => port,
        Some(None) => source.port(),
        None => via.port.unwrap_or(5060),
    };
    SocketAddr::new(ip, port)
}

/// Where a response should go, from a request's headers and source (for stateless replies).
pub fn reply_address(headers: &Headers, source: SocketAddr) -> SocketAddr {
    match headers.top_via() {
        Ok(via) => response_destination(&via, source),
        Err(_) => source,
    }
}

/// Stamps `received`/`rport` into the top Via of a request we are about to answer
/// statelessly (a 400 for a malformed request): same rules as [`stamp_received`].
pub fn stamp_received_headers(headers: &mut Headers, source: SocketAddr) {
    stamp_via_headers(headers, source);
}

/// The address a response tells us we were seen from (RFC 3581 §9): the `received` and
/// `rport` of the top Via of a response to our request, when both are there.
pub fn observed_address(response_headers: &Headers) -> Option<SocketAddr> {
    let via = response_headers.top_via().ok()?;
    let ip = via.received()?;
    let port = via.rport()??;
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Message;

    fn request(via: &str) -> Request {
        let text = format!(
            "OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: {via}\r\nVia: SIP/2.0/UDP second.example\r\n\
From: <sip:b@x>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        match Message::parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn rport_gets_filled_and_used() {
        let source: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let mut r = request("SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bKx");
        stamp_received(&mut r, source);
        let via = r.headers.top_via().unwrap();
        assert_eq!(via.rport(), Some(Some(40000)));
        assert_eq!(via.received(), Some(source.ip()));
        assert_eq!(response_destination(&via, source), source);
        // The second Via is untouched and order is kept.
        assert_eq!(
            r.headers.vias().unwrap()[1].host.to_string(),
            "second.example"
        );
    }

    #[test]
    fn received_without_rport_uses_sent_by_port() {
        let source: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let mut r = request("SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKx");
        stamp_received(&mut r, source);
        let via = r.headers.top_via().unwrap();
        assert_eq!(via.received(), Some(source.ip()));
        assert_eq!(
            response_destination(&via, source),
            "127.0.0.1:5070".parse().unwrap()
        );
    }

    #[test]
    fn matching_host_gets_no_received() {
        let source: SocketAddr = "127.0.0.1:5062".parse().unwrap();
        let mut r = request("SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKx");
        stamp_received(&mut r, source);
        let via = r.headers.top_via().unwrap();
        assert!(via.received().is_none());
        assert_eq!(response_destination(&via, source), source);
    }

    #[test]
    fn ipv6_received() {
        let source: SocketAddr = "[::1]:40000".parse().unwrap();
        let mut r = request("SIP/2.0/UDP [2001:db8::1]:5060;rport;branch=z9hG4bKx");
        stamp_received(&mut r, source);
        let via = r.headers.top_via().unwrap();
        assert_eq!(response_destination(&via, source), source);
        assert_eq!(observed_address(&r.headers), Some(source));
    }
}
