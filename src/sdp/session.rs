//! The session description model, its parser and its canonical writer (RFC 8866 §5).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::codec::{Codec, Rtpmap};

/// Why a session description could not be read. The caller answers 488 (offer in a
/// request) or 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP is empty")]
    Empty,
    #[error("SDP is not UTF-8")]
    NotUtf8,
    #[error("SDP has no {0}= line")]
    Missing(char),
    #[error("SDP line {line}: {reason}")]
    Line { line: usize, reason: String },
}

fn line_error(line: usize, reason: impl Into<String>) -> SdpError {
    SdpError::Line {
        line,
        reason: reason.into(),
    }
}

/// Media direction (RFC 8866 §6.7, RFC 3264 §5.1). Seen from the side that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub const ALL: [Direction; 4] = [
        Direction::SendRecv,
        Direction::SendOnly,
        Direction::RecvOnly,
        Direction::Inactive,
    ];

    pub fn from_flags(sends: bool, receives: bool) -> Direction {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The attribute name: `sendrecv`, `sendonly`, `recvonly` or `inactive`.
    pub fn attribute_name(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    pub fn from_attribute_name(name: &str) -> Option<Direction> {
        Direction::ALL
            .into_iter()
            .find(|d| d.attribute_name().eq_ignore_ascii_case(name))
    }

    /// The same media flow seen from the other side: sendonly <-> recvonly.
    pub fn reversed(self) -> Direction {
        Direction::from_flags(self.receives(), self.sends())
    }

    /// Only the flows both allow.
    pub fn intersect(self, other: Direction) -> Direction {
        Direction::from_flags(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.attribute_name())
    }
}

/// o= (RFC 8866 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    pub session_id: u64,
    /// Increased with every changed description in a dialog (RFC 3264 §8).
    pub session_version: u64,
    pub net_type: String,
    pub addr_type: String,
    pub address: String,
}

/// c= (RFC 8866 §5.7). The address is kept as written (it may carry a multicast
/// `/ttl` or be a domain name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub net_type: String,
    pub addr_type: String,
    pub address: String,
}

impl Connection {
    /// `IN IP4 <addr>` or `IN IP6 <addr>`.
    pub fn from_ip(ip: IpAddr) -> Connection {
        Connection {
            net_type: "IN".to_string(),
            addr_type: addr_type_of(ip).to_string(),
            address: ip.to_string(),
        }
    }

    /// The address as an IP address, without any multicast `/ttl/count` suffix.
    pub fn ip(&self) -> Option<IpAddr> {
        if !self.net_type.eq_ignore_ascii_case("IN") {
            return None;
        }
        let host = self.address.split('/').next().unwrap_or_default();
        let ip = host.parse::<IpAddr>().ok()?;
        let family_matches = match ip {
            IpAddr::V4(_) => self.addr_type.eq_ignore_ascii_case("IP4"),
            IpAddr::V6(_) => self.addr_type.eq_ignore_ascii_case("IP6"),
        };
        family_matches.then_some(ip)
    }

    /// `c=IN IP4 0.0.0.0`: the RFC 2543 way to put the other side on hold (RFC 3264 §8.4).
    pub fn is_hold_address(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }
}

/// `IP4` or `IP6` (RFC 8866 §5.7).
pub fn addr_type_of(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "IP4",
        IpAddr::V6(_) => "IP6",
    }
}

/// b= (RFC 8866 §5.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bandwidth {
    /// `CT`, `AS`, `TIAS`, ...
    pub bw_type: String,
    pub bandwidth: u64,
}

/// t= with its r= lines (RFC 8866 §5.9, §5.10).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Timing {
    pub start: u64,
    pub stop: u64,
    pub repeats: Vec<String>,
}

/// a= (RFC 8866 §5.13): `a=name` or `a=name:value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

impl Attribute {
    pub fn flag(name: &str) -> Attribute {
        Attribute {
            name: name.to_string(),
            value: None,
        }
    }

    pub fn with_value(name: &str, value: impl Into<String>) -> Attribute {
        Attribute {
            name: name.to_string(),
            value: Some(value.into()),
        }
    }
}

