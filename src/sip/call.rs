//! One call, sans-IO: the INVITE dialog usage of RFC 3261 §13-15 with the offer/answer of
//! RFC 3264, as caller or callee. It sits above the transaction layer: it builds requests
//! and responses (without Via) and reacts to what comes back; the user agent core runs the
//! transactions and routes messages to it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::auth::{Challenge, ChallengeOutcome, Credentials, DigestClient};
use super::dialog::{Dialog, DialogId, contact_uri};
use super::headers::NameAddr;
use super::message::{HeaderName, Method, Request, Response};
use super::transaction::{TimerConfig, TransactionId};
use super::uri::Uri;
use crate::sdp::{
    Direction, LocalMediaConfig, NegotiatedMedia, NegotiationError, SessionDescription,
    answer_offer, build_offer, process_answer,
};

/// Why a call ended, as reported to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// We hung up with BYE.
    LocalBye,
    /// The far end hung up with BYE.
    RemoteBye,
    /// Cancelled before the answer (by us, or the caller cancelled an incoming call).
    Cancelled,
    /// The far end (or we, as callee) refused the call with a final status.
    Rejected,
    /// We declined an incoming call.
    Declined,
    /// No answer in time (Timer B), or no ACK for our 2xx (RFC 3261 §13.3.1.4).
    Timeout,
    /// The offer or answer could not be used (488, or an unusable answer).
    MediaFailure,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::LocalBye => "local_bye",
            EndReason::RemoteBye => "remote_bye",
            EndReason::Cancelled => "cancelled",
            EndReason::Rejected => "rejected",
            EndReason::Declined => "declined",
            EndReason::Timeout => "timeout",
            EndReason::MediaFailure => "media_failure",
        }
    }
}

/// What happened in a call, for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    Incoming {
        from: String,
        to: String,
    },
    /// The far end is ringing (180/183), or we are (incoming).
    Ringing,
    /// A 183 (or 180) with SDP: the far end plays media before answering.
    EarlyMedia(NegotiatedMedia),
    Answered(NegotiatedMedia),
    /// The media session changed (re-INVITE or UPDATE from either side).
    MediaUpdated(NegotiatedMedia),
    Held {
        by_remote: bool,
    },
    Resumed {
        by_remote: bool,
    },
    /// A DTMF digit from SIP INFO `application/dtmf-relay`.
    Dtmf {
        digit: char,
    },
    Ended {
        reason: EndReason,
        status: Option<u16>,
    },
}

/// What a request the call wants sent is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Invite,
    ReInvite,
    Cancel,
    Bye,
    Other,
}

/// What the call asks the user agent core to put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutput {
    /// Start a client transaction (the core adds Via) to `destination`.
    Request {
        request: Request,
        purpose: Purpose,
        destination: SocketAddr,
    },
    /// Cancel our pending INVITE (the core builds the CANCEL from the INVITE it sent).
    Cancel,
    /// Send without a transaction: the ACK for a 2xx (RFC 3261 §13.2.2.4).
    Ack {
        request: Request,
        destination: SocketAddr,
    },
    /// Respond within a server transaction.
    Respond {
        transaction: TransactionId,
        response: Response,
    },
    /// Send a response again ourselves: 2xx retransmission (RFC 3261 §13.3.1.4).
    Retransmit {
        response: Response,
        destination: SocketAddr,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Caller: INVITE sent, no provisional yet.
    Calling,
    /// Caller: a provisional arrived.
    Proceeding,
    /// Callee: ringing, waiting for the person (or auto-answer).
    Incoming,
    /// Callee: 2xx sent, waiting for the ACK.
    AwaitingAck,
    Confirmed,
    /// BYE sent, waiting for its response.
    Terminating,
    Ended,
}

/// What the caller needs to place a call.
#[derive(Debug, Clone)]
pub struct OutgoingCall {
    pub target: Uri,
    /// Our address of record (From).
    pub from: NameAddr,
    pub contact: Uri,
    pub credentials: Option<Credentials>,
    /// A preloaded route (outbound proxy), loose-routing.
    pub outbound_proxy: Option<Uri>,
    /// Where the INVITE goes (the resolved target or outbound proxy).
    pub destination: SocketAddr,
    pub media: LocalMediaConfig,
    pub user_agent: String,
    pub timers: TimerConfig,
}

/// The far end's INVITE and where we are.
#[derive(Debug, Clone)]
pub struct IncomingCall {
    pub contact: Uri,
    /// Where responses go (the INVITE's source, stamped Via applied).
    pub reply_to: SocketAddr,
    /// Codecs and direction we would answer with (the RTP port is given on answer).
    pub media: LocalMediaConfig,
    pub user_agent: String,
    pub timers: TimerConfig,
}

