//! The offer/answer model (RFC 3264) for one audio stream over RTP.

use std::net::{IpAddr, SocketAddr};

use super::codec::{
    Codec, CodecChoice, OpusParams, TELEPHONE_EVENT_48K_OFFER_PT, TELEPHONE_EVENT_FMTP,
    TELEPHONE_EVENT_OFFER_PT,
};
use super::session::{
    Attribute, Connection, Direction, MediaDescription, Origin, SessionDescription, Timing,
    addr_type_of,
};

/// Packet duration when neither side says (RFC 3551 §4.2 recommends 20 ms).
pub const DEFAULT_PTIME_MS: u32 = 20;
/// The packet durations we accept; others are clamped.
pub const PTIME_RANGE_MS: std::ops::RangeInclusive<u32> = 10..=60;
/// The o= username of our descriptions (RFC 8866 §5.2).
pub const ORIGIN_USERNAME: &str = "siphon";

/// What we can and want to do with audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMediaConfig {
    /// Where we receive RTP.
    pub address: IpAddr,
    pub rtp_port: u16,
    /// In order of preference (the user's `--codecs`).
    pub codecs: Vec<CodecChoice>,
    pub ptime_ms: u32,
    /// Offer and accept RFC 4733 DTMF events.
    pub telephone_event: bool,
    /// SendRecv normally; SendOnly to put the other side on hold (RFC 3264 §8.4).
    pub direction: Direction,
}

impl LocalMediaConfig {
    /// All codecs (opus, PCMU, PCMA), 20 ms, telephone-event, sendrecv.
    pub fn new(address: IpAddr, rtp_port: u16) -> LocalMediaConfig {
        LocalMediaConfig {
            address,
            rtp_port,
            codecs: CodecChoice::ALL.to_vec(),
            ptime_ms: DEFAULT_PTIME_MS,
            telephone_event: true,
            direction: Direction::SendRecv,
        }
    }
}

/// The agreed audio stream: where and how to send, and which way media flows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedMedia {
    /// c= address and m= port of the far end.
    pub remote_rtp: SocketAddr,
    /// a=rtcp if given (RFC 3605), the RTP address with rtcp-mux, else RTP port + 1.
    pub remote_rtcp: SocketAddr,
    /// RTP and RTCP share one port (RFC 5761).
    pub rtcp_mux: bool,
    /// The codec to send, with the far end's payload type and fmtp (RFC 3264 §6.1).
    pub codec: Codec,
    /// The far end's Opus preferences when `codec` is Opus (RFC 7587 §6.1).
    pub opus: Option<OpusParams>,
    /// The far end's payload type for RFC 4733 events, if both sides use them.
    pub telephone_event_pt: Option<u8>,
    pub ptime_ms: u32,
    /// Our direction: whether we send and/or receive.
    pub direction: Direction,
    /// The far end's direction, with `c=0.0.0.0` read as hold (RFC 3264 §8.4).
    pub remote_direction: Direction,
}

/// Why an offer or answer cannot be used. For an offer in a request the caller answers
/// 488 Not Acceptable Here (RFC 3261 §13.3.1.1, RFC 3264 §6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("no common audio codec")]
    NoCommonCodec,
    #[error("no enabled audio stream over RTP/AVP or RTP/AVPF")]
    NoAudioStream,
    #[error("the audio stream was rejected (port 0)")]
    StreamRejected,
    #[error("no c= line for the audio stream")]
    MissingConnection,
    #[error("unusable connection address {0:?}")]
    BadConnectionAddress(String),
}

impl NegotiationError {
    /// The SIP status for rejecting an offer with this error.
    pub fn status_code(&self) -> u16 {
        488
    }
}

fn clamp_ptime(ms: u32) -> u32 {
    ms.clamp(*PTIME_RANGE_MS.start(), *PTIME_RANGE_MS.end())
}

/// The RTP profiles we speak: plain RTP, with or without feedback (RFC 3551, RFC 4585).
fn is_supported_profile(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVPF")
}

/// An audio stream we could use: enabled, plain RTP.
fn is_usable_audio(media: &MediaDescription) -> bool {
    media.is_audio() && !media.is_disabled() && is_supported_profile(&media.proto)
}

