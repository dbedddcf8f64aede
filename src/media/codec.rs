//! Voice codecs for the engine: G.711 μ-law/A-law (RFC 3551 §4.5.14) with the Appendix I
//! concealment of [`super::plc`], and Opus (RFC 6716, RTP payload RFC 7587) through libopus.
//! Encoders and decoders own all their buffers; `encode`/`decode` never allocate.

use audiopus::coder::{Decoder as OpusDecoder, Encoder as OpusEncoder};
use audiopus::{Application, Bandwidth, Bitrate, Channels, SampleRate};

use super::g711;
use super::plc::Plc;
use super::quality;
use crate::sdp::{Codec, CodecChoice, OpusParams};

/// Opus always runs at 48 kHz in RTP (RFC 7587 §4.1).
pub const OPUS_RATE: u32 = 48_000;
/// Our Opus send bitrate when the far end sets no lower `maxaveragebitrate`.
pub const OPUS_DEFAULT_BITRATE: i32 = 32_000;
/// Largest decoded frame: 120 ms at 48 kHz (RFC 6716 §3.2.5).
pub const MAX_FRAME_SAMPLES: usize = 5_760;
/// libopus `OPUS_SET_DTX_REQUEST`.
const OPUS_SET_DTX: i32 = 4016;
/// Expected loss given to the encoder when FEC is on, until RTCP tells us better.
const OPUS_INITIAL_LOSS_PERCENT: u8 = 10;
/// libopus complexity (0-10); 5 keeps a call well under 1 % of a core.
const OPUS_COMPLEXITY: u8 = 5;

/// The codecs the engine can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    Pcmu,
    Pcma,
    Opus,
}

impl CodecKind {
    /// The engine codec for a negotiated payload format, if supported.
    pub fn from_codec(codec: &Codec) -> Option<CodecKind> {
        Some(match codec.choice()? {
            CodecChoice::Pcmu => CodecKind::Pcmu,
            CodecChoice::Pcma => CodecKind::Pcma,
            CodecChoice::Opus => CodecKind::Opus,
        })
    }

    /// RTP clock rate, which is also the rate we code audio at.
    pub fn clock_rate(self) -> u32 {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma => 8_000,
            CodecKind::Opus => OPUS_RATE,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CodecKind::Pcmu => "PCMU",
            CodecKind::Pcma => "PCMA",
            CodecKind::Opus => "opus",
        }
    }

    pub fn quality(self) -> quality::Codec {
        match self {
            CodecKind::Pcmu | CodecKind::Pcma => quality::Codec::G711,
            CodecKind::Opus => quality::Codec::Opus,
        }
    }

    /// Samples per packet for a negotiated ptime. Opus frames are 10, 20, 40 or 60 ms
    /// (RFC 6716 §2.1.4): other ptimes round down to one of those.
    pub fn frame_samples(self, ptime_ms: u32) -> usize {
        // RFC 3551 §4.2: 20 ms when unspecified.
        let ms = if ptime_ms == 0 {
            20
        } else {
            ptime_ms.clamp(10, 60)
        };
        let ms = match self {
            CodecKind::Opus => match ms {
                10..=19 => 10,
                20..=39 => 20,
                40..=59 => 40,
                _ => 60,
            },
            _ => ms,
        };
        (self.clock_rate() as usize * ms as usize) / 1000
    }
}

/// Why a codec could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("codec setup failed: {0}")]
pub struct CodecError(String);

impl From<audiopus::Error> for CodecError {
    fn from(e: audiopus::Error) -> CodecError {
        CodecError(e.to_string())
    }
}

/// The Opus bandwidth for the far end's `maxplaybackrate` (RFC 7587 §6.1).
fn bandwidth_for_playback_rate(rate: u32) -> Bandwidth {
    match rate {
        0..=8_000 => Bandwidth::Narrowband,
        8_001..=12_000 => Bandwidth::Mediumband,
        12_001..=16_000 => Bandwidth::Wideband,
        16_001..=24_000 => Bandwidth::Superwideband,
        _ => Bandwidth::Fullband,
    }
}

/// Encodes one frame of mono 16-bit PCM at the codec rate into an RTP payload.
pub struct Encoder {
    kind: CodecKind,
    opus: Option<OpusEncoder>,
    fec: bool,
    dtx: bool,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("kind", &self.kind)
            .field("fec", &self.fec)
            .field("dtx", &self.dtx)
            .finish()
    }
}

