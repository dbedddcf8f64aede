//! Where a call's audio comes from and goes to: `--source`/`--sink` values, WAV reading
//! (any rate, any channel count) and writing, and the tone generator.

use std::fmt;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::media::resample::resample_clip;

/// Tone level: −10 dBFS (peak).
pub const TONE_DBFS: f64 = -10.0;

/// What we send.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioSource {
    /// Capture device: the default one, or one by name (see `list_devices`).
    Device(Option<String>),
    /// A WAV file, played once, then silence.
    File(PathBuf),
    /// A sine tone of this frequency (Hz) at −10 dBFS.
    Tone(f32),
    Silence,
}

/// What we do with received audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioSink {
    /// Playback device: the default one, or one by name.
    Device(Option<String>),
    /// A 16-bit mono WAV file at the codec's rate.
    File(PathBuf),
    Null,
}

/// A `--source`/`--sink` value that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EndpointParseError(String);

fn device_name(rest: &str) -> Option<String> {
    let name = rest.trim();
    (!name.is_empty()).then(|| name.to_string())
}

impl FromStr for AudioSource {
    type Err = EndpointParseError;

    /// `device`, `device:NAME`, `file:PATH`, `tone:HZ`, `silence`.
    fn from_str(s: &str) -> Result<AudioSource, EndpointParseError> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        match kind.trim().to_ascii_lowercase().as_str() {
            "device" => Ok(AudioSource::Device(device_name(rest))),
            "file" if !rest.is_empty() => Ok(AudioSource::File(PathBuf::from(rest))),
            "tone" => {
                let hz: f32 = rest.trim().parse().map_err(|_| {
                    EndpointParseError(format!("tone needs a frequency in Hz, got {rest:?}"))
                })?;
                if !(hz > 0.0 && hz < 24_000.0) {
                    return Err(EndpointParseError(format!(
                        "tone frequency {hz} Hz is outside 0-24000 Hz"
                    )));
                }
                Ok(AudioSource::Tone(hz))
            }
            "silence" if rest.is_empty() => Ok(AudioSource::Silence),
            _ => Err(EndpointParseError(format!(
                "unknown audio source {s:?} (expected device, device:NAME, file:PATH, tone:HZ or silence)"
            ))),
        }
    }
}

impl FromStr for AudioSink {
    type Err = EndpointParseError;

    /// `device`, `device:NAME`, `file:PATH`, `null`.
    fn from_str(s: &str) -> Result<AudioSink, EndpointParseError> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        match kind.trim().to_ascii_lowercase().as_str() {
            "device" => Ok(AudioSink::Device(device_name(rest))),
            "file" if !rest.is_empty() => Ok(AudioSink::File(PathBuf::from(rest))),
            "null" if rest.is_empty() => Ok(AudioSink::Null),
            _ => Err(EndpointParseError(format!(
                "unknown audio sink {s:?} (expected device, device:NAME, file:PATH or null)"
            ))),
        }
    }
}

impl fmt::Display for AudioSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioSource::Device(None) => f.write_str("device"),
            AudioSource::Device(Some(n)) => write!(f, "device:{n}"),
            AudioSource::File(p) => write!(f, "file:{}", p.display()),
            AudioSource::Tone(hz) => write!(f, "tone:{hz}"),
            AudioSource::Silence => f.write_str("silence"),
        }
    }
}

impl fmt::Display for AudioSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioSink::Device(None) => f.write_str("device"),
            AudioSink::Device(Some(n)) => write!(f, "device:{n}"),
            AudioSink::File(p) => write!(f, "file:{}", p.display()),
            AudioSink::Null => f.write_str("null"),
        }
    }
}

/// A WAV file mixed down to mono, as floats in -1..1, at its own rate.
#[derive(Debug, Clone)]
pub struct Clip {
    pub samples: Vec<f32>,
    pub rate: u32,
}

impl Clip {
    /// Reads any PCM or float WAV hound understands; channels are averaged.
    pub fn read_wav(path: &Path) -> Result<Clip, String> {
        let mut reader =
            hound::WavReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let spec = reader.spec();
        let channels = usize::from(spec.channels.max(1));
        let interleaved: Vec<f32> = match spec.sample_format {
            hound::SampleFormat::Float => reader
                .samples::<f32>()
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: {e}", path.display()))?,
            hound::SampleFormat::Int => {
                let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
                reader
                    .samples::<i32>()
                    .map(|s| s.map(|v| v as f32 * scale))
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("{}: {e}", path.display()))?
            }
        };
        let samples = interleaved
            .chunks(channels)
            .map(|frame| frame.iter().sum::<f32>() / channels as f32)
            .collect();
        Ok(Clip {
            samples,
            rate: spec.sample_rate.max(1),
        })
    }

    /// The clip as 16-bit samples at `rate` (rubato, start-up delay trimmed).
    pub fn to_pcm(&self, rate: u32) -> Result<Vec<i16>, String> {
        let converted = resample_clip(&self.samples, self.rate, rate).map_err(|e| e.to_string())?;
        Ok(converted.iter().map(|&x| f32_to_i16(x)).collect())
    }
}

