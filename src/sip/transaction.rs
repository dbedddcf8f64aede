//! The transaction layer (RFC 3261 §17, with the INVITE fixes of RFC 6026), sans-IO.
//!
//! [`TransactionLayer`] holds every client and server transaction of a user agent. It never
//! touches a socket or a clock: each entry point takes `now`, and the results are pulled with
//! [`TransactionLayer::poll_transmit`], [`TransactionLayer::poll_event`] and
//! [`TransactionLayer::poll_timeout`]. The driver calls [`TransactionLayer::handle_timeout`]
//! when the earliest deadline is reached.
//!
//! Only unreliable transports (UDP) are modelled: request and response retransmission timers
//! always run, and the "linger" timers D, I, J, K use their UDP values.
//!
//! Scaling: transactions live in a `HashMap` by id, with `HashMap` indexes by matching key
//! (RFC 3261 §17.1.3, §17.2.3); timers live in one binary heap with lazy deletion (each
//! transaction remembers the sequence number of the timer armed in each slot; heap entries
//! whose number no longer matches are skipped). Every operation is O(log n).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::headers::BRANCH_COOKIE;
use super::message::{HeaderName, Method, Request, Response};

/// Timer D for unreliable transports: "at least 32 seconds" (RFC 3261 §17.1.1.2).
pub const TIMER_D: Duration = Duration::from_secs(32);
/// A server INVITE transaction sends 100 Trying itself when the TU has not sent a provisional
/// response within 200 ms (RFC 3261 §17.2.1).
pub const AUTO_TRYING_DELAY: Duration = Duration::from_millis(200);

/// The base timer values (RFC 3261 §17.1.1.1, Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, default 4 s.
    pub t2: Duration,
    /// Maximum duration a message stays in the network, default 5 s.
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64*T1: Timers B, F, H, J, L and M.
    fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub data: Vec<u8>,
}

/// Names one transaction for its whole life; never reused by a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId(u64);

impl std::fmt::Display for TransactionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tx{}", self.0)
    }
}

/// What the transaction layer tells the transaction user (UA core, dialogs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionEvent {
    /// Client: a response for our request (provisional or final). For INVITE a 2xx goes up,
    /// and so do later 2xx (retransmissions or forks) while the transaction is Accepted
    /// (RFC 6026 §7.2, Timer M = 64*T1).
    Response {
        id: TransactionId,
        response: Response,
    },
    /// Client: Timer B or F fired; the TU treats it as a 408 (RFC 3261 §8.1.3.1).
    Timeout { id: TransactionId },
    /// Server: a new request (not a retransmission) created a server transaction.
    Request {
        id: TransactionId,
        request: Request,
        source: SocketAddr,
    },
    /// An ACK that belongs to no server transaction the layer absorbs: the ACK for a 2xx
    /// (RFC 3261 §13.3.1.4, §17.2.3; RFC 6026 §7.1), or an ACK matching nothing at all.
    /// Goes to the dialog layer.
    StrayAck {
        request: Request,
        source: SocketAddr,
    },
    /// A response that matches no client transaction (e.g. a 2xx retransmission after
    /// Timer M); the UA core decides (re-ACK, RFC 3261 §13.2.2.4).
    StrayResponse {
        response: Response,
        source: SocketAddr,
    },
    /// Server INVITE: Timer H fired without an ACK for our non-2xx final response
    /// (RFC 3261 §17.2.1).
    AckTimeout { id: TransactionId },
    /// A transaction ended (any reason) and was removed.
    Terminated { id: TransactionId },
}

/// The states of RFC 3261 Figures 5-8 and RFC 6026 (Terminated transactions are removed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionState {
    /// Client INVITE before any response.
    Calling,
    /// Non-INVITE (client or server) before any response.
    Trying,
    Proceeding,
    Completed,
    /// Server INVITE: the ACK for a non-2xx final arrived.
    Confirmed,
    /// INVITE after a 2xx (RFC 6026).
    Accepted,
}

/// Why a call into the layer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    #[error("the request has no top Via with an RFC 3261 branch (z9hG4bK...)")]
    MissingBranch,
    #[error("an ACK creates no transaction (RFC 3261 §17.1.1.3); use send_stateless")]
    AckIsNotATransaction,
    #[error("a client transaction with this branch and method is already running")]
    DuplicateTransaction,
    #[error("no such transaction (never created, or terminated)")]
    UnknownTransaction,
    #[error("{0} is a client transaction")]
    NotAServerTransaction(TransactionId),
    #[error("status code {0} is outside 100-699")]
    InvalidStatus(u16),
    #[error("cannot send a {status} response in state {state:?}")]
    WrongState {
        status: u16,
        state: TransactionState,
    },
}

/// A fresh RFC 3261 branch: the magic cookie and 96 random bits (RFC 3261 §8.1.1.7).
pub fn new_branch() -> String {
    format!(
        "{BRANCH_COOKIE}{:016x}{:08x}",
        fastrand::u64(..),
        fastrand::u32(..)
    )
}

