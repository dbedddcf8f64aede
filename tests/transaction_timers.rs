//! The transaction layer on a virtual clock: a start `Instant` plus offsets, driven only
//! through the public API. Every time below is in milliseconds from the start.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use siphon::sip::transaction::{
    TimerConfig, TransactionError, TransactionEvent, TransactionId, TransactionLayer,
    TransactionState, Transmit, build_cancel, new_branch,
};
use siphon::sip::{HeaderName, Method, Request, Response};

const BRANCH: &str = "z9hG4bK776asdhds";

fn alice() -> SocketAddr {
    "192.0.2.1:5060".parse().unwrap()
}

fn bob() -> SocketAddr {
    "192.0.2.2:5060".parse().unwrap()
}

fn request(method: &str, branch: &str, cseq: u32) -> Request {
    let text = format!(
        "{method} sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch={branch}\r\n\
Via: SIP/2.0/UDP proxy.atlanta.example.com;branch=z9hG4bKproxy\r\n\
Route: <sip:p1.example.com;lr>\r\n\
Route: <sip:p2.example.com;lr>\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: {cseq} {method}\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Require: 100rel\r\n\
Timestamp: 54\r\n\
Content-Type: application/sdp\r\n\
\r\n\
v=0\r\n"
    );
    Request::parse(text.as_bytes()).unwrap()
}

fn invite() -> Request {
    request("INVITE", BRANCH, 1)
}

fn options() -> Request {
    request("OPTIONS", BRANCH, 1)
}

fn response(req: &Request, status: u16, to_tag: Option<&str>) -> Response {
    let mut r = Response::for_request(&req.headers, status);
    if let Some(tag) = to_tag {
        let mut to = r.headers.to().unwrap();
        to.set_tag(tag);
        r.headers.set(HeaderName::To, to.to_string());
    }
    r
}

type Stamped<T> = Vec<(u64, T)>;

/// A layer on a virtual clock, with everything it produced, stamped in ms.
struct Harness {
    start: Instant,
    layer: TransactionLayer,
    transmits: Stamped<Transmit>,
    events: Stamped<TransactionEvent>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(TimerConfig::default())
    }

    fn with(config: TimerConfig) -> Harness {
        Harness {
            start: Instant::now(),
            layer: TransactionLayer::new(config),
            transmits: Vec::new(),
            events: Vec::new(),
        }
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    fn drain(&mut self, ms: u64) {
        while let Some(t) = self.layer.poll_transmit() {
            self.transmits.push((ms, t));
        }
        while let Some(e) = self.layer.poll_event() {
            self.events.push((ms, e));
        }
    }

    /// Fires timers exactly at their deadlines, up to and including `end`.
    fn run_until(&mut self, end: u64) {
        while let Some(deadline) = self.layer.poll_timeout() {
            if deadline > self.at(end) {
                break;
            }
            assert!(deadline >= self.start);
            self.layer.handle_timeout(deadline);
            let ms = (deadline - self.start).as_millis() as u64;
            self.drain(ms);
        }
    }

    fn send(&mut self, ms: u64, req: Request) -> TransactionId {
        self.run_until(ms);
        let id = self.layer.send_request(self.at(ms), req, bob()).unwrap();
        self.drain(ms);
        id
    }

    fn receive_response(&mut self, ms: u64, resp: Response) {
        self.run_until(ms);
        self.layer.receive_response(self.at(ms), resp, bob());
        self.drain(ms);
    }

    fn receive_request(&mut self, ms: u64, req: Request) {
        self.run_until(ms);
        self.layer
            .receive_request(self.at(ms), req, alice(), alice());
        self.drain(ms);
    }

    fn respond(&mut self, ms: u64, id: TransactionId, resp: Response) {
        self.run_until(ms);
        self.layer.respond(self.at(ms), id, resp).unwrap();
        self.drain(ms);
    }

    fn transmit_times(&self) -> Vec<u64> {
        self.transmits.iter().map(|(ms, _)| *ms).collect()
    }

    fn take(&mut self) -> (Stamped<Transmit>, Stamped<TransactionEvent>) {
        (
            std::mem::take(&mut self.transmits),
            std::mem::take(&mut self.events),
        )
    }

    /// Runs long past every timer and checks the layer is empty and idle.
    fn finish(&mut self) {
        self.run_until(10_000_000);
        assert_eq!(self.layer.poll_timeout(), None);
        assert_eq!(self.layer.len(), 0);
    }
}

fn parse_sent_request(t: &Transmit) -> Request {
    Request::parse(&t.data).unwrap()
}

