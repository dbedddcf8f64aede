//! The media engine: one tokio task per call streams audio over RTP (RFC 3550) on the
//! call's sockets, with RTCP reports, G.711 or Opus, jitter buffering and concealment,
//! RFC 4733 DTMF, and audio from/to a device, a WAV file, a tone or nothing.
//!
//! Per packet the task only copies into buffers allocated at start (or when a re-INVITE
//! changes the codec): no allocation, no lock, no blocking call. One timer drives
//! sending (every ptime) and playout (every received packet duration). Device audio goes
//! through lock-free rings to callbacks on a separate audio thread (see `device`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use super::device::{self, CaptureEnd, DeviceLink, DeviceRequest, PlaybackEnd, Reporter};
use super::endpoints::{AudioSink, AudioSource, Clip, Tone, WavSink, f32_to_i16, i16_to_f32};
use crate::media::codec::{CodecError, CodecKind, Decoder, Encoder};
use crate::media::dtmf::{DtmfReceiver, DtmfSender};
use crate::media::jitter::{JitterBuffer, JitterConfig, Playout};
use crate::media::packet::{self, parse_rtp, write_rtp};
use crate::media::quality::{self, QualityInput};
use crate::media::resample::{Fifo, StreamResampler};
use crate::media::stats::{
    Bye, NtpTime, ReceiverReport, ReceiverStats, ReportBlock, RtcpPacket, SdesChunk, SenderInfo,
    SenderReport, decode_compound, round_trip_time,
};
use crate::sdp::codec::{OPUS_OFFER_PT, TELEPHONE_EVENT_48K_OFFER_PT, TELEPHONE_EVENT_OFFER_PT};
use crate::sdp::{CodecChoice, NegotiatedMedia};

/// Largest datagram we read; longer ones are truncated and then rejected.
const DATAGRAM_MAX: usize = 2048;
/// Largest payload we send (60 ms of G.711 is 480 bytes; Opus stays far below).
const PAYLOAD_MAX: usize = 1500;
/// How recently a packet must have arrived for a playout gap to count as loss.
const STREAM_ACTIVE_WINDOW: Duration = Duration::from_millis(100);

/// Most datagrams read from a socket in one go before playout runs (a bound against floods).
const MAX_DRAIN: usize = 64;

/// RFC 3550 §6.2: report interval, randomised over 0.5-1.5 times this.
const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// Header updates of the recording, statistics publication.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);
/// Frames sent or played in one go after the task was delayed; beyond that, skip.
const MAX_CATCHUP: u32 = 10;
/// Consecutive packets of a new duration before the jitter buffer is re-made for it.
const FRAME_CHANGE_PACKETS: u32 = 3;
/// Jitter buffer floor (its ceiling stays at the default 200 ms).
const JITTER_MIN_DELAY: Duration = Duration::from_millis(40);
/// Device capture: latency kept between one and three packets.
const CAPTURE_SLACK: Duration = Duration::from_millis(40);

/// Everything a call's media needs.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub negotiated: NegotiatedMedia,
    pub source: AudioSource,
    pub sink: AudioSink,
    /// Send the received audio back (after decoding and concealment).
    pub echo: bool,
}

/// Something the session tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// A DTMF digit received as an RFC 4733 telephone-event, reported once.
    Dtmf { digit: char },
    /// A sound device could not be used (reported once per session); the session goes on
    /// with silence / no playback.
    DeviceUnavailable { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("MediaSession::start must be called inside a tokio runtime")]
    NoRuntime,
    #[error("unsupported codec {0}")]
    UnsupportedCodec(String),
    #[error("RTP socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("audio source: {0}")]
    Source(String),
    #[error("audio sink: {0}")]
    Sink(String),
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Figures for a call's media, at `stop` or as a snapshot.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct MediaStats {
    pub codec: String,
    pub packets_sent: u64,
    /// Valid RTP packets from the far end (audio and telephone-event).
    pub packets_received: u64,
    /// RFC 3550 §6.4.1 cumulative number of packets lost (never negative here).
    pub packets_lost: u64,
    /// RFC 3550 §A.8 interarrival jitter.
    pub jitter_ms: f64,
    /// From RTCP LSR/DLSR (RFC 3550 §6.4.1), once a report about our stream came back.
    pub rtt_ms: Option<f64>,
    /// ITU-T G.107 E-model estimate, 1-4.5; 0 until audio was received.
    pub mos: f64,
    /// Datagrams dropped: not RTP version 2, unknown payload type, wrong source.
    pub packets_discarded: u64,
}

enum Command {
    Update(Box<NegotiatedMedia>),
    Dtmf(String),
    Stop,
}

/// Counters the task publishes for [`MediaSession::stats`] (one writer, relaxed).
#[derive(Default)]
struct Shared {
    muted: AtomicBool,
    codec: AtomicU8,
    sent: AtomicU64,
    received: AtomicU64,
    lost: AtomicU64,
    discarded: AtomicU64,
    jitter_us: AtomicU64,
    /// u64::MAX: none.
    rtt_us: AtomicU64,
    mos_milli: AtomicU64,
}

fn codec_code(kind: CodecKind) -> u8 {
    match kind {
        CodecKind::Pcmu => 0,
        CodecKind::Pcma => 1,
        CodecKind::Opus => 2,
    }
}

fn codec_from_code(code: u8) -> CodecKind {
    match code {
        0 => CodecKind::Pcmu,
        1 => CodecKind::Pcma,
        _ => CodecKind::Opus,
    }
}

impl Shared {
    fn snapshot(&self) -> MediaStats {
        let rtt = self.rtt_us.load(Ordering::Relaxed);
        MediaStats {
            codec: codec_from_code(self.codec.load(Ordering::Relaxed))
                .name()
                .to_string(),
            packets_sent: self.sent.load(Ordering::Relaxed),
            packets_received: self.received.load(Ordering::Relaxed),
            packets_lost: self.lost.load(Ordering::Relaxed),
            jitter_ms: self.jitter_us.load(Ordering::Relaxed) as f64 / 1000.0,
            rtt_ms: (rtt != u64::MAX).then(|| rtt as f64 / 1000.0),
            mos: self.mos_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            packets_discarded: self.discarded.load(Ordering::Relaxed),
        }
    }

    fn publish(&self, s: &MediaStats) {
        self.lost.store(s.packets_lost, Ordering::Relaxed);
        self.jitter_us
            .store((s.jitter_ms * 1000.0) as u64, Ordering::Relaxed);
        self.rtt_us.store(
            s.rtt_ms.map_or(u64::MAX, |r| (r * 1000.0) as u64),
            Ordering::Relaxed,
        );
        self.mos_milli
            .store((s.mos * 1000.0) as u64, Ordering::Relaxed);
    }
}