/// a=rtcp (RFC 3605 §2.1): the RTCP port and optionally its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcpAttribute {
    pub port: u16,
    pub connection: Option<Connection>,
}

/// One m= section (RFC 8866 §5.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, `application`, ...
    pub media: String,
    /// 0 means the stream is rejected or disabled (RFC 3264 §5.1, §6).
    pub port: u16,
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/AVPF`, `RTP/SAVP`, ...
    pub proto: String,
    /// Payload type numbers for RTP profiles, opaque otherwise.
    pub formats: Vec<String>,
    pub information: Option<String>,
    pub connection: Option<Connection>,
    pub bandwidths: Vec<Bandwidth>,
    pub encryption_key: Option<String>,
    pub attributes: Vec<Attribute>,
}

/// Attribute lookups shared by the session and media levels.
fn find_attribute<'a>(attributes: &'a [Attribute], name: &str) -> Option<&'a Attribute> {
    attributes
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
}

fn find_direction(attributes: &[Attribute]) -> Option<Direction> {
    attributes
        .iter()
        .filter(|a| a.value.is_none())
        .find_map(|a| Direction::from_attribute_name(&a.name))
}

impl MediaDescription {
    pub fn new(media: &str, port: u16, proto: &str, formats: Vec<String>) -> MediaDescription {
        MediaDescription {
            media: media.to_string(),
            port,
            port_count: None,
            proto: proto.to_string(),
            formats,
            information: None,
            connection: None,
            bandwidths: Vec::new(),
            encryption_key: None,
            attributes: Vec::new(),
        }
    }

    pub fn is_audio(&self) -> bool {
        self.media.eq_ignore_ascii_case("audio")
    }

    /// Port 0: rejected in an answer, disabled in an offer (RFC 3264 §5.1, §6).
    pub fn is_disabled(&self) -> bool {
        self.port == 0
    }

    /// The first attribute `name` (case-insensitive).
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        find_attribute(&self.attributes, name)
    }

    /// The value of the first attribute `name`; None if absent or a flag.
    pub fn attribute_value(&self, name: &str) -> Option<&str> {
        self.attribute(name)?.value.as_deref()
    }

    pub fn has_attribute(&self, name: &str) -> bool {
        self.attribute(name).is_some()
    }

    /// All values of the attribute `name`, in order.
    pub fn attribute_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.attributes
            .iter()
            .filter(move |a| a.name.eq_ignore_ascii_case(name))
            .filter_map(|a| a.value.as_deref())
    }

    /// The formats that are RTP payload type numbers (0..=127).
    pub fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter(|pt| *pt <= 127)
    }

    /// The a=rtpmap for payload type `pt` (RFC 8866 §6.6).
    pub fn rtpmap(&self, pt: u8) -> Option<Rtpmap> {
        self.attribute_values("rtpmap")
            .filter_map(Rtpmap::parse)
            .find(|r| r.payload_type == pt)
    }

    /// The a=fmtp parameters for payload type `pt` (RFC 8866 §6.15).
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.attribute_values("fmtp").find_map(|v| {
            let (format, params) = v.split_once([' ', '\t']).unwrap_or((v, ""));
            (format.parse::<u8>().ok() == Some(pt)).then(|| params.trim())
        })
    }

    /// The codec payload type `pt` stands for: its rtpmap, else the RFC 3551 static
    /// assignment.
    pub fn codec(&self, pt: u8) -> Option<Codec> {
        let mut codec = match self.rtpmap(pt) {
            Some(r) => Codec {
                payload_type: pt,
                name: r.encoding_name,
                clock_rate: r.clock_rate,
                channels: r.channels.unwrap_or(1).max(1),
                fmtp: None,
            },
            None => Codec::from_static_payload_type(pt)?,
        };
        codec.fmtp = self.fmtp(pt).map(str::to_string);
        Some(codec)
    }

    /// The codecs of the m= line, in its order; unknown payload types are skipped.
    pub fn codecs(&self) -> Vec<Codec> {
        self.payload_types()
            .filter_map(|pt| self.codec(pt))
            .collect()
    }

    /// a=ptime in milliseconds (RFC 8866 §6.4); fractional values are rounded down.
    pub fn ptime(&self) -> Option<u32> {
        parse_millis(self.attribute_value("ptime")?)
    }

    /// a=maxptime in milliseconds (RFC 8866 §6.5).
    pub fn maxptime(&self) -> Option<u32> {
        parse_millis(self.attribute_value("maxptime")?)
    }

    /// The media-level direction attribute, if any (RFC 8866 §6.7).
    pub fn direction(&self) -> Option<Direction> {
        find_direction(&self.attributes)
    }

    /// a=rtcp (RFC 3605 §2.1); None if absent or malformed.
    pub fn rtcp(&self) -> Option<RtcpAttribute> {
        let value = self.attribute_value("rtcp")?;
        let mut fields = value.split_whitespace();
        let port = fields.next()?.parse::<u16>().ok()?;
        let connection = match (fields.next(), fields.next(), fields.next()) {
            (Some(net_type), Some(addr_type), Some(address)) => Some(Connection {
                net_type: net_type.to_string(),
                addr_type: addr_type.to_string(),
                address: address.to_string(),
            }),
            _ => None,
        };
        Some(RtcpAttribute { port, connection })
    }

    /// a=rtcp-mux (RFC 5761 §5.1.1).
    pub fn rtcp_mux(&self) -> bool {
        self.has_attribute("rtcp-mux")
    }
}

fn parse_millis(value: &str) -> Option<u32> {
    let value = value.trim();
    let whole = value.split_once('.').map_or(value, |(w, _)| w);
    whole.parse::<u32>().ok()
}

/// A whole session description (RFC 8866 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// v=; always 0 (RFC 8866 §5.1).
    pub version: u32,
    pub origin: Origin,
    pub session_name: String,
    pub information: Option<String>,
    pub uri: Option<String>,
    pub emails: Vec<String>,
    pub phones: Vec<String>,
    pub connection: Option<Connection>,
    pub bandwidths: Vec<Bandwidth>,
    /// t= lines; written as `t=0 0` when empty.
    pub times: Vec<Timing>,
    pub time_zones: Option<String>,
    pub encryption_key: Option<String>,
    pub attributes: Vec<Attribute>,
    pub media: Vec<MediaDescription>,
}

impl SessionDescription {
    /// Parses SDP text. Accepts CRLF or LF line ends and trailing whitespace; ignores
    /// blank lines and unknown line types (RFC 8866 §5).
    pub fn parse(text: &str) -> Result<SessionDescription, SdpError> {
        Parser::default().run(text)
    }

    /// Parses a message body.
    pub fn from_bytes(body: &[u8]) -> Result<SessionDescription, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?;
        SessionDescription::parse(text)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }

    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        find_attribute(&self.attributes, name)
    }

    /// The session-level direction attribute, if any.
    pub fn direction(&self) -> Option<Direction> {
        find_direction(&self.attributes)
    }

    /// The direction that applies to `media`: media level, else session level, else
    /// sendrecv (RFC 8866 §6.7).
    pub fn media_direction(&self, media: &MediaDescription) -> Direction {
        media
            .direction()
            .or_else(|| self.direction())
            .unwrap_or_default()
    }

    /// The c= that applies to `media`: media level over session level (RFC 8866 §5.7).
    pub fn media_connection<'a>(&'a self, media: &'a MediaDescription) -> Option<&'a Connection> {
        media.connection.as_ref().or(self.connection.as_ref())
    }
}

impl FromStr for SessionDescription {
    type Err = SdpError;

    fn from_str(s: &str) -> Result<SessionDescription, SdpError> {
        SessionDescription::parse(s)
    }
}

#[derive(Default)]
struct Parser {
    version: Option<u32>,
    origin: Option<Origin>,
    session_name: Option<String>,
    information: Option<String>,
    uri: Option<String>,
    emails: Vec<String>,
    phones: Vec<String>,
    connection: Option<Connection>,
    bandwidths: Vec<Bandwidth>,
    times: Vec<Timing>,
    time_zones: Option<String>,
    encryption_key: Option<String>,
    attributes: Vec<Attribute>,
    media: Vec<MediaDescription>,
}

impl Parser {
    fn run(mut self, text: &str) -> Result<SessionDescription, SdpError> {
        let mut seen_any = false;
        for (index, raw) in text.split('\n').enumerate() {
            let line_no = index + 1;
            let line = raw.trim_end();
            if line.is_empty() {
                continue;
            }
            let mut chars = line.chars();
            let (Some(kind), Some('=')) = (chars.next(), chars.next()) else {
                return Err(line_error(line_no, "expected <type>=<value>"));
            };
            if !kind.is_ascii_lowercase() {
                return Err(line_error(line_no, format!("invalid line type {kind:?}")));
            }
            let value = chars.as_str();
            // RFC 8866 §5: v= comes first.
            if !seen_any && kind != 'v' {
                return Err(line_error(line_no, "SDP must start with v="));
            }
            seen_any = true;
            self.line(line_no, kind, value)?;
        }
        if !seen_any {
            return Err(SdpError::Empty);
        }
        let mut times = self.times;
        if times.is_empty() {
            times.push(Timing::default());
        }
        Ok(SessionDescription {
            version: self.version.unwrap_or_default(),
            origin: self.origin.ok_or(SdpError::Missing('o'))?,
            session_name: self.session_name.ok_or(SdpError::Missing('s'))?,
            information: self.information,
            uri: self.uri,
            emails: self.emails,
            phones: self.phones,
            connection: self.connection,
            bandwidths: self.bandwidths,
            times,
            time_zones: self.time_zones,
            encryption_key: self.encryption_key,
            attributes: self.attributes,
            media: self.media,
        })
    }

    fn line(&mut self, line_no: usize, kind: char, value: &str) -> Result<(), SdpError> {
        if let Some(media) = self.media.last_mut() {
            // RFC 8866 §5: the fields allowed inside a media section.
            return match kind {
                'm' => self.media_line(line_no, value),
                'i' => set_once(&mut media.information, value, line_no, kind),
                'c' => {
                    // Several c= lines (layered multicast) are allowed; we keep the first.
                    let connection = parse_connection(line_no, value)?;
                    media.connection.get_or_insert(connection);
                    Ok(())
                }
                'b' => {
                    media.bandwidths.push(parse_bandwidth(line_no, value)?);
                    Ok(())
                }
                'k' => set_once(&mut media.encryption_key, value, line_no, kind),
                'a' => {
                    media.attributes.push(parse_attribute(line_no, value)?);
                    Ok(())
                }
                'v' | 'o' | 's' | 'u' | 'e' | 'p' | 't' | 'r' | 'z' => Err(line_error(
                    line_no,
                    format!("{kind}= is not allowed inside a media section"),
                )),
                _ => Ok(()),
            };
        }
        match kind {
            'v' => {
                if self.version.is_some() {
                    return Err(line_error(line_no, "duplicate v= line"));
                }
                if value.trim() != "0" {
                    return Err(line_error(
                        line_no,
                        format!("unsupported version {value:?}"),
                    ));
                }
                self.version = Some(0);
            }
            'o' => {
                if self.origin.is_some() {
                    return Err(line_error(line_no, "duplicate o= line"));
                }
                self.origin = Some(parse_origin(line_no, value)?);
            }
            's' => set_once(&mut self.session_name, value, line_no, kind)?,
            'i' => set_once(&mut self.information, value, line_no, kind)?,
            'u' => set_once(&mut self.uri, value, line_no, kind)?,
            'e' => self.emails.push(value.to_string()),
            'p' => self.phones.push(value.to_string()),
            'c' => {
                if self.connection.is_some() {
                    return Err(line_error(line_no, "duplicate session-level c= line"));
                }
                self.connection = Some(parse_connection(line_no, value)?);
            }
            'b' => self.bandwidths.push(parse_bandwidth(line_no, value)?),
            't' => self.times.push(parse_timing(line_no, value)?),
            'r' => match self.times.last_mut() {
                Some(timing) => timing.repeats.push(value.to_string()),
                None => return Err(line_error(line_no, "r= without a preceding t=")),
            },
            'z' => set_once(&mut self.time_zones, value, line_no, kind)?,
            'k' => set_once(&mut self.encryption_key, value, line_no, kind)?,
            'a' => self.attributes.push(parse_attribute(line_no, value)?),
            'm' => self.media_line(line_no, value)?,
            // RFC 8866 §5: unknown types may be ignored.
            _ => {}
        }
        Ok(())
    }

    fn media_line(&mut self, line_no: usize, value: &str) -> Result<(), SdpError> {
        if self.origin.is_none() {
            return Err(SdpError::Missing('o'));
        }
        if self.session_name.is_none() {
            return Err(SdpError::Missing('s'));
        }
        self.media.push(parse_media(line_no, value)?);
        Ok(())
    }
}

fn set_once(
    slot: &mut Option<String>,
    value: &str,
    line_no: usize,
    kind: char,
) -> Result<(), SdpError> {
    if slot.is_some() {
        return Err(line_error(line_no, format!("duplicate {kind}= line")));
    }
    *slot = Some(value.to_string());
    Ok(())
}

/// Is this a token as the SDP grammar uses for types and names (RFC 8866 §9)?
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`{|}~".contains(&b))
}