fn parse_sent_response(t: &Transmit) -> Response {
    Response::parse(&t.data).unwrap()
}

// 1. INVITE client without answer: Timer A doubles without cap, Timer B = 64*T1.
#[test]
fn invite_client_without_answer_retransmits_then_times_out() {
    let mut h = Harness::new();
    let id = h.send(0, invite());
    assert_eq!(h.layer.state(id), Some(TransactionState::Calling));
    h.finish();
    assert_eq!(h.transmit_times(), [0, 500, 1500, 3500, 7500, 15500, 31500]);
    let sent = invite().to_bytes();
    assert!(h.transmits.iter().all(|(_, t)| t.data == sent));
    assert!(h.transmits.iter().all(|(_, t)| t.destination == bob()));
    assert_eq!(
        h.events,
        [
            (32000, TransactionEvent::Timeout { id }),
            (32000, TransactionEvent::Terminated { id }),
        ]
    );
}

#[test]
fn invite_client_without_answer_custom_t1() {
    let mut h = Harness::with(TimerConfig {
        t1: Duration::from_millis(100),
        ..TimerConfig::default()
    });
    let id = h.send(0, invite());
    h.finish();
    assert_eq!(h.transmit_times(), [0, 100, 300, 700, 1500, 3100, 6300]);
    assert_eq!(
        h.events,
        [
            (6400, TransactionEvent::Timeout { id }),
            (6400, TransactionEvent::Terminated { id }),
        ]
    );
}

#[test]
fn invite_client_provisional_stops_retransmissions_and_timer_b() {
    let mut h = Harness::new();
    let req = invite();
    let id = h.send(0, req.clone());
    h.receive_response(1000, response(&req, 180, Some("b1")));
    assert_eq!(h.layer.state(id), Some(TransactionState::Proceeding));
    // No retransmission and no timeout at the transaction layer in Proceeding.
    h.run_until(1_000_000);
    assert_eq!(h.transmit_times(), [0, 500]);
    assert_eq!(h.events.len(), 1);
    assert_eq!(h.layer.poll_timeout(), None);
    assert_eq!(h.layer.len(), 1);
    // A final response later still completes it.
    h.receive_response(1_000_000, response(&req, 486, Some("b1")));
    h.finish();
    assert_eq!(
        h.events.last(),
        Some(&(1_032_000, TransactionEvent::Terminated { id }))
    );
}

