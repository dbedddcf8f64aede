//! Registration with a registrar (RFC 3261 §10.2), sans-IO.
//!
//! [`Registration`] builds REGISTER requests (without Via: the user agent core adds it and
//! runs the transaction) and reacts to their responses: digest challenges (RFC 8760), 423
//! with Min-Expires, the expiry granted per Contact, refreshes before expiry, bounded
//! back-off after a failed refresh, and a Contact fixed up from `received`/`rport`
//! (RFC 3581 §9) when the registrar saw us at another address.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::auth::{AuthError, Challenge, ChallengeOutcome, Credentials, DigestClient};
use super::headers::NameAddr;
use super::message::{HeaderName, Method, Request, Response, reason_phrase};
use super::transport::observed_address;
use super::uri::{Host, SipUri, Uri};

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct RegistrationConfig {
    /// The address of record, e.g. `sip:alice@example.com`.
    pub aor: SipUri,
    /// Request-URI of the REGISTER: the registrar's domain (RFC 3261 §10.2).
    pub registrar: Uri,
    /// Credentials for digest authentication, if the account has a password.
    pub credentials: Option<Credentials>,
    /// The expiry to ask for, in seconds.
    pub expires: u32,
    /// Our Contact URI (`sip:user@ip:port`).
    pub contact: SipUri,
    /// An outbound proxy to route through (loose routing, RFC 3261 §8.1.2).
    pub outbound_proxy: Option<Uri>,
    pub user_agent: String,
}

/// What happened, for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationEvent {
    /// The registrar accepted the binding for `expires` seconds.
    Registered { expires: u32, contact: String },
    /// A REGISTER failed. `fatal` when the registration has given up (wrong credentials,
    /// rejected before ever succeeding); otherwise it will retry after `retry_in`.
    Failed {
        status: u16,
        reason: String,
        fatal: bool,
        retry_in: Option<Duration>,
    },
    /// The binding was removed (Expires: 0 accepted), or the unregistration got no
    /// answer in time.
    Unregistered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationState {
    Idle,
    Registering,
    Registered,
    Unregistering,
    /// Gave up; needs a new `register()`.
    Failed,
}

/// Shortest refresh interval we schedule, so a tiny grant cannot make us spin.
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// Back-off after failed refreshes: doubling from 2 s, capped at 64 s (cf. RFC 5626 §4.5).
const BACKOFF_BASE: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(64);
/// At most this many 423 rounds (each must raise the expiry) before giving up.
const MAX_INTERVAL_RETRIES: u32 = 3;

pub struct Registration {
    config: RegistrationConfig,
    call_id: String,
    from_tag: String,
    cseq: u32,
    state: RegistrationState,
    digest: Option<DigestClient>,
    /// A Contact we used before a NAT fix-up, to be removed in the next REGISTER.
    stale_contact: Option<SipUri>,
    /// When to send the next REGISTER (refresh or retry).
    next_register_at: Option<Instant>,
    failures: u32,
    interval_retries: u32,
    ever_registered: bool,
    events: VecDeque<RegistrationEvent>,
}

impl Registration {
    pub fn new(config: RegistrationConfig, call_id: String, from_tag: String) -> Registration {
        let digest = config.credentials.clone().map(DigestClient::new);
        Registration {
            config,
            call_id,
            from_tag,
            cseq: 0,
            state: RegistrationState::Idle,
            digest,
            stale_contact: None,
            next_register_at: None,
            failures: 0,
            interval_retries: 0,
            ever_registered: false,
            events: VecDeque::new(),
        }
    }

    pub fn state(&self) -> RegistrationState {
        self.state
    }

    pub fn contact(&self) -> &SipUri {
        &self.config.contact
    }

    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// Starts (or restarts) registering: the REGISTER to send.
    pub fn register(&mut self) -> Request {
        self.state = RegistrationState::Registering;
        self.next_register_at = None;
        self.build(self.config.expires)
    }

