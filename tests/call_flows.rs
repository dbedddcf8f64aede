//! Whole call flows between two in-process user agents on a virtual clock: no sockets, no
//! sleeping. A small network in the test delivers datagrams (and can drop them), and time
//! jumps to the next deadline either side asks for.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use siphon::sdp::{CodecChoice, Direction, LocalMediaConfig};
use siphon::sip::call::{CallEvent, EndReason, OutgoingCall};
use siphon::sip::headers::NameAddr;
use siphon::sip::transaction::TimerConfig;
use siphon::sip::ua::{CallHandle, IncomingPolicy, UaConfig, UaEvent, UserAgent};
use siphon::sip::uas::UasPolicy;
use siphon::sip::uri::Uri;

const ALICE: &str = "127.0.0.1:5060";
const BOB: &str = "127.0.0.1:5070";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn media(port: u16, codecs: &[CodecChoice]) -> LocalMediaConfig {
    let mut m = LocalMediaConfig::new(addr(ALICE).ip(), port);
    m.codecs = codecs.to_vec();
    m
}

fn user_agent(local: &str, incoming: Option<(Vec<CodecChoice>, Option<usize>)>) -> UserAgent {
    let local = addr(local);
    UserAgent::new(UaConfig {
        local_addr: local,
        user_agent: "siphon-test".into(),
        timers: TimerConfig::default(),
        policy: UasPolicy::default(),
        incoming: incoming.map(|(codecs, max_calls)| IncomingPolicy {
            media: media(9, &codecs),
            max_calls,
            contact: Uri::parse(&format!("sip:bob@{local}")).unwrap(),
        }),
    })
}

/// A datagram put on the wire (delivered or lost): when, by whom, its first line.
#[derive(Debug, Clone)]
struct Wire {
    at: Duration,
    from: SocketAddr,
    first_line: String,
    data: Vec<u8>,
}

/// Decides, from the sender and first line, whether the network loses a datagram.
type DropRule = Box<dyn FnMut(SocketAddr, &str) -> bool>;

struct Net {
    alice: UserAgent,
    bob: UserAgent,
    start: Instant,
    now: Instant,
    /// Returns true to drop a datagram (sender, first line).
    drop_rule: DropRule,
    wire: Vec<Wire>,
    alice_events: Vec<(Duration, CallEvent)>,
    bob_events: Vec<(Duration, CallHandle, CallEvent)>,
}

impl Net {
    fn new(bob_incoming: (Vec<CodecChoice>, Option<usize>)) -> Net {
        let start = Instant::now();
        Net {
            alice: user_agent(ALICE, None),
            bob: user_agent(BOB, Some(bob_incoming)),
            start,
            now: start,
            drop_rule: Box::new(|_, _| false),
            wire: Vec::new(),
            alice_events: Vec::new(),
            bob_events: Vec::new(),
        }
    }

