//! Parsing, writing and offer/answer tests against offers shaped like real user agents'
//! (see sip-fixtures/sdp/README.md).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::*;

const BARESIP: &str = include_str!("../../sip-fixtures/sdp/baresip-1.0.sdp");
const LINPHONE: &str = include_str!("../../sip-fixtures/sdp/linphone-4.sdp");
const ASTERISK: &str = include_str!("../../sip-fixtures/sdp/asterisk-16.sdp");
const SIPP: &str = include_str!("../../sip-fixtures/sdp/sipp-uac.sdp");

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn local() -> LocalMediaConfig {
    LocalMediaConfig::new(ip("192.0.2.10"), 40000)
}

fn parse(text: &str) -> SessionDescription {
    SessionDescription::parse(text).unwrap()
}

/// A minimal offer with one audio line; `media` is the m= line and what follows it.
fn offer_with(session_extra: &str, media: &str) -> SessionDescription {
    parse(&format!(
        "v=0\no=- 1 1 IN IP4 198.51.100.7\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\n{session_extra}{media}"
    ))
}

fn answer_default(offer: &SessionDescription) -> (SessionDescription, NegotiatedMedia) {
    answer_offer(offer, &local(), 77, 1).unwrap()
}

fn media_attr(sdp: &SessionDescription, index: usize, name: &str) -> Option<String> {
    sdp.media[index]
        .attribute(name)
        .map(|a| a.value.clone().unwrap_or_default())
}

// ---- parsing and writing -------------------------------------------------------------

#[test]
fn our_offer_is_written_canonically_and_round_trips() {
    let offer = build_offer(&local(), 4242, 1);
    let text = offer.to_string();
    assert_eq!(
        text,
        "v=0\r\n\
         o=siphon 4242 1 IN IP4 192.0.2.10\r\n\
         s=-\r\n\
         c=IN IP4 192.0.2.10\r\n\
         t=0 0\r\n\
         m=audio 40000 RTP/AVP 111 0 8 110 101\r\n\
         a=rtpmap:111 opus/48000/2\r\n\
         a=fmtp:111 minptime=10;useinbandfec=1\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:110 telephone-event/48000\r\n\
         a=fmtp:110 0-16\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n"
    );
    assert_eq!(parse(&text), offer);
    assert_eq!(SessionDescription::from_bytes(&offer.to_bytes()), Ok(offer));
}

#[test]
fn parses_a_typical_offer_with_lf_line_ends() {
    let sdp = parse(BARESIP);
    assert_eq!(sdp.origin.username, "-");
    assert_eq!(sdp.origin.session_id, 1916379130);
    assert_eq!(sdp.origin.session_version, 2015224486);
    assert_eq!(
        sdp.connection.as_ref().unwrap().ip(),
        Some(ip("192.168.1.35"))
    );
    assert_eq!(sdp.times, vec![Timing::default()]);
    assert_eq!(
        sdp.attribute("tool").unwrap().value.as_deref(),
        Some("baresip 1.0.0")
    );
    let audio = &sdp.media[0];
    assert_eq!((audio.media.as_str(), audio.port), ("audio", 10406));
    assert_eq!(audio.proto, "RTP/AVP");
    assert_eq!(audio.formats, ["96", "9", "0", "8", "101"]);
    assert_eq!(audio.rtpmap(96).unwrap().encoding_name, "opus");
    assert_eq!(audio.fmtp(96), Some("stereo=1;sprop-stereo=1"));
    assert_eq!(audio.fmtp(101), Some("0-15"));
    assert_eq!(audio.ptime(), Some(20));
    assert_eq!(audio.direction(), Some(Direction::SendRecv));
    assert!(!audio.rtcp_mux());
    // Unknown attributes are kept, in order.
    let names: Vec<&str> = audio.attributes.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        &names[names.len() - 4..],
        ["label", "ssrc", "rtcp-rsize", "ptime"]
    );
    let codecs: Vec<String> = audio.codecs().iter().map(|c| c.name.clone()).collect();
    assert_eq!(codecs, ["opus", "G722", "PCMU", "PCMA", "telephone-event"]);
}

#[test]
fn parsed_offers_are_rewritten_as_crlf_and_reparse_equal() {
    for text in [BARESIP, LINPHONE, ASTERISK, SIPP] {
        let sdp = parse(text);
        let written = sdp.to_string();
        assert!(written.ends_with("\r\n"));
        assert_eq!(
            written.matches('\n').count(),
            written.matches("\r\n").count()
        );
        assert_eq!(parse(&written), sdp);
        // Our output is what a CRLF input would be, line for line.
        assert_eq!(written, text.replace("\r\n", "\n").replace('\n', "\r\n"));
    }
}

#[test]
fn tolerates_trailing_whitespace_and_blank_lines() {
    let sdp = parse(
        "v=0 \r\no=- 1 2 IN IP4 10.0.0.1\t\n\ns=x  \nt=0 0\r\nm=audio 5000 RTP/AVP 0 \r\n\r\n",
    );
    assert_eq!(sdp.session_name, "x");
    assert_eq!(sdp.media[0].formats, ["0"]);
}