fn session_skeleton(
    local: &LocalMediaConfig,
    session_id: u64,
    version: u64,
    times: Vec<Timing>,
) -> SessionDescription {
    SessionDescription {
        version: 0,
        origin: Origin {
            username: ORIGIN_USERNAME.to_string(),
            session_id,
            session_version: version,
            net_type: "IN".to_string(),
            addr_type: addr_type_of(local.address).to_string(),
            address: local.address.to_string(),
        },
        session_name: "-".to_string(),
        information: None,
        uri: None,
        emails: Vec::new(),
        phones: Vec::new(),
        connection: Some(Connection::from_ip(local.address)),
        bandwidths: Vec::new(),
        times,
        time_zones: None,
        encryption_key: None,
        attributes: Vec::new(),
        media: Vec::new(),
    }
}

/// The telephone-event codec as we describe it in offers (RFC 4733 §7.1), at the clock
/// rate of the audio codecs it goes with.
fn offer_telephone_event(clock_rate: u32) -> Codec {
    Codec {
        payload_type: if clock_rate == 48000 {
            TELEPHONE_EVENT_48K_OFFER_PT
        } else {
            TELEPHONE_EVENT_OFFER_PT
        },
        name: "telephone-event".to_string(),
        clock_rate,
        channels: 1,
        fmtp: Some(TELEPHONE_EVENT_FMTP.to_string()),
    }
}

/// An audio m= section listing `codecs` with their rtpmap and fmtp lines.
fn audio_media(
    port: u16,
    proto: &str,
    codecs: &[Codec],
    ptime_ms: u32,
    direction: Direction,
) -> MediaDescription {
    let formats = codecs.iter().map(|c| c.payload_type.to_string()).collect();
    let mut media = MediaDescription::new("audio", port, proto, formats);
    for codec in codecs {
        media
            .attributes
            .push(Attribute::with_value("rtpmap", codec.rtpmap_value()));
        if let Some(fmtp) = &codec.fmtp {
            media.attributes.push(Attribute::with_value(
                "fmtp",
                format!("{} {fmtp}", codec.payload_type),
            ));
        }
    }
    media
        .attributes
        .push(Attribute::with_value("ptime", ptime_ms.to_string()));
    media
        .attributes
        .push(Attribute::flag(direction.attribute_name()));
    media
}

/// Our offer: one audio stream with the configured codecs (RFC 3264 §5). `version`
/// must grow with every new offer in the dialog (RFC 3264 §8), e.g. hold and resume.
pub fn build_offer(local: &LocalMediaConfig, session_id: u64, version: u64) -> SessionDescription {
    let mut codecs: Vec<Codec> = Vec::new();
    for choice in &local.codecs {
        let codec = choice.offer_codec();
        if !codecs.iter().any(|c| c.payload_type == codec.payload_type) {
            codecs.push(codec);
        }
    }
    if local.telephone_event {
        if local.codecs.contains(&CodecChoice::Opus) {
            codecs.push(offer_telephone_event(48000));
        }
        if local.codecs.iter().any(|c| *c != CodecChoice::Opus) {
            codecs.push(offer_telephone_event(8000));
        }
    }
    let mut sdp = session_skeleton(local, session_id, version, vec![Timing::default()]);
    sdp.media.push(audio_media(
        local.rtp_port,
        "RTP/AVP",
        &codecs,
        clamp_ptime(local.ptime_ms),
        local.direction,
    ));
    sdp
}

/// Picks the telephone-event format to use next to `codec`: the same clock rate if
/// offered (RFC 4733 §7.1.1), else 8000 Hz, else the first one.
fn pick_telephone_event(media: &MediaDescription, codec: &Codec) -> Option<Codec> {
    let events: Vec<Codec> = media
        .codecs()
        .into_iter()
        .filter(Codec::is_telephone_event)
        .collect();
    let by_rate = |rate: u32| events.iter().find(|e| e.clock_rate == rate).cloned();
    by_rate(codec.clock_rate)
        .or_else(|| by_rate(8000))
        .or_else(|| events.first().cloned())
}