/// The media of one call. Dropping it without [`MediaSession::stop`] also ends the task
/// (without waiting for it).
pub struct MediaSession {
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<MediaEvent>,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<MediaStats>,
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession").finish_non_exhaustive()
    }
}

impl MediaSession {
    /// Starts streaming on the call's bound RTP and RTCP sockets (`driver::RtpSockets`).
    /// Must be called inside a tokio runtime. Opens a WAV source/sink here (errors are
    /// returned); sound devices are opened in the background and reported through
    /// [`MediaEvent::DeviceUnavailable`] if they fail.
    pub fn start(
        rtp: std::net::UdpSocket,
        rtcp: std::net::UdpSocket,
        config: MediaConfig,
    ) -> Result<MediaSession, MediaError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| MediaError::NoRuntime)?;
        let _entered = runtime.enter();
        rtp.set_nonblocking(true)?;
        rtcp.set_nonblocking(true)?;
        let rtp = tokio::net::UdpSocket::from_std(rtp)?;
        let rtcp = tokio::net::UdpSocket::from_std(rtcp)?;
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            rtt_us: AtomicU64::new(u64::MAX),
            ..Shared::default()
        });
        let engine = Engine::new(rtp, rtcp, config, command_rx, event_tx, shared.clone())?;
        let task = runtime.spawn(engine.run());
        Ok(MediaSession {
            commands: command_tx,
            events: event_rx,
            shared,
            task,
        })
    }

    /// Applies a new negotiation (re-INVITE): address, codec, ptime, direction. A direction
    /// without send (hold) stops our packets; with send again they resume.
    pub fn update(&self, negotiated: NegotiatedMedia) {
        let _ = self.commands.send(Command::Update(Box::new(negotiated)));
    }

    /// Queues digits (0-9 * # A-D) as RFC 4733 events with the negotiated telephone-event
    /// payload type; ignored (with a warning) if none was negotiated.
    pub fn send_dtmf(&self, digits: &str) {
        let _ = self.commands.send(Command::Dtmf(digits.to_string()));
    }

    /// Sends silence instead of the source while muted.
    pub fn set_mute(&self, mute: bool) {
        self.shared.muted.store(mute, Ordering::Relaxed);
    }

    pub fn try_event(&mut self) -> Option<MediaEvent> {
        self.events.try_recv().ok()
    }

    /// Waits for the next event; `None` once the session has ended.
    pub async fn next_event(&mut self) -> Option<MediaEvent> {
        self.events.recv().await
    }

    /// Counters so far (updated per packet; jitter, RTT and MOS every second).
    pub fn stats(&self) -> MediaStats {
        self.shared.snapshot()
    }

    /// Sends RTCP BYE, finalises a WAV recording, ends the task and returns the figures.
    pub async fn stop(self) -> MediaStats {
        let _ = self.commands.send(Command::Stop);
        match self.task.await {
            Ok(stats) => stats,
            Err(_) => self.shared.snapshot(),
        }
    }
}

/// Where received packets are accepted from (RFC 4961 symmetric RTP, latching).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Latch {
    /// Nothing received yet.
    Open,
    /// The first packet came from the negotiated address.
    Negotiated,
    /// The first packet came from elsewhere (NAT): we send there now.
    Other(SocketAddr),
}

fn accept_source(latch: &mut Latch, negotiated: SocketAddr, from: SocketAddr) -> bool {
    if from == negotiated {
        if *latch == Latch::Open {
            *latch = Latch::Negotiated;
        }
        return true;
    }
    match *latch {
        Latch::Other(a) => a == from,
        Latch::Negotiated => false,
        Latch::Open => {
            tracing::debug!("media: latching onto {from} (negotiated {negotiated})");
            *latch = Latch::Other(from);
            true
        }
    }
}

fn target(latch: Latch, negotiated: SocketAddr) -> SocketAddr {
    match latch {
        Latch::Other(a) => a,
        _ => negotiated,
    }
}

/// Device capture feeding the send path: device rate -> codec rate.
struct Capture {
    ring: rtrb::Consumer<f32>,
    rate: u32,
    resampler: Option<StreamResampler>,
    fifo: Fifo<f32>,
    started: bool,
}

enum Source {
    Silence,
    Tone {
        tone: Tone,
        hz: f32,
    },
    File {
        clip: Clip,
        pcm: Vec<i16>,
        pos: usize,
    },
    /// A WAV file being read and resampled on a blocking thread: silence until it is
    /// ready, so neither signalling nor packet reception waits for it.
    Loading {
        pending: tokio::sync::oneshot::Receiver<Result<(Clip, Vec<i16>), String>>,
        /// The rate it is being rendered at (a re-INVITE may change the codec meanwhile).
        rate: u32,
    },
    /// `None` until the device is open, or if it failed (then: silence).
    Device(Option<Box<Capture>>),
}

impl Source {
    fn fill(&mut self, out: &mut [i16], scratch: &mut [f32], codec_rate: u32) {
        match self {
            Source::Silence | Source::Device(None) => out.fill(0),
            Source::Tone { tone, .. } => tone.fill(out),
            Source::File { pcm, pos, .. } => {
                let n = out.len().min(pcm.len() - *pos);
                out[..n].copy_from_slice(&pcm[*pos..*pos + n]);
                out[n..].fill(0);
                *pos += n;
            }
            Source::Loading { .. } => out.fill(0),
            Source::Device(Some(cap)) => cap.fill(out, scratch, codec_rate),
        }
    }