#[test]
fn writes_fields_in_rfc_order() {
    let sdp = parse(
        "v=0\na=recvonly\nt=0 0\nb=AS:64\nc=IN IP4 10.0.0.1\ns=reordered\no=- 1 2 IN IP4 10.0.0.1\n\
         i=info\nm=audio 5000/2 RTP/AVP 0\na=ptime:30\nb=TIAS:64000\nc=IN IP4 10.0.0.2\ni=voice\n",
    );
    assert_eq!(
        sdp.to_string(),
        "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=reordered\r\ni=info\r\nc=IN IP4 10.0.0.1\r\n\
         b=AS:64\r\nt=0 0\r\na=recvonly\r\nm=audio 5000/2 RTP/AVP 0\r\ni=voice\r\n\
         c=IN IP4 10.0.0.2\r\nb=TIAS:64000\r\na=ptime:30\r\n"
    );
    assert_eq!(sdp.media[0].port_count, Some(2));
    assert_eq!(sdp.direction(), Some(Direction::RecvOnly));
}

#[test]
fn keeps_optional_session_fields() {
    let text = "v=0\r\no=jdoe 2890844526 2890842807 IN IP4 10.47.16.5\r\ns=SDP Seminar\r\n\
                i=A Seminar on the session description protocol\r\n\
                u=http://www.example.com/seminars/sdp.pdf\r\ne=j.doe@example.com (Jane Doe)\r\n\
                p=+1 617 555-6011\r\nc=IN IP4 224.2.17.12/127\r\nt=2873397496 2873404696\r\n\
                r=7d 1h 0 25h\r\nz=2882844526 -1h 2898848070 0\r\nk=prompt\r\na=recvonly\r\n\
                m=audio 49170 RTP/AVP 0\r\nm=video 51372 RTP/AVP 99\r\na=rtpmap:99 h263-1998/90000\r\n";
    let sdp = parse(text);
    assert_eq!(sdp.to_string(), text);
    assert_eq!(sdp.times[0].repeats, ["7d 1h 0 25h"]);
    assert_eq!(
        sdp.connection.as_ref().unwrap().ip(),
        Some(ip("224.2.17.12"))
    );
}

#[test]
fn blank_session_name_is_written_as_dash() {
    let sdp = parse("v=0\no=- 1 2 IN IP4 10.0.0.1\ns=\nt=0 0\n");
    assert!(sdp.to_string().contains("\r\ns=-\r\n"));
}