/// A CANCEL for a pending INVITE (RFC 3261 §9.1): same Request-URI, Call-ID, From, To and
/// CSeq number (method CANCEL), a single Via equal to the INVITE's top Via, the same Route
/// header fields, no body.
pub fn build_cancel(invite: &Request) -> Request {
    let h = &invite.headers;
    let mut cancel = Request::new(Method::Cancel, invite.uri.clone());
    if let Some(via) = h.get(&HeaderName::Via) {
        cancel.headers.push(HeaderName::Via, via);
    }
    cancel.headers.push(HeaderName::MaxForwards, "70");
    for route in h.get_all(&HeaderName::Route) {
        cancel.headers.push(HeaderName::Route, route);
    }
    for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
        if let Some(value) = h.get(&name) {
            cancel.headers.push(name, value);
        }
    }
    if let Ok(cseq) = h.cseq() {
        cancel
            .headers
            .push(HeaderName::CSeq, format!("{} CANCEL", cseq.seq));
    }
    cancel
}

/// The ACK a client INVITE transaction sends for a non-2xx final response (RFC 3261
/// §17.1.1.3): the INVITE's Request-URI, Call-ID, From, top Via and Route, the To of the
/// response (with its tag), CSeq number with method ACK, no body.
fn build_ack(invite: &Request, response: &Response) -> Request {
    let h = &invite.headers;
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    if let Some(via) = h.get(&HeaderName::Via) {
        ack.headers.push(HeaderName::Via, via);
    }
    ack.headers.push(HeaderName::MaxForwards, "70");
    for route in h.get_all(&HeaderName::Route) {
        ack.headers.push(HeaderName::Route, route);
    }
    if let Some(from) = h.get(&HeaderName::From) {
        ack.headers.push(HeaderName::From, from);
    }
    let to = response
        .headers
        .get(&HeaderName::To)
        .or_else(|| h.get(&HeaderName::To));
    if let Some(to) = to {
        ack.headers.push(HeaderName::To, to);
    }
    if let Some(call_id) = h.call_id() {
        ack.headers.push(HeaderName::CallId, call_id);
    }
    if let Ok(cseq) = h.cseq() {
        ack.headers
            .push(HeaderName::CSeq, format!("{} ACK", cseq.seq));
    }
    ack
}

/// The 100 Trying a server INVITE transaction may send on its own (RFC 3261 §17.2.1), with
/// the Timestamp copied (RFC 3261 §8.2.6.1).
fn build_trying(request: &Request) -> Vec<u8> {
    let mut trying = Response::for_request(&request.headers, 100);
    let timestamp = HeaderName::Other("Timestamp".into());
    if let Some(ts) = request.headers.get(&timestamp) {
        trying.headers.push(timestamp, ts);
    }
    trying.to_bytes()
}

fn is_rfc3261_branch(branch: &str) -> bool {
    branch.starts_with(BRANCH_COOKIE)
}

/// Client matching (RFC 3261 §17.1.3): top Via branch and CSeq method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    branch: String,
    method: Method,
}

impl ClientKey {
    fn for_response(response: &Response) -> Option<ClientKey> {
        let via = response.headers.top_via().ok()?;
        Some(ClientKey {
            branch: via.branch()?.to_string(),
            method: response.headers.cseq().ok()?.method,
        })
    }
}

/// Server matching (RFC 3261 §17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ServerKey {
    /// Branch, sent-by and method, ACK counting as INVITE.
    Rfc3261 {
        branch: String,
        sent_by: String,
        method: Method,
    },
    /// The fallback for requests whose branch lacks the magic cookie (RFC 2543 peers).
    Rfc2543 {
        request_uri: String,
        to_tag: Option<String>,
        from_tag: Option<String>,
        call_id: String,
        cseq: u32,
        method: Method,
        top_via: String,
    },
}

impl ServerKey {
    /// The key of `request` as if its method were `method` (INVITE for an ACK or a CANCEL
    /// looking for its INVITE).
    fn new(request: &Request, method: Method) -> Option<ServerKey> {
        let h = &request.headers;
        let via = h.top_via().ok()?;
        if let Some(branch) = via.branch().filter(|b| is_rfc3261_branch(b)) {
            return Some(ServerKey::Rfc3261 {
                branch: branch.to_string(),
                sent_by: via.sent_by().to_ascii_lowercase(),
                method,
            });
        }
        Some(ServerKey::Rfc2543 {
            request_uri: request.uri.to_string(),
            to_tag: h.to().ok()?.tag().map(str::to_string),
            from_tag: h.from().ok()?.tag().map(str::to_string),
            call_id: h.call_id()?.to_string(),
            cseq: h.cseq().ok()?.seq,
            method,
            top_via: via.to_string(),
        })
    }

    fn for_request(request: &Request) -> Option<ServerKey> {
        let method = match request.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        ServerKey::new(request, method)
    }
}

/// Merged-request detection (RFC 3261 §8.2.2.2): From tag, Call-ID and CSeq of a request
/// without To tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MergeKey {
    from_tag: String,
    call_id: String,
    cseq: u32,
    method: Method,
}

impl MergeKey {
    fn for_request(request: &Request) -> Option<MergeKey> {
        let h = &request.headers;
        if h.to().ok()?.tag().is_some() {
            return None;
        }
        let cseq = h.cseq().ok()?;
        Some(MergeKey {
            from_tag: h.from().ok()?.tag()?.to_string(),
            call_id: h.call_id()?.to_string(),
            cseq: cseq.seq,
            method: cseq.method,
        })
    }
}

/// The RFC 3261 timers. Each kind lives in one of four slots; a transaction has at most one
/// timer armed per slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    A,
    B,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
    K,
    L,
    M,
    /// The automatic 100 Trying of a server INVITE transaction.
    Trying,
}

const SLOTS: usize = 4;

