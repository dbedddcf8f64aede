//! SIP messages on the wire (RFC 3261 §7, §18.3, §20, §25): the model, the parser and the
//! serialiser. This module is the only place that knows the wire syntax; the layers above work
//! with [`Request`], [`Response`] and the typed views in [`super::headers`].
//!
//! The parser is written for datagrams from the open network: it accepts what RFC 3261
//! allows (folding, compact names, LWS around `:`, comma-separated values, any case) and
//! rejects what RFC 4475 §3.1.2 says must be rejected. It never panics.

use std::fmt;

use super::headers::{CSeq, HeaderError, NameAddr, Via};
use super::params::{is_token_byte, split_list};
use super::uri::Uri;

/// Largest datagram we read (the UDP payload limit).
pub const MAX_MESSAGE_SIZE: usize = 65_535;
/// Most header fields in one message; more is treated as abuse.
pub const MAX_HEADERS: usize = 512;

/// A request method (RFC 3261 §7.1, §25.1 `Method`): case-sensitive tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Extension(String),
}

impl Method {
    pub fn parse(text: &str) -> Result<Method, MessageError> {
        Ok(match text {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            _ if !text.is_empty() && text.bytes().all(is_token_byte) => {
                Method::Extension(text.to_string())
            }
            _ => return Err(MessageError("bad method")),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Extension(m) => m,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A header field name. Known names are matched case-insensitively and in their compact
/// forms (RFC 3261 §7.3.3, §20; RFC 3515, 3903, 4028, 3841, 6665 for the rest).
#[derive(Debug, Clone)]
pub enum HeaderName {
    Accept,
    AcceptEncoding,
    AcceptLanguage,
    Allow,
    AllowEvents,
    Authorization,
    CallId,
    Contact,
    ContentDisposition,
    ContentEncoding,
    ContentLength,
    ContentType,
    CSeq,
    Date,
    Event,
    Expires,
    From,
    MaxForwards,
    MinExpires,
    ProxyAuthenticate,
    ProxyAuthorization,
    ProxyRequire,
    RecordRoute,
    ReferTo,
    ReferredBy,
    Require,
    Route,
    Server,
    SessionExpires,
    Subject,
    Supported,
    To,
    Unsupported,
    UserAgent,
    Via,
    Warning,
    WwwAuthenticate,
    /// Any other name, as written.
    Other(String),
}

impl HeaderName {
    /// Reads a name as found on the wire, expanding compact forms.
    pub fn from_wire(name: &str) -> HeaderName {
        use HeaderName::*;
        if name.len() == 1 {
            return match name.as_bytes()[0].to_ascii_lowercase() {
                b'v' => Via,
                b'i' => CallId,
                b'm' => Contact,
                b'f' => From,
                b't' => To,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'k' => Supported,
                b's' => Subject,
                b'e' => ContentEncoding,
                b'o' => Event,
                b'u' => AllowEvents,
                b'r' => ReferTo,
                b'b' => ReferredBy,
                b'x' => SessionExpires,
                _ => Other(name.to_string()),
            };
        }
        const KNOWN: &[(&str, HeaderName)] = &[
            ("Via", HeaderName::Via),
            ("From", HeaderName::From),
            ("To", HeaderName::To),
            ("Call-ID", HeaderName::CallId),
            ("CSeq", HeaderName::CSeq),
            ("Contact", HeaderName::Contact),
            ("Max-Forwards", HeaderName::MaxForwards),
            ("Content-Length", HeaderName::ContentLength),
            ("Content-Type", HeaderName::ContentType),
            ("Route", HeaderName::Route),
            ("Record-Route", HeaderName::RecordRoute),
            ("Expires", HeaderName::Expires),
            ("Allow", HeaderName::Allow),
            ("Supported", HeaderName::Supported),
            ("Require", HeaderName::Require),
            ("Proxy-Require", HeaderName::ProxyRequire),
            ("Unsupported", HeaderName::Unsupported),
            ("Authorization", HeaderName::Authorization),
            ("WWW-Authenticate", HeaderName::WwwAuthenticate),
            ("Proxy-Authenticate", HeaderName::ProxyAuthenticate),
            ("Proxy-Authorization", HeaderName::ProxyAuthorization),
            ("Min-Expires", HeaderName::MinExpires),
            ("User-Agent", HeaderName::UserAgent),
            ("Server", HeaderName::Server),
            ("Accept", HeaderName::Accept),
            ("Accept-Encoding", HeaderName::AcceptEncoding),
            ("Accept-Language", HeaderName::AcceptLanguage),
            ("Allow-Events", HeaderName::AllowEvents),
            ("Content-Disposition", HeaderName::ContentDisposition),
            ("Content-Encoding", HeaderName::ContentEncoding),
            ("Date", HeaderName::Date),
            ("Event", HeaderName::Event),
            ("Refer-To", HeaderName::ReferTo),
            ("Referred-By", HeaderName::ReferredBy),
            ("Session-Expires", HeaderName::SessionExpires),
            ("Subject", HeaderName::Subject),
            ("Warning", HeaderName::Warning),
        ];
        for (text, known) in KNOWN {
            if text.len() == name.len() && text.eq_ignore_ascii_case(name) {
                return known.clone();
            }
        }
        Other(name.to_string())
    }

    /// The canonical long form.
    pub fn as_str(&self) -> &str {
        use HeaderName::*;
        match self {
            Accept => "Accept",
            AcceptEncoding => "Accept-Encoding",
            AcceptLanguage => "Accept-Language",
            Allow => "Allow",
            AllowEvents => "Allow-Events",
            Authorization => "Authorization",
            CallId => "Call-ID",
            Contact => "Contact",
            ContentDisposition => "Content-Disposition",
            ContentEncoding => "Content-Encoding",
            ContentLength => "Content-Length",
            ContentType => "Content-Type",
            CSeq => "CSeq",
            Date => "Date",
            Event => "Event",
            Expires => "Expires",
            From => "From",
            MaxForwards => "Max-Forwards",
            MinExpires => "Min-Expires",
            ProxyAuthenticate => "Proxy-Authenticate",
            ProxyAuthorization => "Proxy-Authorization",
            ProxyRequire => "Proxy-Require",
            RecordRoute => "Record-Route",
            ReferTo => "Refer-To",
            ReferredBy => "Referred-By",
            Require => "Require",
            Route => "Route",
            Server => "Server",
            SessionExpires => "Session-Expires",
            Subject => "Subject",
            Supported => "Supported",
            To => "To",
            Unsupported => "Unsupported",
            UserAgent => "User-Agent",
            Via => "Via",
            Warning => "Warning",
            WwwAuthenticate => "WWW-Authenticate",
            Other(name) => name,
        }
    }

    /// Headers whose comma-separated values are split into one entry each on input
    /// (RFC 3261 §7.3.1). Authentication headers are not lists of this kind.
    fn is_split_list(&self) -> bool {
        matches!(
            self,
            HeaderName::Via | HeaderName::Contact | HeaderName::Route | HeaderName::RecordRoute
        )
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &HeaderName) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}
impl Eq for HeaderName {}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header field; multi-valued list headers hold one value per entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    pub value: String,
}

/// The header fields of a message, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<Header>);

impl Headers {
    pub fn new() -> Headers {
        Headers(Vec::with_capacity(16))
    }

    pub fn push(&mut self, name: HeaderName, value: impl Into<String>) {
        self.0.push(Header {
            name,
            value: value.into(),
        });
    }

    /// Inserts before every other header (e.g. our Via on top, RFC 3261 §8.1.1.7).
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<String>) {
        self.0.insert(
            0,
            Header {
                name,
                value: value.into(),
            },
        );
    }

    /// Replaces every entry of `name` with one value.
    pub fn set(&mut self, name: HeaderName, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter().position(|h| h.name == name) {
            Some(first) => {
                self.0[first].value = value;
                let mut index = 0;
                self.0.retain(|h| {
                    let keep = index <= first || h.name != name;
                    index += 1;
                    keep
                });
            }
            None => self.push(name, value),
        }
    }

    pub fn remove(&mut self, name: &HeaderName) {
        self.0.retain(|h| &h.name != name);
    }

    /// The first value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.0
            .iter()
            .find(|h| &h.name == name)
            .map(|h| h.value.as_str())
    }

    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |h| &h.name == name)
            .map(|h| h.value.as_str())
    }

    /// Looks up a header by its wire name (any case, compact or long).
    pub fn get_named(&self, name: &str) -> Option<&str> {
        self.get(&HeaderName::from_wire(name))
    }

    pub fn contains(&self, name: &HeaderName) -> bool {
        self.0.iter().any(|h| &h.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Header> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn call_id(&self) -> Option<&str> {
        self.get(&HeaderName::CallId)
    }

    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        CSeq::parse(self.get(&HeaderName::CSeq).ok_or(missing("CSeq"))?)
    }

    pub fn from(&self) -> Result<NameAddr, HeaderError> {
        NameAddr::parse(self.get(&HeaderName::From).ok_or(missing("From"))?)
    }

    pub fn to(&self) -> Result<NameAddr, HeaderError> {
        NameAddr::parse(self.get(&HeaderName::To).ok_or(missing("To"))?)
    }

    pub fn top_via(&self) -> Result<Via, HeaderError> {
        Via::parse(self.get(&HeaderName::Via).ok_or(missing("Via"))?)
    }

    pub fn vias(&self) -> Result<Vec<Via>, HeaderError> {
        self.get_all(&HeaderName::Via).map(Via::parse).collect()
    }

    /// Contact values; `*` (RFC 3261 §10.2.2) is not a name-addr and is skipped.
    pub fn contacts(&self) -> Result<Vec<NameAddr>, HeaderError> {
        self.get_all(&HeaderName::Contact)
            .filter(|v| v.trim() != "*")
            .map(NameAddr::parse)
            .collect()
    }

    pub fn routes(&self, name: &HeaderName) -> Result<Vec<NameAddr>, HeaderError> {
        self.get_all(name).map(NameAddr::parse).collect()
    }

    /// Expires as delta-seconds (RFC 3261 §20.19).
    pub fn expires(&self) -> Option<u32> {
        self.get(&HeaderName::Expires).and_then(parse_delta_seconds)
    }

    /// The tokens of a comma-separated token list such as Allow, Supported or Require.
    pub fn tokens<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.get_all(name)
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }
}