#[test]
fn bad_sdp_gives_errors() {
    let cases: &[(&str, SdpError)] = &[
        ("", SdpError::Empty),
        ("\r\n\r\n", SdpError::Empty),
        ("v=0\ns=-\nt=0 0\n", SdpError::Missing('o')),
        (
            "v=0\no=- 1 2 IN IP4 10.0.0.1\nt=0 0\n",
            SdpError::Missing('s'),
        ),
        (
            "v=0\no=- 1 2 IN IP4 10.0.0.1\nm=audio 1 RTP/AVP 0\ns=-\n",
            SdpError::Missing('s'),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(
            SessionDescription::parse(text).as_ref(),
            Err(expected),
            "{text:?}"
        );
    }
    let head = "v=0\no=- 1 2 IN IP4 10.0.0.1\ns=-\nt=0 0\n";
    for bad in [
        "o=- 1 2 IN IP4 10.0.0.1\nv=0\ns=-\n".to_string(),
        "v=1\no=- 1 2 IN IP4 10.0.0.1\ns=-\n".to_string(),
        "v=0\no=- x 2 IN IP4 10.0.0.1\ns=-\n".to_string(),
        "v=0\no=- 1 2 IN IP4\ns=-\n".to_string(),
        format!("{head}hello\n"),
        format!("{head}A=b\n"),
        format!("{head}c=IN IP4\n"),
        format!("{head}b=AS\n"),
        format!("{head}t=now later\n"),
        format!("{head}a=\n"),
        format!("{head}a=bad name:1\n"),
        format!("{head}m=audio\n"),
        format!("{head}m=audio 70000 RTP/AVP 0\n"),
        format!("{head}m=audio 5000/x RTP/AVP 0\n"),
        format!("{head}m=audio 5000 RTP/AVP 0\nt=0 0\n"),
        format!("{head}m=audio 5000 RTP/AVP 0\no=- 1 2 IN IP4 10.0.0.1\n"),
        format!("{head}s=again\n"),
    ] {
        let err = SessionDescription::parse(&bad).expect_err(&bad);
        assert!(!err.to_string().is_empty());
    }
    assert_eq!(
        SessionDescription::from_bytes(b"v=0\n\xff"),
        Err(SdpError::NotUtf8)
    );
    // Line numbers point at the culprit.
    assert_eq!(
        SessionDescription::parse(&format!("{head}m=audio port RTP/AVP 0\n")),
        Err(SdpError::Line {
            line: 5,
            reason: "invalid port \"port\"".into()
        })
    );
}

#[test]
fn unknown_line_types_are_ignored() {
    let sdp =
        parse("v=0\no=- 1 2 IN IP4 10.0.0.1\ns=-\nx=whatever\nt=0 0\nm=audio 1 RTP/AVP 0\ny=1\n");
    assert_eq!(sdp.media.len(), 1);
}

#[test]
fn rtcp_attribute_with_and_without_address() {
    let sdp = offer_with(
        "",
        "m=audio 49170 RTP/AVP 0\na=rtcp:53020 IN IP4 126.16.64.4\n",
    );
    let rtcp = sdp.media[0].rtcp().unwrap();
    assert_eq!(rtcp.port, 53020);
    assert_eq!(rtcp.connection.unwrap().ip(), Some(ip("126.16.64.4")));
    let sdp = offer_with(
        "",
        "m=audio 49170 RTP/AVP 0\na=rtcp:53020\na=maxptime:40.5\n",
    );
    assert_eq!(sdp.media[0].rtcp().unwrap().connection, None);
    assert_eq!(sdp.media[0].maxptime(), Some(40));
}

#[test]
fn connection_address_family_must_match() {
    let c = Connection {
        net_type: "IN".into(),
        addr_type: "IP4".into(),
        address: "::1".into(),
    };
    assert_eq!(c.ip(), None);
    assert_eq!(Connection::from_ip(ip("::1")).to_string(), "IN IP6 ::1");
}

#[test]
fn direction_helpers() {
    assert!(Direction::SendRecv.sends() && Direction::SendRecv.receives());
    assert!(Direction::SendOnly.sends() && !Direction::SendOnly.receives());
    assert!(!Direction::RecvOnly.sends() && Direction::RecvOnly.receives());
    assert!(!Direction::Inactive.sends() && !Direction::Inactive.receives());
    for d in Direction::ALL {
        assert_eq!(Direction::from_attribute_name(d.attribute_name()), Some(d));
        assert_eq!(d.reversed().reversed(), d);
    }
    assert_eq!(Direction::SendOnly.reversed(), Direction::RecvOnly);
    assert_eq!(
        Direction::from_attribute_name("SENDONLY"),
        Some(Direction::SendOnly)
    );
    assert_eq!(Direction::from_attribute_name("both"), None);
}

// ---- answering offers ------------------------------------------------------------------

#[test]
fn answers_baresip_with_its_order_and_payload_types() {
    let offer = parse(BARESIP);
    let (answer, media) = answer_default(&offer);
    let m = &answer.media[0];
    assert_eq!(m.port, 40000);
    assert_eq!(m.formats, ["96", "0", "8", "101"]);
    assert_eq!(m.rtpmap(96).unwrap().encoding_name, "opus");
    assert_eq!(m.fmtp(96), Some("minptime=10;useinbandfec=1"));
    assert_eq!(m.fmtp(101), Some("0-16"));
    assert_eq!(media_attr(&answer, 0, "sendrecv"), Some(String::new()));
    assert_eq!(answer.origin.username, "siphon");
    assert_eq!(
        (answer.origin.session_id, answer.origin.session_version),
        (77, 1)
    );
    assert_eq!(answer.times, offer.times);

    assert_eq!(media.codec.payload_type, 96);
    assert_eq!(media.codec.name, "opus");
    assert_eq!((media.codec.clock_rate, media.codec.channels), (48000, 2));
    let opus = media.opus.unwrap();
    assert!(opus.stereo && !opus.useinbandfec);
    assert_eq!(media.telephone_event_pt, Some(101));
    assert_eq!(media.remote_rtp, sock("192.168.1.35:10406"));
    assert_eq!(media.remote_rtcp, sock("192.168.1.35:10407"));
    assert!(!media.rtcp_mux);
    assert_eq!(media.ptime_ms, 20);
    assert_eq!(media.direction, Direction::SendRecv);
    assert_eq!(media.remote_direction, Direction::SendRecv);
    // The answer itself parses back.
    assert_eq!(parse(&answer.to_string()), answer);
}

#[test]
fn our_codec_list_filters_but_does_not_reorder() {
    let offer = parse(BARESIP);
    let config = LocalMediaConfig {
        codecs: vec![CodecChoice::Pcma, CodecChoice::Pcmu],
        ..local()
    };
    let (answer, media) = answer_offer(&offer, &config, 1, 1).unwrap();
    assert_eq!(answer.media[0].formats, ["0", "8", "101"]);
    assert_eq!(media.codec.name, "PCMU");
    assert_eq!(media.opus, None);
    // telephone-event at the audio codec's clock rate.
    assert_eq!(media.telephone_event_pt, Some(101));
}

#[test]
fn answers_linphone_rejecting_video_and_matching_event_clock_rate() {
    let offer = parse(LINPHONE);
    let (answer, media) = answer_default(&offer);
    assert_eq!(answer.media.len(), 2);
    assert_eq!(answer.media[0].formats, ["96", "0", "8", "101"]);
    assert_eq!(answer.media[0].rtpmap(101).unwrap().clock_rate, 48000);
    assert_eq!(media.telephone_event_pt, Some(101));
    assert!(media.opus.unwrap().useinbandfec);
    let video = &answer.media[1];
    assert_eq!((video.media.as_str(), video.port), ("video", 0));
    assert_eq!(video.proto, "RTP/AVP");
    assert_eq!(video.formats, ["96", "97"]);
    assert!(video.attributes.is_empty());

    // G.711 only: the 8000 Hz telephone-event.
    let config = LocalMediaConfig {
        codecs: vec![CodecChoice::Pcmu],
        ..local()
    };
    let (answer, media) = answer_offer(&offer, &config, 1, 1).unwrap();
    assert_eq!(answer.media[0].formats, ["0", "100"]);
    assert_eq!(media.telephone_event_pt, Some(100));
}

#[test]
fn answers_asterisk() {
    let offer = parse(ASTERISK);
    assert_eq!(offer.media[0].maxptime(), Some(150));
    let (answer, media) = answer_default(&offer);
    assert_eq!(answer.media[0].formats, ["0", "8", "101"]);
    assert_eq!(media.codec.name, "PCMU");
    assert_eq!(media.codec.payload_type, 0);
    assert_eq!(media.telephone_event_pt, Some(101));
    assert_eq!(media.remote_rtp, sock("10.0.0.5:14562"));
    assert_eq!(media.remote_rtcp, sock("10.0.0.5:14563"));
    assert_eq!(media_attr(&answer, 0, "ptime").as_deref(), Some("20"));
}

#[test]
fn answers_sipp_default_offer() {
    let offer = parse(SIPP);
    let (answer, media) = answer_default(&offer);
    assert_eq!(answer.media[0].formats, ["0"]);
    assert_eq!(media.remote_rtp, sock("127.0.0.1:6000"));
    assert_eq!(media.codec.name, "PCMU");
    assert_eq!(media.telephone_event_pt, None);
    assert_eq!(media.ptime_ms, 20);
}

#[test]
fn telephone_event_is_left_out_when_we_do_not_want_it() {
    let config = LocalMediaConfig {
        telephone_event: false,
        ..local()
    };
    let (answer, media) = answer_offer(&parse(ASTERISK), &config, 1, 1).unwrap();
    assert_eq!(answer.media[0].formats, ["0", "8"]);
    assert_eq!(media.telephone_event_pt, None);
    let offer = build_offer(&config, 1, 1);
    assert_eq!(offer.media[0].formats, ["111", "0", "8"]);
}

#[test]
fn opus_at_96_is_answered_at_96() {
    let offer = offer_with(
        "",
        "m=audio 5004 RTP/AVP 96 0\na=rtpmap:96 OPUS/48000/2\na=fmtp:96 maxaveragebitrate=20000;usedtx=1\n",
    );
    let (answer, media) = answer_default(&offer);
    assert_eq!(answer.media[0].formats, ["96", "0"]);
    assert_eq!(answer.media[0].rtpmap(96).unwrap().encoding_name, "OPUS");
    assert_eq!(answer.media[0].rtpmap(111), None);
    assert_eq!(media.codec.payload_type, 96);
    let opus = media.opus.unwrap();
    assert_eq!(opus.maxaveragebitrate, Some(20000));
    assert!(opus.usedtx);
}

#[test]
fn static_payload_types_need_no_rtpmap() {
    let offer = offer_with("", "m=audio 5004 RTP/AVP 8 0\n");
    let (answer, media) = answer_default(&offer);
    assert_eq!(media.codec.name, "PCMA");
    assert_eq!(media.codec.payload_type, 8);
    assert_eq!(answer.media[0].formats, ["8", "0"]);
    // We write the rtpmap lines anyway.
    assert_eq!(answer.media[0].rtpmap(8).unwrap().encoding_name, "PCMA");
}

#[test]
fn an_rtpmap_overrides_a_static_assignment() {
    let offer = offer_with("", "m=audio 5004 RTP/AVP 0\na=rtpmap:0 G729/8000\n");
    assert_eq!(
        answer_offer(&offer, &local(), 1, 1).unwrap_err(),
        NegotiationError::NoCommonCodec
    );
}

#[test]
fn unknown_codecs_only_is_no_common_codec() {
    let offer = offer_with(
        "",
        "m=audio 5004 RTP/AVP 97 18 101\na=rtpmap:97 AMR/8000\na=rtpmap:101 telephone-event/8000\n",
    );
    let err = answer_offer(&offer, &local(), 1, 1).unwrap_err();
    assert_eq!(err, NegotiationError::NoCommonCodec);
    assert_eq!(err.status_code(), 488);
    // Opus offered, but we only do G.711.
    let config = LocalMediaConfig {
        codecs: vec![CodecChoice::Pcma],
        ..local()
    };
    let offer = offer_with("", "m=audio 5004 RTP/AVP 96\na=rtpmap:96 opus/48000/2\n");
    assert_eq!(
        answer_offer(&offer, &config, 1, 1).unwrap_err(),
        NegotiationError::NoCommonCodec
    );
}

#[test]
fn offers_without_usable_audio_are_refused() {
    for media in [
        "m=video 5006 RTP/AVP 96\na=rtpmap:96 VP8/90000\n",
        "m=audio 0 RTP/AVP 0\n",
        "m=audio 5004 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\n",
        "m=audio 5004 UDP/TLS/RTP/SAVPF 0\n",
        "",
    ] {
        assert_eq!(
            answer_offer(&offer_with("", media), &local(), 1, 1).unwrap_err(),
            NegotiationError::NoAudioStream,
            "{media:?}"
        );
    }
}

#[test]
fn secure_audio_is_rejected_and_plain_audio_used() {
    let offer = offer_with(
        "",
        "m=audio 5004 RTP/SAVP 0\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\n\
         m=audio 5008 RTP/AVPF 8\nm=application 5010 UDP/BFCP *\n",
    );
    let (answer, media) = answer_default(&offer);
    assert_eq!(answer.media.len(), 3);
    assert_eq!(answer.media[0].port, 0);
    assert_eq!(answer.media[0].proto, "RTP/SAVP");
    assert_eq!(answer.media[0].formats, ["0"]);
    assert_eq!(answer.media[1].port, 40000);
    assert_eq!(answer.media[1].proto, "RTP/AVPF");
    assert_eq!(
        (answer.media[2].port, answer.media[2].formats.clone()),
        (0, vec!["*".to_string()])
    );
    assert_eq!(media.remote_rtp, sock("198.51.100.7:5008"));
    assert_eq!(media.codec.name, "PCMA");
}

#[test]
fn a_second_audio_stream_is_rejected() {
    let offer = offer_with("", "m=audio 5004 RTP/AVP 0\nm=audio 5006 RTP/AVP 0 8\n");
    let (answer, media) = answer_default(&offer);
    assert_eq!(answer.media[0].port, 40000);
    assert_eq!(
        (answer.media[1].port, answer.media[1].formats.clone()),
        (0, vec!["0".into(), "8".into()])
    );
    assert_eq!(media.remote_rtp.port(), 5004);
}

#[test]
fn audio_without_common_codec_falls_through_to_the_next_audio_stream() {
    let offer = offer_with("", "m=audio 5004 RTP/AVP 18\nm=audio 5006 RTP/AVP 8\n");
    let (answer, media) = answer_default(&offer);
    assert_eq!(answer.media[0].port, 0);
    assert_eq!(answer.media[1].port, 40000);
    assert_eq!(media.remote_rtp.port(), 5006);
}

#[test]
fn answer_direction_follows_the_offer() {
    let cases = [
        (Direction::SendRecv, Direction::SendRecv),
        (Direction::SendOnly, Direction::RecvOnly),
        (Direction::RecvOnly, Direction::SendOnly),
        (Direction::Inactive, Direction::Inactive),
    ];
    for (offered, expected) in cases {
        let offer = offer_with("", &format!("m=audio 5004 RTP/AVP 0\na={offered}\n"));
        let (answer, media) = answer_default(&offer);
        assert_eq!(
            answer.media[0].direction(),
            Some(expected),
            "offer {offered}"
        );
        assert_eq!(media.direction, expected);
        assert_eq!(media.remote_direction, offered);
    }
    // Session-level direction applies when the media level says nothing.
    let offer = offer_with("a=sendonly\n", "m=audio 5004 RTP/AVP 0\n");
    assert_eq!(answer_default(&offer).1.direction, Direction::RecvOnly);
    // Media level wins.
    let offer = offer_with("a=sendonly\n", "m=audio 5004 RTP/AVP 0\na=inactive\n");
    assert_eq!(answer_default(&offer).1.direction, Direction::Inactive);
}

#[test]
fn answer_direction_when_we_hold() {
    let on_hold = LocalMediaConfig {
        direction: Direction::SendOnly,
        ..local()
    };
    let cases = [
        (Direction::SendRecv, Direction::SendOnly),
        (Direction::SendOnly, Direction::Inactive),
        (Direction::RecvOnly, Direction::SendOnly),
        (Direction::Inactive, Direction::Inactive),
    ];
    for (offered, expected) in cases {
        let offer = offer_with("", &format!("m=audio 5004 RTP/AVP 0\na={offered}\n"));
        let (answer, media) = answer_offer(&offer, &on_hold, 1, 2).unwrap();
        assert_eq!(
            answer.media[0].direction(),
            Some(expected),
            "offer {offered}"
        );
        assert_eq!(media.direction, expected);
    }
}

#[test]
fn rfc2543_hold_address_means_remote_does_not_receive() {
    let offer = parse(
        "v=0\no=- 1 2 IN IP4 198.51.100.7\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\nm=audio 5004 RTP/AVP 0\n",
    );
    let (answer, media) = answer_default(&offer);
    assert_eq!(media.remote_direction, Direction::SendOnly);
    assert_eq!(media.direction, Direction::RecvOnly);
    assert!(!media.direction.sends());
    assert_eq!(answer.media[0].direction(), Some(Direction::RecvOnly));
    assert!(media.remote_rtp.ip().is_unspecified());

    let offer = parse(
        "v=0\no=- 1 2 IN IP4 198.51.100.7\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\nm=audio 5004 RTP/AVP 0\na=recvonly\n",
    );
    assert_eq!(answer_default(&offer).1.direction, Direction::Inactive);
}

#[test]
fn media_level_connection_overrides_session_level() {
    let offer = offer_with("", "m=audio 5004 RTP/AVP 0\nc=IN IP4 203.0.113.9\n");
    assert_eq!(
        answer_default(&offer).1.remote_rtp,
        sock("203.0.113.9:5004")
    );
    // Only at media level.
    let offer = parse(
        "v=0\no=- 1 2 IN IP4 198.51.100.7\ns=-\nt=0 0\nm=audio 5004 RTP/AVP 0\nc=IN IP4 203.0.113.9\n",
    );
    assert_eq!(
        answer_default(&offer).1.remote_rtp,
        sock("203.0.113.9:5004")
    );
    // Nowhere, or unusable.
    let offer = parse("v=0\no=- 1 2 IN IP4 198.51.100.7\ns=-\nt=0 0\nm=audio 5004 RTP/AVP 0\n");
    assert_eq!(
        answer_offer(&offer, &local(), 1, 1).unwrap_err(),
        NegotiationError::MissingConnection
    );
    let offer = offer_with("", "m=audio 5004 RTP/AVP 0\nc=IN IP4 media.example.com\n");
    assert_eq!(
        answer_offer(&offer, &local(), 1, 1).unwrap_err(),
        NegotiationError::BadConnectionAddress("media.example.com".into())
    );
}

#[test]
fn ipv6_offer_and_answer() {
    let v6 = LocalMediaConfig::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 40000);
    let offer = build_offer(&v6, 9, 1);
    let text = offer.to_string();
    assert!(text.contains("o=siphon 9 1 IN IP6 ::1\r\n"));
    assert!(text.contains("c=IN IP6 ::1\r\n"));

    let remote = parse(
        "v=0\no=- 1 2 IN IP6 2001:db8::1\ns=-\nc=IN IP6 2001:db8::1\nt=0 0\nm=audio 5004 RTP/AVP 0\n",
    );
    let (answer, media) = answer_offer(&remote, &v6, 9, 1).unwrap();
    assert_eq!(media.remote_rtp, sock("[2001:db8::1]:5004"));
    assert_eq!(media.remote_rtcp, sock("[2001:db8::1]:5005"));
    assert_eq!(answer.connection, Some(Connection::from_ip(ip("::1"))));
}