impl Timer {
    fn slot(self) -> usize {
        match self {
            Timer::A | Timer::E | Timer::G => 0,
            Timer::B | Timer::F | Timer::H => 1,
            Timer::D | Timer::I | Timer::J | Timer::K | Timer::L | Timer::M => 2,
            Timer::Trying => 3,
        }
    }

    /// At the same instant, ending timers go before sending ones: a transaction that times
    /// out at t does not also retransmit at t.
    fn rank(self) -> u8 {
        match self.slot() {
            1 | 2 => 0,
            3 => 1,
            _ => 2,
        }
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct TimerEntry {
    deadline: Instant,
    rank: u8,
    seq: u64,
    id: TransactionId,
    timer: Timer,
}

/// The armed timer of each slot, by sequence number.
type Armed = [Option<u64>; SLOTS];

/// The output side shared by all transactions: the timer heap and the pull queues.
#[derive(Default)]
struct Outputs {
    timers: BinaryHeap<Reverse<TimerEntry>>,
    next_seq: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TransactionEvent>,
}

impl Outputs {
    /// Arms `timer` at `deadline` (replacing whatever was armed in its slot). A deadline
    /// beyond what `Instant` can hold never fires.
    fn arm(
        &mut self,
        armed: &mut Armed,
        id: TransactionId,
        timer: Timer,
        deadline: Option<Instant>,
    ) {
        let Some(deadline) = deadline else {
            armed[timer.slot()] = None;
            return;
        };
        self.next_seq += 1;
        armed[timer.slot()] = Some(self.next_seq);
        self.timers.push(Reverse(TimerEntry {
            deadline,
            rank: timer.rank(),
            seq: self.next_seq,
            id,
            timer,
        }));
    }

    fn send(&mut self, destination: SocketAddr, data: Vec<u8>) {
        self.transmits.push_back(Transmit { destination, data });
    }

    fn event(&mut self, event: TransactionEvent) {
        self.events.push_back(event);
    }
}

fn disarm(armed: &mut Armed, timer: Timer) {
    armed[timer.slot()] = None;
}

/// The next firing of a retransmission timer that fired at `deadline` and is reset to
/// `interval`: anchored to the schedule, so a late driver does not shift it, but never in
/// the past, so a very late driver gets one retransmission, not a burst.
fn next_deadline(deadline: Instant, interval: Duration, now: Instant) -> Option<Instant> {
    match deadline.checked_add(interval) {
        Some(next) if next > now => Some(next),
        _ => now.checked_add(interval),
    }
}

/// Whether a transaction lives on after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Terminate,
}

/// RFC 3261 §17.1.1 (INVITE, with RFC 6026 Accepted) and §17.1.2 (non-INVITE).
#[derive(Debug)]
struct ClientTransaction {
    invite: bool,
    state: TransactionState,
    destination: SocketAddr,
    key: ClientKey,
    /// The request as sent, for retransmissions.
    data: Vec<u8>,
    /// INVITE only: the request, to build the ACK for a non-2xx final (§17.1.1.3).
    invite_request: Option<Request>,
    /// INVITE only: the ACK sent in Completed, resent for each retransmitted final.
    ack: Option<Vec<u8>>,
    /// Current Timer A or E interval.
    interval: Duration,
    armed: Armed,
}

impl ClientTransaction {
    fn on_response(
        &mut self,
        id: TransactionId,
        now: Instant,
        response: Response,
        config: &TimerConfig,
        out: &mut Outputs,
    ) -> Flow {
        use TransactionState::*;
        let status = response.status;
        let provisional = status < 200;
        let success = (200..300).contains(&status);
        if self.invite {
            match self.state {
                // RFC 3261 §17.1.1.2: a provisional stops retransmissions; Timer B only
                // matters in Calling.
                Calling | Proceeding if provisional => {
                    self.state = Proceeding;
                    disarm(&mut self.armed, Timer::A);
                    disarm(&mut self.armed, Timer::B);
                    out.event(TransactionEvent::Response { id, response });
                }
                // RFC 6026 §7.2: a 2xx moves to Accepted, Timer M = 64*T1; the TU ACKs it.
                Calling | Proceeding if success => {
                    self.state = Accepted;
                    disarm(&mut self.armed, Timer::A);
                    disarm(&mut self.armed, Timer::B);
                    out.arm(
                        &mut self.armed,
                        id,
                        Timer::M,
                        now.checked_add(config.timeout()),
                    );
                    out.event(TransactionEvent::Response { id, response });
                }
                // RFC 3261 §17.1.1.2: 300-699 -> Completed, ACK, Timer D.
                Calling | Proceeding => {
                    self.state = Completed;
                    disarm(&mut self.armed, Timer::A);
                    disarm(&mut self.armed, Timer::B);
                    let ack = match &self.invite_request {
                        Some(invite) => build_ack(invite, &response).to_bytes(),
                        None => Vec::new(),
                    };
                    out.send(self.destination, ack.clone());
                    self.ack = Some(ack);
                    out.arm(&mut self.armed, id, Timer::D, now.checked_add(TIMER_D));
                    out.event(TransactionEvent::Response { id, response });
                }
                // RFC 3261 §17.1.1.2: retransmitted finals are ACKed again, not passed up.
                Completed if status >= 300 => {
                    if let Some(ack) = &self.ack {
                        out.send(self.destination, ack.clone());
                    }
                }
                // RFC 6026 §7.2: every 2xx in Accepted goes to the TU. A 2xx after a non-2xx
                // final (a misbehaving fork) goes up too: only the TU can ACK and end it.
                Accepted | Completed if success => {
                    out.event(TransactionEvent::Response { id, response });
                }
                _ => {}
            }
        } else {
            match self.state {
                // RFC 3261 §17.1.2.2.
                Trying | Proceeding if provisional => {
                    self.state = Proceeding;
                    out.event(TransactionEvent::Response { id, response });
                }
                Trying | Proceeding => {
                    self.state = Completed;
                    disarm(&mut self.armed, Timer::E);
                    disarm(&mut self.armed, Timer::F);
                    out.arm(&mut self.armed, id, Timer::K, now.checked_add(config.t4));
                    out.event(TransactionEvent::Response { id, response });
                }
                // Completed: retransmissions are absorbed.
                _ => {}
            }
        }
        Flow::Continue
    }