pub fn f32_to_i16(x: f32) -> i16 {
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

pub fn i16_to_f32(x: i16) -> f32 {
    f32::from(x) / 32768.0
}

/// Sine generator at −10 dBFS; the phase is kept in f64 so that it does not drift.
#[derive(Debug, Clone)]
pub struct Tone {
    phase: f64,
    step: f64,
    amplitude: f64,
}

impl Tone {
    pub fn new(hz: f32, rate: u32) -> Tone {
        Tone {
            phase: 0.0,
            step: f64::from(hz) / f64::from(rate.max(1)),
            amplitude: 32767.0 * 10f64.powf(TONE_DBFS / 20.0),
        }
    }

    /// Changes the sample rate, keeping the phase.
    pub fn set_rate(&mut self, hz: f32, rate: u32) {
        self.step = f64::from(hz) / f64::from(rate.max(1));
    }

    pub fn fill(&mut self, out: &mut [i16]) {
        for s in out {
            *s = (self.amplitude * (2.0 * std::f64::consts::PI * self.phase).sin()).round() as i16;
            self.phase = (self.phase + self.step).fract();
        }
    }
}

/// A 16-bit mono WAV being written; the header is brought up to date by [`WavSink::flush`]
/// (the engine calls it every second) and on drop, so the file is readable even if the
/// process stops abruptly.
pub struct WavSink {
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    rate: u32,
    failed: bool,
}

impl fmt::Debug for WavSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WavSink").field("rate", &self.rate).finish()
    }
}

impl WavSink {
    pub fn create(path: &Path, rate: u32) -> Result<WavSink, String> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer =
            hound::WavWriter::create(path, spec).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut sink = WavSink {
            writer: Some(writer),
            rate,
            failed: false,
        };
        // A valid (empty) file from the start.
        sink.flush();
        Ok(sink)
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    pub fn write(&mut self, samples: &[i16]) {
        if self.failed {
            return;
        }
        if let Some(w) = &mut self.writer {
            for &s in samples {
                if let Err(e) = w.write_sample(s) {
                    tracing::warn!("recording stopped: {e}");
                    self.failed = true;
                    return;
                }
            }
        }
    }

    /// Writes buffered samples and updates the header's lengths.
    pub fn flush(&mut self) {
        if let Some(w) = &mut self.writer
            && let Err(e) = w.flush()
        {
            tracing::warn!("recording flush failed: {e}");
        }
    }

    /// Final header update and close.
    pub fn finalize(&mut self) {
        if let Some(w) = self.writer.take()
            && let Err(e) = w.finalize()
        {
            tracing::warn!("recording not finalised: {e}");
        }
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        self.finalize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources_and_sinks() {
        assert_eq!("device".parse(), Ok(AudioSource::Device(None)));
        assert_eq!(
            "device:vsink.monitor".parse(),
            Ok(AudioSource::Device(Some("vsink.monitor".into())))
        );
        assert_eq!(
            "file:/tmp/a:b.wav".parse(),
            Ok(AudioSource::File("/tmp/a:b.wav".into()))
        );
        assert_eq!("tone:440".parse(), Ok(AudioSource::Tone(440.0)));
        assert_eq!("silence".parse(), Ok(AudioSource::Silence));
        for bad in [
            "tone",
            "tone:x",
            "tone:-3",
            "tone:30000",
            "file:",
            "mic",
            "silence:1",
        ] {
            assert!(bad.parse::<AudioSource>().is_err(), "{bad}");
        }
        assert_eq!("null".parse(), Ok(AudioSink::Null));
        assert_eq!("DEVICE".parse(), Ok(AudioSink::Device(None)));
        assert_eq!(
            "file:out.wav".parse(),
            Ok(AudioSink::File("out.wav".into()))
        );
        for bad in ["speaker", "file:", "null:1", "tone:3"] {
            assert!(bad.parse::<AudioSink>().is_err(), "{bad}");
        }
        for s in ["device", "device:x", "file:a.wav", "tone:440", "silence"] {
            assert_eq!(s.parse::<AudioSource>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn tone_is_minus_10_dbfs() {
        let mut t = Tone::new(1000.0, 8000);
        let mut buf = [0i16; 8000];
        t.fill(&mut buf);
        let peak = buf.iter().map(|s| i32::from(*s).abs()).max().unwrap();
        let dbfs = 20.0 * (f64::from(peak) / 32767.0).log10();
        assert!((dbfs + 10.0).abs() < 0.1, "{dbfs}");
    }

    #[test]
    fn wav_round_trip_stereo_any_rate() {
        let dir = std::env::temp_dir().join(format!("siphon-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stereo.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 22050,
            bits_per_sample: 24,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..22050 {
            let v = ((i as f32 * 0.05).sin() * 4_000_000.0) as i32;
            w.write_sample(v).unwrap();
            w.write_sample(v / 2).unwrap();
        }
        w.finalize().unwrap();
        let clip = Clip::read_wav(&path).unwrap();
        assert_eq!((clip.rate, clip.samples.len()), (22050, 22050));
        let pcm = clip.to_pcm(8000).unwrap();
        assert_eq!(pcm.len(), 8000);
        let out = dir.join("out.wav");
        {
            let mut sink = WavSink::create(&out, 8000).unwrap();
            sink.write(&pcm);
            sink.flush();
            // Readable before finalising.
            assert_eq!(hound::WavReader::open(&out).unwrap().len(), 8000);
        }
        assert_eq!(hound::WavReader::open(&out).unwrap().len(), 8000);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
