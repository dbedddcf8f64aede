//! Helpers for the call tests: siphon as caller or callee (keys on stdin,
//! signals, JSON events read with a deadline), the SIPp call scenarios in
//! `sip-fixtures/sipp/calls/`, digest checks on SIPp's message log, and a
//! headless baresip driven through its `ctrl_tcp` module.
//!
//! Everything binds 127.0.0.1, every wait is bounded, and every process
//! started here is killed when its handle is dropped.

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{
    Kamailio, LOOPBACK, SippCommand, TempDir, find_program, free_udp_port, siphon, wait_timeout,
};

// ---------------------------------------------------------------------------
// Processes and ports
// ---------------------------------------------------------------------------

/// Send `signal` ("INT", "TERM", "KILL") to one process.
pub fn signal_pid(pid: u32, signal: &str) {
    let kill = find_program("kill").expect("`kill` (procps) is installed");
    let _ = Command::new(kill)
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Send `signal` to the process group `pgid` (a child started with
/// `process_group(0)` leads its own group).
fn signal_group(pgid: u32, signal: &str) {
    let kill = find_program("kill").expect("`kill` (procps) is installed");
    let _ = Command::new(kill)
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    let listener = TcpListener::bind((LOOPBACK, 0)).expect("bind TCP 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

fn tcp_port_free(port: u16) -> bool {
    TcpListener::bind((LOOPBACK, port)).is_ok()
}

// ---------------------------------------------------------------------------
// SIPp call scenarios
// ---------------------------------------------------------------------------

/// The name of a call scenario for `SippCommand` ("uac_basic.xml" ->
/// "calls/uac_basic.xml"); the harness checks that the file exists.
pub fn call_scenario(name: &str) -> String {
    format!("calls/{name}")
}

/// SIPp running call scenario `name` as a UAC against 127.0.0.1:`port`,
/// with a 30 s global timeout.
pub fn sipp_caller(name: &str, port: u16) -> SippCommand {
    SippCommand::uac(&call_scenario(name), &format!("{LOOPBACK}:{port}"))
        .timeout(Duration::from_secs(30))
}

/// SIPp running call scenario `name` as a UAS on a free port, with a 30 s
/// global timeout.
pub fn sipp_callee(name: &str) -> SippCommand {
    SippCommand::uas(&call_scenario(name)).timeout(Duration::from_secs(30))
}

/// One message from a SIPp `-trace_msg` log.
#[derive(Debug, Clone)]
pub struct LoggedMessage {
    /// True for a message SIPp sent, false for one it received.
    pub sent: bool,
    /// The SIP message (start line, headers, body), lines joined by "\n".
    pub text: String,
}

impl LoggedMessage {
    /// The start line ("INVITE sip:... SIP/2.0", "SIP/2.0 200 OK").
    pub fn start_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }

    /// The request method, or None for a response.
    pub fn method(&self) -> Option<&str> {
        let line = self.start_line();
        if line.starts_with("SIP/2.0") {
            None
        } else {
            line.split_whitespace().next()
        }
    }

    /// The status code, or None for a request.
    pub fn status(&self) -> Option<u16> {
        let line = self.start_line();
        line.strip_prefix("SIP/2.0 ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// The first header `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        super::header(&self.text, name)
    }

    /// The body (after the first empty line).
    pub fn body(&self) -> &str {
        self.text.split_once("\n\n").map(|(_, b)| b).unwrap_or("")
    }
}

/// Split a SIPp `-trace_msg` log into messages.
pub fn logged_messages(log: &str) -> Vec<LoggedMessage> {
    let mut out = Vec::new();
    // Entries start with a line of dashes and a timestamp, then
    // "UDP message sent (N bytes):" or "UDP message received [N] bytes :".
    for entry in log.split("-----------------------------------------------") {
        let mut lines = entry.lines().map(|l| l.trim_end_matches('\r'));
        let _timestamp = lines.next();
        let Some(kind) = lines.by_ref().find(|l| !l.trim().is_empty()) else {
            continue;
        };
        let sent = if kind.contains("message sent") {
            true
        } else if kind.contains("message received") {
            false
        } else {
            continue;
        };
        let text: Vec<&str> = lines.skip_while(|l| l.trim().is_empty()).collect();
        let text = text.join("\n").trim_end().to_string();
        if !text.is_empty() {
            out.push(LoggedMessage { sent, text });
        }
    }
    out
}

/// The messages SIPp received whose method is `method`.
pub fn received_requests(log: &str, method: &str) -> Vec<LoggedMessage> {
    logged_messages(log)
        .into_iter()
        .filter(|m| !m.sent && m.method() == Some(method))
        .collect()
}

// ---------------------------------------------------------------------------
// HTTP digest (RFC 2617 / RFC 8760 MD5), to check what siphon sent
// ---------------------------------------------------------------------------

fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    let mut hasher = Md5::new();
    hasher.update(s.as_bytes());
    format!("{:x}", hasher.finalize())
}

/// The parameters of a `Digest a=b, c="d"` credentials or challenge value
/// (names lower-cased, quotes removed).
pub fn digest_params(value: &str) -> Vec<(String, String)> {
    let rest = value.trim();
    let rest = rest
        .strip_prefix("Digest")
        .or_else(|| rest.strip_prefix("digest"))
        .unwrap_or(rest);
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut val = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                val.push(n);
                            }
                        }
                        '"' => break,
                        c => val.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' || c.is_whitespace() {
                        break;
                    }
                    val.push(c);
                    chars.next();
                }
            }
        }
        out.push((name.to_ascii_lowercase(), val));
    }
    out
}