    fn on_timer(
        &mut self,
        id: TransactionId,
        timer: Timer,
        deadline: Instant,
        now: Instant,
        config: &TimerConfig,
        out: &mut Outputs,
    ) -> Flow {
        use TransactionState::*;
        match (timer, self.state) {
            // RFC 3261 §17.1.1.2: Timer A doubles without a cap.
            (Timer::A, Calling) => {
                out.send(self.destination, self.data.clone());
                self.interval = self.interval.saturating_mul(2);
                let next = next_deadline(deadline, self.interval, now);
                out.arm(&mut self.armed, id, Timer::A, next);
                Flow::Continue
            }
            // RFC 3261 §17.1.2.2: Timer E doubles up to T2 in Trying, is T2 in Proceeding.
            (Timer::E, Trying | Proceeding) => {
                out.send(self.destination, self.data.clone());
                self.interval = if self.state == Trying {
                    self.interval.saturating_mul(2).min(config.t2)
                } else {
                    config.t2
                };
                let next = next_deadline(deadline, self.interval, now);
                out.arm(&mut self.armed, id, Timer::E, next);
                Flow::Continue
            }
            (Timer::B, Calling) | (Timer::F, Trying | Proceeding) => {
                out.event(TransactionEvent::Timeout { id });
                Flow::Terminate
            }
            (Timer::D | Timer::K | Timer::M, _) => Flow::Terminate,
            _ => Flow::Continue,
        }
    }
}

/// RFC 3261 §17.2.1 (INVITE, with RFC 6026 Accepted) and §17.2.2 (non-INVITE).
#[derive(Debug)]
struct ServerTransaction {
    invite: bool,
    state: TransactionState,
    reply_to: SocketAddr,
    key: ServerKey,
    merge_key: Option<MergeKey>,
    /// Created by the layer itself (a 482 for a merged request): the TU never hears of it.
    internal: bool,
    /// The last response sent, resent for request retransmissions.
    last_response: Option<Vec<u8>>,
    /// INVITE only: the automatic 100 Trying, ready to send.
    trying: Option<Vec<u8>>,
    /// The To tag of the final response, for matching RFC 2543 ACKs (§17.2.3).
    final_to_tag: Option<String>,
    /// Current Timer G interval.
    interval: Duration,
    armed: Armed,
}

impl ServerTransaction {
    fn respond(
        &mut self,
        id: TransactionId,
        now: Instant,
        response: Response,
        config: &TimerConfig,
        out: &mut Outputs,
    ) -> Result<(), TransactionError> {
        use TransactionState::*;
        let status = response.status;
        if !(100..=699).contains(&status) {
            return Err(TransactionError::InvalidStatus(status));
        }
        let allowed = match self.state {
            Trying | Proceeding => true,
            // RFC 6026 §7.1: the TU retransmits its 2xx through the Accepted transaction.
            Accepted => (200..300).contains(&status),
            _ => false,
        };
        if !allowed {
            return Err(TransactionError::WrongState {
                status,
                state: self.state,
            });
        }
        let data = response.to_bytes();
        out.send(self.reply_to, data.clone());
        if self.state == Accepted {
            return Ok(());
        }
        self.last_response = Some(data);
        disarm(&mut self.armed, Timer::Trying);
        self.trying = None;
        if status < 200 {
            self.state = Proceeding;
        } else if !self.invite {
            // RFC 3261 §17.2.2: Completed, Timer J = 64*T1 for unreliable transports.
            self.state = Completed;
            out.arm(
                &mut self.armed,
                id,
                Timer::J,
                now.checked_add(config.timeout()),
            );
        } else if status < 300 {
            // RFC 6026 §7.1: Accepted, Timer L = 64*T1.
            self.state = Accepted;
            out.arm(
                &mut self.armed,
                id,
                Timer::L,
                now.checked_add(config.timeout()),
            );
        } else {
            // RFC 3261 §17.2.1: Completed, Timer G = T1 and Timer H = 64*T1.
            self.state = Completed;
            self.final_to_tag = response
                .headers
                .to()
                .ok()
                .and_then(|to| to.tag().map(str::to_string));
            self.interval = config.t1;
            out.arm(&mut self.armed, id, Timer::G, now.checked_add(config.t1));
            out.arm(
                &mut self.armed,
                id,
                Timer::H,
                now.checked_add(config.timeout()),
            );
        }
        Ok(())
    }

    /// A retransmission of the request that created the transaction.
    fn on_retransmission(&mut self, out: &mut Outputs) {
        use TransactionState::*;
        // RFC 3261 §17.2.1: Proceeding resends the last provisional, Completed the final;
        // Confirmed and (RFC 6026 §7.1) Accepted absorb. RFC 3261 §17.2.2: Trying absorbs,
        // Proceeding and Completed resend the last response.
        if matches!(self.state, Proceeding | Completed)
            && let Some(data) = &self.last_response
        {
            out.send(self.reply_to, data.clone());
        }
    }