#[test]
fn rtcp_mux_is_answered_only_when_offered() {
    let (answer, media) = answer_default(&offer_with("", "m=audio 5004 RTP/AVP 0\na=rtcp-mux\n"));
    assert!(answer.media[0].rtcp_mux());
    assert!(media.rtcp_mux);
    assert_eq!(media.remote_rtcp, media.remote_rtp);

    let (answer, media) = answer_default(&offer_with("", "m=audio 5004 RTP/AVP 0\n"));
    assert!(!answer.media[0].rtcp_mux());
    assert!(!media.rtcp_mux);
    assert!(!build_offer(&local(), 1, 1).media[0].rtcp_mux());
}

#[test]
fn rtcp_attribute_sets_the_remote_rtcp_address() {
    let (_, media) = answer_default(&offer_with(
        "",
        "m=audio 5004 RTP/AVP 0\na=rtcp:6000 IN IP4 203.0.113.5\n",
    ));
    assert_eq!(media.remote_rtcp, sock("203.0.113.5:6000"));
    let (_, media) = answer_default(&offer_with("", "m=audio 5004 RTP/AVP 0\na=rtcp:6000\n"));
    assert_eq!(media.remote_rtcp, sock("198.51.100.7:6000"));
    let (_, media) = answer_default(&offer_with("", "m=audio 65535 RTP/AVP 0\n"));
    assert_eq!(media.remote_rtcp.port(), 65535);
}

