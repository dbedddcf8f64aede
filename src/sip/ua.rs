//! The user agent core, sans-IO: datagrams and time in; datagrams, events and the next
//! deadline out. It owns the transaction layer and the registration, answers requests
//! outside calls (RFC 3261 §8.2, §11) and rejects malformed ones (RFC 3261 §21.4.1).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use super::call::{Call, CallEvent, CallOutput, EndReason, IncomingCall, OutgoingCall, Purpose};
use super::dialog::DialogId;
use super::headers::NameAddr;
use super::message::{HeaderName, Message, Method, ParseError, Request, Response, is_keepalive};
use super::registration::{Registration, RegistrationEvent};
use super::transaction::{
    TimerConfig, TransactionEvent, TransactionId, TransactionLayer, Transmit, build_cancel,
    new_branch,
};
use super::transport::{reply_address, stamp_received, stamp_received_headers};
use super::uas::{ACCEPTED_TYPES, UasPolicy, inspect_request};
use super::uri::{Host, Uri};
use crate::sdp::LocalMediaConfig;

#[derive(Debug, Clone)]
pub struct UaConfig {
    /// The address we put in Via and Contact (the bound socket's, never unspecified).
    pub local_addr: SocketAddr,
    pub user_agent: String,
    pub timers: TimerConfig,
    pub policy: UasPolicy,
    /// Take incoming calls (`listen`); `None` answers INVITEs with 480.
    pub incoming: Option<IncomingPolicy>,
}

/// How incoming calls are taken.
#[derive(Debug, Clone)]
pub struct IncomingPolicy {
    /// Codecs and direction to answer with; the RTP port is given on answer.
    pub media: LocalMediaConfig,
    /// More calls than this at once get 486 Busy Here.
    pub max_calls: Option<usize>,
    /// Our Contact for calls.
    pub contact: Uri,
}

/// Names a call inside this user agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallHandle(u64);

/// What the user agent reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UaEvent {
    Registration(RegistrationEvent),
    /// Something happened in a call; `call_id` is its SIP Call-ID.
    Call {
        handle: CallHandle,
        call_id: String,
        event: CallEvent,
    },
    /// A datagram we could not use, and what we did with it (logged at debug level).
    Discarded {
        source: SocketAddr,
        reason: String,
    },
}

struct RegistrationSlot {
    registration: Registration,
    destination: SocketAddr,
    transaction: Option<TransactionId>,
}

pub struct UserAgent {
    config: UaConfig,
    transactions: TransactionLayer,
    registration: Option<RegistrationSlot>,
    calls: HashMap<CallHandle, Call>,
    next_call: u64,
    /// Routing of messages to calls.
    dialogs: HashMap<DialogId, CallHandle>,
    by_call_id: HashMap<String, CallHandle>,
    call_transactions: HashMap<TransactionId, (CallHandle, Purpose)>,
    /// The INVITE we sent for a call, as sent (with Via), and where: CANCEL copies it.
    sent_invites: HashMap<CallHandle, (Request, SocketAddr)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<UaEvent>,
}

/// A random tag for From/To (RFC 3261 §19.3: at least 32 random bits).
pub fn new_tag() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// A random Call-ID (RFC 3261 §8.1.1.4).
pub fn new_call_id(local: SocketAddr) -> String {
    format!(
        "{:016x}{:08x}@{}",
        fastrand::u64(..),
        fastrand::u32(..),
        Host::from(local.ip())
    )
}