    /// An ACK matching this INVITE transaction.
    fn on_ack(
        &mut self,
        id: TransactionId,
        now: Instant,
        request: Request,
        source: SocketAddr,
        config: &TimerConfig,
        out: &mut Outputs,
    ) {
        match self.state {
            // RFC 3261 §17.2.1: Confirmed, Timer I = T4; the ACK is absorbed.
            TransactionState::Completed => {
                self.state = TransactionState::Confirmed;
                disarm(&mut self.armed, Timer::G);
                disarm(&mut self.armed, Timer::H);
                out.arm(&mut self.armed, id, Timer::I, now.checked_add(config.t4));
            }
            // RFC 6026 §7.1: an ACK in Accepted is for the 2xx and goes to the TU.
            TransactionState::Accepted if !self.internal => {
                out.event(TransactionEvent::StrayAck { request, source });
            }
            // Confirmed absorbs; an ACK before any final response means nothing.
            _ => {}
        }
    }

    fn on_timer(
        &mut self,
        id: TransactionId,
        timer: Timer,
        deadline: Instant,
        now: Instant,
        config: &TimerConfig,
        out: &mut Outputs,
    ) -> Flow {
        use TransactionState::*;
        match (timer, self.state) {
            // RFC 3261 §17.2.1: 100 Trying when the TU was silent for 200 ms.
            (Timer::Trying, Proceeding) if self.last_response.is_none() => {
                if let Some(trying) = self.trying.take() {
                    out.send(self.reply_to, trying.clone());
                    self.last_response = Some(trying);
                }
                Flow::Continue
            }
            // RFC 3261 §17.2.1: Timer G doubles up to T2.
            (Timer::G, Completed) => {
                if let Some(data) = &self.last_response {
                    out.send(self.reply_to, data.clone());
                }
                self.interval = self.interval.saturating_mul(2).min(config.t2);
                let next = next_deadline(deadline, self.interval, now);
                out.arm(&mut self.armed, id, Timer::G, next);
                Flow::Continue
            }
            (Timer::H, Completed) => {
                if !self.internal {
                    out.event(TransactionEvent::AckTimeout { id });
                }
                Flow::Terminate
            }
            (Timer::I | Timer::J | Timer::L, _) => Flow::Terminate,
            _ => Flow::Continue,
        }
    }
}

#[derive(Debug)]
enum Transaction {
    Client(ClientTransaction),
    Server(ServerTransaction),
}

impl Transaction {
    fn armed(&self) -> &Armed {
        match self {
            Transaction::Client(c) => &c.armed,
            Transaction::Server(s) => &s.armed,
        }
    }

    fn armed_mut(&mut self) -> &mut Armed {
        match self {
            Transaction::Client(c) => &mut c.armed,
            Transaction::Server(s) => &mut s.armed,
        }
    }

    fn state(&self) -> TransactionState {
        match self {
            Transaction::Client(c) => c.state,
            Transaction::Server(s) => s.state,
        }
    }
}

/// Every client and server transaction of a user agent (RFC 3261 §17).
pub struct TransactionLayer {
    config: TimerConfig,
    next_id: u64,
    transactions: HashMap<TransactionId, Transaction>,
    clients: HashMap<ClientKey, TransactionId>,
    servers: HashMap<ServerKey, TransactionId>,
    merges: HashMap<MergeKey, TransactionId>,
    out: Outputs,
}

impl TransactionLayer {
    /// T1 is raised to at least 1 ms and T2 to at least T1, so that timers always advance.
    pub fn new(config: TimerConfig) -> Self {
        let t1 = config.t1.max(Duration::from_millis(1));
        TransactionLayer {
            config: TimerConfig {
                t1,
                t2: config.t2.max(t1),
                t4: config.t4,
            },
            next_id: 0,
            transactions: HashMap::new(),
            clients: HashMap::new(),
            servers: HashMap::new(),
            merges: HashMap::new(),
            out: Outputs::default(),
        }
    }

    pub fn config(&self) -> TimerConfig {
        self.config
    }

    fn allocate_id(&mut self) -> TransactionId {
        self.next_id += 1;
        TransactionId(self.next_id)
    }

    /// Client: starts a transaction and sends the request (RFC 3261 §17.1.1.2, §17.1.2.2).
    /// The request must carry a top Via whose branch starts with `z9hG4bK` (see
    /// [`new_branch`]); an ACK is refused (see [`TransactionLayer::send_stateless`]).
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Request,
        destination: SocketAddr,
    ) -> Result<TransactionId, TransactionError> {
        if request.method == Method::Ack {
            return Err(TransactionError::AckIsNotATransaction);
        }
        let branch = request
            .headers
            .top_via()
            .ok()
            .and_then(|via| via.branch().map(str::to_string))
            .filter(|b| is_rfc3261_branch(b))
            .ok_or(TransactionError::MissingBranch)?;
        let key = ClientKey {
            branch,
            method: request.method.clone(),
        };
        if self.clients.contains_key(&key) {
            return Err(TransactionError::DuplicateTransaction);
        }
        let id = self.allocate_id();
        let invite = request.method == Method::Invite;
        let data = request.to_bytes();
        self.out.send(destination, data.clone());
        let mut tx = ClientTransaction {
            invite,
            state: if invite {
                TransactionState::Calling
            } else {
                TransactionState::Trying
            },
            destination,
            key: key.clone(),
            data,
            invite_request: invite.then_some(request),
            ack: None,
            interval: self.config.t1,
            armed: [None; SLOTS],
        };
        // RFC 3261 §17.1.1.2 (Timers A, B) and §17.1.2.2 (Timers E, F).
        let (retransmit, timeout) = if invite {
            (Timer::A, Timer::B)
        } else {
            (Timer::E, Timer::F)
        };
        let out = &mut self.out;
        out.arm(
            &mut tx.armed,
            id,
            retransmit,
            now.checked_add(self.config.t1),
        );
        let timeout_at = now.checked_add(self.config.timeout());
        out.arm(&mut tx.armed, id, timeout, timeout_at);
        self.clients.insert(key, id);
        self.transactions.insert(id, Transaction::Client(tx));
        self.prune_timers();
        Ok(id)
    }