fn missing(header: &'static str) -> HeaderError {
    HeaderError {
        header,
        why: "missing",
    }
}

/// delta-seconds; values beyond 2^32-1 are capped as RFC 3261 §20.19 and §10.2.1.1 ask.
pub fn parse_delta_seconds(text: &str) -> Option<u32> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        text.parse::<u64>()
            .map_or(u32::MAX, |v| v.min(u32::MAX as u64) as u32),
    )
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Vec<u8>,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

/// A value that does not fit the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MessageError(pub &'static str);

/// What to do with a datagram that is not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Answer with `status` (400, RFC 3261 §21.4.1; 505, §21.5.6). The response goes to
    /// the top Via (RFC 3261 §18.2.2), or to the source when that Via is unreadable.
    #[error("rejected request ({status}): {reason}")]
    Reject {
        status: u16,
        reason: String,
        headers: Box<Headers>,
    },
    /// Discard silently: a bad response, or a request too broken to answer.
    #[error("dropped: {0}")]
    Drop(String),
}

impl ParseError {
    pub fn reason(&self) -> &str {
        match self {
            ParseError::Reject { reason, .. } => reason,
            ParseError::Drop(reason) => reason,
        }
    }
}

/// Is this datagram a keep-alive (only CR/LF, RFC 5626 §3.5.1)?
pub fn is_keepalive(data: &[u8]) -> bool {
    !data.is_empty() && data.iter().all(|b| *b == b'\r' || *b == b'\n')
}

