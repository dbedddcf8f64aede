//! SIP HTTP-Digest client authentication (sans-IO).
//!
//! RFC 3261 §22 (SIP use of Digest), RFC 2617 (MD5, qop), RFC 7616
//! (SHA-256, `-sess`, challenge selection), RFC 8760 (SHA-256 in SIP).
//!
//! Only `qop=auth` and the RFC 2069 compatibility mode (no qop) are
//! implemented; `auth-int` is not.

use std::fmt;

use md5::Digest;
use thiserror::Error;

/// Longest slice of untrusted input echoed back inside an error message.
const ECHO_MAX: usize = 64;

/// Consecutive `stale=true` challenges tolerated before giving up.
const MAX_STALE_RETRIES: u32 = 3;

/// Errors from parsing challenges / credentials and from the client state machine.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("malformed authentication header at byte {pos}: {reason}")]
    Syntax { pos: usize, reason: &'static str },
    #[error("authentication scheme {0:?} is not Digest")]
    NotDigest(String),
    #[error("Digest header lacks required parameter {0:?}")]
    MissingParam(&'static str),
    #[error("Digest parameter {0:?} appears more than once")]
    DuplicateParam(String),
    #[error("invalid value for Digest parameter {0:?}")]
    InvalidParam(&'static str),
    #[error("unsupported Digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("unsupported qop {0:?} (only \"auth\" is implemented)")]
    UnsupportedQop(String),
    #[error("no supported Digest challenge (need MD5 or SHA-256, with qop=auth or no qop)")]
    NoSupportedChallenge,
    #[error("status {0} does not carry an authentication challenge (expected 401 or 407)")]
    UnexpectedStatus(u16),
    #[error("server keeps answering stale=true without accepting a fresh nonce")]
    StaleLoop,
}

/// Digest hash algorithm (RFC 7616 §3.3, RFC 8760 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
}

impl DigestAlgorithm {
    /// Parses an `algorithm` token case-insensitively; `None` when unsupported
    /// (e.g. `SHA-512-256`).
    pub fn from_name(name: &str) -> Option<Self> {
        const NAMES: [(&str, DigestAlgorithm); 4] = [
            ("MD5", DigestAlgorithm::Md5),
            ("MD5-sess", DigestAlgorithm::Md5Sess),
            ("SHA-256", DigestAlgorithm::Sha256),
            ("SHA-256-sess", DigestAlgorithm::Sha256Sess),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, a)| a)
    }

    /// Canonical token as written in the `algorithm` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
        }
    }

    /// True for the `-sess` variants (RFC 7616 §3.4.2).
    pub fn is_session(self) -> bool {
        matches!(self, Self::Md5Sess | Self::Sha256Sess)
    }

    /// Lowercase hex of H(p1 ":" p2 ":" ...).
    fn hash(self, parts: &[&str]) -> String {
        match self {
            Self::Md5 | Self::Md5Sess => hash_parts::<md5::Md5>(parts),
            Self::Sha256 | Self::Sha256Sess => hash_parts::<sha2::Sha256>(parts),
        }
    }
}

impl fmt::Display for DigestAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

fn hash_parts<D: Digest>(parts: &[&str]) -> String {
    let mut d = D::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            d.update(b":");
        }
        d.update(p.as_bytes());
    }
    to_hex(&d.finalize())
}

fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0x0f)] as char);
    }
    s
}

/// A password. `Debug` and `Display` print `***` so it never reaches logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The clear-text value; use only to compute digests.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// Account credentials; the realm comes from the challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<Secret>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }
}

/// One Digest challenge from a `WWW-Authenticate` / `Proxy-Authenticate` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// `None` when the server named an algorithm we do not implement;
    /// an absent parameter means MD5 (RFC 2617 §3.2.1).
    pub algorithm: Option<DigestAlgorithm>,
    /// The `algorithm` token exactly as sent, if any.
    pub algorithm_name: Option<String>,
    /// Lowercased qop options; `None` if absent (RFC 2069 compatibility mode).
    pub qop: Option<Vec<String>>,
    pub stale: bool,
    /// URIs of the protection space (RFC 7616 §3.3), whitespace separated on the wire.
    pub domain: Vec<String>,
}

impl Challenge {
    /// Parses a header value whose first challenge must be Digest. Any
    /// further challenges in the same value are ignored (see [`Challenge::parse_all`]).
    pub fn parse(value: &str) -> Result<Challenge, AuthError> {
        let raw = parse_raw(value)?;
        match raw.first() {
            Some(first) => Challenge::from_raw(first),
            None => Err(AuthError::Syntax {
                pos: 0,
                reason: "empty header value",
            }),
        }
    }