/// Check an MD5 digest `Authorization`/`Proxy-Authorization` value sent with
/// request `method`: recompute `response` from `password` and the
/// parameters it carries (username, realm, nonce, uri, and qop/nc/cnonce
/// when qop is present).
pub fn check_digest(credentials: &str, method: &str, password: &str) -> Result<(), String> {
    let params = digest_params(credentials);
    let get = |n: &str| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let need = |n: &str| get(n).ok_or_else(|| format!("no {n} in {credentials:?}"));
    if let Some(alg) = get("algorithm") {
        if !alg.eq_ignore_ascii_case("MD5") {
            return Err(format!("algorithm {alg}, expected MD5"));
        }
    }
    let username = need("username")?;
    let realm = need("realm")?;
    let nonce = need("nonce")?;
    let uri = need("uri")?;
    let response = need("response")?;
    let ha1 = md5_hex(&format!("{username}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("{method}:{uri}"));
    let expected = match get("qop") {
        Some(qop) => {
            let nc = need("nc")?;
            let cnonce = need("cnonce")?;
            if nc.len() != 8 || !nc.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("nc={nc} is not 8 hex digits"));
            }
            md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}"))
        }
        None => md5_hex(&format!("{ha1}:{nonce}:{ha2}")),
    };
    if response.eq_ignore_ascii_case(&expected) {
        Ok(())
    } else {
        Err(format!(
            "digest response {response} is wrong (expected {expected} for {username}@{realm}, \
             {method} {uri})"
        ))
    }
}

// ---------------------------------------------------------------------------
// siphon as a caller or callee
// ---------------------------------------------------------------------------

/// Audio options that need no sound card: a 440 Hz tone out, nothing played.
pub const NO_SOUND_CARD: [&str; 4] = ["--audio-in", "tone:440", "--audio-out", "null"];

/// `--listen 127.0.0.1:0 --audio-in tone:440 --audio-out null`, less the
/// options `extra` gives itself (clap refuses an option given twice).
fn defaults_unless_given(extra: &[&str]) -> Vec<&'static str> {
    let defaults: [(&'static str, &'static str); 3] = [
        ("--listen", "127.0.0.1:0"),
        (NO_SOUND_CARD[0], NO_SOUND_CARD[1]),
        (NO_SOUND_CARD[2], NO_SOUND_CARD[3]),
    ];
    let mut out = Vec::new();
    for (flag, value) in defaults {
        let given = extra
            .iter()
            .any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
        if !given {
            out.extend([flag, value]);
        }
    }
    out
}

/// A running siphon with stdin kept open (its key presses), stdout read line
/// by line on a thread so that reads time out, and stderr collected.
/// Killed on drop.
pub struct SiphonChild {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<(Instant, String)>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
    started: Instant,
    args: Vec<String>,
}

/// How a `SiphonChild` ended.
#[derive(Debug)]
pub struct CallOutcome {
    /// None if it did not exit in time and was killed.
    pub status: Option<ExitStatus>,
    pub args: Vec<String>,
    /// Every stdout line, in order.
    pub stdout_lines: Vec<String>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl CallOutcome {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// The stdout lines that are JSON objects.
    pub fn events(&self) -> Vec<Value> {
        json_events(&self.stdout_lines)
    }

    /// The events named `name`.
    pub fn events_named(&self, name: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == name)
            .collect()
    }