// 2. Non-INVITE client without answer: Timer E doubles up to T2, Timer F = 64*T1.
#[test]
fn non_invite_client_without_answer_caps_at_t2() {
    let mut h = Harness::new();
    let id = h.send(0, options());
    assert_eq!(h.layer.state(id), Some(TransactionState::Trying));
    h.finish();
    assert_eq!(
        h.transmit_times(),
        [
            0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
    );
    assert_eq!(
        h.events,
        [
            (32000, TransactionEvent::Timeout { id }),
            (32000, TransactionEvent::Terminated { id }),
        ]
    );
}

#[test]
fn non_invite_client_after_provisional_retransmits_every_t2() {
    let mut h = Harness::new();
    let req = options();
    let id = h.send(0, req.clone());
    let trying = response(&req, 100, None);
    h.receive_response(200, trying.clone());
    assert_eq!(h.layer.state(id), Some(TransactionState::Proceeding));
    h.finish();
    // RFC 3261 §17.1.2.2: the pending Timer E fires at 500 ms, then every T2.
    assert_eq!(
        h.transmit_times(),
        [0, 500, 4500, 8500, 12500, 16500, 20500, 24500, 28500]
    );
    assert_eq!(
        h.events,
        [
            (
                200,
                TransactionEvent::Response {
                    id,
                    response: trying
                }
            ),
            (32000, TransactionEvent::Timeout { id }),
            (32000, TransactionEvent::Terminated { id }),
        ]
    );
}

#[test]
fn non_invite_client_custom_timers() {
    let mut h = Harness::with(TimerConfig {
        t1: Duration::from_millis(100),
        t2: Duration::from_millis(1000),
        t4: Duration::from_millis(2000),
    });
    let id = h.send(0, options());
    h.finish();
    assert_eq!(
        h.transmit_times(),
        [0, 100, 300, 700, 1500, 2500, 3500, 4500, 5500]
    );
    assert_eq!(h.events[0], (6400, TransactionEvent::Timeout { id }));
}

// 3. Non-INVITE client final response: passed up once, duplicates absorbed, Timer K = T4.
#[test]
fn non_invite_client_final_response_then_timer_k() {
    let mut h = Harness::new();
    let req = options();
    let id = h.send(0, req.clone());
    let ok = response(&req, 200, Some("b1"));
    h.receive_response(700, ok.clone());
    assert_eq!(h.layer.state(id), Some(TransactionState::Completed));
    h.receive_response(900, ok.clone());
    h.receive_response(1000, response(&req, 100, None));
    h.finish();
    assert_eq!(h.transmit_times(), [0, 500]);
    assert_eq!(
        h.events,
        [
            (700, TransactionEvent::Response { id, response: ok }),
            (5700, TransactionEvent::Terminated { id }),
        ]
    );
}

// 4. INVITE client non-2xx final: ACK built by the transaction, resent for retransmissions.
#[test]
fn invite_client_486_is_acked_and_retransmissions_reacked() {
    let mut h = Harness::new();
    let req = invite();
    let id = h.send(0, req.clone());
    h.receive_response(100, response(&req, 100, None));
    let busy = response(&req, 486, Some("busy-tag"));
    h.receive_response(2000, busy.clone());
    assert_eq!(h.layer.state(id), Some(TransactionState::Completed));
    h.receive_response(2500, busy.clone());
    h.receive_response(2600, response(&req, 180, Some("busy-tag")));
    h.finish();

    let (transmits, events) = h.take();
    let times: Vec<u64> = transmits.iter().map(|(ms, _)| *ms).collect();
    assert_eq!(times, [0, 2000, 2500]);
    assert_eq!(transmits[1].1, transmits[2].1);
    assert_eq!(transmits[1].1.destination, bob());

    let ack = parse_sent_request(&transmits[1].1);
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, req.uri);
    let vias = ack.headers.vias().unwrap();
    assert_eq!(vias.len(), 1);
    assert_eq!(vias[0].branch(), Some(BRANCH));
    assert_eq!(vias[0], req.headers.top_via().unwrap());
    assert_eq!(ack.headers.to().unwrap().tag(), Some("busy-tag"));
    assert_eq!(
        ack.headers.get(&HeaderName::To),
        busy.headers.get(&HeaderName::To)
    );
    assert_eq!(
        ack.headers.get(&HeaderName::From),
        req.headers.get(&HeaderName::From)
    );
    assert_eq!(ack.headers.call_id(), req.headers.call_id());
    let cseq = ack.headers.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (1, Method::Ack));
    let routes: Vec<&str> = ack.headers.get_all(&HeaderName::Route).collect();
    assert_eq!(
        routes,
        ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    );
    assert_eq!(ack.headers.get(&HeaderName::MaxForwards), Some("70"));
    assert!(ack.body.is_empty());
    assert!(!ack.headers.contains(&HeaderName::Contact));
    assert!(!ack.headers.contains(&HeaderName::Require));

    assert_eq!(events.len(), 3, "{events:?}");
    assert!(
        matches!(&events[0], (100, TransactionEvent::Response { response, .. }) if response.status == 100)
    );
    assert_eq!(
        events[1],
        (2000, TransactionEvent::Response { id, response: busy })
    );
    // Timer D = 32 s.
    assert_eq!(events[2], (34000, TransactionEvent::Terminated { id }));
}

// 5. INVITE client 2xx: Accepted (RFC 6026), every 2xx passed up, Timer M = 64*T1, no ACK.
#[test]
fn invite_client_2xx_accepted_passes_every_2xx_up() {
    let mut h = Harness::new();
    let req = invite();
    let id = h.send(0, req.clone());
    let ok = response(&req, 200, Some("fork-1"));
    let ok_fork = response(&req, 200, Some("fork-2"));
    h.receive_response(1000, ok.clone());
    assert_eq!(h.layer.state(id), Some(TransactionState::Accepted));
    h.receive_response(1500, ok.clone());
    h.receive_response(1600, ok_fork.clone());
    h.receive_response(1700, response(&req, 486, Some("fork-3")));
    h.run_until(40_000);
    // After Timer M, a 2xx matches nothing: the UA core re-ACKs it.
    h.receive_response(40_000, ok.clone());
    h.finish();

    assert_eq!(h.transmit_times(), [0, 500]);
    assert_eq!(
        h.events,
        [
            (
                1000,
                TransactionEvent::Response {
                    id,
                    response: ok.clone()
                }
            ),
            (
                1500,
                TransactionEvent::Response {
                    id,
                    response: ok.clone()
                }
            ),
            (
                1600,
                TransactionEvent::Response {
                    id,
                    response: ok_fork
                }
            ),
            (33000, TransactionEvent::Terminated { id }),
            (
                40000,
                TransactionEvent::StrayResponse {
                    response: ok,
                    source: bob()
                }
            ),
        ]
    );
}