    /// Parses every Digest challenge in several header values (a value may also
    /// hold several comma-separated challenges, RFC 7235 §4.1). Other schemes
    /// and malformed Digest challenges are skipped; the first error is
    /// returned only if no Digest challenge could be parsed.
    pub fn parse_all(values: &[&str]) -> Result<Vec<Challenge>, AuthError> {
        let mut out = Vec::new();
        let mut first_err = None;
        for v in values {
            match parse_raw(v) {
                Ok(raws) => {
                    for r in &raws {
                        match Challenge::from_raw(r) {
                            Ok(c) => out.push(c),
                            Err(e) => {
                                first_err.get_or_insert(e);
                            }
                        }
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match (out.is_empty(), first_err) {
            (true, Some(e)) => Err(e),
            (true, None) => Err(AuthError::NoSupportedChallenge),
            _ => Ok(out),
        }
    }

    /// True if we can answer it: MD5 or SHA-256 family, and qop (if offered)
    /// includes `auth`. `-sess` needs a cnonce, hence a qop.
    pub fn is_supported(&self) -> bool {
        match (self.algorithm, &self.qop) {
            (None, _) => false,
            (Some(a), None) => !a.is_session(),
            (Some(_), Some(q)) => q.iter().any(|q| q == "auth"),
        }
    }

    fn from_raw(raw: &RawChallenge) -> Result<Challenge, AuthError> {
        if !raw.scheme.eq_ignore_ascii_case("digest") {
            return Err(AuthError::NotDigest(echo(&raw.scheme)));
        }
        if raw.token68 {
            return Err(AuthError::Syntax {
                pos: raw.pos,
                reason: "Digest takes auth-params, not a token68",
            });
        }
        let mut realm = None;
        let mut nonce = None;
        let mut opaque = None;
        let mut algorithm = None;
        let mut qop = None;
        let mut stale = None;
        let mut domain = None;
        for (name, value) in &raw.params {
            let slot = match name.as_str() {
                "realm" => &mut realm,
                "nonce" => &mut nonce,
                "opaque" => &mut opaque,
                "algorithm" => &mut algorithm,
                "qop" => &mut qop,
                "stale" => &mut stale,
                "domain" => &mut domain,
                _ => continue, // RFC 7616 §3.3: unknown directives are ignored
            };
            set_once(slot, name, value)?;
        }
        let algorithm_name: Option<String> = algorithm;
        let qop = qop
            .map(|q: String| {
                q.split(',')
                    .map(|t| t.trim_matches(LWS).to_ascii_lowercase())
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>()
            })
            .filter(|q| !q.is_empty());
        Ok(Challenge {
            realm: realm.ok_or(AuthError::MissingParam("realm"))?,
            nonce: nonce.ok_or(AuthError::MissingParam("nonce"))?,
            opaque,
            algorithm: match &algorithm_name {
                None => Some(DigestAlgorithm::Md5),
                Some(n) => DigestAlgorithm::from_name(n),
            },
            algorithm_name,
            qop,
            // RFC 7616 §3.3: anything but "true" is false.
            stale: stale.is_some_and(|s| s.eq_ignore_ascii_case("true")),
            domain: domain
                .map(|d| {
                    d.split(LWS)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// First supported challenge in order of appearance (RFC 7616 §3.7).
pub fn select_challenge(challenges: &[Challenge]) -> Option<&Challenge> {
    challenges.iter().find(|c| c.is_supported())
}

/// What the caller should do after a 401/407.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeOutcome {
    /// New challenge: resend the request with [`DigestClient::authorize`].
    Retry,
    /// `stale=true`: the nonce expired, not the credentials; resend.
    RetryStale,
    /// The server refused our answer to this realm: do not resend.
    CredentialsRejected,
}

impl ChallengeOutcome {
    pub fn should_retry(self) -> bool {
        !matches!(self, Self::CredentialsRejected)
    }
}

/// State for the challenge currently in use.
#[derive(Debug, Clone)]
struct Session {
    challenge: Challenge,
    algorithm: DigestAlgorithm,
    /// Uses of this nonce so far (the last `nc` sent).
    nc: u32,
    /// `-sess`: one cnonce per nonce so HA1 stays fixed (RFC 7616 §3.4.2).
    sess_cnonce: Option<String>,
}

type CnonceSource = Box<dyn FnMut() -> String + Send>;

/// Digest client for one account towards one registrar / proxy.
pub struct DigestClient {
    credentials: Credentials,
    proxy: bool,
    session: Option<Session>,
    stale_streak: u32,
    cnonce_source: CnonceSource,
}

impl fmt::Debug for DigestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestClient")
            .field("credentials", &self.credentials)
            .field("proxy", &self.proxy)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl DigestClient {
    /// Client with random 128-bit hex cnonces.
    pub fn new(credentials: Credentials) -> Self {
        Self::with_cnonce_source(credentials, || {
            format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
        })
    }

    /// Client with caller-supplied cnonces (deterministic tests).
    pub fn with_cnonce_source(
        credentials: Credentials,
        cnonce_source: impl FnMut() -> String + Send + 'static,
    ) -> Self {
        Self {
            credentials,
            proxy: false,
            session: None,
            stale_streak: 0,
            cnonce_source: Box::new(cnonce_source),
        }
    }

    /// True when the current challenge came in a 407.
    pub fn is_proxy(&self) -> bool {
        self.proxy
    }

    /// Header carrying our answer: RFC 3261 §22.2 / §22.3.
    pub fn header_name(&self) -> &'static str {
        if self.proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        }
    }

    /// The challenge currently answered, if any.
    pub fn challenge(&self) -> Option<&Challenge> {
        self.session.as_ref().map(|s| &s.challenge)
    }

    /// Handles the challenges of a 401 or 407 response.
    ///
    /// A challenge for the realm we just answered with a nonce on its first
    /// use (or the same nonce again) means the credentials were rejected.
    /// After a nonce was reused (nc > 1) a new nonce without `stale` is taken
    /// as an expiry and retried once.
    pub fn on_challenge(
        &mut self,
        status: u16,
        challenges: &[Challenge],
    ) -> Result<ChallengeOutcome, AuthError> {
        let proxy = match status {
            401 => false,
            407 => true,
            s => return Err(AuthError::UnexpectedStatus(s)),
        };
        let chosen = select_challenge(challenges).ok_or(AuthError::NoSupportedChallenge)?;
        let algorithm = chosen.algorithm.ok_or(AuthError::NoSupportedChallenge)?;

        let outcome = match &self.session {
            Some(prev)
                if prev.nc > 0 && self.proxy == proxy && prev.challenge.realm == chosen.realm =>
            {
                let same_nonce = prev.challenge.nonce == chosen.nonce;
                if chosen.stale {
                    // RFC 7616 §3.3: stale=true, retry without asking the user.
                    let streak = if prev.nc > 1 {
                        1
                    } else {
                        self.stale_streak + 1
                    };
                    if same_nonce || streak > MAX_STALE_RETRIES {
                        return Err(AuthError::StaleLoop);
                    }
                    self.stale_streak = streak;
                    ChallengeOutcome::RetryStale
                } else if prev.nc == 1 || same_nonce {
                    ChallengeOutcome::CredentialsRejected
                } else {
                    ChallengeOutcome::Retry
                }
            }
            _ => ChallengeOutcome::Retry,
        };
        if outcome != ChallengeOutcome::RetryStale {
            self.stale_streak = 0;
        }
        self.proxy = proxy;
        self.session = Some(Session {
            challenge: chosen.clone(),
            algorithm,
            nc: 0,
            sess_cnonce: None,
        });
        Ok(outcome)
    }

    /// Authorization / Proxy-Authorization value for the next request, or
    /// `None` before any challenge. Each call uses the next nonce-count.
    /// `body` is reserved for `qop=auth-int`, which is not implemented.
    /// (RFC 3261 §22.1: ACK/CANCEL reuse the INVITE's header instead.)
    pub fn authorize(&mut self, method: &str, uri: &str, _body: &[u8]) -> Option<String> {
        let session = self.session.as_mut()?;
        // nc must not wrap (RFC 7616 §3.4); a new challenge is needed.
        session.nc = session.nc.checked_add(1)?;
        let ch = &session.challenge;
        let qop = match ch.qop {
            Some(_) => {
                let cnonce = if session.algorithm.is_session() {
                    session
                        .sess_cnonce
                        .get_or_insert_with(&mut self.cnonce_source)
                        .clone()
                } else {
                    (self.cnonce_source)()
                };
                Some(QopParams {
                    cnonce,
                    nc: format!("{:08x}", session.nc),
                })
            }
            None => None,
        };
        let response = compute_response(&ResponseInput {
            algorithm: session.algorithm,
            username: &self.credentials.username,
            realm: &ch.realm,
            password: self.credentials.password.expose(),
            nonce: &ch.nonce,
            method,
            uri,
            qop: qop.as_ref(),
        });

        // RFC 7616 §3.4 / RFC 3261 §25.1: qop, algorithm, nc unquoted.
        let mut v = String::with_capacity(256);
        v.push_str("Digest username=");
        push_quoted(&mut v, &self.credentials.username);
        v.push_str(", realm=");
        push_quoted(&mut v, &ch.realm);
        v.push_str(", nonce=");
        push_quoted(&mut v, &ch.nonce);
        v.push_str(", uri=");
        push_quoted(&mut v, uri);
        v.push_str(", response=\"");
        v.push_str(&response);
        v.push_str("\", algorithm=");
        v.push_str(session.algorithm.name());
        if let Some(q) = &qop {
            v.push_str(", cnonce=");
            push_quoted(&mut v, &q.cnonce);
        }
        if let Some(o) = &ch.opaque {
            v.push_str(", opaque=");
            push_quoted(&mut v, o);
        }
        if let Some(q) = &qop {
            v.push_str(", qop=auth, nc=");
            v.push_str(&q.nc);
        }
        Some(v)
    }
}

struct QopParams {
    cnonce: String,
    /// 8 hex digits as sent.
    nc: String,
}

struct ResponseInput<'a> {
    algorithm: DigestAlgorithm,
    username: &'a str,
    realm: &'a str,
    password: &'a str,
    nonce: &'a str,
    method: &'a str,
    uri: &'a str,
    qop: Option<&'a QopParams>,
}

/// request-digest of RFC 7616 §3.4.1 (qop=auth) or RFC 2069 (no qop).
fn compute_response(i: &ResponseInput<'_>) -> String {
    let alg = i.algorithm;
    let mut ha1 = alg.hash(&[i.username, i.realm, i.password]);
    // RFC 7616 §3.4.2
    if alg.is_session() {
        let cnonce = i.qop.map_or("", |q| q.cnonce.as_str());
        ha1 = alg.hash(&[&ha1, i.nonce, cnonce]);
    }
    // RFC 7616 §3.4.3 (qop=auth)
    let ha2 = alg.hash(&[i.method, i.uri]);
    match i.qop {
        Some(q) => alg.hash(&[&ha1, i.nonce, &q.nc, &q.cnonce, "auth", &ha2]),
        None => alg.hash(&[&ha1, i.nonce, &ha2]),
    }
}

/// Appends `"value"` escaping `"` and `\` (RFC 3261 §25.1 quoted-pair).
/// Control characters cannot appear in a quoted-string and are dropped, so
/// a hostile nonce cannot inject header lines.
fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if is_ctl(c) && c != '\t' => {}
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A parsed `Authorization` / `Proxy-Authorization` Digest value (server side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: DigestAlgorithm,
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
    /// True when `qop=auth` was sent (then `cnonce` and `nc` are present).
    pub qop_auth: bool,
    /// Nonce-count exactly as sent (8 hex digits).
    pub nc: Option<String>,
}

impl Authorization {
    pub fn parse(value: &str) -> Result<Authorization, AuthError> {
        let raws = parse_raw(value)?;
        let raw = match raws.as_slice() {
            [one] => one,
            [] => {
                return Err(AuthError::Syntax {
                    pos: 0,
                    reason: "empty header value",
                });
            }
            [_, second, ..] => {
                return Err(AuthError::Syntax {
                    pos: second.pos,
                    reason: "more than one credentials in one value",
                });
            }
        };
        if !raw.scheme.eq_ignore_ascii_case("digest") {
            return Err(AuthError::NotDigest(echo(&raw.scheme)));
        }
        let mut f: [Option<String>; 10] = Default::default();
        const NAMES: [&str; 10] = [
            "username",
            "realm",
            "nonce",
            "uri",
            "response",
            "algorithm",
            "cnonce",
            "opaque",
            "qop",
            "nc",
        ];
        for (name, value) in &raw.params {
            if let Some(i) = NAMES.iter().position(|n| n == name) {
                set_once(&mut f[i], name, value)?;
            }
        }
        let [
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            cnonce,
            opaque,
            qop,
            nc,
        ] = f;
        let algorithm = match algorithm {
            None => DigestAlgorithm::Md5,
            Some(a) => DigestAlgorithm::from_name(&a)
                .ok_or_else(|| AuthError::UnsupportedAlgorithm(echo(&a)))?,
        };
        let qop_auth = match qop {
            None => false,
            Some(q) if q.eq_ignore_ascii_case("auth") => true,
            Some(q) => return Err(AuthError::UnsupportedQop(echo(&q))),
        };
        let (cnonce, nc) = if qop_auth {
            let cnonce = cnonce.ok_or(AuthError::MissingParam("cnonce"))?;
            let nc = nc.ok_or(AuthError::MissingParam("nc"))?;
            // RFC 7616 §3.4: nc is exactly 8 hex digits.
            if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(AuthError::InvalidParam("nc"));
            }
            (Some(cnonce), Some(nc))
        } else if algorithm.is_session() {
            return Err(AuthError::MissingParam("qop"));
        } else {
            (cnonce, None)
        };
        Ok(Authorization {
            username: username.ok_or(AuthError::MissingParam("username"))?,
            realm: realm.ok_or(AuthError::MissingParam("realm"))?,
            nonce: nonce.ok_or(AuthError::MissingParam("nonce"))?,
            uri: uri.ok_or(AuthError::MissingParam("uri"))?,
            response: response.ok_or(AuthError::MissingParam("response"))?,
            algorithm,
            cnonce,
            opaque,
            qop_auth,
            nc,
        })
    }

    /// Nonce-count as a number.
    pub fn nonce_count(&self) -> Option<u32> {
        self.nc
            .as_deref()
            .and_then(|n| u32::from_str_radix(n, 16).ok())
    }

    /// Recomputes the response with `password` and compares (constant time).
    /// Nonce freshness, nc replay and the uri/Request-URI match are the
    /// caller's job (RFC 3261 §22.4).
    pub fn verify(&self, method: &str, password: &str) -> bool {
        let qop = match (&self.cnonce, &self.nc) {
            (Some(cnonce), Some(nc)) if self.qop_auth => Some(QopParams {
                cnonce: cnonce.clone(),
                nc: nc.clone(),
            }),
            _ => None,
        };
        let expected = compute_response(&ResponseInput {
            algorithm: self.algorithm,
            username: &self.username,
            realm: &self.realm,
            password,
            nonce: &self.nonce,
            method,
            uri: &self.uri,
            qop: qop.as_ref(),
        });
        ct_eq_ignore_case(expected.as_bytes(), self.response.as_bytes())
    }
}

/// Parses an Authorization value and checks its response against `password`.
pub fn verify_authorization(
    header_value: &str,
    method: &str,
    password: &str,
) -> Result<bool, AuthError> {
    Ok(Authorization::parse(header_value)?.verify(method, password))
}

fn ct_eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| {
        acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())
    }) == 0
}

fn set_once(slot: &mut Option<String>, name: &str, value: &str) -> Result<(), AuthError> {
    // RFC 7616 §3.3: each directive at most once.
    if slot.is_some() {
        return Err(AuthError::DuplicateParam(echo(name)));
    }
    *slot = Some(value.to_owned());
    Ok(())
}

fn echo(s: &str) -> String {
    s.chars().take(ECHO_MAX).collect()
}

// ---------------------------------------------------------------------------
// auth-param lexer (RFC 3261 §25.1, §20.44; RFC 7235 §2.1, §4.1)

const LWS: &[char] = &[' ', '\t', '\r', '\n'];

/// A challenge or credentials: scheme plus either params or a token68.
#[derive(Debug)]
struct RawChallenge {
    scheme: String,
    pos: usize,
    token68: bool,
    /// Names lowercased; values unquoted and unescaped.
    params: Vec<(String, String)>,
}

fn is_ctl(c: char) -> bool {
    c.is_ascii_control()
}

/// RFC 3261 §25.1 token characters.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

fn is_token68_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~+/".contains(c)
}

struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_lws(&mut self) {
        while self.peek().is_some_and(|c| LWS.contains(&c)) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.bump();
        }
        &self.s[start..self.pos]
    }

    fn err(&self, reason: &'static str) -> AuthError {
        AuthError::Syntax {
            pos: self.pos,
            reason,
        }
    }

    /// If a token68 (RFC 7235 §2.1) followed by end or comma starts here,
    /// returns the position after it.
    fn token68_end(&self) -> Option<usize> {
        let mut probe = Lexer {
            s: self.s,
            pos: self.pos,
        };
        if probe.take_while(is_token68_char).is_empty() {
            return None;
        }
        probe.take_while(|c| c == '=');
        let end = probe.pos;
        probe.skip_lws();
        matches!(probe.peek(), None | Some(',')).then_some(end)
    }

    /// quoted-string with quoted-pair escapes; folding (CRLF WSP) becomes SP.
    fn quoted(&mut self) -> Result<String, AuthError> {
        self.bump(); // opening quote
        let mut out = String::new();
        loop {
            let c = self
                .bump()
                .ok_or_else(|| self.err("unterminated quoted string"))?;
            match c {
                '"' => return Ok(out),
                '\\' => match self.bump() {
                    Some(e) if !is_ctl(e) || e == '\t' => out.push(e),
                    Some(_) => return Err(self.err("control character in quoted-pair")),
                    None => return Err(self.err("unterminated quoted string")),
                },
                '\r' if self.s[self.pos..].starts_with("\n ")
                    || self.s[self.pos..].starts_with("\n\t") =>
                {
                    self.bump();
                    self.take_while(|c| c == ' ' || c == '\t');
                    out.push(' ');
                }
                '\t' => out.push(c),
                c if is_ctl(c) => return Err(self.err("control character in quoted string")),
                c => out.push(c),
            }
        }
    }

    /// Unquoted value: lenient (base64 nonces are sent bare by some servers).
    fn bare(&mut self) -> Result<String, AuthError> {
        let v = self.take_while(|c| !LWS.contains(&c) && c != ',' && c != '"' && !is_ctl(c));
        if v.is_empty() {
            return Err(self.err("empty or invalid parameter value"));
        }
        Ok(v.to_owned())
    }
}

