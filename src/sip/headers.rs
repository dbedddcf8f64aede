//! Typed views of the header fields the stack acts on: Via, From/To/Contact/Route
//! (name-addr), CSeq. Every other header stays text in [`super::message::Headers`].

use std::fmt;

use super::message::Method;
use super::params::{Params, find_unquoted, is_lws, is_token_byte, quoted_string_end};
use super::uri::{Host, Uri, parse_host_port};

/// Why a header field value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {header} header: {why}")]
pub struct HeaderError {
    pub header: &'static str,
    pub why: &'static str,
}

fn err(header: &'static str, why: &'static str) -> HeaderError {
    HeaderError { header, why }
}

/// The RFC 3261 §8.1.1.7 magic cookie that marks an RFC 3261 branch.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// One Via value (RFC 3261 §20.42).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// Upper-case transport, e.g. `UDP`.
    pub transport: String,
    pub host: Host,
    pub port: Option<u16>,
    pub params: Params,
}

impl Via {
    pub fn parse(text: &str) -> Result<Via, HeaderError> {
        const H: &str = "Via";
        // sent-protocol = protocol-name SLASH protocol-version SLASH transport, LWS allowed.
        let mut rest = text.trim_matches(is_lws);
        let mut fields = [""; 3];
        for (i, field) in fields.iter_mut().enumerate() {
            let end = rest
                .find(|c: char| !(c.is_ascii() && is_token_byte(c as u8)))
                .unwrap_or(rest.len());
            *field = &rest[..end];
            rest = rest[end..].trim_start_matches(is_lws);
            if i < 2 {
                rest = rest.strip_prefix('/').ok_or(err(H, "bad sent-protocol"))?;
                rest = rest.trim_start_matches(is_lws);
            }
        }
        // Any version is read, so that a 505 can still be routed (RFC 4475 §3.1.2.16).
        if !fields[0].eq_ignore_ascii_case("SIP") || fields[1].is_empty() || fields[2].is_empty() {
            return Err(err(H, "bad sent-protocol"));
        }
        let (sent_by, params) = match find_unquoted(rest, b';') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        // LWS is allowed around the ':' of sent-by (RFC 3261 §25.1 `sent-by`, HCOLON).
        let sent_by: String = sent_by.chars().filter(|c| !is_lws(*c)).collect();
        let (host, port) = parse_host_port(&sent_by).map_err(|_| err(H, "bad sent-by"))?;
        let params = Params::parse(params).map_err(|_| err(H, "bad parameters"))?;
        if let Some(Some(p)) = params.get("rport") {
            p.parse::<u16>().map_err(|_| err(H, "bad rport"))?;
        }
        if params.get("branch") == Some(None) {
            return Err(err(H, "branch without a value"));
        }
        Ok(Via {
            transport: fields[2].to_ascii_uppercase(),
            host,
            port,
            params,
        })
    }

    pub fn branch(&self) -> Option<&str> {
        self.params.value("branch")
    }

    /// The `received` parameter as an address, if present and valid.
    pub fn received(&self) -> Option<std::net::IpAddr> {
        let v = self.params.value("received")?;
        v.trim_start_matches('[').trim_end_matches(']').parse().ok()
    }

    /// `Some(Some(port))` when the peer filled in `rport=N`, `Some(None)` for a bare `rport`.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// `host[:port]` as sent.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.to_string(),
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SIP/2.0/{} {}{}",
            self.transport,
            self.sent_by(),
            self.params
        )
    }
}

/// A From, To, Contact, Route or Record-Route value: `["name"] <uri>;params` or
/// `uri;params` (RFC 3261 §20.10: then the params belong to the header, not the URI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name as written (quoted form keeps its quotes).
    pub display_name: Option<String>,
    pub uri: Uri,
    pub params: Params,
}

