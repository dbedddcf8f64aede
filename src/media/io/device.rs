//! Sound devices through cpal (PulseAudio's native protocol when a server is reachable,
//! else ALSA). Streams live on one `siphon-audio` thread per session that uses a device;
//! the callbacks exchange samples with the call's task through lock-free SPSC rings
//! (`rtrb`) and never lock, allocate or block.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{BufferSize, FromSample, Sample, SampleFormat, SizedSample, StreamConfig};
use tokio::sync::{mpsc, oneshot};

use super::engine::MediaEvent;

/// The rate we ask devices for.
pub const DEVICE_RATE: u32 = 48_000;
/// Frames per callback we ask for (20 ms at 48 kHz): cpal's default can mean seconds.
pub const DEVICE_BUFFER_FRAMES: u32 = 960;
/// How long stream creation may take before we give up on the device.
const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The devices `siphon devices` shows. Names are what `device:NAME` takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeviceList {
    /// The audio host in use, e.g. "PulseAudio" or "ALSA".
    pub host: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub default_input: Option<String>,
    pub default_output: Option<String>,
}

fn device_id<D: DeviceTrait>(device: &D) -> Option<String> {
    device.id().ok().map(|id| id.id().to_string())
}

fn device_matches<D: DeviceTrait>(device: &D, name: &str) -> bool {
    device_id(device).is_some_and(|id| id == name)
        || device
            .description()
            .is_ok_and(|d| d.name().eq_ignore_ascii_case(name))
}

fn names(devices: impl Iterator<Item = cpal::Device>) -> Vec<String> {
    let mut v: Vec<String> = devices.filter_map(|d| device_id(&d)).collect();
    v.dedup();
    v
}

/// Lists capture and playback devices of the default host.
pub fn list_devices() -> DeviceList {
    let host = cpal::default_host();
    DeviceList {
        host: host.id().name().to_string(),
        inputs: host.input_devices().map(|it| names(it)).unwrap_or_default(),
        outputs: host
            .output_devices()
            .map(|it| names(it))
            .unwrap_or_default(),
        default_input: host.default_input_device().and_then(|d| device_id(&d)),
        default_output: host.default_output_device().and_then(|d| device_id(&d)),
    }
}

/// What a session wants opened: `Some(name)` per direction, `Some(None)` = default.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeviceRequest {
    pub input: Option<Option<String>>,
    pub output: Option<Option<String>>,
}

/// Capture side handed to the task: mono f32 at `rate`.
pub(crate) struct CaptureEnd {
    pub rate: u32,
    pub ring: rtrb::Consumer<f32>,
}

/// Playback side handed to the task: mono f32 at `rate`.
pub(crate) struct PlaybackEnd {
    pub rate: u32,
    pub ring: rtrb::Producer<f32>,
}

pub(crate) struct DeviceReady {
    pub capture: Option<CaptureEnd>,
    pub playback: Option<PlaybackEnd>,
}