// 6. Server non-INVITE: Trying absorbs, Completed resends, Timer J = 64*T1.
#[test]
fn non_invite_server_absorbs_and_resends() {
    let mut h = Harness::new();
    let req = options();
    h.receive_request(0, req.clone());
    let (_, events) = h.take();
    let [
        (
            0,
            TransactionEvent::Request {
                id,
                request,
                source,
            },
        ),
    ] = events.as_slice()
    else {
        panic!("{events:?}")
    };
    let id = *id;
    assert_eq!(request, &req);
    assert_eq!(*source, alice());
    assert_eq!(h.layer.state(id), Some(TransactionState::Trying));
    // A retransmission in Trying gets nothing.
    h.receive_request(300, req.clone());
    assert!(h.transmits.is_empty() && h.events.is_empty());
    let ok = response(&req, 200, Some("b1"));
    h.respond(1000, id, ok.clone());
    assert_eq!(h.layer.state(id), Some(TransactionState::Completed));
    h.receive_request(2000, req.clone());
    h.receive_request(20_000, req.clone());
    // A second final is refused.
    assert_eq!(
        h.layer.respond(h.at(20_000), id, response(&req, 500, None)),
        Err(TransactionError::WrongState {
            status: 500,
            state: TransactionState::Completed
        })
    );
    h.run_until(40_000);
    assert_eq!(h.transmit_times(), [1000, 2000, 20_000]);
    assert!(h.transmits.iter().all(|(_, t)| t.data == ok.to_bytes()));
    assert!(h.transmits.iter().all(|(_, t)| t.destination == alice()));
    assert_eq!(h.events, [(33_000, TransactionEvent::Terminated { id })]);
    assert_eq!(h.layer.len(), 0);
    // After Timer J the same request is new again.
    h.receive_request(40_000, req.clone());
    assert!(matches!(
        h.events.last(),
        Some((40_000, TransactionEvent::Request { .. }))
    ));
}

#[test]
fn non_invite_server_proceeding_resends_provisional() {
    let mut h = Harness::new();
    let req = request("REGISTER", BRANCH, 7);
    h.receive_request(0, req.clone());
    let (_, events) = h.take();
    let TransactionEvent::Request { id, .. } = events[0].1 else {
        panic!()
    };
    let trying = response(&req, 100, None);
    h.respond(10, id, trying.clone());
    assert_eq!(h.layer.state(id), Some(TransactionState::Proceeding));
    h.receive_request(600, req.clone());
    assert_eq!(h.transmit_times(), [10, 600]);
    assert_eq!(h.transmits[1].1.data, trying.to_bytes());
    h.respond(700, id, response(&req, 200, Some("t")));
    h.finish();
    assert_eq!(h.events, [(32_700, TransactionEvent::Terminated { id })]);
}

fn new_server_invite(h: &mut Harness, ms: u64, req: &Request) -> TransactionId {
    h.receive_request(ms, req.clone());
    match h.events.pop() {
        Some((t, TransactionEvent::Request { id, request, .. })) if t == ms => {
            assert_eq!(&request, req);
            id
        }
        other => panic!("{other:?}"),
    }
}

// 7. Server INVITE: automatic 100, Timer G up to T2, ACK -> Confirmed, Timer I = T4.
#[test]
fn invite_server_auto_trying_then_486_until_ack() {
    let mut h = Harness::new();
    let req = invite();
    let id = new_server_invite(&mut h, 0, &req);
    assert_eq!(h.layer.state(id), Some(TransactionState::Proceeding));
    h.run_until(199);
    assert!(h.transmits.is_empty());
    h.run_until(200);
    assert_eq!(h.transmit_times(), [200]);
    let trying = parse_sent_response(&h.transmits[0].1);
    assert_eq!(trying.status, 100);
    assert_eq!(trying.headers.to().unwrap().tag(), None);
    assert_eq!(trying.headers.vias().unwrap(), req.headers.vias().unwrap());
    assert_eq!(trying.headers.get_named("Timestamp"), Some("54"));
    assert_eq!(h.transmits[0].1.destination, alice());
    // A retransmitted INVITE gets the last provisional again.
    h.receive_request(300, req.clone());
    assert_eq!(h.transmit_times(), [200, 300]);
    assert_eq!(h.transmits[1].1, h.transmits[0].1);

    let busy = response(&req, 486, Some("u1"));
    h.respond(1000, id, busy.clone());
    assert_eq!(h.layer.state(id), Some(TransactionState::Completed));
    h.receive_request(3000, req.clone()); // retransmitted INVITE: resend the 486
    h.run_until(10_000);
    let mut ack = request("ACK", BRANCH, 1);
    ack.headers
        .set(HeaderName::To, busy.headers.get(&HeaderName::To).unwrap());
    h.receive_request(10_000, ack.clone());
    assert_eq!(h.layer.state(id), Some(TransactionState::Confirmed));
    h.receive_request(10_100, ack.clone()); // absorbed too
    h.receive_request(10_200, req.clone()); // absorbed in Confirmed
    h.finish();

    assert_eq!(
        h.transmit_times(),
        [200, 300, 1000, 1500, 2500, 3000, 4500, 8500]
    );
    assert!(
        h.transmits[2..]
            .iter()
            .all(|(_, t)| t.data == busy.to_bytes())
    );
    // No event for the ACKs; Timer I = T4 after the first ACK.
    assert_eq!(h.events, [(15_000, TransactionEvent::Terminated { id })]);
}