    fn call(&mut self, codecs: &[CodecChoice]) -> CallHandle {
        let params = OutgoingCall {
            target: Uri::parse(&format!("sip:bob@{BOB}")).unwrap(),
            from: NameAddr::new(Uri::parse(&format!("sip:alice@{ALICE}")).unwrap()),
            contact: Uri::parse(&format!("sip:alice@{ALICE}")).unwrap(),
            credentials: None,
            outbound_proxy: None,
            destination: addr(BOB),
            media: media(40000, codecs),
            user_agent: "siphon-test".into(),
            timers: TimerConfig::default(),
        };
        self.alice.place_call(self.now, params)
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Delivers datagrams until none are in flight, collecting events.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for from_alice in [true, false] {
                let (sender, from) = if from_alice {
                    (&mut self.alice, addr(ALICE))
                } else {
                    (&mut self.bob, addr(BOB))
                };
                while let Some(t) = sender.poll_transmit() {
                    moved = true;
                    let text = String::from_utf8_lossy(&t.data).to_string();
                    let first_line = text.lines().next().unwrap_or_default().to_string();
                    let dropped = (self.drop_rule)(from, &first_line);
                    self.wire.push(Wire {
                        at: self.now - self.start,
                        from,
                        first_line,
                        data: t.data.clone(),
                    });
                    if dropped {
                        continue;
                    }
                    let receiver = if t.destination == addr(ALICE) {
                        &mut self.alice
                    } else if t.destination == addr(BOB) {
                        &mut self.bob
                    } else {
                        panic!("datagram to unknown {}", t.destination)
                    };
                    receiver.handle_datagram(self.now, &t.data, from);
                    // `sender` borrow ends here; loop picks up the next transmit.
                    break;
                }
            }
            let at = self.elapsed();
            while let Some(e) = self.alice.poll_event() {
                if let UaEvent::Call { event, .. } = e {
                    self.alice_events.push((at, event));
                }
            }
            while let Some(e) = self.bob.poll_event() {
                if let UaEvent::Call { handle, event, .. } = e {
                    self.bob_events.push((at, handle, event));
                }
            }
            if !moved {
                return;
            }
        }
        panic!("network never settled");
    }

    /// Runs until `limit` of virtual time has passed, jumping from deadline to deadline.
    fn run_for(&mut self, limit: Duration) {
        let end = self.now + limit;
        for _ in 0..100_000 {
            self.settle();
            let next = [self.alice.poll_timeout(), self.bob.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    self.alice.handle_timeout(self.now);
                    self.bob.handle_timeout(self.now);
                }
                _ => {
                    self.now = end;
                    self.settle();
                    return;
                }
            }
        }
        panic!("timers never quietened");
    }

    fn bob_incoming(&self) -> CallHandle {
        self.bob_events
            .iter()
            .find_map(|(_, h, e)| matches!(e, CallEvent::Incoming { .. }).then_some(*h))
            .expect("bob saw an incoming call")
    }

    fn alice_ended(&self) -> Option<(EndReason, Option<u16>)> {
        self.alice_events.iter().find_map(|(_, e)| match e {
            CallEvent::Ended { reason, status } => Some((*reason, *status)),
            _ => None,
        })
    }

    fn bob_ended(&self) -> Option<(EndReason, Option<u16>)> {
        self.bob_events.iter().find_map(|(_, _, e)| match e {
            CallEvent::Ended { reason, status } => Some((*reason, *status)),
            _ => None,
        })
    }

    fn sent(&self, from: &str, prefix: &str) -> Vec<Duration> {
        self.wire
            .iter()
            .filter(|w| w.from == addr(from) && w.first_line.starts_with(prefix))
            .map(|w| w.at)
            .collect()
    }
}

const ALL: &[CodecChoice] = &[CodecChoice::Opus, CodecChoice::Pcmu, CodecChoice::Pcma];

fn answered(net: &mut Net, alice: CallHandle) -> CallHandle {
    let _ = alice;
    net.settle();
    let bob = net.bob_incoming();
    let now = net.now;
    net.bob.answer(now, bob, media(50000, ALL));
    net.settle();
    bob
}

#[test]
fn basic_call_answer_and_caller_hangs_up() {
    let mut net = Net::new((ALL.to_vec(), None));
    let alice = net.call(ALL);
    net.settle();
    assert!(
        net.alice_events
            .iter()
            .any(|(_, e)| *e == CallEvent::Ringing)
    );
    let _bob = answered(&mut net, alice);
    let media = net
        .alice_events
        .iter()
        .find_map(|(_, e)| match e {
            CallEvent::Answered(m) => Some(m.clone()),
            _ => None,
        })
        .expect("alice answered");
    assert!(media.codec.is("opus"), "{:?}", media.codec);
    assert_eq!(media.remote_rtp.port(), 50000);
    assert_eq!(media.direction, Direction::SendRecv);
    // Exactly one ACK, no 2xx retransmission once the ACK arrived.
    net.run_for(Duration::from_secs(10));
    assert_eq!(net.sent(ALICE, "ACK").len(), 1);
    assert_eq!(net.sent(BOB, "SIP/2.0 200").len(), 1);
    let now = net.now;
    net.alice.hangup(now, alice);
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.alice_ended(), Some((EndReason::LocalBye, None)));
    assert_eq!(net.bob_ended(), Some((EndReason::RemoteBye, None)));
    // Both sides forget the call once their timers are done.
    net.run_for(Duration::from_secs(40));
    assert_eq!(net.alice.calls().count(), 0);
    assert_eq!(net.bob.calls().count(), 0);
}