impl NameAddr {
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display_name: None,
            uri,
            params: Params::default(),
        }
    }

    pub fn parse(text: &str) -> Result<NameAddr, HeaderError> {
        const H: &str = "address";
        let text = text.trim_matches(is_lws);
        let (display_name, rest) = if text.starts_with('"') {
            let end = quoted_string_end(text).ok_or(err(H, "unterminated quoted display name"))?;
            let rest = text[end..].trim_start_matches(is_lws);
            if !rest.starts_with('<') {
                return Err(err(H, "display name without <uri>"));
            }
            (Some(text[..end].to_string()), rest)
        } else if let Some(lt) = text.find('<') {
            let name = text[..lt].trim_matches(is_lws);
            // RFC 3261 §25.1: an unquoted display name is tokens separated by LWS.
            if !name
                .bytes()
                .all(|b| is_token_byte(b) || b == b' ' || b == b'\t')
            {
                return Err(err(H, "display name needs quotes"));
            }
            let name = (!name.is_empty()).then(|| name.to_string());
            (name, &text[lt..])
        } else {
            // addr-spec: the URI ends at the first ';' and cannot carry '?' headers or commas.
            let (uri, params) = match text.find(';') {
                Some(i) => (&text[..i], &text[i..]),
                None => (text, ""),
            };
            let uri = uri.trim_end_matches(is_lws);
            if uri.contains('?') || uri.contains(',') {
                return Err(err(H, "URI with headers must be enclosed in <>"));
            }
            if uri.contains(' ') || uri.contains('\t') {
                return Err(err(H, "space in URI"));
            }
            let uri = Uri::parse(uri).map_err(|_| err(H, "bad URI"))?;
            let params = Params::parse(params).map_err(|_| err(H, "bad parameters"))?;
            return Ok(NameAddr {
                display_name: None,
                uri,
                params,
            });
        };
        let close = rest.find('>').ok_or(err(H, "missing '>'"))?;
        let uri_text = &rest[1..close];
        if uri_text.contains([' ', '\t']) {
            return Err(err(H, "space inside <uri>"));
        }
        let uri = Uri::parse(uri_text).map_err(|_| err(H, "bad URI"))?;
        let params = Params::parse(&rest[close + 1..]).map_err(|_| err(H, "bad parameters"))?;
        Ok(NameAddr {
            display_name,
            uri,
            params,
        })
    }

    pub fn tag(&self) -> Option<&str> {
        self.params.value("tag")
    }

    pub fn set_tag(&mut self, tag: &str) {
        self.params.set("tag", Some(tag));
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.display_name {
            write!(f, "{name} ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// CSeq (RFC 3261 §20.16): a 32-bit sequence number below 2^31 and a method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(text: &str) -> Result<CSeq, HeaderError> {
        const H: &str = "CSeq";
        let mut parts = text.split([' ', '\t']).filter(|p| !p.is_empty());
        let (Some(num), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(err(H, "expected '<number> <method>'"));
        };
        if num.len() > 10 + 8 || !num.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(H, "bad sequence number"));
        }
        let seq: u64 = num.parse().map_err(|_| err(H, "bad sequence number"))?;
        // RFC 3261 §8.1.1.5: the sequence number must be less than 2^31.
        if seq >= 1 << 31 {
            return Err(err(H, "sequence number out of range"));
        }
        let method = Method::parse(method).map_err(|_| err(H, "bad method"))?;
        Ok(CSeq {
            seq: seq as u32,
            method,
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_with_lws_everywhere() {
        let v = Via::parse("SIP  /   2.0 /UDP    192.0.2.2;rport;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, Host::Ipv4("192.0.2.2".parse().unwrap()));
        assert_eq!(v.port, None);
        assert_eq!(v.branch(), Some("390skdjuw"));
        assert_eq!(v.rport(), Some(None));
        let v = Via::parse(
            "SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas;received=[2001:db8::9:255]",
        )
        .unwrap();
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.received(), Some("2001:db8::9:255".parse().unwrap()));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas;received=[2001:db8::9:255]"
        );
        assert!(Via::parse("XIP/2.0/UDP host").is_err());
        assert!(Via::parse("SIP/2.0/UDP").is_err());
        assert!(Via::parse("SIP/2.0/UDP host;rport=99999").is_err());
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse(
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>  ;  tag = 98asjd8",
        )
        .unwrap();
        assert_eq!(n.display_name.as_deref(), Some("\"J Rosenberg \\\\\\\"\""));
        assert_eq!(n.tag(), Some("98asjd8"));
        let n = NameAddr::parse("sip:alice@example.com;tag=1;expires=30").unwrap();
        assert_eq!(n.tag(), Some("1"));
        assert!(n.uri.as_sip().unwrap().params.is_empty());
        let n = NameAddr::parse("Bob <sip:bob@h;lr>;q=0.5").unwrap();
        assert_eq!(n.display_name.as_deref(), Some("Bob"));
        assert!(n.uri.as_sip().unwrap().params.contains("lr"));
        assert_eq!(n.to_string(), "Bob <sip:bob@h;lr>;q=0.5");
        assert!(NameAddr::parse("\"unterminated <sip:a@b>").is_err());
        assert!(NameAddr::parse("Bell, Alexander <sip:a@b>").is_err());
        assert!(NameAddr::parse("< sip:t.watson@example.org >").is_err());
        assert!(NameAddr::parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_err());
    }

    #[test]
    fn cseq_range() {
        assert_eq!(CSeq::parse("0009 INVITE").unwrap().seq, 9);
        assert_eq!(
            CSeq::parse("2147483647 OPTIONS").unwrap().seq,
            (1 << 31) - 1
        );
        assert!(CSeq::parse("2147483648 OPTIONS").is_err());
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("1").is_err());
        assert!(CSeq::parse("1 INVITE extra").is_err());
    }
}