    /// Takes a file source's samples once its loading thread is done (until then the
    /// source gives silence: a few milliseconds at the call's start, not a gap later).
    fn finish_loading(&mut self, codec_rate: u32) {
        if let Source::Loading { pending, rate } = self {
            match pending.try_recv() {
                Ok(Ok((clip, pcm))) => {
                    let rendered_at = *rate;
                    *self = Source::File { clip, pcm, pos: 0 };
                    if rendered_at != codec_rate
                        && let Err(e) = self.set_rate(codec_rate)
                    {
                        tracing::warn!("audio file: {e}");
                        *self = Source::Silence;
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!("audio file: {e}");
                    *self = Source::Silence;
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                    *self = Source::Silence;
                }
            }
        }
    }

    /// Re-renders rate-dependent state for a new codec rate.
    fn set_rate(&mut self, rate: u32) -> Result<(), String> {
        match self {
            Source::Tone { tone, hz } => tone.set_rate(*hz, rate),
            Source::File { clip, pcm, pos } => {
                let old_len = pcm.len().max(1);
                let done = *pos as f64 / old_len as f64;
                *pcm = clip.to_pcm(rate)?;
                *pos = ((done * pcm.len() as f64) as usize).min(pcm.len());
            }
            Source::Device(Some(cap)) => {
                cap.resampler = make_resampler(cap.rate, rate)?;
                cap.fifo = Fifo::new(rate as usize / 4);
                cap.started = false;
            }
            Source::Loading {
                rate: pending_rate, ..
            } => *pending_rate = rate,
            Source::Silence | Source::Device(None) => {}
        }
        Ok(())
    }
}

fn make_resampler(from: u32, to: u32) -> Result<Option<StreamResampler>, String> {
    if from == to {
        Ok(None)
    } else {
        StreamResampler::new(from, to)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

impl Capture {
    fn fill(&mut self, out: &mut [i16], scratch: &mut [f32], codec_rate: u32) {
        // Drain what the callback delivered, converting to the codec rate.
        loop {
            let n = self.ring.slots().min(scratch.len());
            if n == 0 {
                break;
            }
            let Ok(chunk) = self.ring.read_chunk(n) else {
                break;
            };
            let (a, b) = chunk.as_slices();
            scratch[..a.len()].copy_from_slice(a);
            scratch[a.len()..a.len() + b.len()].copy_from_slice(b);
            chunk.commit_all();
            let fifo = &mut self.fifo;
            match &mut self.resampler {
                Some(r) => r.process(&scratch[..n], |o| fifo.push_slice(o)),
                None => fifo.push_slice(&scratch[..n]),
            }
        }
        let slack = (codec_rate as usize * CAPTURE_SLACK.as_millis() as usize) / 1000;
        if !self.started {
            // Start once a packet and some slack are queued, so that callback phase
            // does not cause underruns.
            self.started = self.fifo.len() >= out.len() + slack / 2;
        }
        if self.started && self.fifo.len() > out.len() + 2 * slack {
            // The device clock runs fast: keep latency bounded.
            let excess = self.fifo.len() - out.len() - slack;
            self.fifo.discard(excess);
        }
        let got = if self.started {
            let n = out.len().min(scratch.len());
            let k = self.fifo.pop_into(&mut scratch[..n]);
            for (o, &x) in out.iter_mut().zip(&scratch[..k]) {
                *o = f32_to_i16(x);
            }
            k
        } else {
            0
        };
        if got < out.len() {
            out[got..].fill(0);
            self.started = false;
        }
    }
}

/// Device playback fed by the receive path: codec rate -> device rate.
struct Playback {
    ring: rtrb::Producer<f32>,
    rate: u32,
    resampler: Option<StreamResampler>,
}

/// Where decoded audio goes.
struct Sink {
    wav: Option<WavSink>,
    /// Only when a re-INVITE changed the codec rate after the file was created.
    wav_resampler: Option<StreamResampler>,
    /// `Some(None)` while the device is being opened.
    device: Option<Option<Playback>>,
}

impl Sink {
    fn write(&mut self, pcm: &[i16], scratch: &mut [f32]) {
        self.write_wav(pcm, scratch);
        self.write_device(pcm, scratch);
    }

    fn write_wav(&mut self, pcm: &[i16], scratch: &mut [f32]) {
        if let Some(wav) = &mut self.wav {
            match &mut self.wav_resampler {
                None => wav.write(pcm),
                Some(r) => {
                    let n = pcm.len().min(scratch.len());
                    for (d, &s) in scratch.iter_mut().zip(&pcm[..n]) {
                        *d = i16_to_f32(s);
                    }
                    r.process(&scratch[..n], |o| {
                        for &x in o {
                            wav.write(&[f32_to_i16(x)]);
                        }
                    });
                }
            }
        }
    }

    fn write_device(&mut self, pcm: &[i16], scratch: &mut [f32]) {
        if let Some(Some(dev)) = &mut self.device {
            let n = pcm.len().min(scratch.len());
            for (d, &s) in scratch.iter_mut().zip(&pcm[..n]) {
                *d = i16_to_f32(s);
            }
            let ring = &mut dev.ring;
            match &mut dev.resampler {
                Some(r) => r.process(&scratch[..n], |o| {
                    let _ = ring.push_partial_slice(o);
                }),
                None => {
                    let _ = ring.push_partial_slice(&scratch[..n]);
                }
            }
        }
    }

    fn set_rate(&mut self, rate: u32) -> Result<(), String> {
        if let Some(wav) = &self.wav {
            self.wav_resampler = make_resampler(rate, wav.rate())?;
        }
        if let Some(Some(dev)) = &mut self.device {
            dev.resampler = make_resampler(rate, dev.rate)?;
        }
        Ok(())
    }
}

/// The Opus playout stage holds one popped item so that a lost frame can be rebuilt from
/// the FEC in the packet after it (RFC 6716 §2.1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    None,
    Frame(usize),
    Lost(usize),
    /// Concealment the jitter buffer asks for to grow its delay.
    Inserted(usize),
}

enum Event {
    Command(Option<Command>),
    Timer,
    Rtp(std::io::Result<(usize, SocketAddr)>),
    Rtcp(std::io::Result<(usize, SocketAddr)>),
}

struct Engine {
    rtp: tokio::net::UdpSocket,
    rtcp: tokio::net::UdpSocket,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<MediaEvent>,
    shared: Arc<Shared>,
    neg: NegotiatedMedia,
    kind: CodecKind,
    rate: u32,
    echo: bool,
    t0: Instant,

    // Sending (RFC 3550 §5.1).
    ssrc: u32,
    seq: u16,
    /// Timestamp of the frame due at `next_send`.
    ts: u32,
    marker_next: bool,
    frame: usize,
    ptime: Duration,
    next_send: Instant,
    encoder: Encoder,
    source: Source,
    dtmf_tx: DtmfSender,
    latch: Latch,
    rtcp_latch: Latch,
    packets_sent: u64,
    octets_sent: u64,
    sent_at_last_report: u64,

    // Receiving.
    remote_ssrc: Option<u32>,
    rx: ReceiverStats,
    lost_prior: u64,
    packets_received: u64,
    packets_discarded: u64,
    jitter: JitterBuffer,
    /// Timestamp units per received packet, the playout step.
    jb_frame: usize,
    pop_period: Duration,
    next_pop: Instant,
    candidate_frame: (usize, u32),
    decoder: Decoder,
    held: Held,
    /// The jitter buffer's `inserted` count, to tell insertions from losses.
    jitter_inserted: u64,
    /// When the last valid RTP packet of the call arrived.
    last_arrival: Option<Instant>,
    dtmf_rx: DtmfReceiver,
    playing: bool,
    sink: Sink,
    echo_fifo: Fifo<i16>,

    // RTCP (RFC 3550 §6).
    next_rtcp: Instant,
    rtt: Option<Duration>,
    sr_packet: RtcpPacket,
    rr_packet: RtcpPacket,
    sdes_packet: RtcpPacket,
    bye_packet: RtcpPacket,

    next_housekeeping: Instant,
    /// Keeps the audio thread (and its streams) alive.
    device: Option<DeviceLink>,
    device_answered: bool,

    // Buffers, all allocated here.
    rtp_buf: Vec<u8>,
    rtcp_buf: Vec<u8>,
    out_buf: Vec<u8>,
    payload_buf: Vec<u8>,
    send_pcm: Vec<i16>,
    dec_pcm: Vec<i16>,
    held_payload: Vec<u8>,
    next_payload: Vec<u8>,
    scratch: Vec<f32>,
}

fn echo_fifo(echo: bool, rate: u32) -> Fifo<i16> {
    Fifo::new(if echo { rate as usize / 4 } else { 1 })
}

/// The Opus playout stage's payload copies; G.711 needs none.
fn opus_buffer(kind: CodecKind) -> Vec<u8> {
    if kind == CodecKind::Opus {
        vec![0; PAYLOAD_MAX]
    } else {
        Vec::new()
    }
}

/// RFC 3550 §6.2: the interval randomised over [0.5, 1.5] times the nominal one.
fn rtcp_delay(nominal: Duration) -> Duration {
    nominal.mul_f64(0.5 + fastrand::f64())
}

fn jitter_config(kind: CodecKind, frame: usize) -> JitterConfig {
    let mut cfg = JitterConfig::new(kind.clock_rate(), frame as u32);
    // A 40 ms floor rides out scheduling hiccups of a busy host without adapting.
    cfg.min_delay = JITTER_MIN_DELAY;
    // G.711 payloads are one byte per sample: 60 ms (the longest ptime) is 480 bytes.
    cfg.max_payload = match kind {
        CodecKind::Opus => PAYLOAD_MAX,
        _ => kind.frame_samples(60),
    };
    // Room for 1.6 times the 200 ms maximum delay, 8 to 32 packets.
    let frame_ms = (frame * 1000 / kind.clock_rate() as usize).max(1);
    cfg.capacity = (320usize.div_ceil(frame_ms)).clamp(8, 32);
    cfg
}

/// Largest decoded packet: 120 ms (RFC 6716 §3.2.5 for Opus; G.711 likewise bounded).
fn max_decoded(kind: CodecKind) -> usize {
    kind.clock_rate() as usize * 120 / 1000
}

fn frame_duration(samples: usize, rate: u32) -> Duration {
    Duration::from_nanos(samples as u64 * 1_000_000_000 / u64::from(rate.max(1)))
}

impl Engine {
    fn new(
        rtp: tokio::net::UdpSocket,
        rtcp: tokio::net::UdpSocket,
        config: MediaConfig,
        commands: mpsc::UnboundedReceiver<Command>,
        events: mpsc::UnboundedSender<MediaEvent>,
        shared: Arc<Shared>,
    ) -> Result<Engine, MediaError> {
        let neg = config.negotiated;
        let kind = CodecKind::from_codec(&neg.codec)
            .ok_or_else(|| MediaError::UnsupportedCodec(neg.codec.to_string()))?;
        let rate = kind.clock_rate();
        let frame = kind.frame_samples(neg.ptime_ms);
        let ptime = frame_duration(frame, rate);
        let mut request = DeviceRequest::default();
        let source = match config.source {
            AudioSource::Silence => Source::Silence,
            AudioSource::Tone(hz) => Source::Tone {
                tone: Tone::new(hz, rate),
                hz,
            },
            AudioSource::File(path) => {
                // Only the header here, so a bad file is an error at once; reading and
                // resampling the samples happens off the runtime thread.
                hound::WavReader::open(&path)
                    .map_err(|e| MediaError::Source(format!("{}: {e}", path.display())))?;
                let (done, pending) = tokio::sync::oneshot::channel();
                tokio::task::spawn_blocking(move || {
                    let loaded = Clip::read_wav(&path)
                        .and_then(|clip| clip.to_pcm(rate).map(|pcm| (clip, pcm)));
                    let _ = done.send(loaded);
                });
                Source::Loading { pending, rate }
            }
            AudioSource::Device(name) => {
                if !config.echo {
                    request.input = Some(name);
                }
                Source::Device(None)
            }
        };
        let mut sink = Sink {
            wav: None,
            wav_resampler: None,
            device: None,
        };
        match config.sink {
            AudioSink::Null => {}
            AudioSink::File(path) => {
                sink.wav = Some(WavSink::create(&path, rate).map_err(MediaError::Sink)?);
            }
            AudioSink::Device(name) => {
                request.output = Some(name);
                sink.device = Some(None);
            }
        }
        let device = (request.input.is_some() || request.output.is_some())
            .then(|| device::open(request, Reporter::new(events.clone())));
        let now = Instant::now();
        let ssrc = fastrand::u32(..);
        let cname = format!("{:016x}{:08x}@siphon", fastrand::u64(..), fastrand::u32(..));
        let remote_rtp = neg.remote_rtp;
        shared.codec.store(codec_code(kind), Ordering::Relaxed);
        Ok(Engine {
            rtp,
            rtcp,
            commands,
            events,
            shared,
            encoder: Encoder::new(kind, neg.opus.as_ref())?,
            decoder: Decoder::new(kind)?,
            kind,
            rate,
            echo: config.echo,
            t0: now,
            ssrc,
            // RFC 3550 §5.1: random initial sequence number and timestamp.
            seq: fastrand::u16(..),
            ts: fastrand::u32(..),
            marker_next: true,
            frame,
            ptime,
            next_send: now,
            source,
            dtmf_tx: DtmfSender::new(rate, ptime),
            latch: Latch::Open,
            rtcp_latch: Latch::Open,
            packets_sent: 0,
            octets_sent: 0,
            sent_at_last_report: 0,
            remote_ssrc: None,
            rx: ReceiverStats::new(0),
            lost_prior: 0,
            packets_received: 0,
            packets_discarded: 0,
            jitter: JitterBuffer::new(jitter_config(kind, frame)),
            jb_frame: frame,
            pop_period: ptime,
            next_pop: now,
            candidate_frame: (0, 0),
            held: Held::None,
            jitter_inserted: 0,
            last_arrival: None,
            dtmf_rx: DtmfReceiver::new(),
            playing: false,
            sink,
            echo_fifo: echo_fifo(config.echo, rate),
            // RFC 3550 §6.2: the first report after half the interval.
            next_rtcp: now + rtcp_delay(RTCP_INTERVAL / 2),
            rtt: None,
            sr_packet: RtcpPacket::SenderReport(SenderReport {
                ssrc,
                info: SenderInfo::default(),
                reports: Vec::with_capacity(1),
            }),
            rr_packet: RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc,
                reports: Vec::with_capacity(1),
            }),
            // RFC 3550 §6.1: every compound packet carries SDES CNAME; RFC 7022 random.
            sdes_packet: RtcpPacket::Sdes(vec![SdesChunk::cname(ssrc, &cname)]),
            bye_packet: RtcpPacket::Bye(Bye {
                sources: vec![ssrc],
                reason: None,
            }),
            next_housekeeping: now + HOUSEKEEPING_INTERVAL,
            device,
            device_answered: false,
            rtp_buf: vec![0; DATAGRAM_MAX],
            rtcp_buf: vec![0; DATAGRAM_MAX],
            out_buf: vec![0; DATAGRAM_MAX],
            payload_buf: vec![0; PAYLOAD_MAX],
            send_pcm: vec![0; kind.frame_samples(60)],
            dec_pcm: vec![0; max_decoded(kind)],
            held_payload: opus_buffer(kind),
            next_payload: opus_buffer(kind),
            // Only for device audio or a resampled recording: see `ensure_scratch`.
            scratch: Vec::new(),
            neg: NegotiatedMedia { remote_rtp, ..neg },
        })
    }