#[test]
fn callee_hangs_up() {
    let mut net = Net::new((ALL.to_vec(), None));
    let alice = net.call(ALL);
    let bob = answered(&mut net, alice);
    let now = net.now;
    net.bob.hangup(now, bob);
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.alice_ended(), Some((EndReason::RemoteBye, None)));
    assert_eq!(net.bob_ended(), Some((EndReason::LocalBye, None)));
}

#[test]
fn decline_gives_486() {
    let mut net = Net::new((ALL.to_vec(), None));
    net.call(ALL);
    net.settle();
    let bob = net.bob_incoming();
    let now = net.now;
    net.bob.decline(now, bob);
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.alice_ended(), Some((EndReason::Rejected, Some(486))));
    assert_eq!(net.bob_ended(), Some((EndReason::Declined, Some(486))));
    // The 486 is ACKed by alice's INVITE transaction (RFC 3261 §17.1.1.3).
    assert_eq!(net.sent(ALICE, "ACK").len(), 1);
}

#[test]
fn caller_cancels_while_ringing() {
    let mut net = Net::new((ALL.to_vec(), None));
    let alice = net.call(ALL);
    net.settle();
    let now = net.now;
    net.alice.hangup(now, alice);
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.sent(ALICE, "CANCEL").len(), 1);
    assert_eq!(net.alice_ended(), Some((EndReason::Cancelled, Some(487))));
    assert_eq!(net.bob_ended(), Some((EndReason::Cancelled, Some(487))));
}

#[test]
fn hangup_before_any_provisional_waits_for_it_then_cancels() {
    let mut net = Net::new((ALL.to_vec(), None));
    // Bob's responses are lost at first: alice has no provisional yet.
    let mut lost = 0;
    net.drop_rule = Box::new(move |from, _| {
        if from == addr(BOB) && lost < 2 {
            lost += 1;
            return true;
        }
        false
    });
    let alice = net.call(ALL);
    net.settle();
    let now = net.now;
    net.alice.hangup(now, alice);
    net.settle();
    assert!(
        net.sent(ALICE, "CANCEL").is_empty(),
        "no CANCEL before a provisional"
    );
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.sent(ALICE, "CANCEL").len(), 1);
    assert_eq!(net.alice_ended(), Some((EndReason::Cancelled, Some(487))));
}

#[test]
fn no_common_codec_gives_488() {
    let mut net = Net::new((vec![CodecChoice::Pcma], None));
    net.call(&[CodecChoice::Pcmu]);
    net.run_for(Duration::from_secs(1));
    assert_eq!(
        net.alice_ended(),
        Some((EndReason::MediaFailure, Some(488)))
    );
    // Bob never rang, but sees the call that came and why it ended.
    assert!(
        !net.bob_events
            .iter()
            .any(|(_, _, e)| *e == CallEvent::Ringing)
    );
    assert_eq!(net.bob_ended(), Some((EndReason::MediaFailure, Some(488))));
}

