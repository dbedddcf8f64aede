//! Audio codec descriptions: rtpmap/fmtp values (RFC 8866 §6.6, §6.15), the static
//! payload types of RFC 3551 §6 and the Opus format parameters (RFC 7587 §6.1).

use std::fmt;
use std::str::FromStr;

/// Dynamic payload type we use for Opus in our offers (RFC 3551 §3: 96..=127 are dynamic).
pub const OPUS_OFFER_PT: u8 = 111;
/// Dynamic payload type we use for telephone-event in our offers (RFC 4733 §7.1).
pub const TELEPHONE_EVENT_OFFER_PT: u8 = 101;
/// The payload type of `telephone-event/48000`, offered beside Opus (RFC 4733 §7.1.1:
/// events share the clock of the audio they replace).
pub const TELEPHONE_EVENT_48K_OFFER_PT: u8 = 110;
/// The DTMF events we receive: digits, *, #, A-D and flash (RFC 4733 §7.1.1).
pub const TELEPHONE_EVENT_FMTP: &str = "0-16";
/// Our Opus receive preferences (RFC 7587 §6.1).
pub const OPUS_OFFER_FMTP: &str = "minptime=10;useinbandfec=1";

/// One RTP payload format as described by an m= line, its a=rtpmap and its a=fmtp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    pub payload_type: u8,
    /// Encoding name as written by the peer, e.g. "opus", "PCMU", "telephone-event".
    pub name: String,
    pub clock_rate: u32,
    /// Audio channels; 1 when the rtpmap does not say (RFC 8866 §6.6).
    pub channels: u8,
    pub fmtp: Option<String>,
}

impl Codec {
    /// Is this the codec `name` (case-insensitive, RFC 4855 §3)?
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    pub fn is_telephone_event(&self) -> bool {
        self.is("telephone-event")
    }

    /// Which of our codecs this is, if any.
    pub fn choice(&self) -> Option<CodecChoice> {
        CodecChoice::ALL.into_iter().find(|c| c.matches(self))
    }

    /// The a=rtpmap value: `<pt> <name>/<rate>[/<channels>]` (RFC 8866 §6.6).
    pub fn rtpmap_value(&self) -> String {
        if self.channels > 1 {
            format!(
                "{} {}/{}/{}",
                self.payload_type, self.name, self.clock_rate, self.channels
            )
        } else {
            format!("{} {}/{}", self.payload_type, self.name, self.clock_rate)
        }
    }

    /// The codec a static payload type stands for without an rtpmap (RFC 3551 §6, audio).
    pub fn from_static_payload_type(payload_type: u8) -> Option<Codec> {
        let (name, clock_rate, channels) = match payload_type {
            0 => ("PCMU", 8000, 1),
            3 => ("GSM", 8000, 1),
            4 => ("G723", 8000, 1),
            5 => ("DVI4", 8000, 1),
            6 => ("DVI4", 16000, 1),
            7 => ("LPC", 8000, 1),
            8 => ("PCMA", 8000, 1),
            9 => ("G722", 8000, 1),
            10 => ("L16", 44100, 2),
            11 => ("L16", 44100, 1),
            12 => ("QCELP", 8000, 1),
            13 => ("CN", 8000, 1),
            14 => ("MPA", 90000, 1),
            15 => ("G728", 8000, 1),
            16 => ("DVI4", 11025, 1),
            17 => ("DVI4", 22050, 1),
            18 => ("G729", 8000, 1),
            _ => return None,
        };
        Some(Codec {
            payload_type,
            name: name.to_string(),
            clock_rate,
            channels,
            fmtp: None,
        })
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name, self.clock_rate)?;
        if self.channels > 1 {
            write!(f, "/{}", self.channels)?;
        }
        write!(f, " (PT {})", self.payload_type)
    }
}

/// A parsed a=rtpmap value (RFC 8866 §6.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtpmap {
    pub payload_type: u8,
    pub encoding_name: String,
    pub clock_rate: u32,
    /// The optional encoding parameters; for audio the channel count.
    pub channels: Option<u8>,
}