#[test]
fn invite_server_without_ack_times_out_with_timer_h() {
    let mut h = Harness::new();
    let req = invite();
    let id = new_server_invite(&mut h, 0, &req);
    h.respond(50, id, response(&req, 180, Some("u1")));
    h.respond(1000, id, response(&req, 603, Some("u1")));
    h.finish();
    // The TU's 180 came first: no automatic 100.
    assert_eq!(
        h.transmit_times(),
        [
            50, 1000, 1500, 2500, 4500, 8500, 12500, 16500, 20500, 24500, 28500, 32500
        ]
    );
    assert_eq!(
        h.events,
        [
            (33_000, TransactionEvent::AckTimeout { id }),
            (33_000, TransactionEvent::Terminated { id }),
        ]
    );
}

#[test]
fn invite_server_timer_g_with_custom_t1() {
    let mut h = Harness::with(TimerConfig {
        t1: Duration::from_millis(100),
        t2: Duration::from_millis(400),
        t4: Duration::from_millis(1000),
    });
    let req = invite();
    let id = new_server_invite(&mut h, 0, &req);
    h.respond(0, id, response(&req, 404, Some("u1")));
    h.finish();
    // G: 100, 200, 400, 400, ...; H at 6.4 s.
    let expected: Vec<u64> = [0, 100, 300]
        .into_iter()
        .chain((700..6400).step_by(400))
        .collect();
    assert_eq!(h.transmit_times(), expected);
    assert_eq!(h.events[0], (6400, TransactionEvent::AckTimeout { id }));
}

// 8. Server INVITE 2xx: Accepted (RFC 6026); ACK goes up, INVITE retransmissions absorbed.
#[test]
fn invite_server_2xx_accepted() {
    let mut h = Harness::new();
    let req = invite();
    let id = new_server_invite(&mut h, 0, &req);
    let ok = response(&req, 200, Some("u1"));
    h.respond(100, id, ok.clone());
    assert_eq!(h.layer.state(id), Some(TransactionState::Accepted));
    h.receive_request(500, req.clone());
    // The TU retransmits its 2xx (RFC 3261 §13.3.1.4) through the transaction.
    h.respond(600, id, ok.clone());
    assert_eq!(
        h.layer
            .respond(h.at(700), id, response(&req, 486, Some("u1"))),
        Err(TransactionError::WrongState {
            status: 486,
            state: TransactionState::Accepted
        })
    );
    let mut ack = request("ACK", "z9hG4bKnewbranch", 1);
    ack.headers
        .set(HeaderName::To, ok.headers.get(&HeaderName::To).unwrap());
    h.receive_request(800, ack.clone());
    // An ACK reusing the INVITE's branch is for the 2xx too (RFC 6026 §7.1).
    let mut same_branch_ack = request("ACK", BRANCH, 1);
    same_branch_ack
        .headers
        .set(HeaderName::To, ok.headers.get(&HeaderName::To).unwrap());
    h.receive_request(900, same_branch_ack.clone());
    h.finish();

    assert_eq!(h.transmit_times(), [100, 600]);
    assert!(h.transmits.iter().all(|(_, t)| t.data == ok.to_bytes()));
    assert_eq!(
        h.events,
        [
            (
                800,
                TransactionEvent::StrayAck {
                    request: ack,
                    source: alice()
                }
            ),
            (
                900,
                TransactionEvent::StrayAck {
                    request: same_branch_ack,
                    source: alice()
                }
            ),
            (32_100, TransactionEvent::Terminated { id }),
        ]
    );
}

