//! The user agent core, sans-IO: datagrams and time in; datagrams, events and the next
//! deadline out. It owns the transaction layer and the registration, answers requests
//! outside calls (RFC 3261 §8.2, §11) and rejects malformed ones (RFC 3261 §21.4.1).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use super::headers::NameAddr;
use super::message::{HeaderName, Message, Method, ParseError, Request, Response, is_keepalive};
use super::registration::{Registration, RegistrationEvent};
use super::transaction::{
    TimerConfig, TransactionEvent, TransactionId, TransactionLayer, Transmit, new_branch,
};
use super::transport::{reply_address, stamp_received, stamp_received_headers};
use super::uas::{ACCEPTED_TYPES, UasPolicy, inspect_request};
use super::uri::Host;

#[derive(Debug, Clone)]
pub struct UaConfig {
    /// The address we put in Via and Contact (the bound socket's, never unspecified).
    pub local_addr: SocketAddr,
    pub user_agent: String,
    pub timers: TimerConfig,
    pub policy: UasPolicy,
}

/// What the user agent reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UaEvent {
    Registration(RegistrationEvent),
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
        match (self.transactions.poll_timeout(), registration) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn discard(&mut self, source: SocketAddr, reason: String) {
        tracing::debug!(%source, %reason, "discarded datagram");
        self.events.push_back(UaEvent::Discarded { source, reason });
    }

    /// Adds our top Via (RFC 3261 §8.1.1.7, with `rport`, RFC 3581) and starts a transaction.
    fn send_request(
        &mut self,
        now: Instant,
        mut request: Request,
        destination: SocketAddr,
    ) -> Option<TransactionId> {
        let via = format!(
            "SIP/2.0/UDP {}:{};rport;branch={}",
            Host::from(self.config.local_addr.ip()),
            self.config.local_addr.port(),
            new_branch()
        );
        request.headers.push_front(HeaderName::Via, via);
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
                TransactionEvent::Response { id, response } => self.on_response(now, id, response),
                TransactionEvent::Timeout { id } => {
                    if let Some(slot) = self.registration.as_mut()
                        && slot.transaction == Some(id)
                    {
                        slot.transaction = None;
                        slot.registration.on_transaction_timeout(now);
                    }
                }
                TransactionEvent::Request {
                    id,
                    request,
                    source: _,
                } => self.on_request(now, id, request),
                TransactionEvent::StrayAck { .. }
                | TransactionEvent::StrayResponse { .. }
                | TransactionEvent::AckTimeout { .. }
                | TransactionEvent::Terminated { .. } => {}
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

    /// A new request outside any call (RFC 3261 §8.2).
    fn on_request(&mut self, now: Instant, id: TransactionId, request: Request) {
        if request.method == Method::Ack {
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
        response
            .headers
            .push(HeaderName::Server, self.config.user_agent.clone());
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