#[test]
fn ptime_comes_from_the_offer_clamped() {
    for (offered, expected) in [
        ("a=ptime:30\n", 30),
        ("a=ptime:5\n", 10),
        ("a=ptime:100\n", 60),
        ("", 40),
    ] {
        let config = LocalMediaConfig {
            ptime_ms: 40,
            ..local()
        };
        let offer = offer_with("", &format!("m=audio 5004 RTP/AVP 0\n{offered}"));
        let (answer, media) = answer_offer(&offer, &config, 1, 1).unwrap();
        assert_eq!(media.ptime_ms, expected, "{offered:?}");
        assert_eq!(answer.media[0].ptime(), Some(expected));
    }
}

#[test]
fn a_reoffer_changes_address_port_codec_and_direction() {
    let first = offer_with("", "m=audio 5004 RTP/AVP 0 8\n");
    let (_, before) = answer_offer(&first, &local(), 5, 1).unwrap();
    let second = parse(
        "v=0\no=- 1 2 IN IP4 198.51.100.8\ns=-\nc=IN IP4 198.51.100.8\nt=0 0\nm=audio 6006 RTP/AVP 8\na=sendonly\n",
    );
    let (answer, after) = answer_offer(&second, &local(), 5, 2).unwrap();
    assert_eq!(answer.origin.session_version, 2);
    assert_eq!(before.remote_rtp, sock("198.51.100.7:5004"));
    assert_eq!(after.remote_rtp, sock("198.51.100.8:6006"));
    assert_eq!(
        (before.codec.name.as_str(), after.codec.name.as_str()),
        ("PCMU", "PCMA")
    );
    assert_eq!(
        (before.direction, after.direction),
        (Direction::SendRecv, Direction::RecvOnly)
    );
}