    fn next_deadline(&self) -> Instant {
        self.next_send
            .min(self.next_pop)
            .min(self.next_rtcp)
            .min(self.next_housekeeping)
    }

    async fn run(mut self) -> MediaStats {
        let sleep = tokio::time::sleep_until(self.next_deadline().into());
        tokio::pin!(sleep);
        let mut armed = Some(self.next_deadline());
        loop {
            let deadline = self.next_deadline();
            if armed != Some(deadline) {
                sleep.as_mut().reset(deadline.into());
                armed = Some(deadline);
            }
            let mux = self.neg.rtcp_mux;
            let event = tokio::select! {
                biased;
                c = self.commands.recv() => Event::Command(c),
                _ = &mut sleep => Event::Timer,
                r = self.rtp.recv_from(&mut self.rtp_buf) => Event::Rtp(r),
                r = self.rtcp.recv_from(&mut self.rtcp_buf), if !mux => Event::Rtcp(r),
            };
            match event {
                Event::Command(None | Some(Command::Stop)) => break,
                Event::Command(Some(Command::Update(neg))) => self.update(*neg),
                Event::Command(Some(Command::Dtmf(digits))) => self.queue_dtmf(&digits),
                Event::Timer => {
                    armed = None;
                    // After a stall, what arrived meanwhile goes into the jitter buffer
                    // before playout catches up, or it would be judged late and dropped.
                    self.drain_sockets(mux);
                    self.on_timer(Instant::now());
                }
                Event::Rtp(Ok((n, from))) => {
                    let buf = std::mem::take(&mut self.rtp_buf);
                    self.on_rtp_socket(&buf[..n], from, Instant::now());
                    self.rtp_buf = buf;
                }
                Event::Rtcp(Ok((n, from))) => {
                    let buf = std::mem::take(&mut self.rtcp_buf);
                    if accept_source(&mut self.rtcp_latch, self.neg.remote_rtcp, from) {
                        self.on_rtcp(&buf[..n], Instant::now());
                    } else {
                        self.discard();
                    }
                    self.rtcp_buf = buf;
                }
                Event::Rtp(Err(e)) | Event::Rtcp(Err(e)) => {
                    // E.g. ICMP port unreachable surfacing on Linux; keep going.
                    tracing::debug!("media socket: {e}");
                }
            }
        }
        self.finish()
    }