/// o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>
fn parse_origin(line_no: usize, value: &str) -> Result<Origin, SdpError> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [
        username,
        session_id,
        session_version,
        net_type,
        addr_type,
        address,
    ] = fields[..]
    else {
        return Err(line_error(line_no, "o= needs 6 fields"));
    };
    let number = |field: &str, what: &str| {
        field
            .parse::<u64>()
            .map_err(|_| line_error(line_no, format!("o= {what} {field:?} is not a number")))
    };
    Ok(Origin {
        username: username.to_string(),
        session_id: number(session_id, "sess-id")?,
        session_version: number(session_version, "sess-version")?,
        net_type: net_type.to_string(),
        addr_type: addr_type.to_string(),
        address: address.to_string(),
    })
}

/// c=<nettype> <addrtype> <connection-address>
fn parse_connection(line_no: usize, value: &str) -> Result<Connection, SdpError> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [net_type, addr_type, address] = fields[..] else {
        return Err(line_error(line_no, "c= needs 3 fields"));
    };
    if !is_token(net_type) || !is_token(addr_type) {
        return Err(line_error(
            line_no,
            "c= has an invalid network or address type",
        ));
    }
    Ok(Connection {
        net_type: net_type.to_string(),
        addr_type: addr_type.to_string(),
        address: address.to_string(),
    })
}