// ---- processing answers ----------------------------------------------------------------

/// The far end, answering with its own configuration.
fn far_end(codecs: Vec<CodecChoice>) -> LocalMediaConfig {
    LocalMediaConfig {
        codecs,
        ..LocalMediaConfig::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 20)), 30000)
    }
}

#[test]
fn offer_answer_between_two_siphons() {
    let offer = build_offer(&local(), 1, 1);
    let (answer, theirs) = answer_offer(
        &offer,
        &far_end(vec![CodecChoice::Pcma, CodecChoice::Opus]),
        2,
        1,
    )
    .unwrap();
    // Our order wins as offerer; they filter.
    // Opus goes with telephone-event at its own clock, 48000 (RFC 4733 §7.1.1).
    assert_eq!(answer.media[0].formats, ["111", "8", "110"]);
    assert_eq!(theirs.remote_rtp, sock("192.0.2.10:40000"));
    assert_eq!(theirs.codec.payload_type, 111);
    assert!(theirs.opus.unwrap().useinbandfec);

    let ours = process_answer(&offer, &answer).unwrap();
    assert_eq!(ours.remote_rtp, sock("203.0.113.20:30000"));
    assert_eq!(ours.remote_rtcp, sock("203.0.113.20:30001"));
    assert_eq!(ours.codec.payload_type, 111);
    assert_eq!(ours.telephone_event_pt, Some(110));
    assert_eq!(ours.direction, Direction::SendRecv);
    assert_eq!(ours.ptime_ms, 20);
}