/// One call leg.
pub struct Call {
    state: State,
    call_id: String,
    local_tag: String,
    outgoing: bool,
    timers: TimerConfig,
    user_agent: String,
    contact: Uri,
    /// First hop for requests when the route set and target give no IP (see `hop`).
    fallback_hop: SocketAddr,
    dialog: Option<Dialog>,
    media: LocalMediaConfig,
    session_id: u64,
    session_version: u64,
    negotiated: Option<NegotiatedMedia>,
    /// Held by us (we offered sendonly) / by them (they offered sendonly or inactive).
    held_locally: bool,
    held_remotely: bool,

    // Caller side.
    invite: Option<Request>,
    invite_seq: u32,
    /// The SDP offer in our last INVITE or re-INVITE, to read the answer against.
    pending_offer: Option<SessionDescription>,
    /// Our ACK for the 2xx, re-sent on a retransmitted 2xx (RFC 3261 §13.2.2.4).
    last_ack: Option<(Request, SocketAddr)>,
    digest: Option<DigestClient>,
    redirected: bool,
    cancel_requested: bool,
    outbound_proxy: Option<Uri>,

    // Callee side.
    invite_transaction: Option<TransactionId>,
    invite_request: Option<Request>,
    reply_to: SocketAddr,
    /// Our 2xx, retransmitted until the ACK (RFC 3261 §13.3.1.4).
    pending_2xx: Option<Response>,
    retransmit_at: Option<Instant>,
    retransmit_interval: Duration,
    ack_deadline: Option<Instant>,
    /// A re-INVITE we received whose 2xx awaits its ACK.
    reinvite_in_progress: bool,

    /// Our own re-INVITE (hold/resume) in progress, and a glare retry (RFC 3261 §14.1).
    reinvite_pending: bool,
    glare_retry_at: Option<Instant>,

    outputs: VecDeque<CallOutput>,
    events: VecDeque<CallEvent>,
}

impl Call {
    /// Places a call: queues the INVITE with our SDP offer.
    pub fn outgoing(params: OutgoingCall, call_id: String, local_tag: String) -> Call {
        let mut call = Call::blank(
            true,
            call_id,
            local_tag,
            params.timers,
            params.user_agent.clone(),
            params.contact.clone(),
            params.destination,
            params.media.clone(),
        );
        call.digest = params.credentials.map(DigestClient::new);
        call.outbound_proxy = params.outbound_proxy.clone();
        call.invite_seq = fastrand::u32(1..1 << 16);
        let mut invite = Request::new(Method::Invite, params.target.clone());
        let h = &mut invite.headers;
        h.push(HeaderName::MaxForwards, "70");
        if let Some(proxy) = &params.outbound_proxy {
            h.push(HeaderName::Route, super::registration::route_value(proxy));
        }
        let mut from = params.from.clone();
        from.set_tag(&call.local_tag);
        h.push(HeaderName::From, from.to_string());
        h.push(HeaderName::To, NameAddr::new(params.target).to_string());
        h.push(HeaderName::CallId, call.call_id.clone());
        h.push(HeaderName::CSeq, format!("{} INVITE", call.invite_seq));
        h.push(HeaderName::Contact, format!("<{}>", params.contact));
        call.invite = Some(invite);
        call.send_invite();
        call
    }

    /// Takes an incoming INVITE. `Err` is the final response to send instead (488 when no
    /// codec is common, 400 for an unusable request).
    pub fn incoming(
        invite: &Request,
        transaction: TransactionId,
        params: IncomingCall,
        local_tag: String,
    ) -> Result<Call, Response> {
        let reject = |status: u16| Response::for_request(&invite.headers, status);
        if !invite.body.is_empty() {
            let offer = SessionDescription::from_bytes(&invite.body).map_err(|_| reject(400))?;
            if let Err(e) = answer_offer(&offer, &params.media, 1, 1) {
                let mut response = reject(e.status_code());
                response
                    .headers
                    .push(HeaderName::Warning, format!("304 siphon \"{e}\""));
                return Err(response);
            }
        }
        let dialog = Dialog::from_uas(invite, &local_tag, params.contact.clone())
            .map_err(|_| reject(400))?;
        let mut call = Call::blank(
            false,
            dialog.id.call_id.clone(),
            local_tag,
            params.timers,
            params.user_agent,
            params.contact,
            params.reply_to,
            params.media,
        );
        call.state = State::Incoming;
        call.reply_to = params.reply_to;
        call.invite_transaction = Some(transaction);
        call.invite_request = Some(invite.clone());
        call.dialog = Some(dialog);
        let from = invite.headers.get(&HeaderName::From).unwrap_or_default();
        let to = invite.headers.get(&HeaderName::To).unwrap_or_default();
        call.events.push_back(CallEvent::Incoming {
            from: from.to_string(),
            to: to.to_string(),
        });
        // RFC 3261 §13.3.1.1: let the caller know we are alerting the user.
        let ringing = call.response_to_invite(180);
        call.outputs.push_back(CallOutput::Respond {
            transaction,
            response: ringing,
        });
        call.events.push_back(CallEvent::Ringing);
        Ok(call)
    }