impl Encoder {
    /// `opus` holds what the far end asked for in its fmtp (RFC 7587 §6.1).
    pub fn new(kind: CodecKind, opus: Option<&OpusParams>) -> Result<Encoder, CodecError> {
        if kind != CodecKind::Opus {
            return Ok(Encoder {
                kind,
                opus: None,
                fec: false,
                dtx: false,
            });
        }
        let params = opus.copied().unwrap_or_default();
        let mut enc = OpusEncoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip)?;
        enc.set_complexity(OPUS_COMPLEXITY)?;
        // RFC 7587 §6.1: maxaveragebitrate caps our average bitrate (6000..510000).
        let bitrate = params
            .maxaveragebitrate
            .map(|max| (max.clamp(6_000, 510_000) as i32).min(OPUS_DEFAULT_BITRATE))
            .unwrap_or(OPUS_DEFAULT_BITRATE);
        enc.set_bitrate(Bitrate::BitsPerSecond(bitrate))?;
        if let Some(rate) = params.maxplaybackrate {
            enc.set_max_bandwidth(bandwidth_for_playback_rate(rate))?;
        }
        // RFC 7587 §6.1: in-band FEC only when the receiver says it can use it.
        enc.set_inband_fec(params.useinbandfec)?;
        if params.useinbandfec {
            enc.set_packet_loss_perc(OPUS_INITIAL_LOSS_PERCENT)?;
        }
        // RFC 7587 §6.1: DTX only when the receiver prefers it.
        enc.set_encoder_ctl_request(OPUS_SET_DTX, i32::from(params.usedtx))?;
        Ok(Encoder {
            kind,
            opus: Some(enc),
            fec: params.useinbandfec,
            dtx: params.usedtx,
        })
    }

    pub fn kind(&self) -> CodecKind {
        self.kind
    }

    /// Whether Opus DTX is on: payloads of 2 bytes or less are then not sent (RFC 7587 §3.1.3).
    pub fn dtx(&self) -> bool {
        self.dtx
    }

    /// Encodes `pcm` (one frame) into `out`; returns the payload length, 0 on failure.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> usize {
        match self.kind {
            CodecKind::Pcmu => g711::encode_ulaw(pcm, out),
            CodecKind::Pcma => g711::encode_alaw(pcm, out),
            CodecKind::Opus => match &self.opus {
                Some(enc) => enc.encode(pcm, out).unwrap_or(0),
                None => 0,
            },
        }
    }

    /// Tells the Opus encoder the loss the far end reports (RFC 3550 §6.4.1 fraction lost),
    /// so that FEC is sized for it.
    pub fn set_expected_loss(&mut self, percent: u8) {
        if let (Some(enc), true) = (&mut self.opus, self.fec) {
            let _ = enc.set_packet_loss_perc(percent.clamp(1, 50));
        }
    }
}

/// Decodes RTP payloads to mono 16-bit PCM at the codec rate and conceals lost ones.
pub struct Decoder {
    kind: CodecKind,
    plc: Option<Plc>,
    opus: Option<OpusDecoder>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").field("kind", &self.kind).finish()
    }
}

impl Decoder {
    pub fn new(kind: CodecKind) -> Result<Decoder, CodecError> {
        Ok(match kind {
            CodecKind::Opus => Decoder {
                kind,
                plc: None,
                opus: Some(OpusDecoder::new(SampleRate::Hz48000, Channels::Mono)?),
            },
            _ => Decoder {
                kind,
                plc: Some(Plc::new(kind.clock_rate())),
                opus: None,
            },
        })
    }

    pub fn kind(&self) -> CodecKind {
        self.kind
    }

    /// Forgets the stream (new SSRC).
    pub fn reset(&mut self) {
        if let Some(plc) = &mut self.plc {
            *plc = Plc::new(self.kind.clock_rate());
        }
        if let Some(dec) = &mut self.opus
            && let Ok(fresh) = OpusDecoder::new(SampleRate::Hz48000, Channels::Mono)
        {
            *dec = fresh;
        }
    }

    /// Samples a payload decodes to, if it can be read.
    pub fn packet_samples(&self, payload: &[u8]) -> Option<usize> {
        match self.kind {
            CodecKind::Pcmu | CodecKind::Pcma => Some(payload.len()),
            CodecKind::Opus => {
                if payload.is_empty() {
                    return None;
                }
                audiopus::packet::nb_samples(payload, SampleRate::Hz48000).ok()
            }
        }
    }

    /// Decodes one payload into `out`; returns the samples written. A payload that does not
    /// decode is concealed as `fallback` samples instead.
    pub fn decode(&mut self, payload: &[u8], fallback: usize, out: &mut [i16]) -> usize {
        match self.kind {
            CodecKind::Pcmu | CodecKind::Pcma => {
                let n = if self.kind == CodecKind::Pcmu {
                    g711::decode_ulaw(payload, out)
                } else {
                    g711::decode_alaw(payload, out)
                };
                if n == 0 {
                    return self.conceal(fallback, out);
                }
                if let Some(plc) = &mut self.plc {
                    plc.good_frame(&mut out[..n]);
                }
                n
            }
            CodecKind::Opus => {
                let decoded = match (&mut self.opus, payload.is_empty()) {
                    (Some(dec), false) => dec.decode(Some(payload), &mut out[..], false).ok(),
                    _ => None,
                };
                match decoded {
                    Some(n) if n > 0 => n,
                    _ => self.conceal(fallback, out),
                }
            }
        }
    }