/// Splits a header value into challenges (or credentials).
fn parse_raw(s: &str) -> Result<Vec<RawChallenge>, AuthError> {
    let mut lx = Lexer { s, pos: 0 };
    let mut out = Vec::new();
    loop {
        while lx.peek().is_some_and(|c| c == ',' || LWS.contains(&c)) {
            lx.bump();
        }
        if lx.peek().is_none() {
            break;
        }
        let pos = lx.pos;
        let scheme = lx.take_while(is_token_char);
        if scheme.is_empty() {
            return Err(lx.err("expected authentication scheme"));
        }
        let mut ch = RawChallenge {
            scheme: scheme.to_owned(),
            pos,
            token68: false,
            params: Vec::new(),
        };
        match lx.peek() {
            None | Some(',') => {}
            Some(c) if LWS.contains(&c) => {}
            Some(_) => return Err(lx.err("expected whitespace after scheme")),
        }
        lx.skip_lws();
        if let Some(end) = lx.token68_end() {
            ch.token68 = true;
            lx.pos = end;
        } else {
            parse_params(&mut lx, &mut ch)?;
        }
        out.push(ch);
    }
    Ok(out)
}

/// `#auth-param`; stops before a token not followed by `=` (next scheme).
fn parse_params(lx: &mut Lexer<'_>, ch: &mut RawChallenge) -> Result<(), AuthError> {
    loop {
        lx.skip_lws();
        match lx.peek() {
            None => return Ok(()),
            Some(',') => {
                lx.bump(); // empty list elements are allowed
                continue;
            }
            Some(_) => {}
        }
        let start = lx.pos;
        let name = lx.take_while(is_token_char);
        if name.is_empty() {
            return Err(lx.err("expected parameter name"));
        }
        lx.skip_lws();
        if lx.peek() != Some('=') {
            lx.pos = start; // start of the next challenge
            return Ok(());
        }
        lx.bump();
        lx.skip_lws();
        let value = if lx.peek() == Some('"') {
            lx.quoted()?
        } else {
            lx.bare()?
        };
        ch.params.push((name.to_ascii_lowercase(), value));
        lx.skip_lws();
        match lx.peek() {
            None => return Ok(()),
            Some(',') => {
                lx.bump();
            }
            Some(_) => return Err(lx.err("expected ',' between parameters")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn params(value: &str) -> HashMap<String, String> {
        let raws = parse_raw(value).unwrap();
        assert_eq!(raws.len(), 1);
        raws[0].params.iter().cloned().collect()
    }

    fn fixed_cnonce(c: &'static str) -> impl FnMut() -> String + Send + 'static {
        move || c.to_owned()
    }

    fn response_for(
        alg: DigestAlgorithm,
        user: &str,
        pass: &str,
        realm: &str,
        nonce: &str,
        cnonce: &str,
    ) -> String {
        compute_response(&ResponseInput {
            algorithm: alg,
            username: user,
            realm,
            password: pass,
            nonce,
            method: "GET",
            uri: "/dir/index.html",
            qop: Some(&QopParams {
                cnonce: cnonce.to_owned(),
                nc: "00000001".to_owned(),
            }),
        })
    }

    const RFC7616_NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const RFC7616_CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    #[test]
    fn rfc2617_example() {
        let r = response_for(
            DigestAlgorithm::Md5,
            "Mufasa",
            "Circle Of Life",
            "testrealm@host.com",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "0a4f113b",
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn rfc2617_example_through_client() {
        let ch = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
             opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        let mut c = DigestClient::with_cnonce_source(
            Credentials::new("Mufasa", "Circle Of Life"),
            fixed_cnonce("0a4f113b"),
        );
        assert_eq!(c.authorize("GET", "/dir/index.html", b""), None);
        assert_eq!(c.on_challenge(401, &[ch]), Ok(ChallengeOutcome::Retry));
        let h = c.authorize("GET", "/dir/index.html", b"").unwrap();
        assert_eq!(
            h,
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", \
             response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5, \
             cnonce=\"0a4f113b\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\", \
             qop=auth, nc=00000001"
        );
        assert_eq!(verify_authorization(&h, "GET", "Circle Of Life"), Ok(true));
        assert_eq!(verify_authorization(&h, "GET", "circle of life"), Ok(false));
        assert_eq!(
            verify_authorization(&h, "POST", "Circle Of Life"),
            Ok(false)
        );
    }

    #[test]
    fn rfc7616_examples() {
        let args = ("Mufasa", "Circle of Life", "http-auth@example.org");
        let md5 = response_for(
            DigestAlgorithm::Md5,
            args.0,
            args.1,
            args.2,
            RFC7616_NONCE,
            RFC7616_CNONCE,
        );
        assert_eq!(md5, "8ca523f5e9506fed4657c9700eebdbec");
        let sha = response_for(
            DigestAlgorithm::Sha256,
            args.0,
            args.1,
            args.2,
            RFC7616_NONCE,
            RFC7616_CNONCE,
        );
        assert_eq!(
            sha,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn rfc7616_sha256_through_client_and_sess_variants() {
        // -sess expected values computed independently (Python hashlib).
        let cases = [
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
            (
                "SHA-256-sess",
                "2fd51b3a77ad75bad6afad6003e818d767133c46d9e2749e7f5232ae1ea3efd7",
            ),
            ("MD5-sess", "e783283f46242139c486a698fec7211d"),
        ];
        for (alg, expected) in cases {
            let value = format!(
                "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
                 algorithm={alg}, nonce=\"{RFC7616_NONCE}\", \
                 opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
            );
            let ch = Challenge::parse(&value).unwrap();
            let mut c = DigestClient::with_cnonce_source(
                Credentials::new("Mufasa", "Circle of Life"),
                fixed_cnonce(RFC7616_CNONCE),
            );
            c.on_challenge(401, &[ch]).unwrap();
            let h = c.authorize("GET", "/dir/index.html", b"").unwrap();
            let p = params(&h);
            assert_eq!(p["response"], expected, "{alg}");
            assert_eq!(p["algorithm"], alg);
            assert!(h.contains(&format!("algorithm={alg},")), "{h}");
            assert_eq!(verify_authorization(&h, "GET", "Circle of Life"), Ok(true));
        }
    }

    #[test]
    fn sess_keeps_cnonce_per_nonce() {
        let ch = Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=auth, algorithm=MD5-sess")
            .unwrap();
        let mut k = 0u32;
        let mut c = DigestClient::with_cnonce_source(Credentials::new("u", "p"), move || {
            k += 1;
            format!("c{k}")
        });
        c.on_challenge(401, &[ch]).unwrap();
        let a = params(&c.authorize("REGISTER", "sip:r", b"").unwrap());
        let b = params(&c.authorize("REGISTER", "sip:r", b"").unwrap());
        assert_eq!(a["cnonce"], "c1");
        assert_eq!(b["cnonce"], "c1");
        assert_eq!(b["nc"], "00000002");
    }

    #[test]
    fn random_cnonce_is_hex_and_varies() {
        let ch = Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth\"").unwrap();
        let mut c = DigestClient::new(Credentials::new("u", "p"));
        c.on_challenge(401, &[ch]).unwrap();
        let a = params(&c.authorize("REGISTER", "sip:r", b"").unwrap());
        let b = params(&c.authorize("REGISTER", "sip:r", b"").unwrap());
        assert_eq!(a["cnonce"].len(), 32);
        assert!(a["cnonce"].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a["cnonce"], b["cnonce"]);
    }

    #[test]
    fn rfc2069_mode_without_qop() {
        let ch = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\"",
        )
        .unwrap();
        assert_eq!(ch.qop, None);
        assert_eq!(ch.algorithm, Some(DigestAlgorithm::Md5));
        let mut c = DigestClient::new(Credentials::new("Mufasa", "Circle Of Life"));
        c.on_challenge(401, &[ch]).unwrap();
        let h = c.authorize("GET", "/dir/index.html", b"").unwrap();
        let p = params(&h);
        assert!(!p.contains_key("cnonce") && !p.contains_key("nc") && !p.contains_key("qop"));
        // H(HA1:nonce:HA2), computed independently (Python hashlib).
        assert_eq!(p["response"], "670fd8c2df070c60b045671b8b24ff02");
        assert_eq!(verify_authorization(&h, "GET", "Circle Of Life"), Ok(true));
    }

    #[test]
    fn parse_challenge_forms() {
        let c = Challenge::parse(
            "digest   realm = \"atlanta.com\" ,\r\n\tnonce=\"ab\\\"c\\\\d\",algorithm=sha-256,\
             qop=\"auth-int, auth\", stale=TRUE, domain=\"sip:a.com  sip:b.com\", \
             foo=bar, opaque=xyz/==",
        )
        .unwrap();
        assert_eq!(c.realm, "atlanta.com");
        assert_eq!(c.nonce, "ab\"c\\d");
        assert_eq!(c.algorithm, Some(DigestAlgorithm::Sha256));
        assert_eq!(c.algorithm_name.as_deref(), Some("sha-256"));
        assert_eq!(c.qop, Some(vec!["auth-int".to_owned(), "auth".to_owned()]));
        assert!(c.stale);
        assert_eq!(c.domain, vec!["sip:a.com", "sip:b.com"]);
        assert_eq!(c.opaque.as_deref(), Some("xyz/=="));
        assert!(c.is_supported());

        let c =
            Challenge::parse("Digest realm=\"r\",nonce=\"n\",qop=\"auth,auth-int\",stale=false")
                .unwrap();
        assert_eq!(c.qop, Some(vec!["auth".to_owned(), "auth-int".to_owned()]));
        assert!(!c.stale);

        let c = Challenge::parse("Digest realm=\"r\", nonce=\"n\", stale=yes").unwrap();
        assert!(!c.stale);

        let c = Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256").unwrap();
        assert_eq!(c.algorithm, None);
        assert!(!c.is_supported());

        let c = Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"").unwrap();
        assert!(!c.is_supported());

        let c = Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=MD5-sess").unwrap();
        assert!(!c.is_supported(), "-sess needs qop");

        for (alg, want) in [
            ("MD5", DigestAlgorithm::Md5),
            ("md5-SESS", DigestAlgorithm::Md5Sess),
            ("Sha-256", DigestAlgorithm::Sha256),
            ("SHA-256-SESS", DigestAlgorithm::Sha256Sess),
        ] {
            assert_eq!(DigestAlgorithm::from_name(alg), Some(want));
        }
    }

    #[test]
    fn parse_errors() {
        assert!(matches!(
            Challenge::parse("Basic realm=\"r\""),
            Err(AuthError::NotDigest(_))
        ));
        assert_eq!(
            Challenge::parse("Digest nonce=\"n\""),
            Err(AuthError::MissingParam("realm"))
        );
        assert_eq!(
            Challenge::parse("Digest realm=\"r\""),
            Err(AuthError::MissingParam("nonce"))
        );
        assert!(matches!(
            Challenge::parse("Digest realm=\"a\", realm=\"b\", nonce=\"n\""),
            Err(AuthError::DuplicateParam(_))
        ));
        assert!(matches!(
            Challenge::parse("Digest realm=\"r\" nonce=\"n\""),
            Err(AuthError::Syntax { .. })
        ));
        assert!(matches!(
            Challenge::parse("Digest realm=\"r\", nonce=\"a\r\nInjected: x\""),
            Err(AuthError::Syntax { .. })
        ));
    }

    #[test]
    fn parse_all_and_select() {
        let values = [
            "Digest realm=\"r\", nonce=\"n1\", qop=\"auth\", algorithm=SHA-512-256",
            "Digest realm=\"r\", nonce=\"n2\", qop=\"auth\", algorithm=SHA-256",
            "Digest realm=\"r\", nonce=\"n3\", qop=\"auth\", algorithm=MD5",
        ];
        let all = Challenge::parse_all(&values).unwrap();
        assert_eq!(all.len(), 3);
        let sel = select_challenge(&all).unwrap();
        assert_eq!(sel.nonce, "n2");
        assert_eq!(sel.algorithm, Some(DigestAlgorithm::Sha256));

        // Several challenges in one value, with foreign schemes around them.
        let all = Challenge::parse_all(&[
            "Basic realm=\"x\", Digest realm=\"r\", nonce=\"a\", qop=\"auth-int\"",
            "Negotiate YIIBzgYGKwYBBQUCoIIBwjCCAb6gMDAu==, Digest realm=\"r\", nonce=\"b\", \
             algorithm=MD5, qop=auth",
            "Digest garbage",
        ])
        .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(select_challenge(&all).unwrap().nonce, "b");

        let bad = ["Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\""];
        let all = Challenge::parse_all(&bad).unwrap();
        assert_eq!(select_challenge(&all), None);
        let mut c = DigestClient::new(Credentials::new("u", "p"));
        assert_eq!(
            c.on_challenge(401, &all),
            Err(AuthError::NoSupportedChallenge)
        );
        assert!(Challenge::parse_all(&["Basic realm=x"]).is_err());
        assert!(Challenge::parse_all(&[]).is_err());
    }

    #[test]
    fn nc_is_hex_and_resets_on_new_nonce() {
        let ch = Challenge::parse("Digest realm=\"r\", nonce=\"n1\", qop=\"auth\"").unwrap();
        let mut c = DigestClient::with_cnonce_source(Credentials::new("u", "p"), fixed_cnonce("c"));
        c.on_challenge(401, &[ch]).unwrap();
        for i in 1..=255u32 {
            let h = c.authorize("REGISTER", "sip:r", b"").unwrap();
            let nc = params(&h)["nc"].clone();
            match i {
                1 => assert_eq!(nc, "00000001"),
                9 => assert_eq!(nc, "00000009"),
                10 => assert_eq!(nc, "0000000a"),
                16 => assert_eq!(nc, "00000010"),
                255 => assert_eq!(nc, "000000ff"),
                _ => {}
            }
            assert!(h.ends_with(&format!("nc={nc}")));
            let auth = Authorization::parse(&h).unwrap();
            assert_eq!(auth.nonce_count(), Some(i));
            assert!(auth.verify("REGISTER", "p"));
        }
        // Reused nonce (nc > 1) then a fresh non-stale challenge: expiry, retry.
        let ch2 = Challenge::parse("Digest realm=\"r\", nonce=\"n2\", qop=\"auth\"").unwrap();
        assert_eq!(c.on_challenge(401, &[ch2]), Ok(ChallengeOutcome::Retry));
        let p = params(&c.authorize("REGISTER", "sip:r", b"").unwrap());
        assert_eq!(p["nonce"], "n2");
        assert_eq!(p["nc"], "00000001");
    }

    #[test]
    fn wrong_password_is_detected_after_one_try() {
        let ch1 = Challenge::parse("Digest realm=\"r\", nonce=\"n1\", qop=\"auth\"").unwrap();
        let ch2 = Challenge::parse("Digest realm=\"r\", nonce=\"n2\", qop=\"auth\"").unwrap();
        let mut c = DigestClient::new(Credentials::new("u", "wrong"));
        assert_eq!(
            c.on_challenge(401, std::slice::from_ref(&ch1)),
            Ok(ChallengeOutcome::Retry)
        );
        let h = c.authorize("REGISTER", "sip:r", b"").unwrap();
        assert_eq!(verify_authorization(&h, "REGISTER", "right"), Ok(false));
        let out = c.on_challenge(401, &[ch2]).unwrap();
        assert_eq!(out, ChallengeOutcome::CredentialsRejected);
        assert!(!out.should_retry());

        // Same nonce re-challenged after reuse: also rejected.
        let mut c = DigestClient::new(Credentials::new("u", "wrong"));
        c.on_challenge(401, std::slice::from_ref(&ch1)).unwrap();
        c.authorize("REGISTER", "sip:r", b"").unwrap();
        c.authorize("REGISTER", "sip:r", b"").unwrap();
        assert_eq!(
            c.on_challenge(401, &[ch1]),
            Ok(ChallengeOutcome::CredentialsRejected)
        );
    }

    #[test]
    fn stale_retries_without_counting_as_failure() {
        let ch = |n: &str, stale: bool| {
            Challenge::parse(&format!(
                "Digest realm=\"r\", nonce=\"{n}\", qop=\"auth\", stale={}",
                if stale { "TRUE" } else { "false" }
            ))
            .unwrap()
        };
        let mut c = DigestClient::new(Credentials::new("u", "p"));
        assert_eq!(
            c.on_challenge(401, &[ch("n1", false)]),
            Ok(ChallengeOutcome::Retry)
        );
        c.authorize("REGISTER", "sip:r", b"").unwrap();
        let out = c.on_challenge(401, &[ch("n2", true)]).unwrap();
        assert_eq!(out, ChallengeOutcome::RetryStale);
        assert!(out.should_retry());
        let h = c.authorize("REGISTER", "sip:r", b"").unwrap();
        let p = params(&h);
        assert_eq!((p["nonce"].as_str(), p["nc"].as_str()), ("n2", "00000001"));
        assert_eq!(verify_authorization(&h, "REGISTER", "p"), Ok(true));
        // Answered n2 on its first use and got a non-stale challenge: rejected.
        assert_eq!(
            c.on_challenge(401, &[ch("n3", false)]),
            Ok(ChallengeOutcome::CredentialsRejected)
        );

        // A server that only ever says stale is cut off, not looped on.
        let mut c = DigestClient::new(Credentials::new("u", "p"));
        c.on_challenge(401, &[ch("s0", false)]).unwrap();
        let mut outcomes = Vec::new();
        for i in 1..10 {
            c.authorize("REGISTER", "sip:r", b"").unwrap();
            let r = c.on_challenge(401, &[ch(&format!("s{i}"), true)]);
            let stop = r.is_err();
            outcomes.push(r);
            if stop {
                break;
            }
        }
        assert_eq!(outcomes.len(), MAX_STALE_RETRIES as usize + 1);
        assert_eq!(outcomes.last(), Some(&Err(AuthError::StaleLoop)));

        // stale=true carrying the nonce we just used cannot make progress.
        let mut c = DigestClient::new(Credentials::new("u", "p"));
        c.on_challenge(401, &[ch("x", false)]).unwrap();
        c.authorize("REGISTER", "sip:r", b"").unwrap();
        assert_eq!(
            c.on_challenge(401, &[ch("x", true)]),
            Err(AuthError::StaleLoop)
        );
    }

    #[test]
    fn proxy_header_name_and_status() {
        let ch = Challenge::parse("Digest realm=\"p\", nonce=\"n\"").unwrap();
        let mut c = DigestClient::new(Credentials::new("u", "p"));
        assert_eq!(c.header_name(), "Authorization");
        assert_eq!(
            c.on_challenge(200, std::slice::from_ref(&ch)),
            Err(AuthError::UnexpectedStatus(200))
        );
        assert_eq!(
            c.on_challenge(407, std::slice::from_ref(&ch)),
            Ok(ChallengeOutcome::Retry)
        );
        assert!(c.is_proxy());
        assert_eq!(c.header_name(), "Proxy-Authorization");
        c.authorize("INVITE", "sip:bob@b.com", b"").unwrap();
        // Same realm but now a 401 from another hop: a new challenge.
        assert_eq!(c.on_challenge(401, &[ch]), Ok(ChallengeOutcome::Retry));
        assert_eq!(c.header_name(), "Authorization");
    }

    #[test]
    fn quoting_escapes_and_strips_controls() {
        let ch = Challenge::parse("Digest realm=\"a\\\"b\", nonce=\"x\\\\y\", qop=auth").unwrap();
        let mut c = DigestClient::new(Credentials::new("we\"ird\\user\r\nX: y", "p"));
        c.on_challenge(401, &[ch]).unwrap();
        let h = c.authorize("REGISTER", "sip:r", b"").unwrap();
        assert!(h.contains("realm=\"a\\\"b\""), "{h}");
        assert!(h.contains("nonce=\"x\\\\y\""), "{h}");
        assert!(h.contains("username=\"we\\\"ird\\\\userX: y\""), "{h}");
        assert!(!h.contains('\r') && !h.contains('\n'));
        let p = params(&h);
        assert_eq!(p["realm"], "a\"b");
        assert_eq!(p["nonce"], "x\\y");
    }

    #[test]
    fn secrets_never_printed() {
        let creds = Credentials::new("alice", "hunter2-secret");
        assert!(!format!("{creds:?}").contains("hunter2"));
        assert!(format!("{creds:?}").contains("alice"));
        assert_eq!(format!("{}", creds.password), "***");
        assert_eq!(format!("{:?}", creds.password), "***");
        let c = DigestClient::new(creds);
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn authorization_parse_checks() {
        let ok = "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", \
                  response=\"00\", qop=auth, nc=00000001, cnonce=\"c\"";
        assert!(Authorization::parse(ok).is_ok());
        let cases = [
            (
                ok.replace("nc=00000001", "nc=1"),
                AuthError::InvalidParam("nc"),
            ),
            (
                ok.replace(", cnonce=\"c\"", ""),
                AuthError::MissingParam("cnonce"),
            ),
            (
                ok.replace("qop=auth", "qop=auth-int"),
                AuthError::UnsupportedQop("auth-int".into()),
            ),
            (
                ok.replace("username=\"u\", ", ""),
                AuthError::MissingParam("username"),
            ),
            (
                format!("{ok}, algorithm=SHA-512-256"),
                AuthError::UnsupportedAlgorithm("SHA-512-256".into()),
            ),
        ];
        for (v, e) in cases {
            assert_eq!(Authorization::parse(&v), Err(e), "{v}");
        }
        // Uppercase response hex is accepted.
        let ch = Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=auth").unwrap();
        let mut c = DigestClient::new(Credentials::new("u", "p"));
        c.on_challenge(401, &[ch]).unwrap();
        let h = c.authorize("REGISTER", "sip:r", b"").unwrap();
        let mut a = Authorization::parse(&h).unwrap();
        a.response = a.response.to_ascii_uppercase();
        assert!(a.verify("REGISTER", "p"));
    }

    #[test]
    fn garbage_never_panics() {
        let huge_quoted = format!("Digest realm=\"{}\", nonce=\"n\"", "a".repeat(1 << 20));
        let huge_token = "x".repeat(1 << 20);
        let huge_commas = ",".repeat(1 << 20);
        let inputs: Vec<&str> = vec![
            "",
            " ",
            "Digest",
            "Digest ",
            "Digest realm",
            "Digest realm=",
            "Digest realm=\"",
            "Digest realm=\"abc",
            "Digest realm=\"abc\\",
            "Digest realm=\"a\"\"",
            "Digest =\"a\"",
            "Digest realm==x",
            "Digest realm=\"r\", nonce=\"n\",",
            "Digest realm=\"r\", nonce=\"n\", qop=\"",
            "Digest realm=\"r\", nonce=\"n\", qop=\"\"",
            "Digest realm=\"r\", nonce=\"n\", qop=,,",
            "Digest , , realm=\"r\"",
            "\"Digest\"",
            "Digest\trealm=\"é\u{0}\"",
            "Digest realm=\"ünïcödé\", nonce=\"日本\"",
            "Digest realm=\"r\"\u{7f}",
            "Digest realm=\"\\\u{1}\"",
            "Digest\u{0}",
            "Dig\u{e9}st realm=x",
            "@@@",
            ",,,",
            "Digest a=b c=d",
            "Digest realm=\"r\", nonce=\"n\", Digest",
            &huge_quoted,
            &huge_token,
            &huge_commas,
        ];
        for s in inputs {
            let _ = Challenge::parse(s);
            let _ = Challenge::parse_all(&[s, s]);
            let _ = Authorization::parse(s);
            let _ = verify_authorization(s, "REGISTER", "p");
            // Truncations at every char boundary of the short ones.
            if s.len() < 200 {
                for (i, _) in s.char_indices() {
                    let _ = Challenge::parse(&s[..i]);
                    let _ = Authorization::parse(&s[..i]);
                }
            }
        }
        let c = Challenge::parse(&huge_quoted).unwrap();
        assert_eq!(c.realm.len(), 1 << 20);
        let c = Challenge::parse("Digest realm=\"ünïcödé\", nonce=\"日本\"").unwrap();
        assert_eq!(c.nonce, "日本");
        // Error messages do not echo huge inputs.
        let e = Challenge::parse(&huge_token).unwrap_err().to_string();
        assert!(e.len() < 200, "{}", e.len());
    }
}