// 9. CANCEL: its own transaction, finds its INVITE; build_cancel copies the right headers.
#[test]
fn cancel_matches_its_invite() {
    let mut h = Harness::new();
    let req = invite();
    let invite_id = new_server_invite(&mut h, 0, &req);
    let cancel = build_cancel(&req);
    h.receive_request(1000, cancel.clone());
    let Some((1000, TransactionEvent::Request { id: cancel_id, .. })) = h.events.pop() else {
        panic!("{:?}", h.events)
    };
    assert_ne!(cancel_id, invite_id);
    assert_eq!(h.layer.find_invite_for_cancel(&cancel), Some(invite_id));
    // Another branch, or a non-CANCEL, finds nothing.
    assert_eq!(
        h.layer
            .find_invite_for_cancel(&build_cancel(&request("INVITE", "z9hG4bKother", 1))),
        None
    );
    assert_eq!(h.layer.find_invite_for_cancel(&req), None);
    h.respond(1000, cancel_id, response(&cancel, 200, Some("u1")));
    h.respond(1000, invite_id, response(&req, 487, Some("u1")));
    let mut ack = request("ACK", BRANCH, 1);
    ack.headers
        .set(HeaderName::To, "Bob <sip:bob@biloxi.example.com>;tag=u1");
    h.receive_request(1100, ack);
    h.finish();
    assert!(
        h.events
            .iter()
            .all(|(_, e)| matches!(e, TransactionEvent::Terminated { .. }))
    );
    assert_eq!(h.events.len(), 2);
    // After termination the INVITE is gone.
    assert_eq!(h.layer.find_invite_for_cancel(&cancel), None);
}

#[test]
fn build_cancel_headers() {
    let req = invite();
    let cancel = build_cancel(&req);
    assert_eq!(cancel.method, Method::Cancel);
    assert_eq!(cancel.uri, req.uri);
    let vias = cancel.headers.vias().unwrap();
    assert_eq!(vias, [req.headers.top_via().unwrap()]);
    for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
        assert_eq!(cancel.headers.get(&name), req.headers.get(&name));
    }
    let cseq = cancel.headers.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (1, Method::Cancel));
    let routes: Vec<&str> = cancel.headers.get_all(&HeaderName::Route).collect();
    let orig: Vec<&str> = req.headers.get_all(&HeaderName::Route).collect();
    assert_eq!(routes, orig);
    assert_eq!(cancel.headers.get(&HeaderName::MaxForwards), Some("70"));
    assert!(!cancel.headers.contains(&HeaderName::Require));
    assert!(!cancel.headers.contains(&HeaderName::Contact));
    assert!(cancel.body.is_empty());
    // It parses back, and it is a separate client transaction from the INVITE.
    Request::parse(&cancel.to_bytes()).unwrap();
    let mut h = Harness::new();
    let invite_id = h.send(0, req.clone());
    let cancel_id = h.send(100, cancel.clone());
    assert_ne!(invite_id, cancel_id);
    h.receive_response(200, response(&cancel, 200, Some("u1")));
    assert!(matches!(&h.events[0], (_, TransactionEvent::Response { id, .. }) if *id == cancel_id));
    assert_eq!(h.layer.state(invite_id), Some(TransactionState::Calling));
}