/// The offered codecs we support, in the offerer's order, with the offerer's payload
/// types (RFC 3264 §6.1).
fn common_codecs(media: &MediaDescription, local: &LocalMediaConfig) -> Vec<Codec> {
    let mut common: Vec<Codec> = Vec::new();
    for codec in media.codecs() {
        let supported = codec.choice().is_some_and(|c| local.codecs.contains(&c));
        if supported && !common.iter().any(|c| c.payload_type == codec.payload_type) {
            common.push(codec);
        }
    }
    common
}

/// The far end's stream address and direction, as read from `sdp`'s `media`.
struct RemoteEndpoint {
    rtp: SocketAddr,
    rtcp: SocketAddr,
    direction: Direction,
}

fn remote_endpoint(
    sdp: &SessionDescription,
    media: &MediaDescription,
    rtcp_mux: bool,
) -> Result<RemoteEndpoint, NegotiationError> {
    // RFC 8866 §5.7: media-level c= overrides session-level c=.
    let connection = sdp
        .media_connection(media)
        .ok_or(NegotiationError::MissingConnection)?;
    let ip = connection
        .ip()
        .ok_or_else(|| NegotiationError::BadConnectionAddress(connection.address.clone()))?;
    let mut direction = sdp.media_direction(media);
    if connection.is_hold_address() {
        // RFC 3264 §8.4: c=0.0.0.0 (RFC 2543 hold) means "do not send to me".
        direction = direction.intersect(Direction::SendOnly);
    }
    let rtp = SocketAddr::new(ip, media.port);
    let rtcp = if rtcp_mux {
        rtp // RFC 5761 §5.1.1
    } else if let Some(attr) = media.rtcp() {
        // RFC 3605 §2.1
        let rtcp_ip = attr
            .connection
            .as_ref()
            .and_then(Connection::ip)
            .unwrap_or(ip);
        SocketAddr::new(rtcp_ip, attr.port)
    } else {
        // RFC 3550 §11: the next port up.
        SocketAddr::new(ip, media.port.checked_add(1).unwrap_or(media.port))
    };
    Ok(RemoteEndpoint {
        rtp,
        rtcp,
        direction,
    })
}

fn opus_params(codec: &Codec) -> Option<OpusParams> {
    (codec.choice() == Some(CodecChoice::Opus))
        .then(|| OpusParams::parse(codec.fmtp.as_deref().unwrap_or_default()))
}

