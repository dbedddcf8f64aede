//! SIP, SIPS and tel URIs (RFC 3261 §19.1, §25.1; RFC 3966) and the host forms they carry.
//!
//! Escaped characters are kept as written: `user` holds the raw escaped text so that a URI
//! round-trips byte for byte. Comparison (RFC 3261 §19.1.4) unescapes where it matters.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::params::Params;

/// Why a URI could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid URI: {0}")]
pub struct UriError(pub &'static str);

/// The host part of a SIP URI or Via sent-by (RFC 3261 §25.1 `host`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Domain(String),
    Ipv4(Ipv4Addr),
    /// Written as an IPv6 reference `[...]` (RFC 5118).
    Ipv6(Ipv6Addr),
}

impl Host {
    pub fn parse(text: &str) -> Result<Host, UriError> {
        if let Some(inner) = text.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or(UriError("unclosed IPv6 reference"))?;
            // RFC 5118 §4.10: accept the ":::" that RFC 3261's ABNF bug allowed.
            let lenient = inner.replacen(":::", "::", 1);
            return inner
                .parse::<Ipv6Addr>()
                .or_else(|_| lenient.parse::<Ipv6Addr>())
                .map(Host::Ipv6)
                .map_err(|_| UriError("bad IPv6 address"));
        }
        if text.is_empty() {
            return Err(UriError("empty host"));
        }
        if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            if let Ok(v4) = text.parse::<Ipv4Addr>() {
                return Ok(Host::Ipv4(v4));
            }
            // An all-numeric host that is not an IPv4 address (RFC 3261 §25.1 toplabel).
            return Err(UriError("bad IPv4 address"));
        }
        // RFC 3261 §25.1 hostname: alphanum, '-', '.'; we are lenient with '_' seen in the wild.
        let ok = text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !ok {
            return Err(UriError("bad character in host"));
        }
        Ok(Host::Domain(text.to_string()))
    }

    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ipv4(a) => Some(IpAddr::V4(*a)),
            Host::Ipv6(a) => Some(IpAddr::V6(*a)),
            Host::Domain(_) => None,
        }
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Host {
        match ip {
            IpAddr::V4(a) => Host::Ipv4(a),
            IpAddr::V6(a) => Host::Ipv6(a),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Splits `host[:port]`, where host may be an IPv6 reference (RFC 3261 §25.1 hostport).
pub fn parse_host_port(text: &str) -> Result<(Host, Option<u16>), UriError> {
    let (host, port) = if text.starts_with('[') {
        let end = text.find(']').ok_or(UriError("unclosed IPv6 reference"))?;
        let rest = &text[end + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return Err(UriError("junk after IPv6 reference")),
        };
        (&text[..=end], port)
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let port = match port {
        Some(p) => Some(parse_port(p)?),
        None => None,
    };
    Ok((Host::parse(host)?, port))
}

fn parse_port(text: &str) -> Result<u16, UriError> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UriError("bad port"));
    }
    text.parse::<u16>()
        .map_err(|_| UriError("port out of range"))
}

/// A `sip:` or `sips:` URI (RFC 3261 §19.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    pub secure: bool,
    /// The userinfo user part, still escaped as written.
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
    /// The `?hname=hvalue&...` part, as written (without the `?`).
    pub headers: Option<String>,
}

impl SipUri {
    pub fn new(user: Option<&str>, host: Host, port: Option<u16>) -> SipUri {
        SipUri {
            secure: false,
            user: user.map(str::to_string),
            password: None,
            host,
            port,
            params: Params::default(),
            headers: None,
        }
    }