    /// Removes our binding (RFC 3261 §10.2.2). `None` when nothing is registered.
    pub fn unregister(&mut self) -> Option<Request> {
        match self.state {
            RegistrationState::Idle | RegistrationState::Failed => None,
            _ => {
                self.state = RegistrationState::Unregistering;
                self.next_register_at = None;
                Some(self.build(0))
            }
        }
    }

    /// The next time [`Registration::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_register_at
    }

    /// Refresh or retry when due: the REGISTER to send.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Request> {
        match self.next_register_at {
            Some(at) if at <= now => {
                self.next_register_at = None;
                if self.state == RegistrationState::Registered {
                    self.state = RegistrationState::Registering;
                }
                Some(self.build(self.config.expires))
            }
            _ => None,
        }
    }

    pub fn poll_event(&mut self) -> Option<RegistrationEvent> {
        self.events.pop_front()
    }

    /// The REGISTER transaction timed out (RFC 3261 §8.1.3.1: as a 408).
    pub fn on_transaction_timeout(&mut self, now: Instant) {
        if self.state == RegistrationState::Unregistering {
            self.state = RegistrationState::Idle;
            self.events.push_back(RegistrationEvent::Unregistered);
            return;
        }
        self.fail(now, 408, reason_phrase(408).to_string(), false);
    }

    /// A final or provisional response to our REGISTER; returns the REGISTER to send next,
    /// if the response calls for one at once (challenge, 423, NAT fix-up).
    pub fn on_response(&mut self, now: Instant, response: &Response) -> Option<Request> {
        if response.status < 200 {
            return None;
        }
        let unregistering = self.state == RegistrationState::Unregistering;
        match response.status {
            200..=299 if unregistering => {
                self.state = RegistrationState::Idle;
                self.events.push_back(RegistrationEvent::Unregistered);
                None
            }
            200..=299 => self.on_success(now, response),
            401 | 407 => self.on_challenge(now, response, unregistering),
            423 if !unregistering => self.on_interval_too_brief(now, response),
            status => {
                if unregistering {
                    self.state = RegistrationState::Idle;
                    self.events.push_back(RegistrationEvent::Failed {
                        status,
                        reason: response.reason.clone(),
                        fatal: true,
                        retry_in: None,
                    });
                    self.events.push_back(RegistrationEvent::Unregistered);
                    return None;
                }
                // A server busy or a timeout is worth a retry; other refusals are final
                // unless we were registered before (then keep trying, bounded back-off).
                let transient = matches!(status, 408 | 480 | 500..=599);
                self.fail(now, status, response.reason.clone(), transient);
                if let Some(seconds) = retry_after(response)
                    && self.state == RegistrationState::Registering
                {
                    let wait = Duration::from_secs(seconds.clamp(1, 3600) as u64);
                    self.next_register_at = Some(now + wait.min(BACKOFF_MAX));
                }
                None
            }
        }
    }

    fn on_success(&mut self, now: Instant, response: &Response) -> Option<Request> {
        self.failures = 0;
        self.interval_retries = 0;
        self.stale_contact = None;
        // RFC 3581 §9: the registrar saw us elsewhere (NAT): register that address instead.
        if let Some(seen) = observed_address(&response.headers)
            && !self.contact_is(seen)
        {
            let old = self.config.contact.clone();
            self.config.contact.host = Host::from(seen.ip());
            self.config.contact.port = Some(seen.port());
            self.stale_contact = Some(old);
            return Some(self.build(self.config.expires));
        }
        let granted = self.granted_expiry(response);
        if granted == 0 {
            self.fail(
                now,
                response.status,
                "registrar granted no expiry".into(),
                false,
            );
            return None;
        }
        self.state = RegistrationState::Registered;
        self.ever_registered = true;
        self.next_register_at = Some(now + refresh_delay(granted));
        self.events.push_back(RegistrationEvent::Registered {
            expires: granted,
            contact: self.config.contact.to_string(),
        });
        None
    }

    fn on_challenge(
        &mut self,
        now: Instant,
        response: &Response,
        unregistering: bool,
    ) -> Option<Request> {
        let name = if response.status == 407 {
            HeaderName::ProxyAuthenticate
        } else {
            HeaderName::WwwAuthenticate
        };
        let values: Vec<&str> = response.headers.get_all(&name).collect();
        let outcome = match self.digest.as_mut() {
            None => Err("no password configured for this account".to_string()),
            Some(digest) => Challenge::parse_all(&values)
                .and_then(|c| digest.on_challenge(response.status, &c))
                .map_err(|e: AuthError| e.to_string()),
        };
        match outcome {
            Ok(ChallengeOutcome::Retry) | Ok(ChallengeOutcome::RetryStale) => {
                let expires = if unregistering {
                    0
                } else {
                    self.config.expires
                };
                Some(self.build(expires))
            }
            Ok(ChallengeOutcome::CredentialsRejected) => {
                self.give_up(response.status, response.reason.clone());
                None
            }
            Err(why) => {
                self.give_up(response.status, format!("{} ({why})", response.reason));
                let _ = now;
                None
            }
        }
    }

    fn on_interval_too_brief(&mut self, now: Instant, response: &Response) -> Option<Request> {
        let min = response
            .headers
            .get(&HeaderName::MinExpires)
            .and_then(super::message::parse_delta_seconds);
        match min {
            // RFC 3261 §10.2.8: retry with at least Min-Expires.
            Some(min)
                if min > self.config.expires && self.interval_retries < MAX_INTERVAL_RETRIES =>
            {
                self.interval_retries += 1;
                self.config.expires = min;
                Some(self.build(min))
            }
            _ => {
                self.fail(now, 423, response.reason.clone(), false);
                None
            }
        }
    }

    /// Records a failure; retries later with back-off when we were registered before or
    /// the failure is transient, otherwise gives up.
    fn fail(&mut self, now: Instant, status: u16, reason: String, transient: bool) {
        if !self.ever_registered && !transient {
            self.give_up(status, reason);
            return;
        }
        if !self.ever_registered && transient && self.failures >= 2 {
            // Never registered and the server keeps failing: stop after three tries.
            self.give_up(status, reason);
            return;
        }
        let delay = BACKOFF_BASE
            .saturating_mul(1 << self.failures.min(6))
            .min(BACKOFF_MAX);
        self.failures += 1;
        self.state = RegistrationState::Registering;
        self.next_register_at = Some(now + delay);
        self.events.push_back(RegistrationEvent::Failed {
            status,
            reason,
            fatal: false,
            retry_in: Some(delay),
        });
    }

    fn give_up(&mut self, status: u16, reason: String) {
        self.state = RegistrationState::Failed;
        self.next_register_at = None;
        self.events.push_back(RegistrationEvent::Failed {
            status,
            reason,
            fatal: true,
            retry_in: None,
        });
    }

    fn contact_is(&self, addr: SocketAddr) -> bool {
        self.config.contact.host.ip() == Some(addr.ip())
            && self.config.contact.port_or_default() == addr.port()
    }

    /// RFC 3261 §10.2.4: the expiry for our Contact in the 2xx, else Expires, else ours.
    fn granted_expiry(&self, response: &Response) -> u32 {
        let ours = &self.config.contact;
        let from_contact = response.headers.contacts().ok().and_then(|contacts| {
            contacts.iter().find_map(|c| {
                let uri = c.uri.as_sip()?;
                let same = uri.host == ours.host
                    && uri.port_or_default() == ours.port_or_default()
                    && uri.user == ours.user;
                if same {
                    c.params
                        .value("expires")
                        .and_then(super::message::parse_delta_seconds)
                } else {
                    None
                }
            })
        });
        from_contact
            .or_else(|| response.headers.expires())
            .unwrap_or(self.config.expires)
    }

    fn build(&mut self, expires: u32) -> Request {
        self.cseq += 1;
        let mut request = Request::new(Method::Register, self.config.registrar.clone());
        let h = &mut request.headers;
        h.push(HeaderName::MaxForwards, "70");
        if let Some(proxy) = &self.config.outbound_proxy {
            h.push(HeaderName::Route, route_value(proxy));
        }
        let mut to = NameAddr::new(Uri::Sip(self.config.aor.clone()));
        h.push(HeaderName::To, to.to_string());
        to.set_tag(&self.from_tag);
        h.push(HeaderName::From, to.to_string());
        h.push(HeaderName::CallId, self.call_id.clone());
        h.push(HeaderName::CSeq, format!("{} REGISTER", self.cseq));
        if let Some(old) = &self.stale_contact {
            h.push(HeaderName::Contact, format!("<{old}>;expires=0"));
        }
        h.push(HeaderName::Contact, format!("<{}>", self.config.contact));
        h.push(HeaderName::Expires, expires.to_string());
        h.push(HeaderName::UserAgent, self.config.user_agent.clone());
        h.push(HeaderName::Allow, crate::sip::ALLOWED_METHODS);
        if let Some(digest) = self.digest.as_mut() {
            let uri = self.config.registrar.to_string();
            if let Some(value) = digest.authorize("REGISTER", &uri, &request.body) {
                let name = if digest.is_proxy() {
                    HeaderName::ProxyAuthorization
                } else {
                    HeaderName::Authorization
                };
                request.headers.push(name, value);
            }
        }
        request
    }
}