impl UserAgent {
    pub fn new(config: UaConfig) -> UserAgent {
        UserAgent {
            transactions: TransactionLayer::new(config.timers),
            config,
            registration: None,
            calls: HashMap::new(),
            next_call: 1,
            dialogs: HashMap::new(),
            by_call_id: HashMap::new(),
            call_transactions: HashMap::new(),
            sent_invites: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.config.local_addr
    }

    /// Installs the registration to run; `destination` is the registrar's (or outbound
    /// proxy's) address.
    pub fn set_registration(&mut self, registration: Registration, destination: SocketAddr) {
        self.registration = Some(RegistrationSlot {
            registration,
            destination,
            transaction: None,
        });
    }

    pub fn registration(&self) -> Option<&Registration> {
        self.registration.as_ref().map(|s| &s.registration)
    }

    /// Sends the first REGISTER.
    pub fn register(&mut self, now: Instant) {
        if let Some(slot) = self.registration.as_mut() {
            let request = slot.registration.register();
            self.send_registration(now, request);
        }
        self.drain(now);
    }

    /// Removes our binding; false when there was nothing to remove.
    pub fn unregister(&mut self, now: Instant) -> bool {
        let Some(slot) = self.registration.as_mut() else {
            return false;
        };
        match slot.registration.unregister() {
            Some(request) => {
                self.send_registration(now, request);
                self.drain(now);
                true
            }
            None => false,
        }
    }

    /// A datagram arrived from `source`.
    pub fn handle_datagram(&mut self, now: Instant, data: &[u8], source: SocketAddr) {
        if is_keepalive(data) {
            // RFC 5626 §4.4.1: answer a double-CRLF ping with a single CRLF pong.
            if data.windows(4).any(|w| w == b"\r\n\r\n") {
                self.transmits.push_back(Transmit {
                    destination: source,
                    data: b"\r\n".to_vec(),
                });
            }
            return;
        }
        match Message::parse(data) {
            Ok(Message::Request(mut request)) => {
                stamp_received(&mut request, source);
                let reply_to = reply_address(&request.headers, source);
                self.transactions
                    .receive_request(now, request, source, reply_to);
            }
            Ok(Message::Response(response)) => {
                // RFC 3261 §18.1.2: a response with more than one Via is not for us.
                if response.headers.get_all(&HeaderName::Via).nth(1).is_some() {
                    self.discard(source, "response with several Via values".into());
                } else {
                    self.transactions.receive_response(now, response, source);
                }
            }
            Err(ParseError::Reject {
                status,
                reason,
                mut headers,
            }) => {
                // Answered statelessly: there is no transaction for a request we cannot read.
                stamp_received_headers(&mut headers, source);
                let destination = reply_address(&headers, source);
                let mut response = Response::for_request(&headers, status);
                if status == 400 {
                    // RFC 3261 §21.4.1: the phrase should say what was wrong.
                    response.reason = format!("Bad Request ({reason})");
                }
                add_to_tag(&mut response);
                self.transmits.push_back(Transmit {
                    destination,
                    data: response.to_bytes(),
                });
                self.discard(source, format!("answered {status}: {reason}"));
            }
            Err(ParseError::Drop(reason)) => self.discard(source, reason),
        }
        self.drain(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.transactions.handle_timeout(now);
        let due: Vec<CallHandle> = self
            .calls
            .iter()
            .filter(|(_, c)| c.poll_timeout().is_some_and(|t| t <= now))
            .map(|(h, _)| *h)
            .collect();
        for handle in due {
            if let Some(call) = self.calls.get_mut(&handle) {
                call.handle_timeout(now);
            }
            self.pump_call(now, handle);
        }
        if let Some(slot) = self.registration.as_mut()
            && let Some(request) = slot.registration.handle_timeout(now)
        {
            self.send_registration(now, request);
        }
        self.drain(now);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits
            .pop_front()
            .or_else(|| self.transactions.poll_transmit())
    }

    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let registration = self
            .registration
            .as_ref()
            .and_then(|s| s.registration.poll_timeout());
        // A scan over the calls: fine for thousands; a timer heap would scale further.
        let calls = self.calls.values().filter_map(Call::poll_timeout).min();
        [self.transactions.poll_timeout(), registration, calls]
            .into_iter()
            .flatten()
            .min()
    }

    // ----- Calls -----

    /// Places a call; its events come as [`UaEvent::Call`].
    pub fn place_call(&mut self, now: Instant, params: OutgoingCall) -> CallHandle {
        let handle = self.allocate_call();
        let call = Call::outgoing(params, new_call_id(self.config.local_addr), new_tag());
        self.by_call_id.insert(call.call_id().to_string(), handle);
        self.calls.insert(handle, call);
        self.pump_call(now, handle);
        self.drain(now);
        handle
    }

    /// Answers an incoming call with `media` (its RTP port already bound).
    pub fn answer(&mut self, now: Instant, handle: CallHandle, media: LocalMediaConfig) {
        self.with_call(now, handle, |call| call.answer(now, media));
    }

    /// Declines a ringing incoming call (486).
    pub fn decline(&mut self, now: Instant, handle: CallHandle) {
        self.with_call(now, handle, Call::decline);
    }

    /// Hangs up: CANCEL, 486 or BYE depending on where the call is.
    pub fn hangup(&mut self, now: Instant, handle: CallHandle) {
        self.with_call(now, handle, Call::hangup);
    }

    /// Puts the far end on hold, or resumes.
    pub fn set_hold(&mut self, now: Instant, handle: CallHandle, hold: bool) {
        self.with_call(now, handle, |call| call.set_hold(now, hold));
    }

    pub fn call(&self, handle: CallHandle) -> Option<&Call> {
        self.calls.get(&handle)
    }

    /// Calls not yet ended.
    pub fn calls(&self) -> impl Iterator<Item = (CallHandle, &Call)> {
        self.calls.iter().map(|(h, c)| (*h, c))
    }

    fn with_call(&mut self, now: Instant, handle: CallHandle, f: impl FnOnce(&mut Call)) {
        if let Some(call) = self.calls.get_mut(&handle) {
            f(call);
        }
        self.pump_call(now, handle);
        self.drain(now);
    }

    fn allocate_call(&mut self) -> CallHandle {
        let handle = CallHandle(self.next_call);
        self.next_call += 1;
        handle
    }

    /// A new INVITE: a new incoming call, or 486/488/400 (RFC 3261 §13.3.1).
    fn on_invite(
        &mut self,
        now: Instant,
        id: TransactionId,
        request: Request,
        reply_to: SocketAddr,
        incoming: IncomingPolicy,
    ) {
        let busy = incoming
            .max_calls
            .is_some_and(|max| self.calls.len() >= max);
        if busy {
            let response = Response::for_request(&request.headers, 486);
            self.refused_call(&request, EndReason::Rejected, 486);
            self.respond(now, id, response);
            return;
        }
        let params = IncomingCall {
            contact: incoming.contact,
            reply_to,
            media: incoming.media,
            user_agent: self.config.user_agent.clone(),
            timers: self.config.timers,
        };
        match Call::incoming(&request, id, params, new_tag()) {
            Ok(call) => {
                let handle = self.allocate_call();
                if let Some(dialog) = call.dialog_id() {
                    self.dialogs.insert(dialog.clone(), handle);
                }
                self.by_call_id.insert(call.call_id().to_string(), handle);
                self.calls.insert(handle, call);
                self.pump_call(now, handle);
            }
            Err(response) => {
                let reason = if response.status == 488 {
                    EndReason::MediaFailure
                } else {
                    EndReason::Rejected
                };
                self.refused_call(&request, reason, response.status);
                self.respond(now, id, response);
            }
        }
    }

    /// An INVITE we refused at once (busy, no common codec): the person still sees the
    /// call that came and how it ended.
    fn refused_call(&mut self, invite: &Request, reason: EndReason, status: u16) {
        let handle = self.allocate_call();
        let call_id = invite.headers.call_id().unwrap_or_default().to_string();
        let header = |name| invite.headers.get(&name).unwrap_or_default().to_string();
        self.events.push_back(UaEvent::Call {
            handle,
            call_id: call_id.clone(),
            event: CallEvent::Incoming {
                from: header(HeaderName::From),
                to: header(HeaderName::To),
            },
        });
        self.events.push_back(UaEvent::Call {
            handle,
            call_id,
            event: CallEvent::Ended {
                reason,
                status: Some(status),
            },
        });
    }

    /// Carries out what a call asked for and passes its events up; forgets ended calls.
    fn pump_call(&mut self, now: Instant, handle: CallHandle) {
        loop {
            let Some(call) = self.calls.get_mut(&handle) else {
                return;
            };
            let Some(output) = call.poll_output() else {
                break;
            };
            match output {
                CallOutput::Request {
                    mut request,
                    purpose,
                    destination,
                } => {
                    self.add_via(&mut request);
                    if purpose == Purpose::Invite {
                        self.sent_invites
                            .insert(handle, (request.clone(), destination));
                    }
                    if let Some(id) = self.start_transaction(now, request, destination) {
                        self.call_transactions.insert(id, (handle, purpose));
                    }
                }
                CallOutput::Cancel => {
                    if let Some((invite, destination)) = self.sent_invites.get(&handle).cloned() {
                        let cancel = build_cancel(&invite);
                        if let Some(id) = self.start_transaction(now, cancel, destination) {
                            self.call_transactions.insert(id, (handle, Purpose::Cancel));
                        }
                    }
                }
                CallOutput::Ack {
                    mut request,
                    destination,
                } => {
                    self.add_via(&mut request);
                    self.transactions.send_stateless(request, destination);
                }
                CallOutput::Respond {
                    transaction,
                    response,
                } => {
                    if let Err(e) = self.transactions.respond(now, transaction, response) {
                        tracing::debug!("call response not sent: {e}");
                    }
                }
                CallOutput::Retransmit {
                    response,
                    destination,
                } => self.transmits.push_back(Transmit {
                    destination,
                    data: response.to_bytes(),
                }),
            }
        }
        let Some(call) = self.calls.get_mut(&handle) else {
            return;
        };
        let call_id = call.call_id().to_string();
        // The caller learns the dialog id with the 2xx.
        if let Some(dialog) = call.dialog_id().cloned() {
            self.dialogs.entry(dialog).or_insert(handle);
        }
        while let Some(event) = call.poll_event() {
            self.events.push_back(UaEvent::Call {
                handle,
                call_id: call_id.clone(),
                event,
            });
        }
        if call.is_ended() && call.poll_timeout().is_none() {
            // Later retransmissions are absorbed by the transaction layer; anything else
            // gets 481, as for any unknown dialog.
            let call = self.calls.remove(&handle).expect("present");
            if let Some(dialog) = call.dialog_id() {
                self.dialogs.remove(dialog);
            }
            self.by_call_id.remove(call.call_id());
            self.sent_invites.remove(&handle);
        }
    }

    fn discard(&mut self, source: SocketAddr, reason: String) {
        tracing::debug!(%source, %reason, "discarded datagram");
        self.events.push_back(UaEvent::Discarded { source, reason });
    }

    /// Adds our top Via (RFC 3261 §8.1.1.7, with `rport`, RFC 3581) and starts a transaction.
    fn add_via(&self, request: &mut Request) {
        let via = format!(
            "SIP/2.0/UDP {}:{};rport;branch={}",
            Host::from(self.config.local_addr.ip()),
            self.config.local_addr.port(),
            new_branch()
        );
        request.headers.push_front(HeaderName::Via, via);
    }

    fn send_request(
        &mut self,
        now: Instant,
        mut request: Request,
        destination: SocketAddr,
    ) -> Option<TransactionId> {
        self.add_via(&mut request);
        self.start_transaction(now, request, destination)
    }

    fn start_transaction(
        &mut self,
        now: Instant,
        request: Request,
        destination: SocketAddr,
    ) -> Option<TransactionId> {
        match self.transactions.send_request(now, request, destination) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!("cannot send request: {e}");
                None
            }
        }
    }

    fn send_registration(&mut self, now: Instant, request: Request) {
        let Some(destination) = self.registration.as_ref().map(|s| s.destination) else {
            return;
        };
        let id = self.send_request(now, request, destination);
        if let Some(slot) = self.registration.as_mut() {
            slot.transaction = id;
        }
    }

    /// Moves events up from the layers below until nothing is left.
    fn drain(&mut self, now: Instant) {
        while let Some(event) = self.transactions.poll_event() {
            match event {
                TransactionEvent::Response { id, response } => {
                    if let Some(&(handle, purpose)) = self.call_transactions.get(&id) {
                        if let Some(call) = self.calls.get_mut(&handle) {
                            call.on_response(now, purpose, &response);
                        }
                        self.pump_call(now, handle);
                    } else {
                        self.on_response(now, id, response)
                    }
                }
                TransactionEvent::Timeout { id } => {
                    if let Some((handle, purpose)) = self.call_transactions.remove(&id) {
                        if let Some(call) = self.calls.get_mut(&handle) {
                            call.on_transaction_timeout(purpose);
                        }
                        self.pump_call(now, handle);
                    } else if let Some(slot) = self.registration.as_mut()
                        && slot.transaction == Some(id)
                    {
                        slot.transaction = None;
                        slot.registration.on_transaction_timeout(now);
                    }
                }
                TransactionEvent::Request {
                    id,
                    request,
                    source,
                } => self.on_request(now, id, request, source),
                TransactionEvent::StrayAck { request, .. } => {
                    let handle = DialogId::for_incoming(&request)
                        .and_then(|d| self.dialogs.get(&d).copied());
                    if let Some(handle) = handle {
                        if let Some(call) = self.calls.get_mut(&handle) {
                            call.on_ack(now, &request);
                        }
                        self.pump_call(now, handle);
                    }
                }
                TransactionEvent::StrayResponse { response, .. } => {
                    let handle = response
                        .headers
                        .call_id()
                        .and_then(|c| self.by_call_id.get(c).copied());
                    if let Some(handle) = handle
                        && response.is_success()
                    {
                        if let Some(call) = self.calls.get_mut(&handle) {
                            call.on_stray_2xx(&response);
                        }
                        self.pump_call(now, handle);
                    }
                }
                TransactionEvent::Terminated { id } => {
                    self.call_transactions.remove(&id);
                }
                TransactionEvent::AckTimeout { .. } => {}
            }
        }
        if let Some(slot) = self.registration.as_mut() {
            while let Some(event) = slot.registration.poll_event() {
                self.events.push_back(UaEvent::Registration(event));
            }
        }
    }

    fn on_response(&mut self, now: Instant, id: TransactionId, response: Response) {
        let Some(slot) = self.registration.as_mut() else {
            return;
        };
        if slot.transaction != Some(id) || response.status < 200 {
            return;
        }
        slot.transaction = None;
        if let Some(next) = slot.registration.on_response(now, &response) {
            self.send_registration(now, next);
        }
    }

    /// A new request: in a call's dialog, a CANCEL, a new call, or out of any call
    /// (RFC 3261 §8.2, §12.2.2).
    fn on_request(
        &mut self,
        now: Instant,
        id: TransactionId,
        request: Request,
        source: SocketAddr,
    ) {
        if request.method == Method::Ack {
            return;
        }
        let reply_to = reply_address(&request.headers, source);
        let in_dialog = request.headers.to().is_ok_and(|to| to.tag().is_some());
        if in_dialog {
            let handle =
                DialogId::for_incoming(&request).and_then(|d| self.dialogs.get(&d).copied());
            match handle {
                Some(handle) => {
                    if let Some(call) = self.calls.get_mut(&handle) {
                        call.on_request(now, id, &request, reply_to);
                    }
                    self.pump_call(now, handle);
                }
                // RFC 3261 §12.2.2: no such dialog.
                None => {
                    let response = Response::for_request(&request.headers, 481);
                    self.respond(now, id, response);
                }
            }
            return;
        }
        if request.method == Method::Cancel {
            // RFC 3261 §9.2: 200 for the CANCEL, then 487 for the INVITE it matches.
            let target = self
                .transactions
                .find_invite_for_cancel(&request)
                .and_then(|invite| {
                    self.calls
                        .iter()
                        .find(|(_, c)| c.invite_transaction() == Some(invite))
                        .map(|(h, _)| *h)
                });
            let status = if target.is_some() { 200 } else { 481 };
            self.respond(now, id, Response::for_request(&request.headers, status));
            if let Some(handle) = target {
                if let Some(call) = self.calls.get_mut(&handle) {
                    call.on_cancelled();
                }
                self.pump_call(now, handle);
            }
            return;
        }
        if request.method == Method::Invite
            && let Some(incoming) = self.config.incoming.clone()
            && inspect_request(&request, &self.config.policy).is_ok()
        {
            self.on_invite(now, id, request, reply_to, incoming);
            return;
        }
        let response = match inspect_request(&request, &self.config.policy) {
            Err(response) => response,
            Ok(()) => match request.method {
                // RFC 3261 §11.2: what we can do.
                Method::Options => {
                    let mut r = Response::for_request(&request.headers, 200);
                    r.headers.push(HeaderName::Allow, super::ALLOWED_METHODS);
                    r.headers.push(HeaderName::Accept, ACCEPTED_TYPES);
                    r.headers.push(HeaderName::AcceptEncoding, "identity");
                    r.headers.push(HeaderName::AcceptLanguage, "en");
                    r.headers.push(HeaderName::Supported, "");
                    r
                }
                // No dialog matches: RFC 3261 §12.2.2, §9.2.
                Method::Bye | Method::Cancel | Method::Info | Method::Update => {
                    Response::for_request(&request.headers, 481)
                }
                // Calls are not taken by this command.
                _ => Response::for_request(&request.headers, 480),
            },
        };
        self.respond(now, id, response);
    }

    fn respond(&mut self, now: Instant, id: TransactionId, mut response: Response) {
        if !response.headers.contains(&HeaderName::Server) {
            response
                .headers
                .push(HeaderName::Server, self.config.user_agent.clone());
        }
        add_to_tag(&mut response);
        if let Err(e) = self.transactions.respond(now, id, response) {
            tracing::warn!("cannot respond: {e}");
        }
    }
}

/// RFC 3261 §8.2.6.2: a response other than 100 carries a To tag.
fn add_to_tag(response: &mut Response) {
    if response.status == 100 {
        return;
    }
    let Some(value) = response.headers.get(&HeaderName::To) else {
        return;
    };
    if let Ok(mut to) = NameAddr::parse(value)
        && to.tag().is_none()
    {
        to.set_tag(&new_tag());
        response.headers.set(HeaderName::To, to.to_string());
    }
}