impl Rtpmap {
    /// Parses `<pt> <name>/<rate>[/<params>]`; None if malformed.
    pub fn parse(value: &str) -> Option<Rtpmap> {
        let (pt, encoding) = value.trim().split_once([' ', '\t'])?;
        let payload_type = pt.parse::<u8>().ok().filter(|pt| *pt <= 127)?;
        let mut parts = encoding.trim().split('/');
        let encoding_name = parts.next().filter(|n| !n.is_empty())?.to_string();
        let clock_rate = parts.next()?.trim().parse::<u32>().ok()?;
        let channels = match parts.next() {
            Some(c) => Some(c.trim().parse::<u8>().ok()?),
            None => None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Rtpmap {
            payload_type,
            encoding_name,
            clock_rate,
            channels,
        })
    }
}

/// The codecs siphon can encode and decode, as chosen with `--codecs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecChoice {
    Opus,
    Pcmu,
    Pcma,
}

impl CodecChoice {
    pub const ALL: [CodecChoice; 3] = [CodecChoice::Opus, CodecChoice::Pcmu, CodecChoice::Pcma];

    /// The encoding name as registered (RFC 7587 §7, RFC 3551 §4.5.14).
    pub fn encoding_name(self) -> &'static str {
        match self {
            CodecChoice::Opus => "opus",
            CodecChoice::Pcmu => "PCMU",
            CodecChoice::Pcma => "PCMA",
        }
    }

    pub fn clock_rate(self) -> u32 {
        match self {
            CodecChoice::Opus => 48000,
            CodecChoice::Pcmu | CodecChoice::Pcma => 8000,
        }
    }

    /// Does the described payload format carry this codec? Opus is always 48000 Hz in
    /// SDP (RFC 7587 §7); the channel count is not checked (it is always 2 for Opus).
    pub fn matches(self, codec: &Codec) -> bool {
        codec.is(self.encoding_name()) && codec.clock_rate == self.clock_rate()
    }

    /// How we describe this codec in our own offers.
    pub fn offer_codec(self) -> Codec {
        match self {
            CodecChoice::Opus => Codec {
                payload_type: OPUS_OFFER_PT,
                name: "opus".to_string(),
                clock_rate: 48000,
                channels: 2,
                fmtp: Some(OPUS_OFFER_FMTP.to_string()),
            },
            CodecChoice::Pcmu => Codec {
                payload_type: 0,
                name: "PCMU".to_string(),
                clock_rate: 8000,
                channels: 1,
                fmtp: None,
            },
            CodecChoice::Pcma => Codec {
                payload_type: 8,
                name: "PCMA".to_string(),
                clock_rate: 8000,
                channels: 1,
                fmtp: None,
            },
        }
    }

    /// The fmtp we put in an answer for this codec: our receive preferences.
    pub fn answer_fmtp(self) -> Option<&'static str> {
        match self {
            CodecChoice::Opus => Some(OPUS_OFFER_FMTP),
            CodecChoice::Pcmu | CodecChoice::Pcma => None,
        }
    }
}

impl fmt::Display for CodecChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CodecChoice::Opus => "opus",
            CodecChoice::Pcmu => "pcmu",
            CodecChoice::Pcma => "pcma",
        })
    }
}

/// An unknown name in a codec list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown codec {0:?} (expected opus, pcmu or pcma)")]
pub struct UnknownCodec(pub String);

impl FromStr for CodecChoice {
    type Err = UnknownCodec;

    fn from_str(s: &str) -> Result<CodecChoice, UnknownCodec> {
        let name = s.trim();
        CodecChoice::ALL
            .into_iter()
            .find(|c| c.encoding_name().eq_ignore_ascii_case(name))
            .ok_or_else(|| UnknownCodec(name.to_string()))
    }
}

/// The Opus format parameters that shape what we send (RFC 7587 §6.1). They describe
/// what the far end prefers to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpusParams {
    /// The receiver can use in-band FEC: send it.
    pub useinbandfec: bool,
    /// Upper bound for our average send bitrate, bit/s (6000..=510000).
    pub maxaveragebitrate: Option<u32>,
    /// The receiver's maximum useful audio sample rate, Hz.
    pub maxplaybackrate: Option<u32>,
    /// The receiver prefers stereo.
    pub stereo: bool,
    /// The receiver prefers discontinuous transmission.
    pub usedtx: bool,
}