    /// Synthesises `samples` for a lost packet: G.711 Appendix I, or Opus PLC.
    pub fn conceal(&mut self, samples: usize, out: &mut [i16]) -> usize {
        let n = samples.min(out.len());
        match self.kind {
            CodecKind::Pcmu | CodecKind::Pcma => {
                if let Some(plc) = &mut self.plc {
                    plc.conceal(&mut out[..n]);
                }
                n
            }
            CodecKind::Opus => {
                // Opus frames are multiples of 2.5 ms (RFC 6716 §2.1.4).
                let n = (n / 120) * 120;
                match &mut self.opus {
                    Some(dec) if n > 0 => {
                        dec.decode(None::<&[u8]>, &mut out[..n], false).unwrap_or(0)
                    }
                    _ => 0,
                }
            }
        }
    }

    /// Recovers a lost Opus frame of `samples` from the in-band FEC of the packet that
    /// follows it (RFC 6716 §2.1.7); libopus falls back to PLC when `next` carries none.
    /// For G.711 this is plain concealment.
    pub fn recover(&mut self, next: &[u8], samples: usize, out: &mut [i16]) -> usize {
        if self.kind != CodecKind::Opus || next.is_empty() {
            return self.conceal(samples, out);
        }
        let n = (samples.min(out.len()) / 120) * 120;
        let recovered = match &mut self.opus {
            Some(dec) if n > 0 => dec.decode(Some(next), &mut out[..n], true).ok(),
            _ => None,
        };
        match recovered {
            Some(k) if k > 0 => k,
            _ => self.conceal(samples, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn frame_sizes_follow_ptime() {
        assert_eq!(CodecKind::Pcmu.frame_samples(20), 160);
        assert_eq!(CodecKind::Pcma.frame_samples(30), 240);
        assert_eq!(CodecKind::Pcmu.frame_samples(5), 80);
        assert_eq!(CodecKind::Pcmu.frame_samples(0), 160);
        assert_eq!(CodecKind::Opus.frame_samples(20), 960);
        assert_eq!(CodecKind::Opus.frame_samples(30), 960);
        assert_eq!(CodecKind::Opus.frame_samples(60), 2880);
        assert_eq!(CodecKind::Opus.frame_samples(100), 2880);
    }

    #[test]
    fn g711_round_trip_and_conceal() {
        let pcm = tone(8000, 160);
        let mut enc = Encoder::new(CodecKind::Pcmu, None).unwrap();
        let mut dec = Decoder::new(CodecKind::Pcmu).unwrap();
        let mut payload = [0u8; 160];
        assert_eq!(enc.encode(&pcm, &mut payload), 160);
        let mut out = [0i16; MAX_FRAME_SAMPLES];
        for _ in 0..5 {
            assert_eq!(dec.decode(&payload, 160, &mut out), 160);
        }
        assert_eq!(dec.conceal(160, &mut out), 160);
        assert!(
            out[..160].iter().any(|&s| s != 0),
            "concealment is not silence"
        );
        // An empty payload is concealed, not played as nothing.
        assert_eq!(dec.decode(&[], 160, &mut out), 160);
    }

    #[test]
    fn opus_round_trip_fec_and_garbage() {
        let params = OpusParams {
            useinbandfec: true,
            maxaveragebitrate: Some(20_000),
            maxplaybackrate: Some(16_000),
            ..OpusParams::default()
        };
        let mut enc = Encoder::new(CodecKind::Opus, Some(&params)).unwrap();
        let mut dec = Decoder::new(CodecKind::Opus).unwrap();
        let pcm = tone(48_000, 960 * 10);
        let mut out = [0i16; MAX_FRAME_SAMPLES];
        let mut payloads = Vec::new();
        for frame in pcm.chunks(960) {
            let mut p = [0u8; 1500];
            let n = enc.encode(frame, &mut p);
            assert!(n > 2 && n < 200, "{n} bytes");
            payloads.push(p[..n].to_vec());
        }
        for p in &payloads[..5] {
            assert_eq!(dec.packet_samples(p), Some(960));
            assert_eq!(dec.decode(p, 960, &mut out), 960);
        }
        // Packet 5 lost: recovered from packet 6's FEC.
        assert_eq!(dec.recover(&payloads[6], 960, &mut out), 960);
        assert!(out[..960].iter().any(|&s| s != 0));
        assert_eq!(dec.decode(&payloads[6], 960, &mut out), 960);
        // Garbage decodes as concealment.
        assert_eq!(dec.decode(&[0xFF, 0xFF, 0xFF], 960, &mut out), 960);
        assert_eq!(dec.packet_samples(&[]), None);
        assert_eq!(dec.conceal(960, &mut out), 960);
    }
}
