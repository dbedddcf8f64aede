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
}

impl Event {
    fn plain(&self) -> String {
        match self {
            Event::Listening { address } => format!("listening on {address}"),
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