    /// Sends a request outside any transaction: the ACK for a 2xx, which the TU builds and
    /// retransmits itself (RFC 3261 §13.2.2.4, §17.1.1.3).
    pub fn send_stateless(&mut self, request: Request, destination: SocketAddr) {
        self.out.send(destination, request.to_bytes());
    }

    /// Feeds a received response (the transport already parsed it). Matching: RFC 3261
    /// §17.1.3.
    pub fn receive_response(&mut self, now: Instant, response: Response, source: SocketAddr) {
        let id = ClientKey::for_response(&response).and_then(|key| self.clients.get(&key).copied());
        let Some((id, Transaction::Client(tx))) =
            id.and_then(|id| Some((id, self.transactions.get_mut(&id)?)))
        else {
            self.out
                .event(TransactionEvent::StrayResponse { response, source });
            return;
        };
        if tx.on_response(id, now, response, &self.config, &mut self.out) == Flow::Terminate {
            self.terminate(id);
        }
        self.prune_timers();
    }

    /// Feeds a received request; `reply_to` is where responses go (RFC 3261 §18.2.2, RFC
    /// 3581). Matching: RFC 3261 §17.2.3. Retransmissions are absorbed and answered with the
    /// last response sent (§17.2.1, §17.2.2).
    pub fn receive_request(
        &mut self,
        now: Instant,
        request: Request,
        source: SocketAddr,
        reply_to: SocketAddr,
    ) {
        if request.method == Method::Ack {
            self.receive_ack(now, request, source);
            self.prune_timers();
            return;
        }
        // A request without readable Via, From, To, Call-ID or CSeq cannot be answered.
        let Some(key) = ServerKey::for_request(&request) else {
            return;
        };
        if let Some(id) = self.servers.get(&key).copied() {
            if let Some(Transaction::Server(tx)) = self.transactions.get_mut(&id) {
                tx.on_retransmission(&mut self.out);
            }
            return;
        }
        let merge_key = MergeKey::for_request(&request);
        let merged = merge_key
            .as_ref()
            .is_some_and(|mk| self.merges.contains_key(mk));
        let id = self.allocate_id();
        let invite = request.method == Method::Invite;
        let mut tx = ServerTransaction {
            invite,
            state: if invite {
                TransactionState::Proceeding
            } else {
                TransactionState::Trying
            },
            reply_to,
            key: key.clone(),
            merge_key: if merged { None } else { merge_key.clone() },
            internal: merged,
            last_response: None,
            trying: None,
            final_to_tag: None,
            interval: self.config.t1,
            armed: [None; SLOTS],
        };
        if merged {
            // RFC 3261 §8.2.2.2: a merged request (same From tag, Call-ID and CSeq as an
            // ongoing transaction, reached us by another path) is answered 482.
            let mut response = Response::for_request(&request.headers, 482);
            if let Ok(mut to) = response.headers.to() {
                to.set_tag(&new_branch()[BRANCH_COOKIE.len()..]);
                response.headers.set(HeaderName::To, to.to_string());
            }
            let _ = tx.respond(id, now, response, &self.config, &mut self.out);
        } else {
            if invite {
                tx.trying = Some(build_trying(&request));
                let at = now.checked_add(AUTO_TRYING_DELAY);
                self.out.arm(&mut tx.armed, id, Timer::Trying, at);
            }
            if let Some(mk) = merge_key {
                self.merges.insert(mk, id);
            }
            self.out.event(TransactionEvent::Request {
                id,
                request,
                source,
            });
        }
        self.servers.insert(key, id);
        self.transactions.insert(id, Transaction::Server(tx));
        self.prune_timers();
    }

    /// RFC 3261 §17.2.3: an ACK matches the INVITE server transaction it acknowledges; an
    /// ACK that matches nothing (the ACK for a 2xx) goes to the TU.
    fn receive_ack(&mut self, now: Instant, request: Request, source: SocketAddr) {
        let Some(id) = self.find_ack_transaction(&request) else {
            self.out
                .event(TransactionEvent::StrayAck { request, source });
            return;
        };
        if let Some(Transaction::Server(tx)) = self.transactions.get_mut(&id) {
            tx.on_ack(id, now, request, source, &self.config, &mut self.out);
        }
    }

