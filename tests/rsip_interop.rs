//! Interoperability: every message siphon puts on the wire in a call and a registration
//! must read the same in an independent SIP parser (`rsip`), field by field.

use std::net::SocketAddr;
use std::time::Instant;

use rsip::prelude::*;
use siphon::sdp::{CodecChoice, LocalMediaConfig};
use siphon::sip::auth::{Credentials, Secret};
use siphon::sip::call::OutgoingCall;
use siphon::sip::headers::NameAddr;
use siphon::sip::message::Message;
use siphon::sip::registration::{Registration, RegistrationConfig};
use siphon::sip::transaction::TimerConfig;
use siphon::sip::ua::{IncomingPolicy, UaConfig, UaEvent, UserAgent};
use siphon::sip::uas::UasPolicy;
use siphon::sip::uri::Uri;

fn ua(local: &str, incoming: bool) -> UserAgent {
    let local: SocketAddr = local.parse().unwrap();
    UserAgent::new(UaConfig {
        local_addr: local,
        user_agent: "siphon-test".into(),
        timers: TimerConfig::default(),
        policy: UasPolicy::default(),
        incoming: incoming.then(|| IncomingPolicy {
            media: LocalMediaConfig::new(local.ip(), 9),
            max_calls: None,
            contact: Uri::parse(&format!("sip:bob@{local}")).unwrap(),
        }),
    })
}

/// Compares what rsip reads with what our parser reads.
fn check_same(bytes: &[u8]) {
    let ours = Message::parse(bytes).expect("our parser reads our own message");
    let text = std::str::from_utf8(bytes).expect("UTF-8");
    let theirs = rsip::SipMessage::try_from(text)
        .unwrap_or_else(|e| panic!("rsip rejects what we sent: {e}\n{text}"));
    let h = ours.headers();
    assert_eq!(
        theirs.call_id_header().unwrap().value(),
        h.call_id().unwrap(),
        "Call-ID"
    );
    let cseq = theirs.cseq_header().unwrap().typed().unwrap();
    assert_eq!(cseq.seq, h.cseq().unwrap().seq, "CSeq number");
    assert_eq!(
        cseq.method.to_string(),
        h.cseq().unwrap().method.to_string()
    );
    let via = theirs.via_header().unwrap().typed().unwrap();
    assert_eq!(
        via.branch().map(|b| b.to_string()),
        h.top_via().unwrap().branch().map(String::from),
        "Via branch"
    );
    let from = theirs.from_header().unwrap().typed().unwrap();
    assert_eq!(
        from.tag().map(|t| t.to_string()),
        h.from().unwrap().tag().map(String::from)
    );
    let to = theirs.to_header().unwrap().typed().unwrap();
    assert_eq!(
        to.tag().map(|t| t.to_string()),
        h.to().unwrap().tag().map(String::from)
    );
    let (their_body, our_body) = match (&theirs, &ours) {
        (rsip::SipMessage::Request(t), Message::Request(o)) => {
            assert_eq!(t.method.to_string(), o.method.to_string());
            (t.body.clone(), o.body.clone())
        }
        (rsip::SipMessage::Response(t), Message::Response(o)) => {
            assert_eq!(u16::from(t.status_code.clone()), o.status);
            (t.body.clone(), o.body.clone())
        }
        _ => panic!("request/response mismatch"),
    };
    assert_eq!(their_body, our_body, "body");
}