    fn parse_after_scheme(secure: bool, rest: &str) -> Result<SipUri, UriError> {
        if rest
            .bytes()
            .any(|b| b <= b' ' || b == b'<' || b == b'>' || b == b'"')
        {
            return Err(UriError("forbidden character in SIP URI"));
        }
        // The userinfo ends at the last '@': ';', '?' and ',' may appear in the user part
        // (RFC 3261 §25.1 user-unreserved; RFC 4475 §3.1.1.2, §3.1.1.9), while params,
        // headers and host cannot hold an unescaped '@'.
        let (userinfo, hostpart) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (hostpart, headers) = match hostpart.split_once('?') {
            Some((r, h)) => (r, Some(h.to_string())),
            None => (hostpart, None),
        };
        let (hostport, params) = match hostpart.find(';') {
            Some(i) => (&hostpart[..i], &hostpart[i..]),
            None => (hostpart, ""),
        };
        let (host, port) = parse_host_port(hostport)?;
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                if ui.is_empty() {
                    return Err(UriError("empty user part"));
                }
                check_escapes(ui)?;
                match ui.split_once(':') {
                    Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                    None => (Some(ui.to_string()), None),
                }
            }
        };
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params: Params::parse(params).map_err(|_| UriError("bad URI parameter"))?,
            headers,
        })
    }

    /// The user part with `%HH` escapes decoded (lossy for non-UTF-8 results).
    pub fn user_unescaped(&self) -> Option<String> {
        self.user.as_deref().map(unescape)
    }

    /// The port, or the default for the scheme (RFC 3261 §19.1.2).
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.secure { 5061 } else { 5060 })
    }

    /// `host[:port]` as written in the URI.
    pub fn host_port(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.to_string(),
        }
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(pw) = &self.password {
                write!(f, ":{pw}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write!(f, "{}", self.params)?;
        if let Some(h) = &self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

/// A URI as found in a Request-URI, From, To, Contact or Route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uri {
    Sip(SipUri),
    /// `tel:` (RFC 3966): the subscriber number and its parameters, as written.
    Tel {
        number: String,
        params: Params,
    },
    /// Any other absolute URI: kept so that a UAS can answer 416 (RFC 3261 §8.2.2.1).
    Other {
        scheme: String,
        rest: String,
    },
}

impl Uri {
    pub fn parse(text: &str) -> Result<Uri, UriError> {
        let colon = text.find(':').ok_or(UriError("no scheme"))?;
        let scheme = &text[..colon];
        let rest = &text[colon + 1..];
        if scheme.is_empty()
            || !scheme.as_bytes()[0].is_ascii_alphabetic()
            || !scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
        {
            return Err(UriError("bad scheme"));
        }
        if scheme.eq_ignore_ascii_case("sip") {
            SipUri::parse_after_scheme(false, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("sips") {
            SipUri::parse_after_scheme(true, rest).map(Uri::Sip)
        } else if scheme.eq_ignore_ascii_case("tel") {
            if rest.is_empty() || rest.bytes().any(|b| b <= b' ' || b == b'<' || b == b'>') {
                return Err(UriError("bad tel URI"));
            }
            let (number, params) = match rest.find(';') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            Ok(Uri::Tel {
                number: number.to_string(),
                params: Params::parse(params).map_err(|_| UriError("bad tel parameter"))?,
            })
        } else {
            if rest.is_empty() || rest.bytes().any(|b| b <= b' ' || b == b'<' || b == b'>') {
                return Err(UriError("bad absolute URI"));
            }
            Ok(Uri::Other {
                scheme: scheme.to_string(),
                rest: rest.to_string(),
            })
        }
    }

    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_sip_mut(&mut self) -> Option<&mut SipUri> {
        match self {
            Uri::Sip(s) => Some(s),
            _ => None,
        }
    }

    /// The user part (SIP) or number (tel), if any.
    pub fn user(&self) -> Option<&str> {
        match self {
            Uri::Sip(s) => s.user.as_deref(),
            Uri::Tel { number, .. } => Some(number),
            Uri::Other { .. } => None,
        }
    }
}

impl std::str::FromStr for Uri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Uri, UriError> {
        Uri::parse(s)
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(s) => write!(f, "{s}"),
            Uri::Tel { number, params } => write!(f, "tel:{number}{params}"),
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

impl From<SipUri> for Uri {
    fn from(s: SipUri) -> Uri {
        Uri::Sip(s)
    }
}

fn check_escapes(text: &str) -> Result<(), UriError> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() {
                return Err(UriError("truncated escape"));
            }
            if !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return Err(UriError("bad escape"));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Decodes `%HH` escapes (RFC 3261 §19.1.2); invalid sequences are kept as written.
pub fn unescape(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sip_uri_with_everything() {
        let u = Uri::parse("sip:alice:pw@example.com:5070;transport=udp;lr?subject=hi").unwrap();
        let s = u.as_sip().unwrap();
        assert_eq!(s.user.as_deref(), Some("alice"));
        assert_eq!(s.password.as_deref(), Some("pw"));
        assert_eq!(s.host, Host::Domain("example.com".into()));
        assert_eq!(s.port, Some(5070));
        assert_eq!(s.params.get("transport"), Some(Some("udp")));
        assert_eq!(s.params.get("lr"), Some(None));
        assert_eq!(s.headers.as_deref(), Some("subject=hi"));
        assert_eq!(
            u.to_string(),
            "sip:alice:pw@example.com:5070;transport=udp;lr?subject=hi"
        );
    }

    #[test]
    fn ipv6_references() {
        let u = Uri::parse("sip:[2001:db8::10]:5070").unwrap();
        let s = u.as_sip().unwrap();
        assert_eq!(s.host, Host::Ipv6("2001:db8::10".parse().unwrap()));
        assert_eq!(s.port, Some(5070));
        assert_eq!(u.to_string(), "sip:[2001:db8::10]:5070");
        // RFC 5118 §4.1: an IPv6 address without brackets is not a valid host.
        assert!(Uri::parse("sip:user@2001:db8::10").is_err());
        assert!(Uri::parse("sip:[2001:db8::10").is_err());
    }

    #[test]
    fn semicolon_and_escapes_in_user_part() {
        let u = Uri::parse("sip:user;par=u%40example.net@example.com").unwrap();
        let s = u.as_sip().unwrap();
        assert_eq!(s.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(s.host, Host::Domain("example.com".into()));
        assert!(s.params.is_empty());
        assert_eq!(s.user_unescaped().unwrap(), "user;par=u@example.net");
        assert_eq!(
            Uri::parse("sip:sips%3Auser%40example.com@example.net")
                .unwrap()
                .as_sip()
                .unwrap()
                .user_unescaped()
                .unwrap(),
            "sips:user@example.com"
        );
        assert!(Uri::parse("sip:bad%zzescape@example.com").is_err());
        assert!(Uri::parse("sip:trunc%4@example.com").is_err());
    }

    #[test]
    fn tel_and_other_schemes() {
        let u = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(u.user(), Some("+1-201-555-0123"));
        assert_eq!(
            u.to_string(),
            "tel:+1-201-555-0123;phone-context=example.com"
        );
        let o = Uri::parse("nobodyknowsthisscheme:totallyopaquecontent").unwrap();
        assert!(matches!(o, Uri::Other { .. }));
        assert!(Uri::parse("no-colon-here").is_err());
        assert!(Uri::parse("sip:user@host with space").is_err());
        assert!(Uri::parse("sip:").is_err());
        assert!(Uri::parse("sip:@host").is_err());
    }

    #[test]
    fn ports_are_checked() {
        assert!(Uri::parse("sip:host:65536").is_err());
        assert!(Uri::parse("sip:host:").is_err());
        assert!(Uri::parse("sip:host:5x").is_err());
        assert_eq!(
            Uri::parse("sip:host:65535").unwrap().as_sip().unwrap().port,
            Some(65535)
        );
        assert!(Uri::parse("sip:999.1.1.1").is_err());
    }
}