    fn find_ack_transaction(&self, ack: &Request) -> Option<TransactionId> {
        let key = ServerKey::for_request(ack)?;
        if let Some(id) = self.servers.get(&key) {
            return Some(*id);
        }
        // RFC 2543 matching: the ACK carries the To tag of our response, the INVITE had none.
        let ServerKey::Rfc2543 { to_tag, .. } = &key else {
            return None;
        };
        let ack_tag = to_tag.clone()?;
        let mut untagged = key;
        if let ServerKey::Rfc2543 { to_tag, .. } = &mut untagged {
            *to_tag = None;
        }
        let id = *self.servers.get(&untagged)?;
        match self.transactions.get(&id) {
            Some(Transaction::Server(tx)) if tx.final_to_tag.as_deref() == Some(&ack_tag) => {
                Some(id)
            }
            _ => None,
        }
    }

    /// Server: sends a response within a server transaction (RFC 3261 §17.2.1, §17.2.2). In
    /// Accepted (after a 2xx to an INVITE) only further 2xx are accepted (RFC 6026 §7.1).
    pub fn respond(
        &mut self,
        now: Instant,
        id: TransactionId,
        response: Response,
    ) -> Result<(), TransactionError> {
        let result = match self.transactions.get_mut(&id) {
            Some(Transaction::Server(tx)) if !tx.internal => {
                tx.respond(id, now, response, &self.config, &mut self.out)
            }
            Some(Transaction::Client(_)) => Err(TransactionError::NotAServerTransaction(id)),
            _ => Err(TransactionError::UnknownTransaction),
        };
        self.prune_timers();
        result
    }

    /// Fires every timer due at or before `now`, in deadline order.
    pub fn handle_timeout(&mut self, now: Instant) {
        loop {
            match self.out.timers.peek() {
                Some(Reverse(entry)) if entry.deadline <= now => {}
                _ => break,
            }
            let Some(Reverse(entry)) = self.out.timers.pop() else {
                break;
            };
            let Some(tx) = self.transactions.get_mut(&entry.id) else {
                continue;
            };
            let slot = entry.timer.slot();
            if tx.armed()[slot] != Some(entry.seq) {
                continue;
            }
            tx.armed_mut()[slot] = None;
            let (id, timer, deadline) = (entry.id, entry.timer, entry.deadline);
            let flow = match tx {
                Transaction::Client(c) => {
                    c.on_timer(id, timer, deadline, now, &self.config, &mut self.out)
                }
                Transaction::Server(s) => {
                    s.on_timer(id, timer, deadline, now, &self.config, &mut self.out)
                }
            };
            if flow == Flow::Terminate {
                self.terminate(id);
            }
        }
        self.prune_timers();
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.out.events.pop_front()
    }

    /// The earliest pending deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Stale entries are pruned after every call, so the top is live.
        self.out.timers.peek().map(|Reverse(entry)| entry.deadline)
    }

    /// The INVITE server transaction a CANCEL refers to (RFC 3261 §9.2: matched as in
    /// §17.2.3 with the method taken as INVITE), if still alive.
    pub fn find_invite_for_cancel(&self, cancel: &Request) -> Option<TransactionId> {
        if cancel.method != Method::Cancel {
            return None;
        }
        let key = ServerKey::new(cancel, Method::Invite)?;
        let id = *self.servers.get(&key)?;
        match self.transactions.get(&id) {
            Some(Transaction::Server(tx)) if tx.invite && !tx.internal => Some(id),
            _ => None,
        }
    }

    /// The state of a live transaction.
    pub fn state(&self, id: TransactionId) -> Option<TransactionState> {
        self.transactions.get(&id).map(Transaction::state)
    }

    /// Live transactions (client and server).
    pub fn len(&self) -> usize {
        self.transactions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }

    /// Removes a transaction and its index entries; its heap entries become stale.
    fn terminate(&mut self, id: TransactionId) {
        let Some(tx) = self.transactions.remove(&id) else {
            return;
        };
        let internal = match tx {
            Transaction::Client(c) => {
                if self.clients.get(&c.key) == Some(&id) {
                    self.clients.remove(&c.key);
                }
                false
            }
            Transaction::Server(s) => {
                if self.servers.get(&s.key) == Some(&id) {
                    self.servers.remove(&s.key);
                }
                if let Some(mk) = &s.merge_key
                    && self.merges.get(mk) == Some(&id)
                {
                    self.merges.remove(mk);
                }
                s.internal
            }
        };
        if !internal {
            self.out.event(TransactionEvent::Terminated { id });
        }
    }

    /// Drops stale entries from the top of the timer heap so that `poll_timeout` is exact.
    fn prune_timers(&mut self) {
        while let Some(Reverse(entry)) = self.out.timers.peek() {
            let live = self
                .transactions
                .get(&entry.id)
                .is_some_and(|tx| tx.armed()[entry.timer.slot()] == Some(entry.seq));
            if live {
                break;
            }
            self.out.timers.pop();
        }
    }
}