/// b=<bwtype>:<bandwidth>
fn parse_bandwidth(line_no: usize, value: &str) -> Result<Bandwidth, SdpError> {
    let (bw_type, bandwidth) = value
        .split_once(':')
        .ok_or_else(|| line_error(line_no, "b= needs <type>:<bandwidth>"))?;
    let bandwidth = bandwidth
        .trim()
        .parse::<u64>()
        .map_err(|_| line_error(line_no, "b= bandwidth is not a number"))?;
    if !is_token(bw_type) {
        return Err(line_error(line_no, "b= has an invalid type"));
    }
    Ok(Bandwidth {
        bw_type: bw_type.to_string(),
        bandwidth,
    })
}

/// t=<start-time> <stop-time>
fn parse_timing(line_no: usize, value: &str) -> Result<Timing, SdpError> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [start, stop] = fields[..] else {
        return Err(line_error(line_no, "t= needs 2 fields"));
    };
    let number = |field: &str| {
        field
            .parse::<u64>()
            .map_err(|_| line_error(line_no, format!("t= time {field:?} is not a number")))
    };
    Ok(Timing {
        start: number(start)?,
        stop: number(stop)?,
        repeats: Vec::new(),
    })
}

/// a=<name>[:<value>]
fn parse_attribute(line_no: usize, value: &str) -> Result<Attribute, SdpError> {
    let (name, value) = match value.split_once(':') {
        Some((name, value)) => (name, Some(value.to_string())),
        None => (value, None),
    };
    if !is_token(name) {
        return Err(line_error(
            line_no,
            format!("invalid attribute name {name:?}"),
        ));
    }
    Ok(Attribute {
        name: name.to_string(),
        value,
    })
}