    /// Reads every datagram already waiting on the sockets (bounded), without waiting.
    fn drain_sockets(&mut self, mux: bool) {
        for _ in 0..MAX_DRAIN {
            let Ok((n, from)) = self.rtp.try_recv_from(&mut self.rtp_buf) else {
                break;
            };
            let buf = std::mem::take(&mut self.rtp_buf);
            self.on_rtp_socket(&buf[..n], from, Instant::now());
            self.rtp_buf = buf;
        }
        if mux {
            return;
        }
        for _ in 0..MAX_DRAIN {
            let Ok((n, from)) = self.rtcp.try_recv_from(&mut self.rtcp_buf) else {
                break;
            };
            let buf = std::mem::take(&mut self.rtcp_buf);
            if accept_source(&mut self.rtcp_latch, self.neg.remote_rtcp, from) {
                self.on_rtcp(&buf[..n], Instant::now());
            } else {
                self.discard();
            }
            self.rtcp_buf = buf;
        }
    }

    fn finish(mut self) -> MediaStats {
        let now = Instant::now();
        self.send_rtcp(now, true);
        if let Some(wav) = &mut self.sink.wav {
            wav.finalize();
        }
        self.device.take();
        let stats = self.compute_stats();
        self.shared.publish(&stats);
        tracing::debug!("media: jitter buffer {:?}", self.jitter.stats());
        stats
    }

    fn sends(&self) -> bool {
        self.neg.direction.sends()
            && self.neg.remote_rtp.port() != 0
            && !self.neg.remote_rtp.ip().is_unspecified()
    }

    fn on_timer(&mut self, now: Instant) {
        self.poll_device();
        // Playout first, so that echo sends the frame just decoded.
        let mut n = 0;
        while self.next_pop <= now && n < MAX_CATCHUP {
            self.playout(now);
            self.next_pop += self.pop_period;
            n += 1;
        }
        if self.next_pop <= now {
            self.next_pop = now + self.pop_period;
        }
        let mut n = 0;
        while self.next_send <= now && n < MAX_CATCHUP {
            self.send_frame();
            self.next_send += self.ptime;
            n += 1;
        }
        if self.next_send <= now {
            // Far behind (the process was stopped?): skip, keeping timestamps on time.
            let behind = now - self.next_send;
            let frames = (behind.as_nanos() / self.ptime.as_nanos().max(1)) as u32 + 1;
            self.ts = self.ts.wrapping_add(frames.wrapping_mul(self.frame as u32));
            self.next_send += self.ptime * frames;
            self.marker_next = true;
        }
        if self.next_rtcp <= now {
            self.send_rtcp(now, false);
            self.next_rtcp = now + rtcp_delay(RTCP_INTERVAL);
        }
        if self.next_housekeeping <= now {
            self.next_housekeeping = now + HOUSEKEEPING_INTERVAL;
            if let Some(wav) = &mut self.sink.wav {
                wav.flush();
            }
            let stats = self.compute_stats();
            self.shared.publish(&stats);
        }
    }