#[test]
fn answers_payload_types_are_used_for_sending() {
    let offer = build_offer(&local(), 1, 1);
    let answer = parse(
        "v=0\no=- 5 5 IN IP4 203.0.113.20\ns=-\nc=IN IP4 203.0.113.20\nt=0 0\n\
         m=audio 30000 RTP/AVP 96 100\na=rtpmap:96 opus/48000/2\na=fmtp:96 stereo=1\n\
         a=rtpmap:100 telephone-event/8000\na=ptime:40\n",
    );
    let media = process_answer(&offer, &answer).unwrap();
    assert_eq!(media.codec.payload_type, 96);
    assert!(media.opus.unwrap().stereo);
    assert_eq!(media.telephone_event_pt, Some(100));
    assert_eq!(media.ptime_ms, 40);
}

#[test]
fn answer_without_rtpmap_for_our_dynamic_type_uses_our_mapping() {
    let offer = build_offer(&local(), 1, 1);
    let answer = parse(
        "v=0\no=- 5 5 IN IP4 203.0.113.20\ns=-\nc=IN IP4 203.0.113.20\nt=0 0\nm=audio 30000 RTP/AVP 111\n",
    );
    let media = process_answer(&offer, &answer).unwrap();
    assert_eq!(media.codec.name, "opus");
    assert_eq!(media.telephone_event_pt, None);
}

#[test]
fn answer_first_codec_we_offered_is_sent() {
    let config = LocalMediaConfig {
        codecs: vec![CodecChoice::Pcmu, CodecChoice::Pcma],
        ..local()
    };
    let offer = build_offer(&config, 1, 1);
    let answer = parse(
        "v=0\no=- 5 5 IN IP4 203.0.113.20\ns=-\nc=IN IP4 203.0.113.20\nt=0 0\nm=audio 30000 RTP/AVP 18 8 0\n",
    );
    assert_eq!(process_answer(&offer, &answer).unwrap().codec.name, "PCMA");
    // Opus in the answer, though we never offered it.
    let answer = parse(
        "v=0\no=- 5 5 IN IP4 203.0.113.20\ns=-\nc=IN IP4 203.0.113.20\nt=0 0\nm=audio 30000 RTP/AVP 96\na=rtpmap:96 opus/48000/2\n",
    );
    assert_eq!(
        process_answer(&offer, &answer).unwrap_err(),
        NegotiationError::NoCommonCodec
    );
}

#[test]
fn rejected_answer_is_an_error() {
    let offer = build_offer(&local(), 1, 1);
    let answer = parse(
        "v=0\no=- 5 5 IN IP4 203.0.113.20\ns=-\nc=IN IP4 203.0.113.20\nt=0 0\nm=audio 0 RTP/AVP 0\n",
    );
    assert_eq!(
        process_answer(&offer, &answer).unwrap_err(),
        NegotiationError::StreamRejected
    );
    let answer = parse("v=0\no=- 5 5 IN IP4 203.0.113.20\ns=-\nt=0 0\n");
    assert_eq!(
        process_answer(&offer, &answer).unwrap_err(),
        NegotiationError::NoAudioStream
    );
}