/// A Route value for an outbound proxy, loose-routing (`;lr`, RFC 3261 §16.12.1.1).
pub fn route_value(proxy: &Uri) -> String {
    let mut proxy = proxy.clone();
    if let Some(sip) = proxy.as_sip_mut()
        && !sip.params.contains("lr")
    {
        sip.params.set("lr", None);
    }
    format!("<{proxy}>")
}

/// When to refresh a binding granted for `granted` seconds: half-way for short grants,
/// 30 s before expiry for long ones.
fn refresh_delay(granted: u32) -> Duration {
    let granted_ms = granted as u64 * 1000;
    let ms = (granted_ms / 2).max(granted_ms.saturating_sub(30_000));
    Duration::from_millis(ms).max(MIN_REFRESH)
}

fn retry_after(response: &Response) -> Option<u32> {
    let value = response.headers.get_named("Retry-After")?;
    let seconds = value.split([';', '(', ' ']).next()?;
    super::message::parse_delta_seconds(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::auth::{Secret, verify_authorization};
    use crate::sip::message::Headers;

    fn config(password: Option<&str>) -> RegistrationConfig {
        RegistrationConfig {
            aor: match Uri::parse("sip:alice@127.0.0.1:5060").unwrap() {
                Uri::Sip(s) => s,
                _ => unreachable!(),
            },
            registrar: Uri::parse("sip:127.0.0.1:5060").unwrap(),
            credentials: password.map(|p| Credentials::new("alice", Secret::new(p))),
            expires: 600,
            contact: match Uri::parse("sip:alice@127.0.0.1:40000").unwrap() {
                Uri::Sip(s) => s,
                _ => unreachable!(),
            },
            outbound_proxy: None,
            user_agent: "siphon-test".into(),
        }
    }

    fn response(request: &Request, status: u16, extra: &[(HeaderName, &str)]) -> Response {
        let mut headers = Headers::new();
        headers.push(
            HeaderName::Via,
            "SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKt",
        );
        for h in request.headers.iter() {
            if matches!(
                h.name,
                HeaderName::From | HeaderName::To | HeaderName::CallId | HeaderName::CSeq
            ) {
                headers.push(h.name.clone(), h.value.clone());
            }
        }
        let mut r = Response::for_request(&headers, status);
        for (name, value) in extra {
            r.headers.push(name.clone(), *value);
        }
        r
    }

    #[test]
    fn registers_with_digest_and_refreshes_half_way() {
        let t0 = Instant::now();
        let mut reg = Registration::new(config(Some("secret")), "cid".into(), "tag1".into());
        let first = reg.register();
        assert_eq!(first.headers.cseq().unwrap().seq, 1);
        assert!(!first.headers.contains(&HeaderName::Authorization));
        let challenge = response(
            &first,
            401,
            &[(
                HeaderName::WwwAuthenticate,
                "Digest realm=\"r\", nonce=\"n1\", algorithm=SHA-256, qop=\"auth\"",
            )],
        );
        let second = reg
            .on_response(t0, &challenge)
            .expect("retry with credentials");
        assert_eq!(second.headers.cseq().unwrap().seq, 2);
        assert_eq!(second.headers.call_id(), Some("cid"));
        let auth = second.headers.get(&HeaderName::Authorization).unwrap();
        assert!(verify_authorization(auth, "REGISTER", "secret").unwrap());
        assert!(auth.contains("nc=00000001"));
        let ok = response(
            &second,
            200,
            &[(
                HeaderName::Contact,
                "<sip:alice@127.0.0.1:40000>;expires=60",
            )],
        );
        assert!(reg.on_response(t0, &ok).is_none());
        assert_eq!(
            reg.poll_event(),
            Some(RegistrationEvent::Registered {
                expires: 60,
                contact: "sip:alice@127.0.0.1:40000".into()
            })
        );
        assert_eq!(reg.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        assert!(reg.handle_timeout(t0 + Duration::from_secs(29)).is_none());
        let refresh = reg.handle_timeout(t0 + Duration::from_secs(30)).unwrap();
        // The refresh reuses the nonce with the next count.
        let auth = refresh.headers.get(&HeaderName::Authorization).unwrap();
        assert!(auth.contains("nc=00000002"), "{auth}");
        assert_eq!(refresh.headers.cseq().unwrap().seq, 3);
    }

    #[test]
    fn wrong_password_gives_up_after_one_try() {
        let t0 = Instant::now();
        let mut reg = Registration::new(config(Some("wrong")), "cid".into(), "tag1".into());
        let first = reg.register();
        let www = [(
            HeaderName::WwwAuthenticate,
            "Digest realm=\"r\", nonce=\"n1\"",
        )];
        let second = reg.on_response(t0, &response(&first, 401, &www)).unwrap();
        assert!(reg.on_response(t0, &response(&second, 401, &www)).is_none());
        assert!(matches!(
            reg.poll_event(),
            Some(RegistrationEvent::Failed {
                status: 401,
                fatal: true,
                ..
            })
        ));
        assert_eq!(reg.state(), RegistrationState::Failed);
        assert_eq!(reg.poll_timeout(), None);
    }

    #[test]
    fn interval_too_brief_retries_with_min_expires() {
        let t0 = Instant::now();
        let mut reg = Registration::new(config(None), "cid".into(), "tag1".into());
        let first = reg.register();
        let retry = reg
            .on_response(
                t0,
                &response(&first, 423, &[(HeaderName::MinExpires, "1200")]),
            )
            .unwrap();
        assert_eq!(retry.headers.expires(), Some(1200));
        // A second 423 that does not raise the interval is final.
        assert!(
            reg.on_response(
                t0,
                &response(&retry, 423, &[(HeaderName::MinExpires, "1200")])
            )
            .is_none()
        );
        assert!(matches!(
            reg.poll_event(),
            Some(RegistrationEvent::Failed {
                status: 423,
                fatal: true,
                ..
            })
        ));
    }

    #[test]
    fn failed_refresh_backs_off_and_recovers() {
        let t0 = Instant::now();
        let mut reg = Registration::new(config(None), "cid".into(), "tag1".into());
        let first = reg.register();
        reg.on_response(t0, &response(&first, 200, &[(HeaderName::Expires, "10")]));
        assert!(matches!(
            reg.poll_event(),
            Some(RegistrationEvent::Registered { expires: 10, .. })
        ));
        let t1 = t0 + Duration::from_secs(5);
        let refresh = reg.handle_timeout(t1).unwrap();
        reg.on_response(t1, &response(&refresh, 503, &[]));
        assert!(matches!(
            reg.poll_event(),
            Some(RegistrationEvent::Failed { status: 503, fatal: false, retry_in: Some(d), .. }) if d == BACKOFF_BASE
        ));
        let retry = reg.handle_timeout(t1 + BACKOFF_BASE).unwrap();
        reg.on_transaction_timeout(t1 + BACKOFF_BASE);
        assert!(matches!(
            reg.poll_event(),
            Some(RegistrationEvent::Failed { status: 408, retry_in: Some(d), .. }) if d == BACKOFF_BASE * 2
        ));
        let t2 = t1 + BACKOFF_BASE * 3;
        let again = reg.handle_timeout(t2).unwrap();
        assert!(again.headers.cseq().unwrap().seq > retry.headers.cseq().unwrap().seq);
        reg.on_response(t2, &response(&again, 200, &[(HeaderName::Expires, "10")]));
        assert!(matches!(
            reg.poll_event(),
            Some(RegistrationEvent::Registered { .. })
        ));
        // Back-off is bounded.
        let mut reg = Registration::new(config(None), "c2".into(), "t".into());
        reg.ever_registered = true;
        for _ in 0..20 {
            reg.fail(t0, 503, "x".into(), true);
        }
        assert!(reg.poll_timeout().unwrap() <= t0 + BACKOFF_MAX);
    }

    #[test]
    fn nat_fixes_contact_and_unregisters_old_one() {
        let t0 = Instant::now();
        let mut reg = Registration::new(config(None), "cid".into(), "tag1".into());
        let first = reg.register();
        let mut ok = response(&first, 200, &[(HeaderName::Expires, "60")]);
        ok.headers.set(
            HeaderName::Via,
            "SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKt;received=127.0.0.2;rport=50000",
        );
        let fixed = reg
            .on_response(t0, &ok)
            .expect("re-register with the public address");
        let contacts: Vec<String> = fixed
            .headers
            .get_all(&HeaderName::Contact)
            .map(String::from)
            .collect();
        assert_eq!(
            contacts,
            vec![
                "<sip:alice@127.0.0.1:40000>;expires=0",
                "<sip:alice@127.0.0.2:50000>"
            ]
        );
        assert_eq!(reg.contact().to_string(), "sip:alice@127.0.0.2:50000");
    }

    #[test]
    fn unregister_sends_expires_zero() {
        let t0 = Instant::now();
        let mut reg = Registration::new(config(None), "cid".into(), "tag1".into());
        assert!(reg.unregister().is_none());
        let first = reg.register();
        reg.on_response(t0, &response(&first, 200, &[]));
        reg.poll_event();
        let bye = reg.unregister().unwrap();
        assert_eq!(bye.headers.expires(), Some(0));
        reg.on_response(t0, &response(&bye, 200, &[]));
        assert_eq!(reg.poll_event(), Some(RegistrationEvent::Unregistered));
        assert_eq!(reg.state(), RegistrationState::Idle);
    }

    #[test]
    fn refresh_delay_rules() {
        assert_eq!(refresh_delay(5), Duration::from_millis(2500));
        assert_eq!(refresh_delay(60), Duration::from_secs(30));
        assert_eq!(refresh_delay(3600), Duration::from_secs(3570));
        assert_eq!(refresh_delay(1), MIN_REFRESH);
    }
}