#[test]
fn answer_uses_the_offerers_order() {
    let mut net = Net::new((vec![CodecChoice::Pcma, CodecChoice::Pcmu], None));
    let alice = net.call(&[CodecChoice::Pcmu, CodecChoice::Pcma]);
    net.settle();
    let bob = net.bob_incoming();
    let now = net.now;
    net.bob.answer(
        now,
        bob,
        media(50000, &[CodecChoice::Pcma, CodecChoice::Pcmu]),
    );
    net.settle();
    let _ = alice;
    let codec = net
        .alice_events
        .iter()
        .find_map(|(_, e)| match e {
            CallEvent::Answered(m) => Some(m.codec.name.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(codec, "PCMU");
}

#[test]
fn hold_and_resume_from_the_caller() {
    let mut net = Net::new((ALL.to_vec(), None));
    let alice = net.call(ALL);
    answered(&mut net, alice);
    let now = net.now;
    net.alice.set_hold(now, alice, true);
    net.run_for(Duration::from_secs(1));
    assert!(
        net.alice_events
            .iter()
            .any(|(_, e)| *e == CallEvent::Held { by_remote: false })
    );
    assert!(
        net.bob_events
            .iter()
            .any(|(_, _, e)| *e == CallEvent::Held { by_remote: true })
    );
    let bob_media = net
        .bob_events
        .iter()
        .rev()
        .find_map(|(_, _, e)| match e {
            CallEvent::MediaUpdated(m) => Some(m.clone()),
            _ => None,
        })
        .unwrap();
    // Alice sends only: bob receives only (RFC 3264 §8.4).
    assert_eq!(bob_media.direction, Direction::RecvOnly);
    let now = net.now;
    net.alice.set_hold(now, alice, false);
    net.run_for(Duration::from_secs(1));
    assert!(
        net.alice_events
            .iter()
            .any(|(_, e)| *e == CallEvent::Resumed { by_remote: false })
    );
    assert!(
        net.bob_events
            .iter()
            .any(|(_, _, e)| *e == CallEvent::Resumed { by_remote: true })
    );
    // Two re-INVITEs, each ACKed.
    assert_eq!(net.sent(ALICE, "INVITE").len(), 3);
    assert_eq!(net.sent(ALICE, "ACK").len(), 3);
}

#[test]
fn lost_ack_2xx_retransmitted_then_bye_after_64_t1() {
    let mut net = Net::new((ALL.to_vec(), None));
    net.drop_rule = Box::new(|from, line| from == addr(ALICE) && line.starts_with("ACK"));
    let alice = net.call(ALL);
    net.settle();
    let answered_at = net.elapsed();
    let bob = net.bob_incoming();
    let now = net.now;
    net.bob.answer(now, bob, media(50000, ALL));
    net.run_for(Duration::from_secs(40));
    let _ = alice;
    let oks: Vec<Duration> = net
        .sent(BOB, "SIP/2.0 200")
        .iter()
        .map(|t| *t - answered_at)
        .collect();
    // RFC 3261 §13.3.1.4: T1, 2T1, 4T1 ... capped at T2, until 64*T1.
    let ms: Vec<u128> = oks.iter().map(|d| d.as_millis()).collect();
    assert_eq!(
        &ms[..7],
        &[0, 500, 1500, 3500, 7500, 11500, 15500],
        "{ms:?}"
    );
    assert!(ms.iter().all(|m| *m < 32_000));
    // Each 2xx retransmission was re-ACKed by alice (all lost).
    assert_eq!(net.sent(ALICE, "ACK").len(), oks.len());
    assert_eq!(net.bob_ended(), Some((EndReason::Timeout, None)));
    let bye = net.sent(BOB, "BYE");
    assert_eq!(bye.len(), 1);
    assert_eq!((bye[0] - answered_at).as_millis(), 32_000);
}

#[test]
fn lost_invite_is_retransmitted_after_t1() {
    let mut net = Net::new((ALL.to_vec(), None));
    let mut first = true;
    net.drop_rule = Box::new(move |from, line| {
        let drop = first && from == addr(ALICE) && line.starts_with("INVITE");
        if drop {
            first = false;
        }
        drop
    });
    net.call(ALL);
    net.run_for(Duration::from_secs(2));
    let invites = net.sent(ALICE, "INVITE");
    assert_eq!(invites.len(), 2);
    assert_eq!(invites[1].as_millis(), 500);
    net.bob_incoming();
}

#[test]
fn max_calls_gives_486_to_the_next_caller() {
    let mut net = Net::new((ALL.to_vec(), Some(1)));
    net.call(ALL);
    net.settle();
    let second = net.call(ALL);
    net.run_for(Duration::from_secs(1));
    let ended: Vec<_> = net
        .alice_events
        .iter()
        .filter_map(|(_, e)| match e {
            CallEvent::Ended { reason, status } => Some((*reason, *status)),
            _ => None,
        })
        .collect();
    assert_eq!(ended, vec![(EndReason::Rejected, Some(486))]);
    let _ = second;
}

#[test]
fn unknown_dialog_gets_481() {
    let mut net = Net::new((ALL.to_vec(), None));
    let bye = "BYE sip:bob@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx1\r\n\
From: <sip:alice@127.0.0.1>;tag=a\r\nTo: <sip:bob@127.0.0.1>;tag=b\r\nCall-ID: nope\r\nCSeq: 2 BYE\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let now = net.now;
    net.bob.handle_datagram(now, bye.as_bytes(), addr(ALICE));
    let t = net.bob.poll_transmit().unwrap();
    assert!(String::from_utf8_lossy(&t.data).starts_with("SIP/2.0 481 "));
}

#[test]
fn info_dtmf_relay_is_reported() {
    let mut net = Net::new((ALL.to_vec(), None));
    let alice = net.call(ALL);
    answered(&mut net, alice);
    net.settle();
    // An INFO inside the dialog, written by hand with alice's dialog identifiers.
    let call = net.alice.calls().next().unwrap().1;
    let id = call.dialog_id().unwrap().clone();
    let info = format!(
        "INFO sip:bob@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKinfo1\r\n\
From: <sip:alice@127.0.0.1:5060>;tag={}\r\nTo: <sip:bob@127.0.0.1:5070>;tag={}\r\nCall-ID: {}\r\n\
CSeq: 999999 INFO\r\nMax-Forwards: 70\r\nContent-Type: application/dtmf-relay\r\n\r\nSignal=5\r\nDuration=160\r\n",
        id.local_tag, id.remote_tag, id.call_id
    );
    let now = net.now;
    net.bob.handle_datagram(now, info.as_bytes(), addr(ALICE));
    net.settle();
    assert!(
        net.bob_events
            .iter()
            .any(|(_, _, e)| *e == CallEvent::Dtmf { digit: '5' })
    );
    assert!(
        net.wire
            .iter()
            .any(|w| w.from == addr(BOB) && w.first_line.starts_with("SIP/2.0 200"))
    );
}

#[test]
fn many_calls_in_one_user_agent() {
    let mut net = Net::new((ALL.to_vec(), None));
    for _ in 0..200 {
        net.call(&[CodecChoice::Pcmu]);
    }
    net.settle();
    let incoming: Vec<CallHandle> = net
        .bob_events
        .iter()
        .filter_map(|(_, h, e)| matches!(e, CallEvent::Incoming { .. }).then_some(*h))
        .collect();
    assert_eq!(incoming.len(), 200);
    let now = net.now;
    for (i, h) in incoming.iter().enumerate() {
        net.bob.answer(now, *h, media(20000 + 2 * i as u16, ALL));
    }
    net.settle();
    let handles: Vec<CallHandle> = net.alice.calls().map(|(h, _)| h).collect();
    for h in handles {
        let now = net.now;
        net.alice.hangup(now, h);
    }
    net.run_for(Duration::from_secs(40));
    let remote_byes = net
        .bob_events
        .iter()
        .filter(|(_, _, e)| {
            matches!(
                e,
                CallEvent::Ended {
                    reason: EndReason::RemoteBye,
                    ..
                }
            )
        })
        .count();
    assert_eq!(remote_byes, 200);
    assert_eq!(net.alice.calls().count(), 0);
    assert_eq!(net.bob.calls().count(), 0);
}

#[test]
fn glare_both_hold_at_once_491_then_randomised_retries_succeed() {
    let mut net = Net::new((ALL.to_vec(), None));
    let alice = net.call(ALL);
    let bob = answered(&mut net, alice);
    net.settle();
    // Both put the other on hold in the same instant: the re-INVITEs cross.
    let now = net.now;
    net.alice.set_hold(now, alice, true);
    net.bob.set_hold(now, bob, true);
    net.run_for(Duration::from_secs(10));
    // RFC 3261 §14.1: each side answers the crossing re-INVITE with 491 ...
    assert_eq!(net.sent(ALICE, "SIP/2.0 491").len(), 1);
    assert_eq!(net.sent(BOB, "SIP/2.0 491").len(), 1);
    // ... and retries after a random wait: the callee within 2 s, the caller (who owns the
    // Call-ID) after 2.1-4 s, so the retries do not collide again.
    let bob_invites = net.sent(BOB, "INVITE");
    let alice_invites = net.sent(ALICE, "INVITE");
    assert_eq!(bob_invites.len(), 2, "{bob_invites:?}");
    assert_eq!(alice_invites.len(), 3, "{alice_invites:?}"); // the call, the clash, the retry
    assert!(bob_invites[1] - bob_invites[0] <= Duration::from_secs(2));
    let alice_wait = alice_invites[2] - alice_invites[1];
    assert!(alice_wait >= Duration::from_millis(2100) && alice_wait <= Duration::from_secs(4));
    // In the end each holds the other.
    for events in [
        net.alice_events.iter().map(|(_, e)| e).collect::<Vec<_>>(),
        net.bob_events.iter().map(|(_, _, e)| e).collect::<Vec<_>>(),
    ] {
        assert!(events.contains(&&CallEvent::Held { by_remote: false }));
        assert!(events.contains(&&CallEvent::Held { by_remote: true }));
    }
}

#[test]
fn update_with_an_offer_changes_the_media() {
    let mut net = Net::new((ALL.to_vec(), None));
    let alice = net.call(ALL);
    answered(&mut net, alice);
    net.settle();
    let call = net.alice.calls().next().unwrap().1;
    let id = call.dialog_id().unwrap().clone();
    // RFC 3311: an UPDATE carrying a new offer, here a new RTP port and PCMA only.
    let sdp = "v=0\r\no=alice 1 3 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 41000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n";
    let update = format!(
        "UPDATE sip:bob@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKupd1\r\n\
From: <sip:alice@127.0.0.1:5060>;tag={}\r\nTo: <sip:bob@127.0.0.1:5070>;tag={}\r\nCall-ID: {}\r\n\
CSeq: 999999 UPDATE\r\nMax-Forwards: 70\r\nContact: <sip:alice@127.0.0.1:5060>\r\n\
Content-Type: application/sdp\r\n\r\n{sdp}",
        id.local_tag, id.remote_tag, id.call_id
    );
    let now = net.now;
    net.bob.handle_datagram(now, update.as_bytes(), addr(ALICE));
    net.settle();
    let updated = net
        .bob_events
        .iter()
        .rev()
        .find_map(|(_, _, e)| match e {
            CallEvent::MediaUpdated(m) => Some(m.clone()),
            _ => None,
        })
        .expect("bob applied the UPDATE's offer");
    assert_eq!(updated.remote_rtp.port(), 41000);
    assert_eq!(updated.codec.name, "PCMA");
    assert!(
        net.wire
            .iter()
            .any(|w| w.from == addr(BOB) && w.first_line.starts_with("SIP/2.0 200"))
    );
}

#[test]
fn a_2xx_from_a_second_fork_is_acked_and_hung_up() {
    let mut net = Net::new((ALL.to_vec(), None));
    let alice = net.call(ALL);
    answered(&mut net, alice);
    // A forking proxy delivers a second 200 OK from another phone: same transaction, another
    // To tag (RFC 3261 §13.2.2.4). Replay bob's 200 with a different tag.
    let ok = net
        .wire
        .iter()
        .find(|w| w.from == addr(BOB) && w.first_line.starts_with("SIP/2.0 200"))
        .map(|w| String::from_utf8(w.data.clone()).unwrap())
        .expect("bob's 200");
    let bob_tag = net
        .alice
        .call(alice)
        .unwrap()
        .dialog_id()
        .unwrap()
        .remote_tag
        .clone();
    let forked = ok.replace(&format!("tag={bob_tag}"), "tag=second-fork");
    assert_ne!(forked, ok);
    let now = net.now;
    net.alice.handle_datagram(now, forked.as_bytes(), addr(BOB));
    net.settle();
    let acks = net.sent(ALICE, "ACK");
    assert_eq!(acks.len(), 2, "the fork's 200 is ACKed too");
    let bye = net
        .wire
        .iter()
        .find(|w| w.from == addr(ALICE) && w.first_line.starts_with("BYE"))
        .map(|w| String::from_utf8_lossy(&w.data).to_string())
        .expect("the extra dialog is hung up");
    assert!(bye.contains("tag=second-fork"), "{bye}");
    // The first dialog goes on.
    assert!(net.alice.call(alice).unwrap().is_established());
    assert_eq!(net.alice_ended(), None);
}