// 10. Garbage, strays and misuse: no panic, sensible answers.
#[test]
fn strays_and_misuse() {
    let mut h = Harness::new();
    let req = invite();
    // Nothing is running.
    let ok = response(&req, 200, Some("x"));
    h.receive_response(0, ok.clone());
    let ack = request("ACK", BRANCH, 1);
    h.receive_request(0, ack.clone());
    assert_eq!(
        h.events,
        [
            (
                0,
                TransactionEvent::StrayResponse {
                    response: ok,
                    source: bob()
                }
            ),
            (
                0,
                TransactionEvent::StrayAck {
                    request: ack,
                    source: alice()
                }
            ),
        ]
    );
    // Responses without Via or CSeq are strays too; requests without Via are dropped.
    let mut bare = response(&req, 180, None);
    bare.headers.remove(&HeaderName::Via);
    h.receive_response(0, bare);
    let mut no_cseq = response(&req, 180, None);
    no_cseq.headers.remove(&HeaderName::CSeq);
    h.receive_response(0, no_cseq);
    let mut no_via = options();
    no_via.headers.remove(&HeaderName::Via);
    h.receive_request(0, no_via.clone());
    assert_eq!(h.events.len(), 4);
    assert_eq!(h.layer.len(), 0);

    // Misuse of the client API.
    let t = h.at(0);
    assert_eq!(
        h.layer.send_request(t, no_via, bob()),
        Err(TransactionError::MissingBranch)
    );
    assert_eq!(
        h.layer
            .send_request(t, request("OPTIONS", "1234", 1), bob()),
        Err(TransactionError::MissingBranch)
    );
    assert_eq!(
        h.layer.send_request(t, request("ACK", BRANCH, 1), bob()),
        Err(TransactionError::AckIsNotATransaction)
    );
    let client = h.layer.send_request(t, req.clone(), bob()).unwrap();
    assert_eq!(
        h.layer.send_request(t, req.clone(), bob()),
        Err(TransactionError::DuplicateTransaction)
    );
    // Misuse of the server API.
    assert_eq!(
        h.layer.respond(t, client, response(&req, 200, None)),
        Err(TransactionError::NotAServerTransaction(client))
    );
    h.receive_request(0, options());
    let Some((_, TransactionEvent::Request { id: server, .. })) = h.events.pop() else {
        panic!()
    };
    assert_eq!(
        h.layer.respond(t, server, response(&req, 99, None)),
        Err(TransactionError::InvalidStatus(99))
    );
    assert_eq!(
        h.layer.respond(t, server, response(&req, 700, None)),
        Err(TransactionError::InvalidStatus(700))
    );
    h.respond(0, server, response(&options(), 200, None));
    h.finish();
    assert_eq!(
        h.layer
            .respond(h.at(100_000), server, response(&req, 200, None)),
        Err(TransactionError::UnknownTransaction)
    );
    // Time going backwards, or a timeout call with nothing due, changes nothing.
    h.layer.handle_timeout(h.start);
    h.layer.handle_timeout(h.at(5_000_000));
    assert_eq!(h.layer.poll_transmit(), None);
    assert_eq!(h.layer.poll_event(), None);
    h.layer.send_stateless(request("ACK", BRANCH, 1), bob());
    assert_eq!(h.layer.poll_transmit().unwrap().destination, bob());
}

#[test]
fn a_late_driver_gets_one_retransmission_not_a_burst() {
    let mut h = Harness::new();
    let id = h.send(0, options());
    // The driver wakes up 10 s late: Timer E fires once, Timer F is still pending.
    h.layer.handle_timeout(h.at(10_000));
    h.drain(10_000);
    assert_eq!(h.transmit_times(), [0, 10_000]);
    // The schedule resumes from the late firing (interval now 1 s).
    assert_eq!(h.layer.poll_timeout(), Some(h.at(11_000)));
    // Very late: the pending retransmission and Timer F both fire, in deadline order.
    h.layer.handle_timeout(h.at(100_000));
    h.drain(100_000);
    assert_eq!(h.transmit_times(), [0, 10_000, 100_000]);
    assert_eq!(
        h.events,
        [
            (100_000, TransactionEvent::Timeout { id }),
            (100_000, TransactionEvent::Terminated { id }),
        ]
    );
    assert_eq!(h.layer.poll_timeout(), None);
}

#[test]
fn merged_request_gets_482() {
    let mut h = Harness::new();
    let req = invite();
    let id = new_server_invite(&mut h, 0, &req);
    // The same request forked to us along another path (RFC 3261 §8.2.2.2).
    let mut other_path = req.clone();
    other_path.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP proxy2.example.com;branch=z9hG4bKpath2",
    );
    h.receive_request(10, other_path.clone());
    h.receive_request(20, other_path.clone());
    assert_eq!(h.transmit_times(), [10, 20]);
    let loop_detected = parse_sent_response(&h.transmits[0].1);
    assert_eq!(loop_detected.status, 482);
    let tag = loop_detected
        .headers
        .to()
        .unwrap()
        .tag()
        .unwrap()
        .to_string();
    assert!(h.events.is_empty(), "the TU never hears of it");
    let mut ack = request("ACK", "z9hG4bKpath2", 1);
    ack.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP proxy2.example.com;branch=z9hG4bKpath2",
    );
    ack.headers.set(
        HeaderName::To,
        format!("Bob <sip:bob@biloxi.example.com>;tag={tag}"),
    );
    h.receive_request(30, ack);
    h.respond(40, id, response(&req, 486, Some("u1")));
    h.finish();
    assert_eq!(h.transmit_times()[..3], [10, 20, 40]);
    assert_eq!(
        h.events,
        [
            (32_040, TransactionEvent::AckTimeout { id }),
            (32_040, TransactionEvent::Terminated { id }),
        ]
    );
}