    #[allow(clippy::too_many_arguments)]
    fn blank(
        outgoing: bool,
        call_id: String,
        local_tag: String,
        timers: TimerConfig,
        user_agent: String,
        contact: Uri,
        fallback_hop: SocketAddr,
        media: LocalMediaConfig,
    ) -> Call {
        Call {
            state: State::Calling,
            call_id,
            local_tag,
            outgoing,
            timers,
            user_agent,
            contact,
            fallback_hop,
            dialog: None,
            media,
            session_id: fastrand::u64(1..1 << 62),
            session_version: 1,
            negotiated: None,
            held_locally: false,
            held_remotely: false,
            invite: None,
            invite_seq: 0,
            pending_offer: None,
            last_ack: None,
            digest: None,
            redirected: false,
            cancel_requested: false,
            outbound_proxy: None,
            invite_transaction: None,
            invite_request: None,
            reply_to: fallback_hop,
            pending_2xx: None,
            retransmit_at: None,
            retransmit_interval: timers.t1,
            ack_deadline: None,
            reinvite_in_progress: false,
            reinvite_pending: false,
            glare_retry_at: None,
            outputs: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    pub fn dialog_id(&self) -> Option<&DialogId> {
        self.dialog.as_ref().map(|d| &d.id)
    }

    pub fn is_outgoing(&self) -> bool {
        self.outgoing
    }

    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    /// Answered and not yet ended.
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::AwaitingAck | State::Confirmed)
    }

    /// Whether we hold the far end.
    pub fn is_held_locally(&self) -> bool {
        self.held_locally
    }

    pub fn negotiated(&self) -> Option<&NegotiatedMedia> {
        self.negotiated.as_ref()
    }

    /// The INVITE transaction of an incoming call (for CANCEL matching).
    pub fn invite_transaction(&self) -> Option<TransactionId> {
        self.invite_transaction
    }