    /// The "event" field of every event, in order.
    pub fn event_names(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter_map(|e| e["event"].as_str().map(str::to_string))
            .collect()
    }

    /// The one event named `name`; panics (with the report) unless there is
    /// exactly one.
    pub fn single(&self, name: &str) -> Value {
        let found = self.events_named(name);
        assert_eq!(
            found.len(),
            1,
            "expected exactly one {name:?} event\n{}",
            self.report()
        );
        found.into_iter().next().unwrap()
    }

    /// Panics unless the events named in `names` appear in this order
    /// (other events may come between).
    pub fn assert_in_order(&self, names: &[&str]) {
        let seen = self.event_names();
        let mut at = 0;
        for name in names {
            match seen[at..].iter().position(|s| s == name) {
                Some(i) => at += i + 1,
                None => panic!(
                    "expected events {names:?} in this order; got {seen:?}\n{}",
                    self.report()
                ),
            }
        }
    }

    /// The non-empty stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    pub fn report(&self) -> String {
        format!(
            "siphon {}\nexit: {:?} after {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.args.join(" "),
            self.status.map(|s| s.code()),
            self.elapsed,
            self.stdout_lines.join("\n"),
            self.stderr.trim()
        )
    }
}

fn json_events(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.is_object())
        .collect()
}

/// Every "ended" event carries the call's Call-ID; check the shape of the
/// events this module's tests rely on.
pub fn assert_call_event_shape(event: &Value) {
    let name = event["event"].as_str().unwrap_or("");
    if matches!(
        name,
        "incoming_call" | "ringing" | "early_media" | "answered" | "held" | "resumed" | "ended"
    ) {
        assert!(
            event["call_id"].as_str().is_some_and(|c| !c.is_empty()),
            "{name} event without a call_id: {event}"
        );
    }
}