#[test]
fn rfc2543_requests_match_without_cookie() {
    let mut h = Harness::new();
    let req = request("INVITE", "legacy1", 5);
    let id = new_server_invite(&mut h, 0, &req);
    h.receive_request(100, req.clone());
    assert!(h.events.is_empty());
    h.respond(150, id, response(&req, 404, Some("t404")));
    // The ACK (RFC 2543: no branch guarantees) carries our To tag.
    let mut ack = request("ACK", "legacy1", 5);
    ack.headers
        .set(HeaderName::To, "Bob <sip:bob@biloxi.example.com>;tag=t404");
    h.receive_request(400, ack.clone());
    assert_eq!(h.layer.state(id), Some(TransactionState::Confirmed));
    // An ACK with another To tag is not for us.
    let mut other = ack.clone();
    other
        .headers
        .set(HeaderName::To, "Bob <sip:bob@biloxi.example.com>;tag=zzz");
    h.receive_request(500, other.clone());
    h.finish();
    assert_eq!(h.transmit_times(), [150]);
    assert_eq!(
        h.events,
        [
            (
                500,
                TransactionEvent::StrayAck {
                    request: other,
                    source: alice()
                }
            ),
            (5400, TransactionEvent::Terminated { id }),
        ]
    );
}

#[test]
fn branches_are_fresh_and_marked() {
    let a = new_branch();
    let b = new_branch();
    assert!(a.starts_with("z9hG4bK") && a.len() >= 7 + 16);
    assert_ne!(a, b);
}

/// A random mix of everything, including nonsense, against the same few keys.
#[test]
fn random_garbage_ordering_never_panics() {
    let mut h = Harness::with(TimerConfig {
        t1: Duration::from_millis(50),
        t2: Duration::from_millis(200),
        t4: Duration::from_millis(300),
    });
    let branches = ["z9hG4bKa", "z9hG4bKb", "legacy", "z9hG4bKc"];
    let methods = ["INVITE", "OPTIONS", "CANCEL", "ACK", "BYE"];
    let mut rng = fastrand::Rng::with_seed(7);
    let mut now = 0;
    let mut ids = Vec::new();
    for _ in 0..20_000 {
        now += rng.u64(0..40);
        let branch = branches[rng.usize(..branches.len())];
        let method = methods[rng.usize(..methods.len())];
        let req = request(method, branch, rng.u32(1..3));
        let t = h.at(now);
        match rng.u8(0..7) {
            0 => {
                if let Ok(id) = h.layer.send_request(t, req, bob()) {
                    ids.push(id);
                }
            }
            1 | 2 => {
                let status = [100, 180, 200, 486, 603][rng.usize(..5)];
                let tag = ["a", "b"][rng.usize(..2)];
                h.layer
                    .receive_response(t, response(&req, status, Some(tag)), bob());
            }
            3 => h.layer.receive_request(t, req, alice(), alice()),
            4 if !ids.is_empty() => {
                let id = ids[rng.usize(..ids.len())];
                let status = [100, 180, 200, 486][rng.usize(..4)];
                let _ = h.layer.respond(t, id, response(&req, status, Some("s")));
            }
            5 => {
                let _ = h.layer.find_invite_for_cancel(&build_cancel(&req));
            }
            _ => h.layer.handle_timeout(t),
        }
        if let Some(deadline) = h.layer.poll_timeout() {
            assert!(deadline >= h.start);
        }
        while h.layer.poll_transmit().is_some() {}
        while let Some(e) = h.layer.poll_event() {
            if let TransactionEvent::Request { id, .. } = e {
                ids.push(id);
            }
        }
    }
    // Answer every server transaction still waiting and every client INVITE left in
    // Proceeding (which has no timer of its own), then everything ends.
    let t = h.at(now);
    for id in ids {
        let _ = h
            .layer
            .respond(t, id, response(&invite(), 500, Some("end")));
    }
    for branch in branches {
        for method in methods {
            for seq in 1..3 {
                let req = request(method, branch, seq);
                h.layer
                    .receive_response(t, response(&req, 500, Some("end")), bob());
            }
        }
    }
    h.layer.handle_timeout(h.at(now + 1_000_000));
    h.layer.handle_timeout(h.at(now + 2_000_000));
    assert_eq!(h.layer.len(), 0);
    assert_eq!(h.layer.poll_timeout(), None);
}