impl Default for TransactionLayer {
    fn default() -> Self {
        TransactionLayer::new(TimerConfig::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, branch: &str, n: usize) -> Request {
        let text = format!(
            "{method} sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n\
Max-Forwards: 70\r\n\
To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;tag=a{n}\r\n\
Call-ID: call-{n}\r\n\
CSeq: 1 {method}\r\n\r\n"
        );
        Request::parse(text.as_bytes()).unwrap()
    }

    fn answer(req: &Request, status: u16) -> Response {
        let mut r = Response::for_request(&req.headers, status);
        let mut to = r.headers.to().unwrap();
        to.set_tag("b");
        r.headers.set(HeaderName::To, to.to_string());
        r
    }

    /// Drives every timer at its deadline until none is left; returns how many events of
    /// each kind came out.
    fn run_to_end(layer: &mut TransactionLayer, counts: &mut HashMap<&'static str, usize>) {
        while let Some(deadline) = layer.poll_timeout() {
            layer.handle_timeout(deadline);
            drain(layer, counts);
        }
    }

    fn drain(layer: &mut TransactionLayer, counts: &mut HashMap<&'static str, usize>) -> usize {
        let mut transmits = 0;
        while layer.poll_transmit().is_some() {
            transmits += 1;
        }
        while let Some(e) = layer.poll_event() {
            let name = match e {
                TransactionEvent::Response { .. } => "response",
                TransactionEvent::Timeout { .. } => "timeout",
                TransactionEvent::Request { .. } => "request",
                TransactionEvent::StrayAck { .. } => "stray-ack",
                TransactionEvent::StrayResponse { .. } => "stray-response",
                TransactionEvent::AckTimeout { .. } => "ack-timeout",
                TransactionEvent::Terminated { .. } => "terminated",
            };
            *counts.entry(name).or_default() += 1;
        }
        transmits
    }

    #[test]
    fn ten_thousand_concurrent_client_transactions() {
        const N: usize = 10_000;
        let start = Instant::now();
        let peer: SocketAddr = "192.0.2.2:5060".parse().unwrap();
        let mut layer = TransactionLayer::default();
        let mut counts = HashMap::new();
        let mut requests = Vec::with_capacity(N);
        for n in 0..N {
            let method = if n % 2 == 0 { "INVITE" } else { "MESSAGE" };
            let req = request(method, &new_branch(), n);
            layer.send_request(start, req.clone(), peer).unwrap();
            requests.push(req);
        }
        assert_eq!(layer.len(), N);
        assert_eq!(drain(&mut layer, &mut counts), N);
        // Everything is answered at 100 ms, before any retransmission: INVITEs get a 180
        // then alternately a 486 (ACKed by the transaction) or a 200; the rest a 200.
        let t = start + Duration::from_millis(100);
        let mut acks = 0;
        for (n, req) in requests.iter().enumerate() {
            if n % 2 == 0 {
                layer.receive_response(t, answer(req, 180), peer);
                let status = if n % 4 == 0 { 486 } else { 200 };
                acks += usize::from(status == 486);
                layer.receive_response(t, answer(req, status), peer);
            } else {
                layer.receive_response(t, answer(req, 200), peer);
            }
        }
        assert_eq!(drain(&mut layer, &mut counts), acks);
        assert_eq!(counts["response"], N + N / 2);
        run_to_end(&mut layer, &mut counts);
        assert_eq!(counts["terminated"], N);
        assert_eq!(counts.get("timeout"), None);
        assert_eq!(counts.get("stray-response"), None);
        assert_eq!(layer.len(), 0);
        assert!(layer.is_empty());
        assert!(layer.clients.is_empty());
        assert!(layer.out.timers.is_empty(), "no stale timer left behind");
    }

    #[test]
    fn ten_thousand_concurrent_server_transactions() {
        const N: usize = 10_000;
        let start = Instant::now();
        let peer: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        let mut layer = TransactionLayer::default();
        let mut counts = HashMap::new();
        for n in 0..N {
            let method = if n % 2 == 0 { "INVITE" } else { "OPTIONS" };
            let req = request(method, &new_branch(), n);
            layer.receive_request(start, req.clone(), peer, peer);
            // A retransmission is absorbed.
            layer.receive_request(start, req, peer, peer);
        }
        assert_eq!(layer.len(), N);
        assert_eq!(drain(&mut layer, &mut counts), 0);
        assert_eq!(counts["request"], N);
        let ids: Vec<TransactionId> = layer.transactions.keys().copied().collect();
        let t = start + Duration::from_millis(50);
        for id in ids {
            let req = request("OPTIONS", "z9hG4bKx", 0);
            layer.respond(t, id, answer(&req, 200)).unwrap();
        }
        assert_eq!(drain(&mut layer, &mut counts), N);
        run_to_end(&mut layer, &mut counts);
        assert_eq!(counts["terminated"], N);
        assert_eq!(layer.len(), 0);
        assert!(layer.servers.is_empty() && layer.merges.is_empty());
        assert!(layer.out.timers.is_empty());
    }

    #[test]
    fn timers_fire_in_deadline_then_rank_order() {
        let t = Instant::now();
        let mut heap = BinaryHeap::new();
        for (ms, timer, seq) in [(10, Timer::E, 1), (10, Timer::F, 2), (5, Timer::K, 3)] {
            heap.push(Reverse(TimerEntry {
                deadline: t + Duration::from_millis(ms),
                rank: timer.rank(),
                seq,
                id: TransactionId(1),
                timer,
            }));
        }
        let order: Vec<Timer> =
            std::iter::from_fn(|| heap.pop().map(|Reverse(e)| e.timer)).collect();
        assert_eq!(order, [Timer::K, Timer::F, Timer::E]);
    }

    #[test]
    fn zero_timers_are_raised_so_time_advances() {
        let mut layer = TransactionLayer::new(TimerConfig {
            t1: Duration::ZERO,
            t2: Duration::ZERO,
            t4: Duration::ZERO,
        });
        let start = Instant::now();
        layer
            .send_request(
                start,
                request("OPTIONS", "z9hG4bK1", 1),
                "192.0.2.2:5060".parse().unwrap(),
            )
            .unwrap();
        let mut steps = 0;
        while let Some(deadline) = layer.poll_timeout() {
            layer.handle_timeout(deadline);
            steps += 1;
            assert!(steps < 1000);
        }
        assert!(layer.is_empty());
    }
}