impl Message {
    /// Parses one datagram (RFC 3261 §7, §18.3).
    pub fn parse(data: &[u8]) -> Result<Message, ParseError> {
        parse_datagram(data)
    }

    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

impl Request {
    pub fn new(method: Method, uri: Uri) -> Request {
        Request {
            method,
            uri,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    pub fn parse(data: &[u8]) -> Result<Request, ParseError> {
        match parse_datagram(data)? {
            Message::Request(r) => Ok(r),
            Message::Response(_) => Err(ParseError::Drop("expected a request".into())),
        }
    }

    /// Serialises with a Content-Length that matches the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.uri.to_string().as_bytes());
        out.extend_from_slice(b" SIP/2.0\r\n");
        write_headers_and_body(&mut out, &self.headers, &self.body);
        out
    }
}

impl Response {
    /// A response to a request with these headers: copies Via, From, To, Call-ID and CSeq
    /// (RFC 3261 §8.2.6.2).
    pub fn for_request(request_headers: &Headers, status: u16) -> Response {
        let mut headers = Headers::new();
        for h in request_headers.iter() {
            if matches!(
                h.name,
                HeaderName::Via
                    | HeaderName::From
                    | HeaderName::To
                    | HeaderName::CallId
                    | HeaderName::CSeq
            ) {
                headers.push(h.name.clone(), h.value.clone());
            }
        }
        Response {
            status,
            reason: reason_phrase(status).to_string(),
            headers,
            body: Vec::new(),
        }
    }