/// The task's link to its audio thread; dropping it stops the streams.
pub(crate) struct DeviceLink {
    pub ready: oneshot::Receiver<DeviceReady>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for DeviceLink {
    fn drop(&mut self) {
        // Closing the channel wakes the thread, which drops its streams and ends. It is not
        // joined here: stopping a stream may take a moment and the task must not block.
        self.stop.take();
        self.thread.take();
    }
}

/// Reports a device problem once per session.
#[derive(Clone)]
pub(crate) struct Reporter {
    events: mpsc::UnboundedSender<MediaEvent>,
    reported: Arc<AtomicBool>,
}

impl Reporter {
    pub fn new(events: mpsc::UnboundedSender<MediaEvent>) -> Reporter {
        Reporter {
            events,
            reported: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn report(&self, reason: String) {
        if !self.reported.swap(true, Ordering::AcqRel) {
            tracing::warn!("audio device unavailable: {reason}");
            let _ = self.events.send(MediaEvent::DeviceUnavailable { reason });
        }
    }
}

/// Starts the audio thread. The answer (rings, or nothing for a failed direction) arrives
/// on `DeviceLink::ready`; failures are reported as `DeviceUnavailable` once.
pub(crate) fn open(request: DeviceRequest, reporter: Reporter) -> DeviceLink {
    let (ready_tx, ready_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("siphon-audio".into())
        .spawn(move || audio_thread(request, reporter, ready_tx, stop_rx));
    let thread = match spawned {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!("cannot start the audio thread: {e}");
            None
        }
    };
    DeviceLink {
        ready: ready_rx,
        stop: Some(stop_tx),
        thread,
    }
}

fn audio_thread(
    request: DeviceRequest,
    reporter: Reporter,
    ready: oneshot::Sender<DeviceReady>,
    stop: std::sync::mpsc::Receiver<()>,
) {
    let host = cpal::default_host();
    let mut streams = Vec::new();
    let mut problems = Vec::new();
    let capture =
        request
            .input
            .and_then(|name| match open_input(&host, name.as_deref(), &reporter) {
                Ok((stream, end)) => {
                    streams.push(stream);
                    Some(end)
                }
                Err(e) => {
                    problems.push(format!("capture: {e}"));
                    None
                }
            });
    let playback =
        request.output.and_then(
            |name| match open_output(&host, name.as_deref(), &reporter) {
                Ok((stream, end)) => {
                    streams.push(stream);
                    Some(end)
                }
                Err(e) => {
                    problems.push(format!("playback: {e}"));
                    None
                }
            },
        );
    if !problems.is_empty() {
        reporter.report(problems.join("; "));
    }
    let _ = ready.send(DeviceReady { capture, playback });
    if streams.is_empty() {
        return;
    }
    // Blocks until the session drops its link.
    let _ = stop.recv();
    drop(streams);
}

/// A config at 48 kHz, mono if possible, f32 or i16, with a 20 ms buffer where supported.
fn choose_config(
    ranges: Vec<cpal::SupportedStreamConfigRange>,
    default: Option<cpal::SupportedStreamConfig>,
) -> Result<(StreamConfig, SampleFormat), String> {
    let usable = |f: SampleFormat| matches!(f, SampleFormat::F32 | SampleFormat::I16);
    let at_rate: Vec<_> = ranges
        .iter()
        .filter(|r| {
            usable(r.sample_format())
                && r.min_sample_rate() <= DEVICE_RATE
                && r.max_sample_rate() >= DEVICE_RATE
        })
        .collect();
    let best = at_rate.iter().min_by_key(|r| {
        (
            r.channels(),
            u8::from(r.sample_format() != SampleFormat::F32),
        )
    });
    let (rate, channels, format, buffer) = match (best, default) {
        (Some(r), _) => (
            DEVICE_RATE,
            r.channels(),
            r.sample_format(),
            *r.buffer_size(),
        ),
        (None, Some(d)) if usable(d.sample_format()) => (
            d.sample_rate(),
            d.channels(),
            d.sample_format(),
            *d.buffer_size(),
        ),
        _ => return Err("no f32 or i16 configuration".into()),
    };
    let frames = DEVICE_BUFFER_FRAMES * rate / DEVICE_RATE;
    let buffer_size = match buffer {
        cpal::SupportedBufferSize::Range { min, max } if (min..=max).contains(&frames) => {
            BufferSize::Fixed(frames)
        }
        _ => BufferSize::Default,
    };
    Ok((
        StreamConfig {
            channels: channels.max(1),
            sample_rate: rate,
            buffer_size,
        },
        format,
    ))
}

fn find_device<I: Iterator<Item = cpal::Device>>(devices: I, name: &str) -> Option<cpal::Device> {
    let all: Vec<cpal::Device> = devices.collect();
    let by_id = all
        .iter()
        .position(|d| device_id(d).is_some_and(|id| id == name));
    match by_id {
        Some(i) => all.into_iter().nth(i),
        None => all.into_iter().find(|d| device_matches(d, name)),
    }
}

fn open_input(
    host: &cpal::Host,
    name: Option<&str>,
    reporter: &Reporter,
) -> Result<(cpal::Stream, CaptureEnd), String> {
    let device = match name {
        None => host.default_input_device(),
        Some(n) => find_device(host.input_devices().map_err(|e| e.to_string())?, n),
    }
    .ok_or_else(|| format!("no input device {}", name.unwrap_or("(default)")))?;
    let ranges = device
        .supported_input_configs()
        .map(|it| it.collect())
        .unwrap_or_default();
    let default = device.default_input_config().map_err(|e| e.to_string())?;
    let (config, format) = choose_config(ranges, Some(default))?;
    let rate = config.sample_rate;
    // 500 ms of room; the task takes what arrives every packet interval.
    let (producer, consumer) = rtrb::RingBuffer::new(rate as usize / 2);
    let stream = match format {
        SampleFormat::F32 => build_input::<f32>(&device, &config, producer, reporter.clone()),
        _ => build_input::<i16>(&device, &config, producer, reporter.clone()),
    }?;
    stream.play().map_err(|e| e.to_string())?;
    tracing::info!(
        "capture from {} at {} Hz, {} channel(s), {:?}",
        device_id(&device).unwrap_or_default(),
        rate,
        config.channels,
        config.buffer_size
    );
    Ok((
        stream,
        CaptureEnd {
            rate,
            ring: consumer,
        },
    ))
}

fn open_output(
    host: &cpal::Host,
    name: Option<&str>,
    reporter: &Reporter,
) -> Result<(cpal::Stream, PlaybackEnd), String> {
    let device = match name {
        None => host.default_output_device(),
        Some(n) => find_device(host.output_devices().map_err(|e| e.to_string())?, n),
    }
    .ok_or_else(|| format!("no output device {}", name.unwrap_or("(default)")))?;
    let ranges = device
        .supported_output_configs()
        .map(|it| it.collect())
        .unwrap_or_default();
    let default = device.default_output_config().map_err(|e| e.to_string())?;
    let (config, format) = choose_config(ranges, Some(default))?;
    let rate = config.sample_rate;
    let (producer, consumer) = rtrb::RingBuffer::new(rate as usize / 2);
    let stream = match format {
        SampleFormat::F32 => build_output::<f32>(&device, &config, consumer, reporter.clone()),
        _ => build_output::<i16>(&device, &config, consumer, reporter.clone()),
    }?;
    stream.play().map_err(|e| e.to_string())?;
    tracing::info!(
        "playback to {} at {} Hz, {} channel(s), {:?}",
        device_id(&device).unwrap_or_default(),
        rate,
        config.channels,
        config.buffer_size
    );
    Ok((
        stream,
        PlaybackEnd {
            rate,
            ring: producer,
        },
    ))
}

fn build_input<T>(
    device: &cpal::Device,
    config: &StreamConfig,
    mut ring: rtrb::Producer<f32>,
    reporter: Reporter,
) -> Result<cpal::Stream, String>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels.max(1));
    let scale = 1.0 / channels as f32;
    device
        .build_input_stream::<T, _, _>(
            *config,
            move |data: &[T], _| {
                // Audio callback: mix to mono into the ring; drop what does not fit.
                let frames = data.len() / channels;
                let n = frames.min(ring.slots());
                if let Ok(chunk) = ring.write_chunk_uninit(n) {
                    chunk.fill_from_iter(data.chunks_exact(channels).map(|frame| {
                        frame.iter().map(|&s| f32::from_sample(s)).sum::<f32>() * scale
                    }));
                }
            },
            move |e| reporter.report(format!("capture stream: {e}")),
            Some(OPEN_TIMEOUT),
        )
        .map_err(|e| e.to_string())
}

fn build_output<T>(
    device: &cpal::Device,
    config: &StreamConfig,
    mut ring: rtrb::Consumer<f32>,
    reporter: Reporter,
) -> Result<cpal::Stream, String>
where
    T: SizedSample + FromSample<f32>,
{
    let channels = usize::from(config.channels.max(1));
    let rate = config.sample_rate as usize;
    // Start (and restart after an underrun) with 60 ms queued; keep at most 160 ms.
    let prebuffer = rate * 60 / 1000;
    let max_level = rate * 160 / 1000;
    let mut primed = false;
    device
        .build_output_stream::<T, _, _>(
            *config,
            move |data: &mut [T], _| {
                // Audio callback: lock-free, no allocation.
                let frames = data.len() / channels;
                let mut avail = ring.slots();
                if !primed && avail >= prebuffer {
                    primed = true;
                }
                if primed && avail > max_level {
                    // The far end's clock runs fast: drop the excess.
                    if let Ok(c) = ring.read_chunk(avail - prebuffer) {
                        c.commit_all();
                    }
                    avail = prebuffer;
                }
                let n = if primed { avail.min(frames) } else { 0 };
                let mut out = data.chunks_exact_mut(channels);
                if let Ok(chunk) = ring.read_chunk(n) {
                    let (a, b) = chunk.as_slices();
                    for (&s, frame) in a.iter().chain(b.iter()).zip(&mut out) {
                        frame.fill(T::from_sample(s));
                    }
                    chunk.commit_all();
                }
                for frame in out {
                    frame.fill(T::EQUILIBRIUM);
                }
                if primed && n < frames {
                    primed = false;
                }
            },
            move |e| reporter.report(format!("playback stream: {e}")),
            Some(OPEN_TIMEOUT),
        )
        .map_err(|e| e.to_string())
}