    pub fn poll_output(&mut self) -> Option<CallOutput> {
        self.outputs.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.retransmit_at, self.ack_deadline, self.glare_retry_at]
            .into_iter()
            .flatten()
            .min()
    }

    fn next_version(&mut self) -> u64 {
        self.session_version += 1;
        self.session_version
    }

    fn end(&mut self, reason: EndReason, status: Option<u16>) {
        if self.state == State::Ended {
            return;
        }
        self.state = State::Ended;
        self.retransmit_at = None;
        self.ack_deadline = None;
        self.glare_retry_at = None;
        self.events.push_back(CallEvent::Ended { reason, status });
    }

    /// Where a request in the dialog goes: the first hop's address when it is an IP,
    /// otherwise the address we have been talking to (no DNS in the core).
    fn hop(&self) -> SocketAddr {
        let uri = self.dialog.as_ref().map(|d| d.next_hop());
        uri.and_then(|u| u.as_sip())
            .and_then(|s| {
                s.host
                    .ip()
                    .map(|ip| SocketAddr::new(ip, s.port_or_default()))
            })
            .unwrap_or(self.fallback_hop)
    }

    // ----- Caller side (RFC 3261 §13.2) -----

    fn send_invite(&mut self) {
        let Some(mut invite) = self.invite.clone() else {
            return;
        };
        let offer = build_offer(&self.media, self.session_id, self.session_version);
        invite.body = offer.to_bytes();
        invite
            .headers
            .set(HeaderName::ContentType, "application/sdp");
        invite
            .headers
            .set(HeaderName::UserAgent, self.user_agent.clone());
        invite
            .headers
            .set(HeaderName::Allow, super::ALLOWED_METHODS);
        invite
            .headers
            .set(HeaderName::CSeq, format!("{} INVITE", self.invite_seq));
        if let Some(digest) = self.digest.as_mut() {
            let uri = invite.uri.to_string();
            if let Some(value) = digest.authorize("INVITE", &uri, &invite.body) {
                let name = if digest.is_proxy() {
                    HeaderName::ProxyAuthorization
                } else {
                    HeaderName::Authorization
                };
                invite.headers.set(name, value);
            }
        }
        self.pending_offer = Some(offer);
        self.invite = Some(invite.clone());
        self.outputs.push_back(CallOutput::Request {
            request: invite,
            purpose: Purpose::Invite,
            destination: self.fallback_hop,
        });
    }

    /// A response to a request this call sent.
    pub fn on_response(&mut self, now: Instant, purpose: Purpose, response: &Response) {
        match purpose {
            Purpose::Invite => self.on_invite_response(now, response),
            Purpose::ReInvite => self.on_reinvite_response(now, response),
            Purpose::Bye => {
                if response.status >= 200 && self.state == State::Terminating {
                    self.end(EndReason::LocalBye, None);
                }
            }
            Purpose::Cancel | Purpose::Other => {}
        }
    }

    /// A 2xx for our INVITE that matched no transaction any more (a late retransmission):
    /// re-send the ACK (RFC 3261 §13.2.2.4).
    pub fn on_stray_2xx(&mut self, response: &Response) {
        if let (Some((ack, destination)), Some(dialog)) = (&self.last_ack, &self.dialog)
            && response
                .headers
                .to()
                .ok()
                .and_then(|t| t.tag().map(String::from))
                == Some(dialog.id.remote_tag.clone())
        {
            self.outputs.push_back(CallOutput::Ack {
                request: ack.clone(),
                destination: *destination,
            });
        }
    }

    fn on_invite_response(&mut self, now: Instant, response: &Response) {
        let status = response.status;
        match status {
            100 => {}
            101..=199 => {
                let first = self.state == State::Calling;
                if matches!(self.state, State::Calling | State::Proceeding) {
                    self.state = State::Proceeding;
                }
                if self.cancel_requested && first {
                    // RFC 3261 §9.1: a CANCEL waits for a provisional response.
                    self.outputs.push_back(CallOutput::Cancel);
                }
                if first {
                    self.events.push_back(CallEvent::Ringing);
                }
                if !response.body.is_empty() && self.negotiated.is_none() {
                    if let Some(media) = self.read_answer(&response.body) {
                        self.events.push_back(CallEvent::EarlyMedia(media));
                    }
                }
            }
            200..=299 => self.on_invite_success(now, response),
            300..=399 if !self.redirected && self.state != State::Ended => {
                self.redirected = true;
                match contact_uri(&response.headers) {
                    // RFC 3261 §8.1.3.4: retry at the first Contact, once (loop-safe).
                    Some(target) if !self.cancel_requested => {
                        self.redirect(target);
                    }
                    _ => self.end(EndReason::Rejected, Some(status)),
                }
            }
            401 | 407 if self.state != State::Ended && !self.cancel_requested => {
                if !self.retry_with_credentials(response) {
                    self.end(EndReason::Rejected, Some(status));
                }
            }
            _ => {
                let reason = if self.cancel_requested && status == 487 {
                    EndReason::Cancelled
                } else if status == 488 || status == 606 {
                    EndReason::MediaFailure
                } else {
                    EndReason::Rejected
                };
                self.end(reason, Some(status));
            }
        }
    }

    fn redirect(&mut self, target: Uri) {
        if let Some(invite) = self.invite.as_mut() {
            invite.uri = target.clone();
            if let Some(sip) = target.as_sip()
                && let Some(ip) = sip.host.ip()
                && self.outbound_proxy.is_none()
            {
                self.fallback_hop = SocketAddr::new(ip, sip.port_or_default());
            }
        }
        self.invite_seq += 1;
        self.state = State::Calling;
        self.send_invite();
    }

    /// RFC 3261 §22.2: answer a challenge once; a second challenge for the same
    /// credentials means they are wrong.
    fn retry_with_credentials(&mut self, response: &Response) -> bool {
        let name = if response.status == 407 {
            HeaderName::ProxyAuthenticate
        } else {
            HeaderName::WwwAuthenticate
        };
        let values: Vec<&str> = response.headers.get_all(&name).collect();
        let Some(digest) = self.digest.as_mut() else {
            return false;
        };
        let outcome =
            Challenge::parse_all(&values).and_then(|c| digest.on_challenge(response.status, &c));
        match outcome {
            Ok(ChallengeOutcome::Retry) | Ok(ChallengeOutcome::RetryStale) => {
                self.invite_seq += 1;
                self.state = State::Calling;
                self.send_invite();
                true
            }
            _ => false,
        }
    }

    fn on_invite_success(&mut self, now: Instant, response: &Response) {
        let remote_tag = response
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(String::from));
        // A 2xx from another fork, or after we already have our dialog: ACK it, and hang
        // up that extra dialog (RFC 3261 §13.2.2.4).
        if let Some(dialog) = &self.dialog
            && self.state != State::Calling
            && self.state != State::Proceeding
        {
            if Some(&dialog.id.remote_tag) == remote_tag.as_ref() {
                self.on_stray_2xx(response);
            } else {
                self.ack_and_bye_fork(response);
            }
            return;
        }
        let Some(invite) = self.invite.clone() else {
            return;
        };
        let dialog = match Dialog::from_uac(&invite, response, self.contact.clone()) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("unusable 2xx for INVITE: {e}");
                return;
            }
        };
        self.dialog = Some(dialog);
        let destination = self.hop();
        let ack = self
            .dialog
            .as_ref()
            .map(|d| d.build_ack(self.invite_seq))
            .expect("dialog just set");
        self.outputs.push_back(CallOutput::Ack {
            request: ack.clone(),
            destination,
        });
        self.last_ack = Some((ack, destination));
        if self.cancel_requested || self.state == State::Ended {
            // RFC 3261 §9.1 race: the 2xx crossed our CANCEL: confirm, then hang up.
            self.state = State::Confirmed;
            self.send_bye();
            return;
        }
        self.state = State::Confirmed;
        match self.read_answer(&response.body) {
            Some(media) => self.events.push_back(CallEvent::Answered(media)),
            None => {
                // RFC 3264 §6: an answer we cannot use: hang up.
                self.send_bye();
                self.end(EndReason::MediaFailure, Some(response.status));
            }
        }
        let _ = now;
    }

    fn ack_and_bye_fork(&mut self, response: &Response) {
        let Some(invite) = self.invite.clone() else {
            return;
        };
        let Ok(mut fork) = Dialog::from_uac(&invite, response, self.contact.clone()) else {
            return;
        };
        let hop = fork
            .next_hop()
            .as_sip()
            .and_then(|s| {
                s.host
                    .ip()
                    .map(|ip| SocketAddr::new(ip, s.port_or_default()))
            })
            .unwrap_or(self.fallback_hop);
        self.outputs.push_back(CallOutput::Ack {
            request: fork.build_ack(self.invite_seq),
            destination: hop,
        });
        let bye = fork.build_request(Method::Bye);
        self.outputs.push_back(CallOutput::Request {
            request: bye,
            purpose: Purpose::Other,
            destination: hop,
        });
    }

    /// Reads an SDP answer to our pending offer; `None` if absent or unusable.
    fn read_answer(&mut self, body: &[u8]) -> Option<NegotiatedMedia> {
        let offer = self.pending_offer.as_ref()?;
        let answer = SessionDescription::from_bytes(body).ok()?;
        match process_answer(offer, &answer) {
            Ok(media) => {
                self.negotiated = Some(media.clone());
                Some(media)
            }
            Err(e) => {
                tracing::warn!("unusable SDP answer: {e}");
                None
            }
        }
    }

    // ----- Callee side (RFC 3261 §13.3) -----

    fn response_to_invite(&self, status: u16) -> Response {
        let Some(invite) = &self.invite_request else {
            return Response::for_request(&super::message::Headers::new(), status);
        };
        let mut response = Response::for_request(&invite.headers, status);
        if status > 100 {
            // RFC 3261 §12.1.1: dialog-creating responses copy Record-Route and carry our
            // tag and Contact.
            if let Ok(mut to) = response.headers.to()
                && to.tag().is_none()
            {
                to.set_tag(&self.local_tag);
                response.headers.set(HeaderName::To, to.to_string());
            }
            if status < 300 {
                for rr in invite.headers.get_all(&HeaderName::RecordRoute) {
                    response.headers.push(HeaderName::RecordRoute, rr);
                }
                response
                    .headers
                    .push(HeaderName::Contact, format!("<{}>", self.contact));
            }
        }
        response
            .headers
            .push(HeaderName::Server, self.user_agent.clone());
        response
    }

    /// Answers an incoming call with `media` (its RTP port bound by the caller).
    pub fn answer(&mut self, now: Instant, media: LocalMediaConfig) {
        if self.state != State::Incoming {
            return;
        }
        self.media = media;
        let Some(invite) = self.invite_request.clone() else {
            return;
        };
        let mut response = self.response_to_invite(200);
        if invite.body.is_empty() {
            // RFC 3264 §5: no offer in the INVITE: ours goes in the 2xx, the answer in ACK.
            let version = self.next_version();
            let offer = build_offer(&self.media, self.session_id, version);
            response.body = offer.to_bytes();
            self.pending_offer = Some(offer);
        } else {
            let offer = match SessionDescription::from_bytes(&invite.body) {
                Ok(o) => o,
                Err(_) => return self.reject_invite(400, EndReason::MediaFailure),
            };
            let version = self.next_version();
            match answer_offer(&offer, &self.media, self.session_id, version) {
                Ok((answer, negotiated)) => {
                    response.body = answer.to_bytes();
                    self.held_remotely = !negotiated.remote_direction.receives();
                    self.negotiated = Some(negotiated.clone());
                    self.events.push_back(CallEvent::Answered(negotiated));
                }
                Err(e) => return self.reject_invite(e.status_code(), EndReason::MediaFailure),
            }
        }
        response
            .headers
            .push(HeaderName::ContentType, "application/sdp");
        response
            .headers
            .push(HeaderName::Allow, super::ALLOWED_METHODS);
        self.send_2xx(now, response);
        self.state = State::AwaitingAck;
    }

    /// Sends a 2xx to an INVITE and arms its retransmission (RFC 3261 §13.3.1.4).
    fn send_2xx(&mut self, now: Instant, response: Response) {
        if let Some(transaction) = self.invite_transaction {
            self.outputs.push_back(CallOutput::Respond {
                transaction,
                response: response.clone(),
            });
        }
        self.pending_2xx = Some(response);
        self.retransmit_interval = self.timers.t1;
        self.retransmit_at = Some(now + self.timers.t1);
        self.ack_deadline = Some(now + self.timers.t1 * 64);
    }

    /// Declines an incoming call (486 Busy Here).
    pub fn decline(&mut self) {
        if self.state == State::Incoming {
            self.reject_invite(486, EndReason::Declined);
        }
    }

    fn reject_invite(&mut self, status: u16, reason: EndReason) {
        let response = self.response_to_invite(status);
        if let Some(transaction) = self.invite_transaction {
            self.outputs.push_back(CallOutput::Respond {
                transaction,
                response,
            });
        }
        self.end(reason, Some(status));
    }

    /// The caller cancelled our ringing INVITE (RFC 3261 §9.2): 487 for the INVITE.
    pub fn on_cancelled(&mut self) {
        if self.state == State::Incoming {
            self.reject_invite(487, EndReason::Cancelled);
        }
    }

    /// An ACK in this dialog.
    pub fn on_ack(&mut self, now: Instant, ack: &Request) {
        let _ = now;
        if self.pending_2xx.is_none() {
            return;
        }
        self.pending_2xx = None;
        self.retransmit_at = None;
        self.ack_deadline = None;
        if self.reinvite_in_progress {
            self.reinvite_in_progress = false;
        }
        if self.state == State::AwaitingAck {
            self.state = State::Confirmed;
        }
        // Offer in our 2xx: the answer is in the ACK (RFC 3264 §5).
        if self.pending_offer.is_some() && !self.outgoing && self.negotiated.is_none() {
            match self.read_answer(&ack.body) {
                Some(media) => self.events.push_back(CallEvent::Answered(media)),
                None => {
                    self.send_bye();
                    self.end(EndReason::MediaFailure, None);
                }
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.ack_deadline
            && deadline <= now
        {
            // RFC 3261 §13.3.1.4: no ACK within 64*T1: the dialog is confirmed and then
            // terminated with BYE.
            self.pending_2xx = None;
            self.retransmit_at = None;
            self.ack_deadline = None;
            self.reinvite_in_progress = false;
            if self.state == State::AwaitingAck {
                self.state = State::Confirmed;
                self.send_bye();
                self.end(EndReason::Timeout, None);
                return;
            }
        }
        if let Some(at) = self.retransmit_at
            && at <= now
            && let Some(response) = self.pending_2xx.clone()
        {
            self.outputs.push_back(CallOutput::Retransmit {
                response,
                destination: self.reply_to,
            });
            self.retransmit_interval = (self.retransmit_interval * 2).min(self.timers.t2);
            self.retransmit_at = Some(now + self.retransmit_interval);
        }
        if let Some(at) = self.glare_retry_at
            && at <= now
        {
            self.glare_retry_at = None;
            self.send_reinvite();
        }
    }

    // ----- Both sides -----

    /// Hangs up: CANCEL before the answer (caller), 486 (callee ringing), BYE after.
    pub fn hangup(&mut self) {
        match self.state {
            State::Calling => {
                // RFC 3261 §9.1: the CANCEL goes out once a provisional has arrived.
                self.cancel_requested = true;
            }
            State::Proceeding => {
                if !self.cancel_requested {
                    self.cancel_requested = true;
                    self.outputs.push_back(CallOutput::Cancel);
                }
            }
            State::Incoming => self.reject_invite(486, EndReason::Declined),
            State::AwaitingAck | State::Confirmed => {
                self.send_bye();
            }
            State::Terminating | State::Ended => {}
        }
    }

    fn send_bye(&mut self) {
        let destination = self.hop();
        let Some(dialog) = self.dialog.as_mut() else {
            return;
        };
        let mut bye = dialog.build_request(Method::Bye);
        bye.headers
            .push(HeaderName::UserAgent, self.user_agent.clone());
        self.outputs.push_back(CallOutput::Request {
            request: bye,
            purpose: Purpose::Bye,
            destination,
        });
        self.pending_2xx = None;
        self.retransmit_at = None;
        self.ack_deadline = None;
        if self.state != State::Ended {
            self.state = State::Terminating;
        }
    }

    /// The BYE (or CANCEL) got no answer at all: the call is over anyway.
    pub fn on_transaction_timeout(&mut self, purpose: Purpose) {
        match purpose {
            Purpose::Bye => self.end(EndReason::LocalBye, Some(408)),
            Purpose::Invite => {
                let reason = if self.cancel_requested {
                    EndReason::Cancelled
                } else {
                    EndReason::Timeout
                };
                self.end(reason, Some(408));
            }
            Purpose::ReInvite => {
                // RFC 3261 §14.1: a failed re-INVITE leaves the session as it was.
                self.reinvite_pending = false;
            }
            Purpose::Cancel | Purpose::Other => {}
        }
    }

    /// Puts the far end on hold (`a=sendonly`) or resumes (`a=sendrecv`), RFC 3264 §8.4.
    pub fn set_hold(&mut self, now: Instant, hold: bool) {
        if self.state != State::Confirmed || self.held_locally == hold {
            return;
        }
        self.held_locally = hold;
        self.media.direction = if hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        };
        if self.reinvite_pending || self.reinvite_in_progress {
            // One offer at a time (RFC 3264 §4): try again shortly.
            self.glare_retry_at = Some(now + Duration::from_millis(500));
            return;
        }
        self.send_reinvite();
    }

    fn send_reinvite(&mut self) {
        if self.state != State::Confirmed {
            return;
        }
        let destination = self.hop();
        let version = self.next_version();
        let offer = build_offer(&self.media, self.session_id, version);
        let Some(dialog) = self.dialog.as_mut() else {
            return;
        };
        let mut request = dialog.build_request(Method::Invite);
        request
            .headers
            .push(HeaderName::ContentType, "application/sdp");
        request
            .headers
            .push(HeaderName::UserAgent, self.user_agent.clone());
        request.body = offer.to_bytes();
        self.pending_offer = Some(offer);
        self.reinvite_pending = true;
        self.outputs.push_back(CallOutput::Request {
            request,
            purpose: Purpose::ReInvite,
            destination,
        });
    }

    fn on_reinvite_response(&mut self, now: Instant, response: &Response) {
        if response.status < 200 {
            return;
        }
        self.reinvite_pending = false;
        let destination = self.hop();
        match response.status {
            200..=299 => {
                let seq = response.headers.cseq().map(|c| c.seq).unwrap_or(0);
                if let Some(dialog) = self.dialog.as_mut() {
                    dialog.refresh_target(&response.headers);
                    let ack = dialog.build_ack(seq);
                    self.outputs.push_back(CallOutput::Ack {
                        request: ack.clone(),
                        destination,
                    });
                    self.last_ack = Some((ack, destination));
                }
                if let Some(media) = self.read_answer(&response.body) {
                    self.events.push_back(CallEvent::MediaUpdated(media));
                }
                self.events.push_back(if self.held_locally {
                    CallEvent::Held { by_remote: false }
                } else {
                    CallEvent::Resumed { by_remote: false }
                });
            }
            // RFC 3261 §14.1: glare: retry after a random wait, longer for the Call-ID owner.
            491 => {
                let wait_ms = if self.outgoing {
                    fastrand::u64(2100..=4000)
                } else {
                    fastrand::u64(0..=2000)
                };
                self.glare_retry_at = Some(now + Duration::from_millis(wait_ms));
            }
            // RFC 3261 §12.2.1.2: 481/408 end the dialog.
            481 | 408 => {
                self.end(EndReason::Rejected, Some(response.status));
            }
            _ => {
                // The session stays as it was (RFC 3261 §14.1); undo the hold flag.
                self.held_locally = !self.held_locally;
                self.media.direction = if self.held_locally {
                    Direction::SendOnly
                } else {
                    Direction::SendRecv
                };
            }
        }
    }

    /// A request inside this dialog (RFC 3261 §12.2.2). The response is queued.
    pub fn on_request(
        &mut self,
        now: Instant,
        transaction: TransactionId,
        request: &Request,
        reply_to: SocketAddr,
    ) {
        let ordered = self.dialog.as_mut().map(|d| d.accept_remote_seq(request));
        if let Some(Err(_)) = ordered {
            // RFC 3261 §12.2.2: a lower CSeq than seen before.
            return self.respond(transaction, request, 500);
        }
        match request.method {
            Method::Bye => {
                self.respond(transaction, request, 200);
                self.end(EndReason::RemoteBye, None);
            }
            Method::Invite => {
                self.reply_to = reply_to;
                self.on_reinvite(now, transaction, request)
            }
            Method::Update => self.on_update(transaction, request),
            Method::Options => {
                let mut response = Response::for_request(&request.headers, 200);
                response
                    .headers
                    .push(HeaderName::Allow, super::ALLOWED_METHODS);
                response
                    .headers
                    .push(HeaderName::Accept, super::uas::ACCEPTED_TYPES);
                self.send_response(transaction, response);
            }
            Method::Info => {
                if let Some(digit) = dtmf_relay_digit(request) {
                    self.events.push_back(CallEvent::Dtmf { digit });
                }
                self.respond(transaction, request, 200);
            }
            _ => {
                let mut response = Response::for_request(&request.headers, 405);
                response
                    .headers
                    .push(HeaderName::Allow, super::ALLOWED_METHODS);
                self.send_response(transaction, response);
            }
        }
    }

    fn respond(&mut self, transaction: TransactionId, request: &Request, status: u16) {
        let response = Response::for_request(&request.headers, status);
        self.send_response(transaction, response);
    }

    fn send_response(&mut self, transaction: TransactionId, mut response: Response) {
        response
            .headers
            .push(HeaderName::Server, self.user_agent.clone());
        self.outputs.push_back(CallOutput::Respond {
            transaction,
            response,
        });
    }

    fn on_reinvite(&mut self, now: Instant, transaction: TransactionId, request: &Request) {
        if !matches!(self.state, State::Confirmed | State::AwaitingAck) {
            return self.respond(transaction, request, 491);
        }
        // RFC 3261 §14.2: an offer while ours is pending is glare: 491.
        if self.reinvite_pending || self.reinvite_in_progress {
            return self.respond(transaction, request, 491);
        }
        if let Some(dialog) = self.dialog.as_mut() {
            dialog.refresh_target(&request.headers);
        }
        let mut response = Response::for_request(&request.headers, 200);
        if request.body.is_empty() {
            // RFC 3264 §5: an offer-less re-INVITE gets our offer in the 2xx.
            let version = self.next_version();
            let offer = build_offer(&self.media, self.session_id, version);
            response.body = offer.to_bytes();
            self.pending_offer = Some(offer);
            self.negotiated = None;
        } else {
            match self.answer_remote_offer(&request.body) {
                Ok(body) => response.body = body,
                Err(status) => return self.respond(transaction, request, status),
            }
        }
        response
            .headers
            .push(HeaderName::ContentType, "application/sdp");
        response
            .headers
            .push(HeaderName::Contact, format!("<{}>", self.contact));
        response
            .headers
            .push(HeaderName::Server, self.user_agent.clone());
        self.outputs.push_back(CallOutput::Respond {
            transaction,
            response: response.clone(),
        });
        // Our 2xx is retransmitted until its ACK, like the first one (RFC 3261 §14.2).
        self.invite_transaction = Some(transaction);
        self.reinvite_in_progress = true;
        self.pending_2xx = Some(response);
        self.retransmit_interval = self.timers.t1;
        self.retransmit_at = Some(now + self.timers.t1);
        self.ack_deadline = Some(now + self.timers.t1 * 64);
    }

    fn on_update(&mut self, transaction: TransactionId, request: &Request) {
        if request.body.is_empty() {
            return self.respond(transaction, request, 200);
        }
        if self.reinvite_pending {
            return self.respond(transaction, request, 491);
        }
        if let Some(dialog) = self.dialog.as_mut() {
            dialog.refresh_target(&request.headers);
        }
        match self.answer_remote_offer(&request.body) {
            Ok(body) => {
                let mut response = Response::for_request(&request.headers, 200);
                response.body = body;
                response
                    .headers
                    .push(HeaderName::ContentType, "application/sdp");
                response
                    .headers
                    .push(HeaderName::Contact, format!("<{}>", self.contact));
                self.send_response(transaction, response);
            }
            Err(status) => self.respond(transaction, request, status),
        }
    }

    /// Answers an offer inside the dialog; reports hold/resume by the far end.
    fn answer_remote_offer(&mut self, body: &[u8]) -> Result<Vec<u8>, u16> {
        let offer = SessionDescription::from_bytes(body).map_err(|_| 400u16)?;
        let version = self.next_version();
        let (answer, negotiated) = answer_offer(&offer, &self.media, self.session_id, version)
            .map_err(|e: NegotiationError| e.status_code())?;
        let held = !negotiated.remote_direction.receives();
        if held != self.held_remotely {
            self.held_remotely = held;
            self.events.push_back(if held {
                CallEvent::Held { by_remote: true }
            } else {
                CallEvent::Resumed { by_remote: true }
            });
        }
        self.negotiated = Some(negotiated.clone());
        self.events.push_back(CallEvent::MediaUpdated(negotiated));
        Ok(answer.to_bytes())
    }
}

/// The digit of an INFO carrying `application/dtmf-relay` (`Signal=5`).
fn dtmf_relay_digit(request: &Request) -> Option<char> {
    let content_type = request.headers.get(&HeaderName::ContentType)?;
    if !content_type
        .trim()
        .to_ascii_lowercase()
        .starts_with("application/dtmf-relay")
    {
        return None;
    }
    let body = std::str::from_utf8(&request.body).ok()?;
    body.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("signal") {
            return None;
        }
        let digit = value.trim().chars().next()?.to_ascii_uppercase();
        matches!(digit, '0'..='9' | '*' | '#' | 'A'..='D').then_some(digit)
    })
}