/// m=<media> <port>[/<number of ports>] <proto> <fmt> ...
fn parse_media(line_no: usize, value: &str) -> Result<MediaDescription, SdpError> {
    let mut fields = value.split_whitespace();
    let (Some(media), Some(port), Some(proto)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(line_error(
            line_no,
            "m= needs <media> <port> <proto> <fmt>...",
        ));
    };
    if !is_token(media) {
        return Err(line_error(line_no, format!("invalid media type {media:?}")));
    }
    if !proto.split('/').all(is_token) {
        return Err(line_error(line_no, format!("invalid transport {proto:?}")));
    }
    let bad_port = || line_error(line_no, format!("invalid port {port:?}"));
    let (port, port_count) = match port.split_once('/') {
        Some((port, count)) => (
            port.parse::<u16>().map_err(|_| bad_port())?,
            Some(count.parse::<u16>().map_err(|_| bad_port())?),
        ),
        None => (port.parse::<u16>().map_err(|_| bad_port())?, None),
    };
    Ok(MediaDescription {
        port_count,
        formats: fields.map(str::to_string).collect(),
        ..MediaDescription::new(media, port, proto, Vec::new())
    })
}

/// Canonical SDP: CRLF line ends, RFC 8866 §5 field order.
impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        write!(f, "v={}\r\n", self.version)?;
        write!(
            f,
            "o={} {} {} {} {} {}\r\n",
            o.username, o.session_id, o.session_version, o.net_type, o.addr_type, o.address
        )?;
        // RFC 8866 §5.3: s= is never empty; "-" when there is no name.
        let name = &self.session_name;
        let name = if name.trim().is_empty() { "-" } else { name };
        write!(f, "s={name}\r\n")?;
        if let Some(i) = &self.information {
            write!(f, "i={i}\r\n")?;
        }
        if let Some(u) = &self.uri {
            write!(f, "u={u}\r\n")?;
        }
        for e in &self.emails {
            write!(f, "e={e}\r\n")?;
        }
        for p in &self.phones {
            write!(f, "p={p}\r\n")?;
        }
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        for b in &self.bandwidths {
            write!(f, "b={b}\r\n")?;
        }
        if self.times.is_empty() {
            f.write_str("t=0 0\r\n")?;
        }
        for t in &self.times {
            write!(f, "t={} {}\r\n", t.start, t.stop)?;
            for r in &t.repeats {
                write!(f, "r={r}\r\n")?;
            }
        }
        if let Some(z) = &self.time_zones {
            write!(f, "z={z}\r\n")?;
        }
        if let Some(k) = &self.encryption_key {
            write!(f, "k={k}\r\n")?;
        }
        for a in &self.attributes {
            write!(f, "a={a}\r\n")?;
        }
        for m in &self.media {
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

impl fmt::Display for MediaDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.media, self.port)?;
        if let Some(count) = self.port_count {
            write!(f, "/{count}")?;
        }
        write!(f, " {}", self.proto)?;
        for format in &self.formats {
            write!(f, " {format}")?;
        }
        f.write_str("\r\n")?;
        if let Some(i) = &self.information {
            write!(f, "i={i}\r\n")?;
        }
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        for b in &self.bandwidths {
            write!(f, "b={b}\r\n")?;
        }
        if let Some(k) = &self.encryption_key {
            write!(f, "k={k}\r\n")?;
        }
        for a in &self.attributes {
            write!(f, "a={a}\r\n")?;
        }
        Ok(())
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.net_type, self.addr_type, self.address)
    }
}

impl fmt::Display for Bandwidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.bw_type, self.bandwidth)
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(f, "{}:{}", self.name, value),
            None => f.write_str(&self.name),
        }
    }
}