impl OpusParams {
    /// Parses a `key=value;key=value` fmtp string; unknown or malformed entries are ignored.
    pub fn parse(fmtp: &str) -> OpusParams {
        let mut params = OpusParams::default();
        for (key, value) in fmtp_pairs(fmtp) {
            let flag = value == "1";
            if key.eq_ignore_ascii_case("useinbandfec") {
                params.useinbandfec = flag;
            } else if key.eq_ignore_ascii_case("stereo") {
                params.stereo = flag;
            } else if key.eq_ignore_ascii_case("usedtx") {
                params.usedtx = flag;
            } else if key.eq_ignore_ascii_case("maxaveragebitrate") {
                params.maxaveragebitrate = value.parse().ok();
            } else if key.eq_ignore_ascii_case("maxplaybackrate") {
                params.maxplaybackrate = value.parse().ok();
            }
        }
        params
    }
}

/// Splits an fmtp parameter string into trimmed `(key, value)` pairs (RFC 8866 §6.15).
pub fn fmtp_pairs(fmtp: &str) -> impl Iterator<Item = (&str, &str)> {
    fmtp.split(';').filter_map(|pair| {
        let pair = pair.trim();
        if pair.is_empty() {
            return None;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        Some((key.trim(), value.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rtpmap_values() {
        let r = Rtpmap::parse("96 opus/48000/2").unwrap();
        assert_eq!(r.payload_type, 96);
        assert_eq!(r.encoding_name, "opus");
        assert_eq!(r.clock_rate, 48000);
        assert_eq!(r.channels, Some(2));
        let r = Rtpmap::parse("0 PCMU/8000").unwrap();
        assert_eq!(r.channels, None);
        for bad in [
            "",
            "96",
            "96 opus",
            "x opus/48000",
            "200 opus/48000",
            "96 /8000",
        ] {
            assert_eq!(Rtpmap::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Rtpmap::parse("96 opus/48000/2/9"), None);
        assert_eq!(Rtpmap::parse("96 opus/fast"), None);
    }

    #[test]
    fn static_payload_types_are_known() {
        let pcmu = Codec::from_static_payload_type(0).unwrap();
        assert_eq!((pcmu.name.as_str(), pcmu.clock_rate), ("PCMU", 8000));
        let pcma = Codec::from_static_payload_type(8).unwrap();
        assert_eq!(pcma.choice(), Some(CodecChoice::Pcma));
        assert_eq!(Codec::from_static_payload_type(96), None);
    }

    #[test]
    fn codec_names_compare_case_insensitively() {
        let mut c = CodecChoice::Opus.offer_codec();
        c.name = "OPUS".into();
        assert_eq!(c.choice(), Some(CodecChoice::Opus));
        c.name = "pcmu".into();
        c.clock_rate = 8000;
        assert_eq!(c.choice(), Some(CodecChoice::Pcmu));
        c.clock_rate = 16000;
        assert_eq!(c.choice(), None);
        assert_eq!("PCMA".parse::<CodecChoice>(), Ok(CodecChoice::Pcma));
        assert!("g729".parse::<CodecChoice>().is_err());
    }

    #[test]
    fn rtpmap_value_writes_channels_only_when_more_than_one() {
        assert_eq!(
            CodecChoice::Opus.offer_codec().rtpmap_value(),
            "111 opus/48000/2"
        );
        assert_eq!(
            CodecChoice::Pcma.offer_codec().rtpmap_value(),
            "8 PCMA/8000"
        );
    }

    #[test]
    fn parses_opus_params() {
        let p = OpusParams::parse(
            "maxplaybackrate=16000; sprop-maxcapturerate=16000;maxaveragebitrate=24000;useinbandfec=1;stereo=0;usedtx=1;junk",
        );
        assert_eq!(
            p,
            OpusParams {
                useinbandfec: true,
                maxaveragebitrate: Some(24000),
                maxplaybackrate: Some(16000),
                stereo: false,
                usedtx: true,
            }
        );
        assert_eq!(OpusParams::parse(""), OpusParams::default());
        assert_eq!(
            OpusParams::parse("maxaveragebitrate=lots").maxaveragebitrate,
            None
        );
    }
}