    pub fn parse(data: &[u8]) -> Result<Response, ParseError> {
        match parse_datagram(data)? {
            Message::Response(r) => Ok(r),
            Message::Request(_) => Err(ParseError::Drop("expected a response".into())),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        out.extend_from_slice(b"SIP/2.0 ");
        out.extend_from_slice(self.status.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        write_headers_and_body(&mut out, &self.headers, &self.body);
        out
    }

    pub fn is_provisional(&self) -> bool {
        self.status < 200
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

fn write_headers_and_body(out: &mut Vec<u8>, headers: &Headers, body: &[u8]) {
    for h in headers.iter() {
        if h.name == HeaderName::ContentLength {
            continue;
        }
        out.extend_from_slice(h.name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // RFC 3261 §20.14: always written, so the receiver can frame the body.
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

/// The default reason phrase for a status code (RFC 3261 §21 and extensions).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => match status / 100 {
            1 => "Progress",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

enum StartLine<'a> {
    Request {
        method: &'a str,
        uri: &'a str,
        version: &'a str,
    },
    Response {
        version: &'a str,
        status: &'a str,
        reason: &'a str,
    },
}

fn parse_datagram(data: &[u8]) -> Result<Message, ParseError> {
    let drop = |why: &str| Err(ParseError::Drop(why.to_string()));
    if data.len() > MAX_MESSAGE_SIZE {
        return drop("message too large");
    }
    // RFC 3261 §7.5: CRLFs before the start line are ignored.
    let start = data
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(data.len());
    let data = &data[start..];
    if data.is_empty() {
        return drop("empty datagram");
    }
    let (head, body) = split_head(data);
    let Ok(head) = std::str::from_utf8(head) else {
        return drop("header section is not UTF-8");
    };
    let lines = unfold(head);
    let Some((first, header_lines)) = lines.split_first() else {
        return drop("no start line");
    };
    let start_line = split_start_line(first);
    let is_request = !(first.len() >= 4 && first[..4].eq_ignore_ascii_case("SIP/"));

    let mut headers = Headers::new();
    let mut header_error: Option<&'static str> = None;
    for line in header_lines {
        if headers.len() >= MAX_HEADERS {
            return drop("too many header fields");
        }
        match split_header_line(line) {
            Some((name, value)) => {
                let name = HeaderName::from_wire(name);
                if name.is_split_list() {
                    for item in split_list(value) {
                        if !item.is_empty() {
                            headers.push(name.clone(), item);
                        }
                    }
                } else {
                    headers.push(name, value);
                }
            }
            None => header_error = header_error.or(Some("malformed header line")),
        }
    }
    // Past this point a request is answerable if its routing headers are sound.
    // A request with a Via gets its 400 even when From/To/Call-ID are missing (RFC 4475
    // §3.3.1) or the Via itself is malformed (§3.1.2.1): then it goes to the source address.
    let answerable = is_request && headers.contains(&HeaderName::Via);
    let reject = |status: u16, reason: &str, headers: Headers| {
        if answerable {
            Err(ParseError::Reject {
                status,
                reason: reason.to_string(),
                headers: Box::new(headers),
            })
        } else {
            Err(ParseError::Drop(reason.to_string()))
        }
    };
    let Some(start_line) = start_line else {
        return reject(400, "malformed start line", headers);
    };
    if let StartLine::Request { version, .. } = &start_line
        && !version.eq_ignore_ascii_case("SIP/2.0")
    {
        // RFC 3261 §21.5.6: a version we do not speak.
        return reject(505, "unsupported SIP version", headers);
    }
    if let Some(why) = header_error {
        return reject(400, why, headers);
    }
    let body = match frame_body(&headers, body) {
        Ok(b) => b,
        Err(why) => return reject(400, why, headers),
    };
    // The body now carries its length; serialising writes a Content-Length that matches.
    headers.remove(&HeaderName::ContentLength);
    if let Err(e) = check_common_headers(&headers) {
        return reject(400, &e.to_string(), headers);
    }
    match start_line {
        StartLine::Request { method, uri, .. } => {
            let Ok(method) = Method::parse(method) else {
                return reject(400, "bad method", headers);
            };
            let Ok(uri) = Uri::parse(uri) else {
                return reject(400, "malformed Request-URI", headers);
            };
            // RFC 3261 §19.1.1 Table 1: no headers in a Request-URI (RFC 4475 §3.1.2.11).
            if uri.as_sip().is_some_and(|u| u.headers.is_some()) {
                return reject(400, "headers are not allowed in a Request-URI", headers);
            }
            match headers.cseq() {
                Ok(cseq) if cseq.method != method => {
                    // RFC 3261 §8.1.1.5: the CSeq method matches the request method.
                    return reject(400, "CSeq method does not match request method", headers);
                }
                Ok(_) => {}
                Err(e) => return reject(400, &e.to_string(), headers),
            }
            if let Some(mf) = headers.get(&HeaderName::MaxForwards) {
                let ok = !mf.is_empty()
                    && mf.len() <= 10
                    && mf.bytes().all(|b| b.is_ascii_digit())
                    && mf.parse::<u32>().is_ok_and(|v| v <= 255);
                if !ok {
                    return reject(400, "bad Max-Forwards", headers);
                }
            }
            Ok(Message::Request(Request {
                method,
                uri,
                headers,
                body,
            }))
        }
        StartLine::Response {
            version,
            status,
            reason,
        } => {
            if !version.eq_ignore_ascii_case("SIP/2.0") {
                return drop("unsupported SIP version in response");
            }
            // RFC 3261 §7.2, §25.1: Status-Code is exactly three digits, 100-699.
            let status_ok = status.len() == 3 && status.bytes().all(|b| b.is_ascii_digit());
            let status: u16 = match status.parse() {
                Ok(s) if status_ok && (100..700).contains(&s) => s,
                _ => return drop("bad status code"),
            };
            if headers.cseq().is_err() {
                return drop("bad CSeq in response");
            }
            Ok(Message::Response(Response {
                status,
                reason: reason.to_string(),
                headers,
                body,
            }))
        }
    }
}

/// Splits at the empty line that ends the header section (CRLFCRLF, or LF-only endings).
fn split_head(data: &[u8]) -> (&[u8], &[u8]) {
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\n' {
            let rest = &data[i + 1..];
            if rest.starts_with(b"\r\n") {
                return (&data[..i + 1], &rest[2..]);
            }
            if rest.starts_with(b"\n") {
                return (&data[..i + 1], &rest[1..]);
            }
        }
        i += 1;
    }
    (data, &[])
}

/// Splits into lines (CRLF or LF) and joins folded continuation lines (RFC 3261 §7.3.1):
/// a line starting with SP or HT continues the previous one, the break becoming one SP.
fn unfold(head: &str) -> Vec<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    let mut lines: Vec<Cow<'_, str>> = Vec::with_capacity(24);
    for raw in head.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) && !lines.is_empty() {
            let last = lines.last_mut().expect("checked non-empty");
            let joined = last.to_mut();
            while joined.ends_with([' ', '\t']) {
                joined.pop();
            }
            joined.push(' ');
            joined.push_str(line.trim_start_matches([' ', '\t']));
        } else {
            lines.push(Cow::Borrowed(line));
        }
    }
    lines
}

fn split_start_line(line: &str) -> Option<StartLine<'_>> {
    if line.len() > 4 && line[..4].eq_ignore_ascii_case("SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (may be empty).
        let (version, rest) = line.split_once(' ')?;
        let (status, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        return Some(StartLine::Response {
            version,
            status,
            reason,
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly one SP between, none
    // around (RFC 3261 §7.1; RFC 4475 §3.1.2.8-10).
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if method.is_empty() || uri.is_empty() || version.is_empty() || line.contains('\t') {
        return None;
    }
    Some(StartLine::Request {
        method,
        uri,
        version,
    })
}

/// `field-name HCOLON field-value` (RFC 3261 §7.3.1; HCOLON allows SP/HT before `:`).
fn split_header_line(line: &str) -> Option<(&str, &str)> {
    let colon = line.find(':')?;
    let name = line[..colon].trim_end_matches([' ', '\t']);
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return None;
    }
    Some((name, line[colon + 1..].trim_matches([' ', '\t'])))
}

/// Applies Content-Length framing to a datagram body (RFC 3261 §18.3, §20.14).
fn frame_body(headers: &Headers, body: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut values = headers.get_all(&HeaderName::ContentLength);
    let Some(value) = values.next() else {
        // Over UDP the body runs to the end of the datagram when no Content-Length is given.
        return Ok(body.to_vec());
    };
    if values.any(|other| other != value) {
        return Err("conflicting Content-Length values");
    }
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err("bad Content-Length");
    }
    let length: usize = value.parse().map_err(|_| "bad Content-Length")?;
    if length > body.len() {
        return Err("body shorter than Content-Length");
    }
    // Extra bytes after the declared body are discarded.
    Ok(body[..length].to_vec())
}

/// Grammar checks on the headers every message must carry in readable form.
fn check_common_headers(headers: &Headers) -> Result<(), HeaderError> {
    for name in [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ] {
        if !headers.contains(&name) {
            return Err(HeaderError {
                header: static_name(&name),
                why: "missing",
            });
        }
    }
    // RFC 3261 §7.3.1: these carry a single value (RFC 4475 §3.3.8).
    for (name, label) in [
        (HeaderName::From, "From"),
        (HeaderName::To, "To"),
        (HeaderName::CallId, "Call-ID"),
        (HeaderName::CSeq, "CSeq"),
        (HeaderName::MaxForwards, "Max-Forwards"),
    ] {
        if headers.get_all(&name).nth(1).is_some() {
            return Err(HeaderError {
                header: label,
                why: "appears more than once",
            });
        }
    }
    headers.vias()?;
    headers.from()?;
    headers.to()?;
    headers.contacts()?;
    let call_id = headers.call_id().unwrap_or_default();
    if call_id.is_empty() || call_id.contains([' ', '\t']) {
        return Err(HeaderError {
            header: "Call-ID",
            why: "empty or contains spaces",
        });
    }
    if let Some(e) = headers.get(&HeaderName::Expires)
        && parse_delta_seconds(e).is_none()
    {
        return Err(HeaderError {
            header: "Expires",
            why: "not a number of seconds",
        });
    }
    Ok(())
}

fn static_name(name: &HeaderName) -> &'static str {
    match name {
        HeaderName::Via => "Via",
        HeaderName::From => "From",
        HeaderName::To => "To",
        HeaderName::CallId => "Call-ID",
        _ => "CSeq",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    #[test]
    fn parses_a_plain_invite() {
        let m = Message::parse(INVITE).unwrap();
        let Message::Request(r) = m else { panic!() };
        assert_eq!(r.method, Method::Invite);
        assert_eq!(
            r.headers.call_id(),
            Some("a84b4c76e66710@pc33.atlanta.example.com")
        );
        assert_eq!(r.headers.cseq().unwrap().seq, 314159);
        assert_eq!(r.headers.from().unwrap().tag(), Some("1928301774"));
        assert_eq!(r.headers.to().unwrap().tag(), None);
        assert_eq!(r.body, b"v=0\n");
        // Serialising and parsing again gives the same message.
        let again = Request::parse(&r.to_bytes()).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn compact_forms_folding_and_lists() {
        let text = "OPTIONS sip:u@h SIP/2.0\r\n\
v: SIP/2.0/UDP a.example;branch=z9hG4bK1, SIP/2.0/UDP b.example;branch=z9hG4bK2\r\n\
f: <sip:x@y>;tag=a\r\nt: sip:u@h\r\ni: abc\r\nCSeq: 1\r\n OPTIONS\r\nm: <sip:a@b>, <sip:c@d>\r\nl: 0\r\n\r\n";
        let r = Request::parse(text.as_bytes()).unwrap();
        assert_eq!(r.headers.vias().unwrap().len(), 2);
        assert_eq!(r.headers.vias().unwrap()[1].branch(), Some("z9hG4bK2"));
        assert_eq!(r.headers.contacts().unwrap().len(), 2);
        assert_eq!(r.headers.call_id(), Some("abc"));
        assert_eq!(r.headers.cseq().unwrap().method, Method::Options);
    }

    #[test]
    fn lf_only_endings_are_accepted() {
        let text = String::from_utf8_lossy(INVITE).replace("\r\n", "\n");
        let r = Request::parse(text.as_bytes()).unwrap();
        assert_eq!(r.body, b"v=0\n");
    }

    #[test]
    fn content_length_framing() {
        let mut short = INVITE.to_vec();
        short.truncate(short.len() - 2);
        assert!(matches!(
            Message::parse(&short),
            Err(ParseError::Reject { status: 400, .. })
        ));
        let mut long = INVITE.to_vec();
        long.extend_from_slice(b"garbage");
        let Message::Request(r) = Message::parse(&long).unwrap() else {
            panic!()
        };
        assert_eq!(r.body, b"v=0\n");
    }

    #[test]
    fn rejections_carry_the_headers_for_a_400() {
        let bad =
            String::from_utf8_lossy(INVITE).replace("CSeq: 314159 INVITE", "CSeq: 314159 ACK");
        match Message::parse(bad.as_bytes()) {
            Err(ParseError::Reject {
                status, headers, ..
            }) => {
                assert_eq!(status, 400);
                let resp = Response::for_request(&headers, status);
                assert_eq!(resp.headers.call_id(), headers.call_id());
            }
            other => panic!("{other:?}"),
        }
        let v7 = String::from_utf8_lossy(INVITE).replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia");
        assert!(matches!(
            Message::parse(v7.as_bytes()),
            Err(ParseError::Reject { status: 505, .. })
        ));
    }

    #[test]
    fn responses_with_bad_status_are_dropped() {
        let text = b"SIP/2.0 4294967301 Big\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\n";
        assert!(matches!(Message::parse(text), Err(ParseError::Drop(_))));
        let ok = String::from_utf8_lossy(text).replace("4294967301 Big", "200 ");
        let Message::Response(r) = Message::parse(ok.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!((r.status, r.reason.as_str()), (200, ""));
    }

    #[test]
    fn never_panics_on_truncations_and_mutations() {
        for cut in 0..INVITE.len() {
            let _ = Message::parse(&INVITE[..cut]);
        }
        let mut seed = 0x2545F4914F6CDD1Du64;
        for _ in 0..20_000 {
            let mut m = INVITE.to_vec();
            for _ in 0..4 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let pos = (seed as usize) % m.len();
                m[pos] = (seed >> 32) as u8;
            }
            let _ = Message::parse(&m);
        }
        assert!(is_keepalive(b"\r\n\r\n"));
        assert!(!is_keepalive(b""));
    }
}
