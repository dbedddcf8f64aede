//! What siphon tells the person or script running it: one event per line, as JSON
//! (`--json`) or as short plain text, both from the same [`Event`] values.

use std::io::Write;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Our SIP socket is bound (useful to scripts that passed `--listen IP:0`).
    Listening {
        address: String,
    },
    /// A SIP message sent (`out`) or received (`in`): the call flow, in `siphon demo`.
    SipMessage {
        direction: &'static str,
        peer: String,
        first_line: String,
    },
    /// What `siphon demo` measured, at its end.
    DemoResult {
        codec: String,
        answered: bool,
        stats: Option<CallStats>,
        verdict: String,
    },
    Registered {
        expires: u32,
        contact: String,
    },
    RegistrationFailed {
        status: u16,
        reason: String,
        /// Seconds until the next try, when siphon keeps trying.
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_in_s: Option<u64>,
    },
    Unregistered,
    IncomingCall {
        call_id: String,
        from: String,
        to: String,
    },
    Ringing {
        call_id: String,
    },
    EarlyMedia {
        call_id: String,
        codec: String,
        remote_rtp: String,
    },
    Answered {
        call_id: String,
        codec: String,
        remote_rtp: String,
    },
    /// `by` is `local` (we put the far end on hold) or `remote`.
    Held {
        call_id: String,
        by: &'static str,
    },
    Resumed {
        call_id: String,
        by: &'static str,
    },
    Dtmf {
        call_id: String,
        digit: String,
    },
    Ended {
        call_id: String,
        reason: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        duration_s: f64,
        /// What the media measured, when media flowed.
        #[serde(skip_serializing_if = "Option::is_none")]
        stats: Option<CallStats>,
    },
}

/// RTP statistics of a call and its quality estimate (ITU-T G.107, simplified).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallStats {
    pub codec: String,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub packets_lost: u64,
    pub jitter_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    pub mos: f64,
}

impl From<crate::media::MediaStats> for CallStats {
    fn from(s: crate::media::MediaStats) -> CallStats {
        CallStats {
            codec: s.codec,
            packets_sent: s.packets_sent,
            packets_received: s.packets_received,
            packets_lost: s.packets_lost,
            jitter_ms: round(s.jitter_ms, 2),
            rtt_ms: s.rtt_ms.map(|r| round(r, 2)),
            mos: round(s.mos, 2),
        }
    }
}

fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

impl CallStats {
    fn plain(&self) -> String {
        let rtt = self
            .rtt_ms
            .map_or("not measured".to_string(), |r| format!("{r:.1} ms"));
        format!(
            "{}: sent {} received {} lost {} packets, jitter {:.1} ms, round trip {}, MOS {:.2}",
            self.codec,
            self.packets_sent,
            self.packets_received,
            self.packets_lost,
            self.jitter_ms,
            rtt,
            self.mos
        )
    }
}

impl Event {
    fn plain(&self) -> String {
        match self {
            Event::Listening { address } => format!("listening on {address}"),
            Event::SipMessage {
                direction,
                first_line,
                ..
            } => {
                let arrow = if *direction == "out" {
                    "  -->"
                } else {
                    "  <--"
                };
                format!("{arrow} {first_line}")
            }
            Event::DemoResult { verdict, .. } => verdict.clone(),
            Event::Registered { expires, contact } => {
                format!("registered {contact} for {expires} s")
            }
            Event::RegistrationFailed {
                status,
                reason,
                retry_in_s: Some(s),
            } => format!("registration failed: {status} {reason} (retrying in {s} s)"),
            Event::RegistrationFailed { status, reason, .. } => {
                format!("registration failed: {status} {reason}")
            }
            Event::Unregistered => "unregistered".to_string(),
            Event::IncomingCall { from, .. } => {
                format!("incoming call from {from} (a: answer, d: decline)")
            }
            Event::Ringing { .. } => "ringing".to_string(),
            Event::EarlyMedia { codec, .. } => format!("early media ({codec})"),
            Event::Answered {
                codec, remote_rtp, ..
            } => format!("answered: {codec} with {remote_rtp}"),
            Event::Held { by, .. } => format!("on hold ({by})"),
            Event::Resumed { by, .. } => format!("resumed ({by})"),
            Event::Dtmf { digit, .. } => format!("DTMF {digit}"),
            Event::Ended {
                reason,
                status,
                duration_s,
                stats,
                ..
            } => {
                let mut line = match status {
                    Some(s) => format!("call ended: {reason} ({s}) after {duration_s:.1} s"),
                    None => format!("call ended: {reason} after {duration_s:.1} s"),
                };
                if let Some(stats) = stats {
                    line.push_str("\n  ");
                    line.push_str(&stats.plain());
                }
                line
            }
        }
    }
}

/// Writes events to stdout, flushing each line so pipes see it at once.
#[derive(Debug, Clone, Copy)]
pub struct Reporter {
    pub json: bool,
}

impl Reporter {
    pub fn emit(&self, event: &Event) {
        let line = if self.json {
            serde_json::to_string(event)
                .unwrap_or_else(|e| format!("{{\"event\":\"error\",\"reason\":\"{e}\"}}"))
        } else {
            event.plain()
        };
        let mut out = std::io::stdout().lock();
        // A closed stdout (e.g. `| head`) must not kill the call; ignore write errors.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes_match_the_documented_contract() {
        let e = Event::Registered {
            expires: 60,
            contact: "sip:a@127.0.0.1:5070".into(),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"registered","expires":60,"contact":"sip:a@127.0.0.1:5070"}"#
        );
        let e = Event::RegistrationFailed {
            status: 403,
            reason: "Forbidden".into(),
            retry_in_s: None,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"registration_failed","status":403,"reason":"Forbidden"}"#
        );
        assert_eq!(
            serde_json::to_string(&Event::Unregistered).unwrap(),
            r#"{"event":"unregistered"}"#
        );
    }
}
