//! Media for the commands: which audio goes in and out, starting a call's media session
//! when the call has negotiated one, and reporting what it measured.

use std::str::FromStr;

use super::{Failure, usage};
use crate::cli::MediaArgs;
use crate::driver::RtpSockets;
use crate::media::{AudioSink, AudioSource, MediaConfig, MediaEvent, MediaSession, MediaStats};
use crate::output::{Event, Reporter};
use crate::sdp::NegotiatedMedia;

/// The audio choices of the command line.
#[derive(Debug, Clone)]
pub(crate) struct MediaPlan {
    pub(crate) source: AudioSource,
    pub(crate) sink: AudioSink,
    pub(crate) echo: bool,
    pub(crate) dtmf: Option<String>,
}

impl MediaPlan {
    pub(crate) fn from_args(args: &MediaArgs) -> Result<MediaPlan, Failure> {
        MediaPlan::new(
            &args.audio_in,
            &args.audio_out,
            args.echo,
            args.dtmf.clone(),
        )
    }

    pub(crate) fn new(
        audio_in: &str,
        audio_out: &str,
        echo: bool,
        dtmf: Option<String>,
    ) -> Result<MediaPlan, Failure> {
        let source =
            AudioSource::from_str(audio_in).map_err(|e| usage(format!("--audio-in: {e}")))?;
        let sink =
            AudioSink::from_str(audio_out).map_err(|e| usage(format!("--audio-out: {e}")))?;
        if let Some(digits) = &dtmf
            && let Some(bad) = digits
                .chars()
                .find(|c| !matches!(c.to_ascii_uppercase(), '0'..='9' | '*' | '#' | 'A'..='D'))
        {
            return Err(usage(format!("--dtmf: '{bad}' is not a DTMF digit")));
        }
        Ok(MediaPlan {
            source,
            sink,
            echo,
            dtmf,
        })
    }
}

/// A call's media: the reserved sockets until the session starts, then the session.
#[derive(Default)]
pub(crate) struct CallMedia {
    sockets: Option<RtpSockets>,
    session: Option<MediaSession>,
    device_warned: bool,
}

impl CallMedia {
    pub(crate) fn reserved(sockets: RtpSockets) -> CallMedia {
        CallMedia {
            sockets: Some(sockets),
            ..CallMedia::default()
        }
    }

    /// Starts streaming with what was negotiated, or applies a change (re-INVITE, answer
    /// after early media).
    pub(crate) fn apply(&mut self, negotiated: &NegotiatedMedia, plan: &MediaPlan) {
        if let Some(session) = &self.session {
            session.update(negotiated.clone());
            return;
        }
        let Some(sockets) = self.sockets.take() else {
            return;
        };
        let config = MediaConfig {
            negotiated: negotiated.clone(),
            source: plan.source.clone(),
            sink: plan.sink.clone(),
            echo: plan.echo,
        };
        match MediaSession::start(sockets.rtp, sockets.rtcp, config) {
            Ok(session) => {
                if let Some(digits) = &plan.dtmf {
                    session.send_dtmf(digits);
                }
                self.session = Some(session);
            }
            Err(e) => eprintln!("siphon: media could not start: {e}"),
        }
    }

    pub(crate) fn send_dtmf(&self, digits: &str) {
        if let Some(session) = &self.session {
            session.send_dtmf(digits);
        }
    }

    pub(crate) fn set_mute(&self, mute: bool) {
        if let Some(session) = &self.session {
            session.set_mute(mute);
        }
    }

    /// Reports what the media session noticed (received DTMF, a missing sound card).
    pub(crate) fn report_events(&mut self, reporter: Reporter, call_id: &str) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        while let Some(event) = session.try_event() {
            match event {
                MediaEvent::Dtmf { digit } => reporter.emit(&Event::Dtmf {
                    call_id: call_id.to_string(),
                    digit: digit.to_string(),
                }),
                MediaEvent::DeviceUnavailable { reason } => {
                    if !self.device_warned {
                        self.device_warned = true;
                        eprintln!("siphon: no usable sound device ({reason}); using silence");
                    }
                }
            }
        }
    }

    /// Ends the media (RTCP BYE, recordings closed) and returns what it measured.
    pub(crate) async fn stop(&mut self) -> Option<MediaStats> {
        self.sockets = None;
        match self.session.take() {
            Some(session) => Some(session.stop().await),
            None => None,
        }
    }
}