impl SiphonChild {
    /// Start `siphon <args>` with stdin, stdout and stderr piped.
    pub fn spawn(args: &[&str]) -> SiphonChild {
        let mut child = siphon()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn siphon {args:?}: {e}"));
        let stdin = child.stdin.take();
        let (lines, stderr) = super::watch_output(&mut child);
        SiphonChild {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            stderr,
            started: Instant::now(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// `siphon --json listen <defaults> <extra>`, the defaults being
    /// `--listen 127.0.0.1:0` and `NO_SOUND_CARD`, each unless `extra` has it;
    /// returns once it printed its "listening" event (at most 10 s), with
    /// the port it listens on.
    pub fn listen(extra: &[&str]) -> (SiphonChild, u16) {
        let mut args = vec!["--json", "listen"];
        args.extend(defaults_unless_given(extra));
        args.extend(extra);
        let mut phone = SiphonChild::spawn(&args);
        let port = phone.wait_listening(Duration::from_secs(10));
        (phone, port)
    }

    /// `siphon --json call <uri> <defaults> <extra>` (defaults as for `listen`).
    pub fn call(uri: &str, extra: &[&str]) -> SiphonChild {
        assert!(
            uri.contains("@127.") || uri.starts_with("sip:127."),
            "calls stay on loopback, not {uri}"
        );
        let mut args = vec!["--json", "call", uri];
        args.extend(defaults_unless_given(extra));
        args.extend(extra);
        SiphonChild::spawn(&args)
    }

    /// Read up to the "listening" event and return its port; panics (with
    /// everything siphon printed) if it does not come within `limit`.
    pub fn wait_listening(&mut self, limit: Duration) -> u16 {
        let Some(event) = self.wait_for_event("listening", limit) else {
            panic!(
                "no \"listening\" event within {limit:?}\n{}",
                self.report_so_far()
            );
        };
        let address = event["address"].as_str().unwrap_or_default().to_string();
        let port = address
            .rsplit_once(':')
            .and_then(|(host, p)| {
                assert_eq!(host, LOOPBACK, "listening on {address}, not loopback");
                p.parse::<u16>().ok()
            })
            .unwrap_or_else(|| panic!("bad listening address in {event}"));
        assert_ne!(port, 0, "listening event with port 0: {event}");
        port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line, waiting at most `limit`.
    pub fn next_line(&mut self, limit: Duration) -> Option<String> {
        match self.lines.recv_timeout(limit) {
            Ok((_, line)) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Read stdout up to a JSON event named `name` (returned), at most
    /// `limit` in all. None on timeout or when stdout closes first.
    pub fn wait_for_event(&mut self, name: &str, limit: Duration) -> Option<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.next_line(left)?;
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                if value["event"] == name {
                    return Some(value);
                }
            }
        }
    }

    /// Like `wait_for_event`, but panics with everything printed so far.
    pub fn expect_event(&mut self, name: &str, limit: Duration) -> Value {
        match self.wait_for_event(name, limit) {
            Some(event) => event,
            None => panic!(
                "no {name:?} event within {limit:?}\n{}",
                self.report_so_far()
            ),
        }
    }

    /// Type keys on siphon's stdin ("H" hold/resume, "h" hang up, "a"
    /// answer, "d" decline, "q" quit).
    pub fn keys(&mut self, keys: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin
            .write_all(keys.as_bytes())
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("write {keys:?} to siphon's stdin: {e}"));
    }

    /// Close siphon's stdin (end of keys).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Ctrl-C.
    pub fn interrupt(&self) {
        signal_pid(self.child.id(), "INT");
    }

    /// SIGTERM.
    pub fn terminate(&self) {
        signal_pid(self.child.id(), "TERM");
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stdout lines read so far.
    pub fn stdout_so_far(&self) -> &[String] {
        &self.seen
    }

    /// The JSON events read so far.
    pub fn events_so_far(&self) -> Vec<Value> {
        json_events(&self.seen)
    }

    pub fn report_so_far(&mut self) -> String {
        let state = match self.child.try_wait() {
            Ok(Some(status)) => format!("exited with {status}"),
            _ => "still running".to_string(),
        };
        format!(
            "siphon {}\n({state} after {:?})\n--- stdout so far:\n{}\n--- stderr so far:\n{}",
            self.args.join(" "),
            self.started.elapsed(),
            self.seen.join("\n"),
            self.stderr.lock().unwrap().trim()
        )
    }

    /// Wait at most `limit` for siphon to exit (killed after that), then
    /// collect the rest of its output.
    pub fn wait(mut self, limit: Duration) -> CallOutcome {
        let status = wait_timeout(&mut self.child, limit);
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let elapsed = self.started.elapsed();
        self.stdin = None;
        // The reader thread ends at EOF, which follows the exit.
        while self.next_line(Duration::from_millis(500)).is_some() {}
        thread::sleep(Duration::from_millis(50));
        CallOutcome {
            status,
            args: std::mem::take(&mut self.args),
            stdout_lines: std::mem::take(&mut self.seen),
            stderr: self.stderr.lock().unwrap().clone(),
            elapsed,
        }
    }

    /// SIGTERM, then `wait(limit)`.
    pub fn stop(self, limit: Duration) -> CallOutcome {
        self.terminate();
        self.wait(limit)
    }
}

impl Drop for SiphonChild {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Test sound
// ---------------------------------------------------------------------------

/// Write a mono 16-bit PCM WAV file: a sine of `hz` at half scale, `secs`
/// long, at `rate` samples per second.
pub fn write_tone_wav(path: &Path, hz: f64, secs: f64, rate: u32) {
    let samples = (secs * f64::from(rate)) as u32;
    let data_len = samples * 2;
    let mut bytes = Vec::with_capacity(44 + data_len as usize);
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
    bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
    bytes.extend_from_slice(&rate.to_le_bytes());
    bytes.extend_from_slice(&(rate * 2).to_le_bytes());
    bytes.extend_from_slice(&2u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for n in 0..samples {
        let t = f64::from(n) / f64::from(rate);
        let v = (16384.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16;
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// How much of the signal's power is at `hz`: 1.0 for a pure tone at `hz`,
/// near 0 for silence or another tone. Goertzel over 100 ms blocks (10 Hz
/// bins), median over the blocks; `samples` mono.
pub fn tone_ratio(samples: &[i16], rate: u32, hz: f64) -> f64 {
    let block = (rate / 10) as usize;
    if block == 0 || samples.len() < block {
        return 0.0;
    }
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * hz / f64::from(rate)).cos();
    let mut ratios: Vec<f64> = samples
        .chunks_exact(block)
        .map(|chunk| {
            let (mut s1, mut s2, mut energy) = (0.0f64, 0.0f64, 0.0f64);
            for &x in chunk {
                let x = f64::from(x);
                energy += x * x;
                let s0 = x + coeff * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
            if energy <= 0.0 {
                0.0
            } else {
                2.0 * power / (block as f64 * energy)
            }
        })
        .collect();
    ratios.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    ratios[ratios.len() / 2]
}

/// The sample data of a 16-bit PCM WAV file (None if it is not one), and
/// its sample rate and channel count.
pub fn read_wav_pcm16(path: &Path) -> Option<(Vec<i16>, u32, u16)> {
    let bytes = fs::read(path).ok()?;
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let mut at = 12;
    let mut format = None;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().ok()?) as usize;
        let body = &bytes[at + 8..(at + 8 + len).min(bytes.len())];
        if id == b"fmt " && body.len() >= 16 {
            let channels = u16::from_le_bytes([body[2], body[3]]);
            let rate = u32::from_le_bytes(body[4..8].try_into().ok()?);
            let bits = u16::from_le_bytes([body[14], body[15]]);
            if bits != 16 {
                return None;
            }
            format = Some((rate, channels));
        } else if id == b"data" {
            let (rate, channels) = format?;
            let samples = body
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return Some((samples, rate, channels));
        }
        at += 8 + len + (len & 1);
    }
    None
}

// ---------------------------------------------------------------------------
// baresip
// ---------------------------------------------------------------------------

/// How to set up a baresip instance.
#[derive(Debug, Clone)]
pub struct BaresipConfig {
    /// The user part of its address of record, e.g. "bob".
    pub user: String,
    /// Register at this Kamailio port with this password; None: no
    /// registration (peer to peer, `regint=0`).
    pub registrar: Option<(u16, String)>,
    /// baresip's `answermode`: "auto" (default), "manual" or "early".
    pub answer_mode: String,
}

impl BaresipConfig {
    /// An unregistered account `sip:<user>@127.0.0.1` that answers calls
    /// to `sip:<user>@127.0.0.1:<its port>` itself.
    pub fn peer_to_peer(user: &str) -> BaresipConfig {
        BaresipConfig {
            user: user.to_string(),
            registrar: None,
            answer_mode: "auto".to_string(),
        }
    }

    /// An account `sip:<user>@127.0.0.1:<kamailio port>` registered there
    /// with digest `password` (the fixture has bob/bob-secret,
    /// alice/alice-secret, carol/carol-secret).
    pub fn registered(user: &str, kamailio: &Kamailio, password: &str) -> BaresipConfig {
        BaresipConfig {
            user: user.to_string(),
            registrar: Some((kamailio.port(), password.to_string())),
            answer_mode: "auto".to_string(),
        }
    }

    pub fn answer_mode(mut self, mode: &str) -> BaresipConfig {
        self.answer_mode = mode.to_string();
        self
    }

    /// The `accounts` file line (baresip 1.0 syntax).
    pub fn account_line(&self) -> String {
        match &self.registrar {
            Some((port, password)) => format!(
                "<sip:{user}@{LOOPBACK}:{port}>;auth_pass={password};answermode={mode};regint=600\
                 ;audio_codecs=PCMU,PCMA",
                user = self.user,
                mode = self.answer_mode
            ),
            None => format!(
                "<sip:{user}@{LOOPBACK}>;regint=0;answermode={mode};audio_codecs=PCMU,PCMA",
                user = self.user,
                mode = self.answer_mode
            ),
        }
    }
}

/// A headless baresip 1.0 on 127.0.0.1: its own config folder in a temp
/// folder (config, accounts, a 440 Hz WAV it sends as its microphone),
/// `aubridge` as a null player, `sndfile` recording the audio it encodes and
/// decodes, and `ctrl_tcp` on a free port through which it is driven.
/// Stopped (SIGTERM, then SIGKILL) on drop.
pub struct Baresip {
    child: Child,
    dir: TempDir,
    config: BaresipConfig,
    sip_port: u16,
    ctrl_port: u16,
    ctrl: TcpStream,
    incoming: Receiver<Value>,
    pending: VecDeque<Value>,
    events_seen: Vec<Value>,
    next_token: u32,
}

impl Baresip {
    /// Start baresip and connect to its ctrl_tcp; at most 10 s (else
    /// panics with its log). Registration, if any, is not awaited: use
    /// `wait_registered`.
    pub fn start(config: BaresipConfig) -> Baresip {
        let mut last_failure = String::new();
        for _attempt in 0..3 {
            match Baresip::try_start(config.clone()) {
                Ok(b) => return b,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("baresip did not start:\n{last_failure}");
    }

    /// A UDP port for SIP whose TCP port and the TCP port above are also
    /// free (baresip listens on UDP and TCP, and TLS on the next port).
    fn choose_sip_port() -> u16 {
        for _ in 0..50 {
            let port = free_udp_port();
            if port < u16::MAX && tcp_port_free(port) && tcp_port_free(port + 1) {
                return port;
            }
        }
        panic!("no free SIP port for baresip");
    }

    fn try_start(config: BaresipConfig) -> Result<Baresip, String> {
        let dir = TempDir::new("baresip");
        let cfg = dir.path().join("cfg");
        let recordings = dir.path().join("recordings");
        fs::create_dir_all(&cfg).map_err(|e| e.to_string())?;
        fs::create_dir_all(&recordings).map_err(|e| e.to_string())?;
        let tone = dir.path().join("tone-440.wav");
        // aufile needs 8 kHz mono S16LE for PCMU; it stops at the end of
        // the file, so make it longer than any call here.
        write_tone_wav(&tone, 440.0, 60.0, 8000);
        let sip_port = Baresip::choose_sip_port();
        let ctrl_port = free_tcp_port();
        let config_text = format!(
            "poll_method\t\tepoll\n\
             sip_listen\t\t{LOOPBACK}:{sip_port}\n\
             net_interface\t\t{LOOPBACK}\n\
             call_local_timeout\t120\n\
             call_max_calls\t\t4\n\
             audio_player\t\taubridge,nil\n\
             audio_source\t\taufile,{tone}\n\
             audio_alert\t\taubridge,nil\n\
             audio_level\t\tno\n\
             ausrc_format\t\ts16\n\
             auplay_format\t\ts16\n\
             auenc_format\t\ts16\n\
             audec_format\t\ts16\n\
             audio_buffer\t\t20-160\n\
             rtcp_mux\t\tno\n\
             jitter_buffer_delay\t5-10\n\
             rtp_stats\t\tno\n\
             module_path\t\t/usr/lib/baresip/modules\n\
             module\t\t\tg711.so\n\
             module\t\t\taufile.so\n\
             module\t\t\taubridge.so\n\
             module\t\t\tsndfile.so\n\
             module_tmp\t\tuuid.so\n\
             module_tmp\t\taccount.so\n\
             module_app\t\tcontact.so\n\
             module_app\t\tmenu.so\n\
             module_app\t\tctrl_tcp.so\n\
             ctrl_tcp_listen\t\t{LOOPBACK}:{ctrl_port}\n\
             snd_path\t\t{recordings}\n",
            tone = tone.display(),
            recordings = recordings.display(),
        );
        fs::write(cfg.join("config"), config_text).map_err(|e| e.to_string())?;
        fs::write(cfg.join("accounts"), format!("{}\n", config.account_line()))
            .map_err(|e| e.to_string())?;
        fs::write(cfg.join("contacts"), "").map_err(|e| e.to_string())?;

        let log = dir.path().join("baresip.log");
        let log_file = fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = Command::new(find_program("baresip").ok_or("baresip is not installed")?)
            .arg("-f")
            .arg(&cfg)
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawn baresip: {e}"))?;
        let mut child = Some(child);

        let deadline = Instant::now() + Duration::from_secs(10);
        let read_log = |p: &Path| {
            fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let fail = |child: &mut Option<Child>, why: String| -> String {
            if let Some(mut c) = child.take() {
                signal_group(c.id(), "KILL");
                let _ = c.wait();
            }
            format!("{why}; baresip log:\n{}", read_log(&log))
        };
        loop {
            if let Ok(Some(status)) = child.as_mut().unwrap().try_wait() {
                return Err(fail(&mut child, format!("baresip exited with {status}")));
            }
            if read_log(&log).contains("baresip is ready") {
                if let Ok(stream) = TcpStream::connect_timeout(
                    &std::net::SocketAddr::from(([127, 0, 0, 1], ctrl_port)),
                    Duration::from_secs(1),
                ) {
                    let incoming = netstring_reader(stream.try_clone().map_err(|e| e.to_string())?);
                    return Ok(Baresip {
                        child: child.take().unwrap(),
                        dir,
                        config,
                        sip_port,
                        ctrl_port,
                        ctrl: stream,
                        incoming,
                        pending: VecDeque::new(),
                        events_seen: Vec::new(),
                        next_token: 1,
                    });
                }
            }
            if Instant::now() >= deadline {
                return Err(fail(
                    &mut child,
                    "baresip not ready (ctrl_tcp) within 10 s".to_string(),
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn sip_port(&self) -> u16 {
        self.sip_port
    }

    pub fn ctrl_port(&self) -> u16 {
        self.ctrl_port
    }

    /// Its address for peer-to-peer calls: sip:<user>@127.0.0.1:<sip port>.
    pub fn direct_uri(&self) -> String {
        format!("sip:{}@{LOOPBACK}:{}", self.config.user, self.sip_port)
    }

    pub fn config(&self) -> &BaresipConfig {
        &self.config
    }

    /// Everything baresip printed so far.
    pub fn log(&self) -> String {
        fs::read(self.dir.path().join("baresip.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The WAV files `sndfile` wrote: `*-enc.wav` (what it sent) and
    /// `*-dec.wav` (what it received), one pair per call.
    pub fn recordings(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(self.dir.path().join("recordings"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        files
    }

    /// Send a ctrl_tcp command and wait (at most 5 s) for its response:
    /// `{"response":true,"ok":..,"data":..,"token":..}`. Events that arrive
    /// meanwhile are kept for `wait_event`.
    pub fn command(&mut self, command: &str, params: Option<&str>) -> Result<Value, String> {
        let token = format!("t{}", self.next_token);
        self.next_token += 1;
        let mut request = json!({"command": command, "token": token});
        if let Some(p) = params {
            request["params"] = Value::String(p.to_string());
        }
        let body = request.to_string();
        let frame = format!("{}:{},", body.len(), body);
        self.ctrl
            .write_all(frame.as_bytes())
            .map_err(|e| format!("ctrl_tcp write: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or_else(|| format!("no response to {body} within 5 s"))?;
            match self.incoming.recv_timeout(left) {
                Ok(msg) if msg["response"] == true && msg["token"] == token.as_str() => {
                    return Ok(msg);
                }
                Ok(msg) if msg["event"] == true => {
                    self.events_seen.push(msg.clone());
                    self.pending.push_back(msg);
                }
                Ok(_) => {}
                Err(_) => return Err(format!("no response to {body} within 5 s")),
            }
        }
    }

    /// `dial <uri>`; Err unless baresip accepted the command.
    pub fn dial(&mut self, uri: &str) -> Result<(), String> {
        assert!(
            uri.contains("@127."),
            "baresip dials loopback only, not {uri}"
        );
        let response = self.command("dial", Some(uri))?;
        if response["ok"] == true {
            Ok(())
        } else {
            Err(format!("dial {uri}: {response}"))
        }
    }

    /// `hangup` (the current call).
    pub fn hangup(&mut self) -> Result<(), String> {
        let response = self.command("hangup", None)?;
        if response["ok"] == true {
            Ok(())
        } else {
            Err(format!("hangup: {response}"))
        }
    }

    /// `accept` (answer the incoming call, for answer_mode "manual").
    pub fn accept(&mut self) -> Result<(), String> {
        let response = self.command("accept", None)?;
        if response["ok"] == true {
            Ok(())
        } else {
            Err(format!("accept: {response}"))
        }
    }

    /// `listcalls`: the text baresip shows for its calls.
    pub fn list_calls(&mut self) -> Result<String, String> {
        let response = self.command("listcalls", None)?;
        Ok(response["data"].as_str().unwrap_or_default().to_string())
    }

    /// Wait at most `limit` for a ctrl_tcp event of `kind` (e.g.
    /// "CALL_INCOMING", "CALL_ESTABLISHED", "CALL_CLOSED", "REGISTER_OK");
    /// events of other kinds read meanwhile are skipped. The event's "id"
    /// is the call's SIP Call-ID.
    pub fn wait_event(&mut self, kind: &str, limit: Duration) -> Option<Value> {
        while let Some(event) = self.pending.pop_front() {
            if event["type"] == kind {
                return Some(event);
            }
        }
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.incoming.recv_timeout(left) {
                Ok(msg) if msg["event"] == true => {
                    self.events_seen.push(msg.clone());
                    if msg["type"] == kind {
                        return Some(msg);
                    }
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// Every ctrl_tcp event read so far.
    pub fn events_seen(&self) -> &[Value] {
        &self.events_seen
    }

    /// Wait at most `limit` until Kamailio's location table binds this
    /// baresip's user to its SIP port (polling `kamcmd ul.dump`).
    pub fn wait_registered(&self, kamailio: &Kamailio, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let needle = format!("@{LOOPBACK}:{}", self.sip_port);
        loop {
            if kamailio
                .bindings(&self.config.user)
                .iter()
                .any(|b| b.contains(&needle))
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// A readable account for assertion messages.
    pub fn report(&self) -> String {
        let events: Vec<String> = self.events_seen.iter().map(|e| e.to_string()).collect();
        format!(
            "baresip ({}) sip 127.0.0.1:{} ctrl_tcp 127.0.0.1:{}\n--- ctrl_tcp events:\n{}\n\
             --- log:\n{}",
            self.config.account_line(),
            self.sip_port,
            self.ctrl_port,
            events.join("\n"),
            self.log()
        )
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.ctrl.shutdown(std::net::Shutdown::Both);
        if let Ok(None) = self.child.try_wait() {
            signal_group(self.child.id(), "TERM");
            if wait_timeout(&mut self.child, Duration::from_secs(3)).is_none() {
                signal_group(self.child.id(), "KILL");
                let _ = wait_timeout(&mut self.child, Duration::from_secs(5));
            }
        }
        signal_group(self.child.id(), "KILL");
    }
}

/// Read netstring-framed JSON (`<len>:<json>,`) from `stream` on a thread.
fn netstring_reader(stream: TcpStream) -> Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        loop {
            let mut len = Vec::new();
            if reader.read_until(b':', &mut len).unwrap_or(0) == 0 {
                break;
            }
            len.pop();
            let Some(n) = std::str::from_utf8(&len)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
            else {
                break;
            };
            let mut body = vec![0u8; n + 1];
            if reader.read_exact(&mut body).is_err() {
                break;
            }
            body.pop(); // the ','
            if let Ok(value) = serde_json::from_slice::<Value>(&body) {
                if tx.send(value).is_err() {
                    break;
                }
            }
        }
    });
    rx
}

// ---------------------------------------------------------------------------
// Self-checks of the helpers (no peers needed)
// ---------------------------------------------------------------------------

/// Checks of the pure helpers, run by `tests/baresip_smoke.rs`.
pub fn self_check() {
    // RFC 2617 3.5 example (qop=auth).
    let credentials = r#"Digest username="Mufasa", realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth,
        nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1",
        opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
    check_digest(credentials, "GET", "Circle Of Life").expect("RFC 2617 example");
    assert!(check_digest(credentials, "GET", "wrong").is_err());
    assert!(check_digest(credentials, "POST", "Circle Of Life").is_err());

    let log = "\n----------------------------------------------- 2026-01-01 00:00:00.000000\n\
               UDP message received [10] bytes :\n\n\
               INVITE sip:a@127.0.0.1 SIP/2.0\nCall-ID: x\nContent-Length: 3\n\nv=0\n\n\
               ----------------------------------------------- 2026-01-01 00:00:00.000001\n\
               UDP message sent (10 bytes):\n\n\
               SIP/2.0 200 OK\nCall-ID: x\n\n";
    let messages = logged_messages(log);
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[0].method(), Some("INVITE"));
    assert!(!messages[0].sent);
    assert_eq!(messages[0].header("call-id"), Some("x"));
    assert_eq!(messages[0].body(), "v=0");
    assert_eq!(messages[1].status(), Some(200));
    assert!(messages[1].sent);

    let dir = TempDir::new("wav-check");
    let path = dir.path().join("tone.wav");
    write_tone_wav(&path, 440.0, 1.0, 8000);
    let (samples, rate, channels) = read_wav_pcm16(&path).expect("our own WAV");
    assert_eq!((samples.len(), rate, channels), (8000, 8000, 1));
    assert!(tone_ratio(&samples, rate, 440.0) > 0.9);
    assert!(tone_ratio(&samples, rate, 1000.0) < 0.05);
    assert!(tone_ratio(&[0; 8000], 8000, 440.0) < 0.05);
}