/// Answers an offer (RFC 3264 §6): uses the first enabled RTP/AVP(F) audio stream with a
/// common codec and rejects every other stream with port 0. Works the same for the
/// offer of a re-INVITE, whose result replaces the previous negotiation.
pub fn answer_offer(
    offer: &SessionDescription,
    local: &LocalMediaConfig,
    session_id: u64,
    version: u64,
) -> Result<(SessionDescription, NegotiatedMedia), NegotiationError> {
    let mut found_audio = false;
    let mut chosen = None;
    for (index, media) in offer.media.iter().enumerate() {
        if !is_usable_audio(media) {
            continue;
        }
        found_audio = true;
        let common = common_codecs(media, local);
        if !common.is_empty() {
            chosen = Some((index, media, common));
            break;
        }
    }
    let Some((chosen_index, offered, common)) = chosen else {
        return Err(if found_audio {
            NegotiationError::NoCommonCodec
        } else {
            NegotiationError::NoAudioStream
        });
    };

    let send_codec = common[0].clone();
    let telephone_event = if local.telephone_event {
        pick_telephone_event(offered, &send_codec)
    } else {
        None
    };
    // RFC 5761 §5.1.1: accept rtcp-mux only when offered.
    let rtcp_mux = offered.rtcp_mux();
    let remote = remote_endpoint(offer, offered, rtcp_mux)?;
    // RFC 3264 §6.1: the answer mirrors the offer's direction, limited by our own.
    let direction = remote.direction.reversed().intersect(local.direction);
    let ptime_ms = clamp_ptime(offered.ptime().unwrap_or(local.ptime_ms));

    // The answer lists the common codecs with the offerer's payload types and our fmtp.
    let mut answer_codecs: Vec<Codec> = common
        .iter()
        .map(|c| Codec {
            fmtp: c
                .choice()
                .and_then(CodecChoice::answer_fmtp)
                .map(str::to_string),
            ..c.clone()
        })
        .collect();
    if let Some(event) = &telephone_event {
        answer_codecs.push(Codec {
            fmtp: Some(TELEPHONE_EVENT_FMTP.to_string()),
            ..event.clone()
        });
    }

    // RFC 3264 §6: the answer's t= equals the offer's; one m= per offered m=, in order.
    let mut answer = session_skeleton(local, session_id, version, offer.times.clone());
    for (index, media) in offer.media.iter().enumerate() {
        if index == chosen_index {
            let mut audio = audio_media(
                local.rtp_port,
                &media.proto,
                &answer_codecs,
                ptime_ms,
                direction,
            );
            if rtcp_mux {
                audio.attributes.push(Attribute::flag("rtcp-mux"));
            }
            answer.media.push(audio);
        } else {
            // RFC 3264 §6: a rejected stream keeps its media type, proto and formats.
            answer.media.push(MediaDescription::new(
                &media.media,
                0,
                &media.proto,
                media.formats.clone(),
            ));
        }
    }

    let negotiated = NegotiatedMedia {
        remote_rtp: remote.rtp,
        remote_rtcp: remote.rtcp,
        rtcp_mux,
        opus: opus_params(&send_codec),
        codec: send_codec,
        telephone_event_pt: telephone_event.map(|e| e.payload_type),
        ptime_ms,
        direction,
        remote_direction: remote.direction,
    };
    Ok((answer, negotiated))
}

/// Reads the answer to `offer`, the description we sent (RFC 3264 §7). We send the
/// answer's first codec that we offered, with the answer's payload type (RFC 3264 §6.1).
pub fn process_answer(
    offer: &SessionDescription,
    answer: &SessionDescription,
) -> Result<NegotiatedMedia, NegotiationError> {
    let (index, offered) = offer
        .media
        .iter()
        .enumerate()
        .find(|(_, m)| is_usable_audio(m))
        .ok_or(NegotiationError::NoAudioStream)?;
    // RFC 3264 §6: the answer's m= lines match the offer's one for one.
    let answered = answer
        .media
        .get(index)
        .filter(|m| m.is_audio())
        .ok_or(NegotiationError::NoAudioStream)?;
    if answered.is_disabled() {
        return Err(NegotiationError::StreamRejected);
    }

    let offered_codecs = offered.codecs();
    let offered_choices: Vec<CodecChoice> =
        offered_codecs.iter().filter_map(Codec::choice).collect();
    let send_codec = answered
        .payload_types()
        // A missing rtpmap in the answer means the payload type as we offered it.
        .filter_map(|pt| answered.codec(pt).or_else(|| offered.codec(pt)))
        .find(|c| c.choice().is_some_and(|ch| offered_choices.contains(&ch)))
        .ok_or(NegotiationError::NoCommonCodec)?;
    let we_offered_events = offered_codecs.iter().any(Codec::is_telephone_event);
    let telephone_event = if we_offered_events {
        pick_telephone_event(answered, &send_codec)
    } else {
        None
    };

    let rtcp_mux = offered.rtcp_mux() && answered.rtcp_mux();
    let remote = remote_endpoint(answer, answered, rtcp_mux)?;
    let our_offered_direction = offer.media_direction(offered);
    let direction = remote.direction.reversed().intersect(our_offered_direction);
    let ptime_ms = clamp_ptime(
        answered
            .ptime()
            .or_else(|| offered.ptime())
            .unwrap_or(DEFAULT_PTIME_MS),
    );

    Ok(NegotiatedMedia {
        remote_rtp: remote.rtp,
        remote_rtcp: remote.rtcp,
        rtcp_mux,
        opus: opus_params(&send_codec),
        codec: send_codec,
        telephone_event_pt: telephone_event.map(|e| e.payload_type),
        ptime_ms,
        direction,
        remote_direction: remote.direction,
    })
}