    /// Installs the device rings once the audio thread has opened the devices.
    fn poll_device(&mut self) {
        if self.device_answered {
            return;
        }
        let Some(link) = &mut self.device else {
            return;
        };
        let ready = match link.ready.try_recv() {
            Ok(ready) => ready,
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => return,
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                // Thread gone without an answer: run on without devices.
                self.device = None;
                if let Some(dev) = &mut self.sink.device {
                    dev.take();
                }
                return;
            }
        };
        self.device_answered = true;
        if ready.capture.is_none() && ready.playback.is_none() {
            // Nothing opened: the thread has ended already.
            self.device = None;
        }
        if let Some(CaptureEnd { rate, ring }) = ready.capture
            && let Source::Device(slot) = &mut self.source
        {
            match make_resampler(rate, self.rate) {
                Ok(resampler) => {
                    *slot = Some(Box::new(Capture {
                        ring,
                        rate,
                        resampler,
                        fifo: Fifo::new(self.rate as usize / 4),
                        started: false,
                    }))
                }
                Err(e) => tracing::warn!("capture: {e}"),
            }
        }
        if let Some(PlaybackEnd { rate, ring }) = ready.playback
            && let Some(slot) = &mut self.sink.device
        {
            match make_resampler(self.rate, rate) {
                Ok(resampler) => {
                    *slot = Some(Playback {
                        ring,
                        rate,
                        resampler,
                    })
                }
                Err(e) => tracing::warn!("playback: {e}"),
            }
        }
        self.ensure_scratch();
    }

    fn send_frame(&mut self) {
        if !self.echo {
            self.source.finish_loading(self.rate);
        }
        let frame = self.frame;
        let ts = self.ts;
        self.ts = self.ts.wrapping_add(frame as u32);
        let pcm = &mut self.send_pcm[..frame];
        if self.echo {
            let n = self.echo_fifo.pop_into(pcm);
            pcm[n..].fill(0);
        } else {
            self.source.fill(pcm, &mut self.scratch, self.rate);
        }
        if self.shared.muted.load(Ordering::Relaxed) {
            pcm.fill(0);
        }
        if !self.sends() {
            // RFC 3264 §5.1 hold: no RTP; the timestamp keeps running.
            self.marker_next = true;
            return;
        }
        if let Some(pt) = self.neg.telephone_event_pt
            && self.dtmf_tx.is_active()
            && let Some(p) = self.dtmf_tx.poll(ts)
        {
            // RFC 4733 §2.5.1: the event replaces audio for this interval.
            self.payload_buf[..4].copy_from_slice(&p.payload);
            self.transmit(pt, p.marker, p.timestamp, 4);
            return;
        }
        let n = self
            .encoder
            .encode(&self.send_pcm[..frame], &mut self.payload_buf);
        if n == 0 {
            return;
        }
        if self.encoder.dtx() && n <= 2 {
            // RFC 7587 §3.1.3: DTX frames are not sent; the next packet starts a talkspurt.
            self.marker_next = true;
            return;
        }
        // RFC 3550 §5.1 / RFC 3551 §4.1: marker on the first packet of a talkspurt.
        let marker = std::mem::take(&mut self.marker_next);
        self.transmit(self.neg.codec.payload_type, marker, ts, n);
    }

    /// Sends `payload_buf[..len]` as the next RTP packet to the far end (symmetric: from
    /// the socket we receive on, RFC 4961).
    fn transmit(&mut self, payload_type: u8, marker: bool, timestamp: u32, len: usize) {
        let n = write_rtp(
            &mut self.out_buf,
            payload_type,
            marker,
            self.seq,
            timestamp,
            self.ssrc,
            &self.payload_buf[..len],
        );
        if n == 0 {
            return;
        }
        let to = target(self.latch, self.neg.remote_rtp);
        match self.rtp.try_send_to(&self.out_buf[..n], to) {
            Ok(_) => {
                self.seq = self.seq.wrapping_add(1);
                self.packets_sent += 1;
                self.octets_sent += len as u64;
                self.shared.sent.store(self.packets_sent, Ordering::Relaxed);
            }
            Err(e) => tracing::trace!("RTP send to {to}: {e}"),
        }
    }

    fn discard(&mut self) {
        self.packets_discarded += 1;
        self.shared
            .discarded
            .store(self.packets_discarded, Ordering::Relaxed);
    }

    fn is_event_pt(&self, pt: u8) -> bool {
        match self.neg.telephone_event_pt {
            Some(te) => {
                pt == te
                    || (matches!(pt, TELEPHONE_EVENT_OFFER_PT | TELEPHONE_EVENT_48K_OFFER_PT)
                        && !self.is_audio_pt(pt))
            }
            None => false,
        }
    }

    /// The far end sends with the payload types of our description: the negotiated one
    /// when we answered, ours when we offered (RFC 3264 §6.1 recommends they match).
    fn is_audio_pt(&self, pt: u8) -> bool {
        if pt == self.neg.codec.payload_type {
            return true;
        }
        match self.kind {
            CodecKind::Opus => pt == OPUS_OFFER_PT,
            CodecKind::Pcmu => pt == CodecChoice::Pcmu.offer_codec().payload_type,
            CodecKind::Pcma => pt == CodecChoice::Pcma.offer_codec().payload_type,
        }
    }

    /// RTP clock time now (RFC 3550 §5.1), from the send schedule.
    fn rtp_time_at(&self, now: Instant) -> u32 {
        let ahead = self.next_send.saturating_duration_since(now);
        let behind = now.saturating_duration_since(self.next_send);
        let units = |d: Duration| (d.as_nanos() * u128::from(self.rate) / 1_000_000_000) as u32;
        self.ts
            .wrapping_sub(units(ahead))
            .wrapping_add(units(behind))
    }

    /// Arrival time in timestamp units for the §A.8 jitter estimate.
    fn arrival_units(&self, now: Instant) -> u32 {
        let d = now.saturating_duration_since(self.t0);
        (d.as_nanos() * u128::from(self.rate) / 1_000_000_000) as u32
    }

    fn on_rtp_socket(&mut self, data: &[u8], from: SocketAddr, now: Instant) {
        if packet::is_rtcp(data) {
            // RFC 5761 §4: RTCP on the RTP port.
            if self.neg.rtcp_mux && accept_source(&mut self.latch, self.neg.remote_rtp, from) {
                self.on_rtcp(data, now);
            } else {
                self.discard();
            }
            return;
        }
        let Ok(v) = parse_rtp(data) else {
            self.discard();
            return;
        };
        let event = self.is_event_pt(v.payload_type);
        if !event && !self.is_audio_pt(v.payload_type) {
            self.discard();
            return;
        }
        if !accept_source(&mut self.latch, self.neg.remote_rtp, from) {
            self.discard();
            return;
        }
        if self.remote_ssrc != Some(v.ssrc) {
            if self.remote_ssrc.is_some() {
                // RFC 3550 §8.2: a new source: start over.
                tracing::debug!("media: SSRC changed to {:08x}", v.ssrc);
                self.lost_prior += self.rx.cumulative_lost().max(0) as u64;
                self.jitter.reset();
                self.jitter_inserted = 0;
                self.dtmf_rx.reset();
                self.decoder.reset();
                self.held = Held::None;
            }
            self.remote_ssrc = Some(v.ssrc);
            self.rx = ReceiverStats::new(v.ssrc);
        }
        self.last_arrival = Some(now);
        let arrival = self.arrival_units(now);
        self.rx.on_rtp(v.sequence, v.timestamp, arrival);
        self.packets_received += 1;
        self.shared
            .received
            .store(self.packets_received, Ordering::Relaxed);
        if !self.neg.direction.receives() {
            return;
        }
        let payload = &data[v.payload_start..v.payload_end];
        if event {
            if let Some(d) = self.dtmf_rx.on_packet(v.timestamp, payload)
                && let Some(digit) = d.digit
            {
                let _ = self.events.send(MediaEvent::Dtmf { digit });
            }
            return;
        }
        self.track_frame_size(payload);
        self.jitter
            .push(now, v.sequence, v.timestamp, v.marker, payload);
    }

    /// Follows the far end's packet duration, which may differ from ours.
    fn track_frame_size(&mut self, payload: &[u8]) {
        let Some(samples) = self.decoder.packet_samples(payload) else {
            return;
        };
        let min = self.rate as usize / 400; // 2.5 ms
        if samples == self.jb_frame || samples < min || samples > max_decoded(self.kind) {
            self.candidate_frame = (0, 0);
            return;
        }
        let (candidate, count) = self.candidate_frame;
        let count = if candidate == samples { count + 1 } else { 1 };
        self.candidate_frame = (samples, count);
        if count >= FRAME_CHANGE_PACKETS {
            tracing::debug!(
                "media: far end sends {samples}-sample packets (was {})",
                self.jb_frame
            );
            self.jb_frame = samples;
            self.pop_period = frame_duration(samples, self.rate);
            self.jitter = JitterBuffer::new(jitter_config(self.kind, samples));
            self.jitter_inserted = 0;
            self.held = Held::None;
            self.candidate_frame = (0, 0);
        }
    }

    /// One playout interval: jitter buffer -> decoder/concealment -> sink (and echo).
    fn playout(&mut self, now: Instant) {
        let frame = self.jb_frame;
        let mut produced = 0;
        let mut empty = false;
        if self.kind == CodecKind::Opus {
            let current = match self.jitter.pop(now) {
                Playout::Frame { payload, .. } => {
                    let n = payload.len().min(self.next_payload.len());
                    self.next_payload[..n].copy_from_slice(&payload[..n]);
                    Held::Frame(n)
                }
                Playout::Lost { .. } => {
                    // A frame the jitter buffer inserts to grow its delay is not a lost
                    // packet: the next packet's FEC would repeat the frame already played.
                    let inserted = self.jitter.stats().inserted;
                    if inserted != self.jitter_inserted {
                        self.jitter_inserted = inserted;
                        Held::Inserted(frame)
                    } else {
                        Held::Lost(frame)
                    }
                }
                Playout::Empty => Held::None,
            };
            produced = match (self.held, current) {
                (Held::Frame(n), _) => {
                    self.decoder
                        .decode(&self.held_payload[..n], frame, &mut self.dec_pcm)
                }
                (Held::Lost(samples), Held::Frame(n)) => {
                    self.decoder
                        .recover(&self.next_payload[..n], samples, &mut self.dec_pcm)
                }
                (Held::Lost(samples) | Held::Inserted(samples), _) => {
                    self.decoder.conceal(samples, &mut self.dec_pcm)
                }
                (Held::None, _) => 0,
            };
            std::mem::swap(&mut self.held_payload, &mut self.next_payload);
            self.held = current;
            empty = current == Held::None;
        } else {
            let gap_is_loss = self.playing && self.stream_active(now);
            match self.jitter.pop(now) {
                Playout::Frame { payload, .. } => {
                    produced = self.decoder.decode(payload, frame, &mut self.dec_pcm);
                }
                Playout::Lost { .. } => {
                    produced = self.decoder.conceal(frame, &mut self.dec_pcm);
                }
                // While packets keep coming (G.711 has no DTX here), a gap is loss, to be
                // concealed; silence is real only when the far end has stopped sending.
                Playout::Empty if gap_is_loss => {
                    produced = self.decoder.conceal(frame, &mut self.dec_pcm);
                }
                Playout::Empty => empty = true,
            }
        }
        if produced > 0 {
            self.playing = true;
            let pcm = &self.dec_pcm[..produced];
            self.sink.write(pcm, &mut self.scratch);
            if self.echo {
                self.echo_fifo.push_slice(pcm);
            }
        }
        if empty && self.playing {
            // Nothing to play (silence between talkspurts, hold): keep the recording's
            // time line. Lost packets never get here; they are concealed above.
            self.dec_pcm[..frame].fill(0);
            self.sink
                .write_wav(&self.dec_pcm[..frame], &mut self.scratch);
        }
    }

    /// A packet arrived within the last few frames: the far end is sending.
    fn stream_active(&self, now: Instant) -> bool {
        self.last_arrival
            .is_some_and(|t| now.saturating_duration_since(t) < STREAM_ACTIVE_WINDOW)
    }

    fn queue_dtmf(&mut self, digits: &str) {
        if self.neg.telephone_event_pt.is_none() {
            tracing::warn!("DTMF {digits:?} not sent: no telephone-event negotiated");
            return;
        }
        for c in digits.chars().filter(|c| !c.is_whitespace()) {
            if let Err(e) = self.dtmf_tx.queue_digit(c) {
                tracing::warn!("DTMF {c:?} not sent: {e}");
            }
        }
    }

    /// A new negotiation from a re-INVITE (RFC 3264 §8).
    fn update(&mut self, neg: NegotiatedMedia) {
        let Some(kind) = CodecKind::from_codec(&neg.codec) else {
            tracing::warn!("media update ignored: unsupported codec {}", neg.codec);
            return;
        };
        if neg.remote_rtp != self.neg.remote_rtp {
            self.latch = Latch::Open;
        }
        if neg.remote_rtcp != self.neg.remote_rtcp {
            self.rtcp_latch = Latch::Open;
        }
        if neg.direction.sends() && !self.neg.direction.sends() {
            self.marker_next = true;
        }
        let codec_changed = kind != self.kind
            || neg.codec.payload_type != self.neg.codec.payload_type
            || neg.codec.fmtp != self.neg.codec.fmtp
            || neg.opus != self.neg.opus
            || kind.frame_samples(neg.ptime_ms) != self.frame;
        self.neg = neg;
        if codec_changed && let Err(e) = self.configure_codec(kind) {
            tracing::warn!("media update: {e}");
        }
    }

    fn configure_codec(&mut self, kind: CodecKind) -> Result<(), MediaError> {
        let rate = kind.clock_rate();
        self.encoder = Encoder::new(kind, self.neg.opus.as_ref())?;
        if kind != self.kind {
            self.decoder = Decoder::new(kind)?;
            self.jitter = JitterBuffer::new(jitter_config(kind, kind.frame_samples(20)));
            self.jitter_inserted = 0;
            self.jb_frame = kind.frame_samples(20);
            self.pop_period = frame_duration(self.jb_frame, rate);
            self.held = Held::None;
            self.echo_fifo = echo_fifo(self.echo, rate);
            self.send_pcm = vec![0; kind.frame_samples(60)];
            self.dec_pcm = vec![0; max_decoded(kind)];
            self.held_payload = opus_buffer(kind);
            self.next_payload = opus_buffer(kind);
        }
        if rate != self.rate {
            self.source.set_rate(rate).map_err(MediaError::Source)?;
            self.sink.set_rate(rate).map_err(MediaError::Sink)?;
            // Keep the clock continuous in the new units.
            self.ts = (u64::from(self.ts) * u64::from(rate) / u64::from(self.rate)) as u32;
        }
        self.kind = kind;
        self.rate = rate;
        self.frame = kind.frame_samples(self.neg.ptime_ms);
        self.ptime = frame_duration(self.frame, rate);
        self.dtmf_tx = DtmfSender::new(rate, self.ptime);
        self.shared.codec.store(codec_code(kind), Ordering::Relaxed);
        self.ensure_scratch();
        Ok(())
    }

    /// The f32 work buffer of the resampling paths, allocated only when one is in use.
    fn ensure_scratch(&mut self) {
        let needed = matches!(self.source, Source::Device(Some(_)))
            || matches!(self.sink.device, Some(Some(_)))
            || self.sink.wav_resampler.is_some();
        let len = max_decoded(self.kind);
        if needed && self.scratch.len() < len {
            self.scratch = vec![0.0; len];
        }
    }

    fn on_rtcp(&mut self, data: &[u8], now: Instant) {
        // RTCP is a few packets a minute: decoding it may allocate.
        let Ok(packets) = decode_compound(data) else {
            self.discard();
            return;
        };
        for p in &packets {
            match p {
                RtcpPacket::SenderReport(sr) => {
                    if Some(sr.ssrc) == self.remote_ssrc {
                        self.rx.on_sender_report(sr.info.ntp, now);
                    }
                    self.on_report_blocks(&sr.reports);
                }
                RtcpPacket::ReceiverReport(rr) => self.on_report_blocks(&rr.reports),
                RtcpPacket::Bye(bye) => {
                    tracing::debug!("media: RTCP BYE from {:08x?}", bye.sources)
                }
                _ => {}
            }
        }
    }

    fn on_report_blocks(&mut self, blocks: &[ReportBlock]) {
        for b in blocks.iter().filter(|b| b.ssrc == self.ssrc) {
            // RFC 3550 §6.4.1: RTT = A - LSR - DLSR.
            if let Some(rtt) = round_trip_time(b, NtpTime::from_system_time(SystemTime::now())) {
                self.rtt = Some(rtt);
            }
            let percent = (u32::from(b.fraction_lost) * 100 / 256) as u8;
            self.encoder.set_expected_loss(percent);
        }
    }

    /// A compound RTCP packet (RFC 3550 §6.1): SR if we sent since the last report, else
    /// RR (§6.4), then SDES CNAME, then BYE when leaving (§6.6).
    fn send_rtcp(&mut self, now: Instant, bye: bool) {
        let block = if self.remote_ssrc.is_some() {
            self.rx.report_block(now)
        } else {
            None
        };
        let sender = self.packets_sent > self.sent_at_last_report;
        self.sent_at_last_report = self.packets_sent;
        let rtp_time = self.rtp_time_at(now);
        let report = if sender {
            if let RtcpPacket::SenderReport(sr) = &mut self.sr_packet {
                sr.info = SenderInfo {
                    ntp: NtpTime::from_system_time(SystemTime::now()),
                    rtp_timestamp: rtp_time,
                    packet_count: self.packets_sent as u32,
                    octet_count: self.octets_sent as u32,
                };
                sr.reports.clear();
                sr.reports.extend(block);
            }
            &self.sr_packet
        } else {
            if let RtcpPacket::ReceiverReport(rr) = &mut self.rr_packet {
                rr.reports.clear();
                rr.reports.extend(block);
            }
            &self.rr_packet
        };
        let mut len = 0;
        let parts = [
            Some(report),
            Some(&self.sdes_packet),
            bye.then_some(&self.bye_packet),
        ];
        for p in parts.into_iter().flatten() {
            match p.encode(&mut self.out_buf[len..]) {
                Ok(n) => len += n,
                Err(e) => {
                    tracing::debug!("RTCP encode: {e}");
                    return;
                }
            }
        }
        let (socket, to) = if self.neg.rtcp_mux {
            (&self.rtp, target(self.latch, self.neg.remote_rtp))
        } else {
            (&self.rtcp, target(self.rtcp_latch, self.neg.remote_rtcp))
        };
        if to.port() == 0 || to.ip().is_unspecified() {
            return;
        }
        if let Err(e) = socket.try_send_to(&self.out_buf[..len], to) {
            tracing::trace!("RTCP send to {to}: {e}");
        }
    }

    fn compute_stats(&self) -> MediaStats {
        let current_lost = if self.remote_ssrc.is_some() {
            self.rx.cumulative_lost().max(0) as u64
        } else {
            0
        };
        let packets_lost = self.lost_prior + current_lost;
        let jb = self.jitter.stats();
        let mos = if self.packets_received == 0 {
            0.0
        } else {
            let expected = (self.packets_received + packets_lost).max(1);
            let loss_percent = (packets_lost + jb.late) as f64 * 100.0 / expected as f64;
            quality::estimate(&QualityInput {
                codec: self.kind.quality(),
                rtt: self.rtt.unwrap_or_default(),
                jitter_buffer: jb.current_delay,
                ptime: self.ptime,
                loss_percent: loss_percent.min(100.0),
            })
            .mos
        };
        MediaStats {
            codec: self.kind.name().to_string(),
            packets_sent: self.packets_sent,
            packets_received: self.packets_received,
            packets_lost,
            jitter_ms: self.rx.jitter_duration(self.rate).as_secs_f64() * 1000.0,
            rtt_ms: self.rtt.map(|d| d.as_secs_f64() * 1000.0),
            mos,
            packets_discarded: self.packets_discarded,
        }
    }
}