#[test]
fn a_whole_call_reads_the_same_in_rsip() {
    let mut alice = ua("127.0.0.1:5060", false);
    let mut bob = ua("127.0.0.1:5070", true);
    let now = Instant::now();
    let mut media = LocalMediaConfig::new("127.0.0.1".parse().unwrap(), 40000);
    media.codecs = vec![CodecChoice::Pcmu, CodecChoice::Opus];
    let call = alice.place_call(
        now,
        OutgoingCall {
            target: Uri::parse("sip:bob@127.0.0.1:5070").unwrap(),
            from: NameAddr::new(Uri::parse("sip:alice@127.0.0.1:5060").unwrap()),
            contact: Uri::parse("sip:alice@127.0.0.1:5060").unwrap(),
            credentials: None,
            outbound_proxy: None,
            destination: "127.0.0.1:5070".parse().unwrap(),
            media,
            user_agent: "siphon-test".into(),
            timers: TimerConfig::default(),
        },
    );
    let mut seen = Vec::new();
    let mut answered = false;
    let mut hung_up = false;
    for _ in 0..50 {
        let mut moved = false;
        while let Some(t) = alice.poll_transmit() {
            seen.push(t.data.clone());
            bob.handle_datagram(now, &t.data, "127.0.0.1:5060".parse().unwrap());
            moved = true;
        }
        while let Some(t) = bob.poll_transmit() {
            seen.push(t.data.clone());
            alice.handle_datagram(now, &t.data, "127.0.0.1:5070".parse().unwrap());
            moved = true;
        }
        while let Some(e) = bob.poll_event() {
            if let UaEvent::Call {
                handle,
                event: siphon::sip::call::CallEvent::Incoming { .. },
                ..
            } = e
            {
                bob.answer(
                    now,
                    handle,
                    LocalMediaConfig::new("127.0.0.1".parse().unwrap(), 50000),
                );
                answered = true;
            }
        }
        while alice.poll_event().is_some() {}
        if !moved && answered && !hung_up {
            alice.hangup(now, call);
            hung_up = true;
            continue;
        }
        if !moved && hung_up {
            break;
        }
    }
    let first_lines: Vec<String> = seen
        .iter()
        .map(|d| {
            String::from_utf8_lossy(d)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    for expected in ["INVITE", "SIP/2.0 180", "SIP/2.0 200", "ACK", "BYE"] {
        assert!(
            first_lines.iter().any(|l| l.starts_with(expected)),
            "{expected} missing from {first_lines:?}"
        );
    }
    for datagram in &seen {
        check_same(datagram);
    }
}

#[test]
fn an_authenticated_register_reads_the_same_in_rsip() {
    let aor = match Uri::parse("sip:alice@127.0.0.1:5080").unwrap() {
        Uri::Sip(s) => s,
        _ => unreachable!(),
    };
    let contact = match Uri::parse("sip:alice@127.0.0.1:5060").unwrap() {
        Uri::Sip(s) => s,
        _ => unreachable!(),
    };
    let mut registration = Registration::new(
        RegistrationConfig {
            aor,
            registrar: Uri::parse("sip:127.0.0.1:5080").unwrap(),
            credentials: Some(Credentials::new("alice", Secret::new("pw"))),
            expires: 600,
            contact,
            outbound_proxy: None,
            user_agent: "siphon-test".into(),
        },
        "reg-1@127.0.0.1".into(),
        "tag1".into(),
    );
    let mut first = registration.register();
    first.headers.push_front(
        siphon::sip::HeaderName::Via,
        "SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bKa1",
    );
    check_same(&first.to_bytes());
    let mut challenge = siphon::sip::Response::for_request(&first.headers, 401);
    challenge.headers.push(
        siphon::sip::HeaderName::WwwAuthenticate,
        "Digest realm=\"siphon.test\", nonce=\"abc\", qop=\"auth\", algorithm=SHA-256",
    );
    let mut second = registration
        .on_response(Instant::now(), &challenge)
        .expect("retry with credentials");
    second.headers.push_front(
        siphon::sip::HeaderName::Via,
        "SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bKa2",
    );
    let bytes = second.to_bytes();
    check_same(&bytes);
    let theirs = rsip::SipMessage::try_from(std::str::from_utf8(&bytes).unwrap()).unwrap();
    assert!(
        theirs.authorization_header().is_some(),
        "rsip sees the Authorization header"
    );
}
