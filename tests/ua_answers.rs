//! What the user agent answers outside calls (RFC 3261 §8.2, §11, §21.4.1) and to
//! keep-alives (RFC 5626 §4.4.1), fed datagrams directly on a virtual clock.

use std::net::SocketAddr;
use std::time::Instant;

use siphon::sip::message::{HeaderName, Message, Response};
use siphon::sip::transaction::TimerConfig;
use siphon::sip::ua::{UaConfig, UserAgent};
use siphon::sip::uas::UasPolicy;

fn alice() -> UserAgent {
    UserAgent::new(UaConfig {
        local_addr: "127.0.0.1:5060".parse().unwrap(),
        user_agent: "siphon-test".into(),
        timers: TimerConfig::default(),
        policy: UasPolicy {
            local_users: vec!["alice".into()],
        },
        incoming: None,
    })
}

const PEER: &str = "127.0.0.1:40000";

fn request(method: &str, user: &str, branch: &str) -> String {
    format!(
        "{method} sip:{user}@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;rport;branch=z9hG4bK{branch}\r\n\
From: <sip:bob@127.0.0.1:40000>;tag=b1\r\nTo: <sip:{user}@127.0.0.1:5060>\r\nCall-ID: {branch}@test\r\n\
CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Sends one datagram and returns what came back (with the address it went to).
fn exchange(ua: &mut UserAgent, data: &[u8]) -> Vec<(SocketAddr, Vec<u8>)> {
    let source: SocketAddr = PEER.parse().unwrap();
    ua.handle_datagram(Instant::now(), data, source);
    std::iter::from_fn(|| ua.poll_transmit())
        .map(|t| (t.destination, t.data))
        .collect()
}

fn response(ua: &mut UserAgent, data: &[u8]) -> Response {
    let out = exchange(ua, data);
    assert_eq!(out.len(), 1, "one response expected, got {}", out.len());
    assert_eq!(
        out[0].0,
        PEER.parse::<SocketAddr>().unwrap(),
        "routed by rport"
    );
    match Message::parse(&out[0].1).unwrap() {
        Message::Response(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn options_gets_200_with_capabilities() {
    let mut ua = alice();
    let r = response(&mut ua, request("OPTIONS", "alice", "o1").as_bytes());
    assert_eq!(r.status, 200);
    for name in [HeaderName::Allow, HeaderName::Accept, HeaderName::Supported] {
        assert!(r.headers.contains(&name), "{name} missing");
    }
    assert!(
        r.headers
            .get(&HeaderName::Allow)
            .unwrap()
            .contains("INVITE")
    );
    assert!(r.headers.to().unwrap().tag().is_some(), "To tag added");
    // rport was filled in for the response (RFC 3581).
    assert_eq!(r.headers.top_via().unwrap().rport(), Some(Some(40000)));
}

#[test]
fn another_user_gets_404() {
    let mut ua = alice();
    assert_eq!(
        response(&mut ua, request("OPTIONS", "carol", "o2").as_bytes()).status,
        404
    );
}

#[test]
fn unknown_method_501_known_but_unsupported_405() {
    let mut ua = alice();
    let r = response(&mut ua, request("FROBNICATE", "alice", "o3").as_bytes());
    assert_eq!(r.status, 501);
    let r = response(&mut ua, request("SUBSCRIBE", "alice", "o4").as_bytes());
    assert_eq!(r.status, 405);
    assert!(r.headers.contains(&HeaderName::Allow));
}

#[test]
fn retransmitted_request_gets_the_same_response() {
    let mut ua = alice();
    let req = request("OPTIONS", "alice", "o5");
    let first = exchange(&mut ua, req.as_bytes());
    let again = exchange(&mut ua, req.as_bytes());
    assert_eq!(
        first, again,
        "the transaction answers a retransmission with its last response"
    );
}

#[test]
fn malformed_request_gets_400_saying_why_and_garbage_is_dropped() {
    let mut ua = alice();
    let bad = request("OPTIONS", "alice", "o6").replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    let r = response(&mut ua, bad.as_bytes());
    assert_eq!(r.status, 400);
    assert!(r.reason.contains("CSeq"), "{}", r.reason);
    assert!(exchange(&mut ua, b"\x00\x01garbage\xff").is_empty());
    assert!(exchange(&mut ua, b"SIP/2.0 200 OK\r\n\r\n").is_empty());
}

#[test]
fn crlf_keepalive_gets_a_pong() {
    let mut ua = alice();
    let out = exchange(&mut ua, b"\r\n\r\n");
    assert_eq!(out, vec![(PEER.parse().unwrap(), b"\r\n".to_vec())]);
    assert!(
        exchange(&mut ua, b"\r\n").is_empty(),
        "a pong is not answered"
    );
}