#[test]
fn hold_and_resume_by_reoffer() {
    let remote = far_end(vec![CodecChoice::Pcmu]);
    let mut config = local();
    let mut version = 1;
    let offer = build_offer(&config, 1, version);
    let (answer, _) = answer_offer(&offer, &remote, 2, 1).unwrap();
    assert_eq!(
        process_answer(&offer, &answer).unwrap().direction,
        Direction::SendRecv
    );

    // Hold: a=sendonly, the far end answers recvonly (RFC 3264 §8.4).
    config.direction = Direction::SendOnly;
    version += 1;
    let hold = build_offer(&config, 1, version);
    assert_eq!(hold.origin.session_version, 2);
    assert_eq!(hold.media[0].direction(), Some(Direction::SendOnly));
    let (answer, theirs) = answer_offer(&hold, &remote, 2, 2).unwrap();
    assert_eq!(answer.media[0].direction(), Some(Direction::RecvOnly));
    assert_eq!(theirs.direction, Direction::RecvOnly);
    let ours = process_answer(&hold, &answer).unwrap();
    assert_eq!(
        (ours.direction, ours.remote_direction),
        (Direction::SendOnly, Direction::RecvOnly)
    );

    // Resume.
    config.direction = Direction::SendRecv;
    version += 1;
    let resume = build_offer(&config, 1, version);
    assert!(resume.origin.session_version > hold.origin.session_version);
    let (answer, _) = answer_offer(&resume, &remote, 2, 3).unwrap();
    assert_eq!(
        process_answer(&resume, &answer).unwrap().direction,
        Direction::SendRecv
    );

    // All four offered directions against a sendrecv far end.
    for (ours_offered, theirs_answered) in [
        (Direction::SendRecv, Direction::SendRecv),
        (Direction::SendOnly, Direction::RecvOnly),
        (Direction::RecvOnly, Direction::SendOnly),
        (Direction::Inactive, Direction::Inactive),
    ] {
        config.direction = ours_offered;
        let offer = build_offer(&config, 1, 9);
        let (answer, _) = answer_offer(&offer, &remote, 2, 9).unwrap();
        assert_eq!(answer.media[0].direction(), Some(theirs_answered));
        let ours = process_answer(&offer, &answer).unwrap();
        assert_eq!(ours.direction, ours_offered);
        assert_eq!(ours.remote_direction, theirs_answered);
    }
}

#[test]
fn answer_on_hold_with_zero_address() {
    let offer = build_offer(&local(), 1, 1);
    let answer = parse(
        "v=0\no=- 5 5 IN IP4 203.0.113.20\ns=-\nc=IN IP4 0.0.0.0\nt=0 0\nm=audio 30000 RTP/AVP 0\n",
    );
    let media = process_answer(&offer, &answer).unwrap();
    assert_eq!(media.remote_direction, Direction::SendOnly);
    assert_eq!(media.direction, Direction::RecvOnly);
}

#[test]
fn invite_without_sdp_offer_in_200_answer_in_ack() {
    // UAS: the INVITE had no body, so our 200 OK carries an offer...
    let uas = LocalMediaConfig {
        codecs: vec![CodecChoice::Pcma, CodecChoice::Opus],
        ..local()
    };
    let offer_in_200 = build_offer(&uas, 3, 1).to_string();
    // ...which the caller answers in the ACK, here with its own payload type for opus.
    let offer = parse(&offer_in_200);
    let ack_body = parse(
        "v=0\no=caller 8 8 IN IP4 203.0.113.20\ns=-\nc=IN IP4 203.0.113.20\nt=0 0\n\
         m=audio 30000 RTP/AVP 8 101\na=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000\na=sendrecv\n",
    )
    .to_string();
    let media = process_answer(&offer, &parse(&ack_body)).unwrap();
    assert_eq!(media.codec.name, "PCMA");
    assert_eq!(media.remote_rtp, sock("203.0.113.20:30000"));
    assert_eq!(media.telephone_event_pt, Some(101));
}

// ---- robustness ------------------------------------------------------------------------

/// Parses, and when that works exercises everything that reads a description.
fn exercise(text: &str) {
    let Ok(sdp) = SessionDescription::parse(text) else {
        return;
    };
    let written = sdp.to_string();
    let reparsed =
        SessionDescription::parse(&written).unwrap_or_else(|e| panic!("{e}: {written:?}"));
    assert_eq!(reparsed.to_string(), written);
    for m in &sdp.media {
        let _ = (m.codecs(), m.ptime(), m.maxptime(), m.rtcp(), m.direction());
    }
    if let Ok((answer, _)) = answer_offer(&sdp, &local(), 1, 1) {
        assert!(SessionDescription::parse(&answer.to_string()).is_ok());
    }
    let _ = process_answer(&build_offer(&local(), 1, 1), &sdp);
    let _ = process_answer(&sdp, &sdp);
}

#[test]
fn truncations_and_mutations_never_panic() {
    for text in [BARESIP, LINPHONE, ASTERISK, SIPP] {
        for (end, _) in text.char_indices() {
            exercise(&text[..end]);
        }
    }
    // Byte mutations with a fixed xorshift sequence, so failures reproduce.
    let alphabet = b"=:/ \r\n\t0123456789.-*amvcotsbIPN\xc3\xa9\x00\xff";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..3000 {
        let source = [BARESIP, LINPHONE, ASTERISK, SIPP][round % 4];
        let mut bytes = source.as_bytes().to_vec();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % bytes.len();
            let byte = alphabet[(next() as usize) % alphabet.len()];
            match next() % 3 {
                0 => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => {
                    bytes.remove(at);
                }
            }
        }
        let _ = SessionDescription::from_bytes(&bytes);
        exercise(&String::from_utf8_lossy(&bytes));
    }
}
