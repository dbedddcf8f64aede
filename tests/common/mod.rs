//! Test harness for running siphon against real SIP peers (Kamailio, SIPp).
//!
//! Every socket and every peer binds 127.0.0.1; every wait is bounded; every
//! process started here is stopped when its handle is dropped, so a failing
//! test cannot leave peers behind or hang.
//!
//! Use from an integration test with `mod common;`.

// Each test binary uses a different part of the harness.
#![allow(dead_code)]

pub mod calls;
pub mod media;

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The loopback address every peer and every test socket uses.
pub const LOOPBACK: &str = "127.0.0.1";

// ---------------------------------------------------------------------------
// Paths and programs
// ---------------------------------------------------------------------------

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `sip-fixtures/` in the repository.
pub fn fixtures_dir() -> PathBuf {
    repo_root().join("sip-fixtures")
}

/// Full path of a SIPp scenario in `sip-fixtures/sipp/` (e.g. `"reg_403.xml"`
/// or `"selftest/uac_403.xml"`).
pub fn sipp_scenario(name: &str) -> PathBuf {
    let path = fixtures_dir().join("sipp").join(name);
    assert!(path.is_file(), "no SIPp scenario {}", path.display());
    path
}

/// Where to look for a program: `$PATH`, then the sbin folders (Debian puts
/// `kamailio` and `kamcmd` in /usr/sbin, which a non-root PATH may lack).
pub fn find_program(binary: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
}

/// [`require_peer`] for each of `binaries`: true when all are installed.
pub fn require_peers(binaries: &[&str]) -> bool {
    binaries.iter().all(|b| require_peer(b))
}

/// True if `binary` is installed. If it is missing: under CI (`CI=true`) this
/// panics, since a missing peer must fail the run; elsewhere it prints a loud
/// `SKIPPED` line to stderr and returns false, and the test should return.
pub fn require_peer(binary: &str) -> bool {
    if find_program(binary).is_some() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "peer program `{binary}` is not installed, and under CI (CI=true) a missing peer \
             fails the test: run scripts/install-deps.sh"
        );
    }
    eprintln!();
    eprintln!("************************************************************");
    eprintln!("SKIPPED: {binary} not installed (run scripts/install-deps.sh)");
    eprintln!("************************************************************");
    false
}

fn program(binary: &str) -> PathBuf {
    find_program(binary).unwrap_or_else(|| panic!("`{binary}` is not installed"))
}

/// A `Command` for the siphon binary built by cargo for this test run, or for
/// the program named by `SIPHON_TEST_BIN` when that is set (to run these tests
/// against another build, e.g. a release binary).
pub fn siphon() -> Command {
    match std::env::var_os("SIPHON_TEST_BIN") {
        Some(path) if !path.is_empty() => Command::new(path),
        _ => Command::new(env!("CARGO_BIN_EXE_siphon")),
    }
}

// ---------------------------------------------------------------------------
// Ports and temporary folders
// ---------------------------------------------------------------------------

fn handed_out_ports() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A UDP port on 127.0.0.1 that was free a moment ago (bind port 0, read the
/// port, close). Within one test process no port is handed out twice, so tests
/// running in parallel threads get distinct ports.
pub fn free_udp_port() -> u16 {
    for _ in 0..100 {
        let socket = UdpSocket::bind((LOOPBACK, 0)).expect("bind 127.0.0.1:0");
        let port = socket.local_addr().expect("local_addr").port();
        drop(socket);
        if handed_out_ports().lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("could not find a free UDP port on 127.0.0.1 in 100 tries");
}

/// `n` distinct free UDP ports on 127.0.0.1.
pub fn free_udp_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_udp_port()).collect()
}

/// Whether something is bound to UDP 127.0.0.1:`port` right now.
pub fn udp_port_in_use(port: u16) -> bool {
    match UdpSocket::bind((LOOPBACK, port)) {
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::AddrInUse,
    }
}

/// A fresh, empty folder under the system temp folder, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "siphon-{prefix}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("create {}: {e}", to.display()));
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("copy {}: {e}", entry.path().display()));
        }
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// Send `signal` (e.g. "TERM", "KILL") to the process group `pgid`, which a
/// child started with `process_group(0)` leads.
fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new(program("kill"))
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Wait for `child` at most `limit`.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(_) => return None,
        }
    }
}

/// Stop a child that leads its own process group: SIGTERM to the group, up to
/// `grace` for it to exit, then SIGKILL to the group; reaps the child.
fn stop_group(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        // The leader is gone; make sure no worker of its group is left.
        signal_group(child.id(), "KILL");
        return Some(status);
    }
    signal_group(child.id(), "TERM");
    let status = wait_timeout(child, grace);
    signal_group(child.id(), "KILL");
    status.or_else(|| wait_timeout(child, Duration::from_secs(5)))
}

/// Run a command to completion, at most `limit` (killed after that).
/// Returns (exit status if it finished, stdout, stderr).
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> (Option<ExitStatus>, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let out = collect_in_thread(child.stdout.take().expect("stdout"));
    let err = collect_in_thread(child.stderr.take().expect("stderr"));
    let status = wait_timeout(&mut child, limit);
    if status.is_none() {
        signal_group(child.id(), "KILL");
        let _ = child.wait();
    }
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    (status, stdout, stderr)
}

fn collect_in_thread<R: Read + Send + 'static>(mut reader: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = reader.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

// ---------------------------------------------------------------------------
// A minimal SIP-over-UDP client for probes
// ---------------------------------------------------------------------------

/// Send one SIP request over UDP from an ephemeral 127.0.0.1 port and wait at
/// most `limit` for a final (non-1xx) response. `{local_port}` in the request
/// is replaced by the sending socket's port.
pub fn sip_transaction(target_port: u16, request: &str, limit: Duration) -> Option<String> {
    let socket = UdpSocket::bind((LOOPBACK, 0)).ok()?;
    let local_port = socket.local_addr().ok()?.port();
    let request = request.replace("{local_port}", &local_port.to_string());
    socket
        .send_to(request.as_bytes(), (LOOPBACK, target_port))
        .ok()?;
    let deadline = Instant::now() + limit;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        match socket.recv_from(&mut buf) {
            Ok((n, _)) => {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                if text.starts_with("SIP/2.0 1") {
                    continue;
                }
                return Some(text);
            }
            Err(_) => return None,
        }
    }
}

/// An OPTIONS request to `127.0.0.1:port` itself (no user part).
pub fn options_request(port: u16, seq: u32) -> String {
    format!(
        "OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {LOOPBACK}:{{local_port}};branch=z9hG4bK-probe-{seq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{LOOPBACK}>;tag=probe{seq}\r\n\
         To: <sip:{LOOPBACK}:{port}>\r\n\
         Call-ID: probe-{seq}-{}@{LOOPBACK}\r\n\
         CSeq: {seq} OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        std::process::id()
    )
}

/// The status code of a SIP response ("SIP/2.0 200 OK" -> 200).
pub fn status_code(response: &str) -> Option<u16> {
    response.split_whitespace().nth(1)?.parse().ok()
}

/// The value of the first header `name` (case-insensitive) of a SIP message.
pub fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message
        .lines()
        .take_while(|l| !l.is_empty())
        .skip(1)
        .find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
}

// ---------------------------------------------------------------------------
// Kamailio
// ---------------------------------------------------------------------------

/// A Kamailio registrar/proxy (`sip-fixtures/kamailio/kamailio.cfg`) on a free
/// 127.0.0.1 UDP port, with its own copy of the db_text tables, control
/// socket, pid file and runtime folder in a temp folder. Stopped on drop.
pub struct Kamailio {
    child: Child,
    port: u16,
    ctl: String,
    log: PathBuf,
    dir: TempDir,
}

impl Kamailio {
    /// Start Kamailio with digest algorithm `"MD5"` or `"SHA-256"`; returns
    /// once it answers an OPTIONS (at most 10 s, else panics with its log).
    pub fn start(auth_algorithm: &str) -> Kamailio {
        assert!(
            matches!(auth_algorithm, "MD5" | "SHA-256"),
            "Kamailio 5.6 supports MD5 and SHA-256, not {auth_algorithm:?}"
        );
        let mut last_failure = String::new();
        // A port taken between choosing it and Kamailio binding it: try again.
        for _attempt in 0..3 {
            match Kamailio::try_start(auth_algorithm) {
                Ok(k) => return k,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("Kamailio did not start:\n{last_failure}");
    }

    fn try_start(auth_algorithm: &str) -> Result<Kamailio, String> {
        let dir = TempDir::new("kamailio");
        let db = dir.path().join("db");
        copy_dir(&fixtures_dir().join("kamailio").join("db"), &db);
        let port = free_udp_port();
        let ctl = format!("unix:{}", dir.path().join("kamailio.ctl").display());
        let log = dir.path().join("kamailio.log");
        let log_file = fs::File::create(&log).expect("create kamailio.log");
        let child = Command::new(program("kamailio"))
            .arg("-f")
            .arg(fixtures_dir().join("kamailio").join("kamailio.cfg"))
            .args(["-DD", "-E", "-m", "32", "-M", "8"])
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .arg("-Y")
            .arg(dir.path())
            .arg("-w")
            .arg(dir.path())
            .args(["-A", &format!("SIP_PORT={port}")])
            .args(["-A", &format!("CTL_SOCK=\"{ctl}\"")])
            .args(["-A", &format!("DB_URL=\"text://{}\"", db.display())])
            .args(["-A", &format!("AUTH_ALGORITHM=\"{auth_algorithm}\"")])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log file"))
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawn kamailio: {e}"))?;
        let mut kamailio = Kamailio {
            child,
            port,
            ctl,
            log,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seq = 0;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = kamailio.child.try_wait() {
                return Err(format!(
                    "kamailio exited with {status} during start-up; its log:\n{}",
                    kamailio.log()
                ));
            }
            seq += 1;
            let probe = options_request(port, seq);
            if let Some(response) = sip_transaction(port, &probe, Duration::from_millis(200)) {
                if status_code(&response) == Some(200) {
                    return Ok(kamailio);
                }
                return Err(format!("OPTIONS probe got:\n{response}"));
            }
        }
        Err(format!(
            "kamailio did not answer OPTIONS on {LOOPBACK}:{port} within 10 s; its log:\n{}",
            kamailio.log()
        ))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// "127.0.0.1:PORT"
    pub fn addr(&self) -> String {
        format!("{LOOPBACK}:{}", self.port)
    }

    /// The binrpc control socket, e.g. "unix:/tmp/.../kamailio.ctl".
    pub fn ctl_socket(&self) -> &str {
        &self.ctl
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything Kamailio has logged so far.
    pub fn log(&self) -> String {
        read_lossy(&self.log)
    }

    /// Run `kamcmd -s <ctl> <args>` (at most 5 s); panics if it fails.
    pub fn kamcmd(&self, args: &[&str]) -> String {
        let (status, stdout, stderr) = run_bounded(
            Command::new(program("kamcmd"))
                .args(["-s", &self.ctl])
                .args(args),
            Duration::from_secs(5),
        );
        match status {
            Some(s) if s.success() => stdout,
            _ => panic!("kamcmd {args:?} failed ({status:?}): {stdout}{stderr}"),
        }
    }

    /// `kamcmd ul.dump`: the registrar's location table as text.
    pub fn ul_dump(&self) -> String {
        self.kamcmd(&["ul.dump"])
    }

    /// The contact addresses bound to `aor` (the user name: usrloc runs with
    /// use_domain=0), from `ul_dump`.
    /// Waits (bounded) until `aor` has no binding: Kamailio can answer an unregistration
    /// a moment before every worker process sees the removal.
    pub fn bindings_gone(&self, aor: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.bindings(aor).is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn bindings(&self, aor: &str) -> Vec<String> {
        parse_bindings(&self.ul_dump(), aor)
    }
}

/// The `Address:` lines under `AoR: <aor>` in a `kamcmd ul.dump` output.
pub fn parse_bindings(dump: &str, aor: &str) -> Vec<String> {
    let mut current: Option<&str> = None;
    let mut out = Vec::new();
    for line in dump.lines() {
        let line = line.trim();
        if let Some(a) = line.strip_prefix("AoR:") {
            current = Some(a.trim());
        } else if let Some(address) = line.strip_prefix("Address:") {
            if current == Some(aor) {
                out.push(address.trim().to_string());
            }
        }
    }
    out
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        if stop_group(&mut self.child, Duration::from_secs(5)).is_none() {
            eprintln!("warning: kamailio (pid {}) did not exit", self.child.id());
        }
    }
}

// ---------------------------------------------------------------------------
// SIPp
// ---------------------------------------------------------------------------

/// How to run one SIPp scenario. Always: `-i 127.0.0.1 -mi 127.0.0.1`, its own
/// free `-p` and `-cp` ports, `-m 1`, `-nostdin`, `-timeout <T> -timeout_error`,
/// no BYE on an aborted call, and all logs in a temp working folder.
pub struct SippCommand {
    scenario: PathBuf,
    remote: Option<String>,
    args: Vec<String>,
    timeout: Duration,
    port: Option<u16>,
}

impl SippCommand {
    /// SIPp as a server (UAS) running `sip-fixtures/sipp/<scenario>`.
    pub fn uas(scenario: &str) -> SippCommand {
        SippCommand {
            scenario: sipp_scenario(scenario),
            remote: None,
            args: Vec::new(),
            timeout: Duration::from_secs(30),
            port: None,
        }
    }

    /// SIPp as a client (UAC) running `sip-fixtures/sipp/<scenario>` against
    /// `remote` ("127.0.0.1:PORT").
    pub fn uac(scenario: &str, remote: &str) -> SippCommand {
        assert!(
            remote.starts_with("127.") || remote.starts_with("[::1]"),
            "SIPp targets loopback only, not {remote}"
        );
        SippCommand {
            remote: Some(remote.to_string()),
            ..SippCommand::uas(scenario)
        }
    }

    /// Extra SIPp arguments (e.g. `-au alice`, `-key expires 60`, `-nr`).
    pub fn args(mut self, args: &[&str]) -> SippCommand {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// SIPp's own global timeout (`-timeout`); the harness waits a little
    /// longer than this before killing it.
    pub fn timeout(mut self, timeout: Duration) -> SippCommand {
        self.timeout = timeout;
        self
    }

    /// Use this local port (`-p`) instead of a free one.
    pub fn port(mut self, port: u16) -> SippCommand {
        self.port = Some(port);
        self
    }

    /// Start SIPp and return once its SIP port is bound (at most 5 s).
    pub fn spawn(self) -> Sipp {
        let mut last_failure = String::new();
        for _attempt in 0..3 {
            match self.try_spawn() {
                Ok(sipp) => return sipp,
                Err(failure) => last_failure = failure,
            }
            if self.port.is_some() {
                break;
            }
        }
        panic!("SIPp did not start:\n{last_failure}");
    }

    /// Start SIPp and wait for it to finish.
    pub fn run(self) -> SippOutcome {
        self.spawn().wait()
    }

    fn try_spawn(&self) -> Result<Sipp, String> {
        let dir = TempDir::new("sipp");
        let port = self.port.unwrap_or_else(free_udp_port);
        let control_port = free_udp_port();
        let stdout = fs::File::create(dir.path().join("stdout.txt")).expect("create stdout.txt");
        let stderr = fs::File::create(dir.path().join("stderr.txt")).expect("create stderr.txt");
        let secs = self.timeout.as_secs().max(1);
        let mut cmd = Command::new(program("sipp"));
        if let Some(remote) = &self.remote {
            cmd.arg(remote);
        }
        cmd.arg("-sf")
            .arg(&self.scenario)
            .args(["-i", LOOPBACK, "-mi", LOOPBACK])
            .args(["-p", &port.to_string(), "-cp", &control_port.to_string()])
            .args(["-m", "1", "-nostdin"])
            .args(["-timeout", &format!("{secs}s"), "-timeout_error"])
            .args(["-default_behaviors", "all,-bye"])
            .args(["-trace_err", "-trace_msg", "-trace_logs"])
            .args(&self.args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        let child = cmd.spawn().map_err(|e| format!("spawn sipp: {e}"))?;
        let mut sipp = Sipp {
            child: Some(child),
            port,
            dir,
            wait_limit: Duration::from_secs(secs + 10),
            command: format!("{cmd:?}"),
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let child = sipp.child.as_mut().expect("child");
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "sipp exited with {status} during start-up:\n{}",
                    sipp.collect(Some(status)).report()
                ));
            }
            if udp_port_in_use(port) {
                return Ok(sipp);
            }
            thread::sleep(Duration::from_millis(20));
        }
        Err(format!("sipp did not bind {LOOPBACK}:{port} within 5 s"))
    }
}

/// A running SIPp. Killed on drop if not waited for.
pub struct Sipp {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    wait_limit: Duration,
    command: String,
}

impl Sipp {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// "127.0.0.1:PORT"
    pub fn addr(&self) -> String {
        format!("{LOOPBACK}:{}", self.port)
    }

    /// Wait for SIPp to end (bounded by its own -timeout plus 10 s; killed
    /// after that) and collect its exit status and logs.
    pub fn wait(self) -> SippOutcome {
        let limit = self.wait_limit;
        self.wait_at_most(limit)
    }

    /// Like `wait`, but kill SIPp if it has not ended within `limit` (the
    /// outcome's status is then None). For when the other side already failed
    /// and SIPp would only sit out its timeout.
    pub fn wait_at_most(mut self, limit: Duration) -> SippOutcome {
        let mut child = self.child.take().expect("child");
        let status = wait_timeout(&mut child, limit.min(self.wait_limit));
        if status.is_none() {
            signal_group(child.id(), "KILL");
            let _ = child.wait();
        }
        self.collect(status)
    }

    fn collect(&self, status: Option<ExitStatus>) -> SippOutcome {
        let mut outcome = SippOutcome {
            status,
            command: self.command.clone(),
            stdout: read_lossy(&self.dir.path().join("stdout.txt")),
            stderr: read_lossy(&self.dir.path().join("stderr.txt")),
            error_log: String::new(),
            messages: String::new(),
            logs: String::new(),
        };
        if let Ok(entries) = fs::read_dir(self.dir.path()) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let text = read_lossy(&entry.path());
                if name.ends_with("_errors.log") {
                    outcome.error_log.push_str(&text);
                } else if name.ends_with("_messages.log") {
                    outcome.messages.push_str(&text);
                } else if name.ends_with("_logs.log") {
                    outcome.logs.push_str(&text);
                }
            }
        }
        outcome
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            stop_group(child, Duration::from_secs(2));
        }
    }
}

/// What a SIPp run left: exit status (None if it had to be killed) and logs.
#[derive(Debug)]
pub struct SippOutcome {
    pub status: Option<ExitStatus>,
    pub command: String,
    pub stdout: String,
    pub stderr: String,
    /// `<scenario>_<pid>_errors.log`: why calls failed.
    pub error_log: String,
    /// `<scenario>_<pid>_messages.log`: every SIP message sent and received.
    pub messages: String,
    /// `<scenario>_<pid>_logs.log`: the scenario's `<log>` actions.
    pub logs: String,
}

impl SippOutcome {
    /// Exit code 0: the scenario ran to its end (one call, successful).
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// A readable account for assertion messages.
    pub fn report(&self) -> String {
        let tail = |s: &str, n: usize| {
            let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        let status = match self.status {
            Some(s) => s.to_string(),
            None => "none: still running at the end of the wait, killed".to_string(),
        };
        format!(
            "SIPp exit status: {status}\ncommand: {}\n--- error log:\n{}\n--- scenario log:\n{}\n\
             --- stderr:\n{}\n--- stdout (tail):\n{}\n--- messages:\n{}",
            self.command,
            self.error_log.trim(),
            self.logs.trim(),
            tail(&self.stderr, 30),
            tail(&self.stdout, 30),
            self.messages.trim()
        )
    }
}

// ---------------------------------------------------------------------------
// siphon as a child process with line-by-line stdout
// ---------------------------------------------------------------------------

/// A running siphon with stdout read line by line on a thread (so reads can
/// time out) and stderr collected. Killed on drop.
pub struct SiphonProcess {
    child: Child,
    lines: Receiver<(Instant, String)>,
    stderr: Arc<Mutex<String>>,
    stdout_seen: Vec<String>,
    stdout_times: Vec<Duration>,
    started: Instant,
}

/// How a `SiphonProcess` ended.
#[derive(Debug)]
pub struct SiphonOutcome {
    /// None if it did not exit in time and was killed.
    pub status: Option<ExitStatus>,
    /// Every stdout line, in order.
    pub stdout_lines: Vec<String>,
    /// When each stdout line was read, from the start of the process.
    pub stdout_times: Vec<Duration>,
    pub stderr: String,
    /// From start to exit (or to the kill).
    pub elapsed: Duration,
}

impl SiphonOutcome {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// The stdout lines that parse as JSON objects.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.stdout_lines
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.is_object())
            .collect()
    }

    /// The JSON events whose "event" field is `name`.
    pub fn events_named(&self, name: &str) -> Vec<serde_json::Value> {
        self.timed_events_named(name)
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    /// The JSON events whose "event" field is `name`, with the time each was
    /// printed (from the start of the process).
    pub fn timed_events_named(&self, name: &str) -> Vec<(Duration, serde_json::Value)> {
        self.stdout_lines
            .iter()
            .zip(&self.stdout_times)
            .filter_map(|(l, t)| Some((*t, serde_json::from_str::<serde_json::Value>(l).ok()?)))
            .filter(|(_, e)| e["event"] == name)
            .collect()
    }

    pub fn report(&self) -> String {
        format!(
            "siphon exit: {:?} after {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.status.map(|s| s.code()),
            self.elapsed,
            self.stdout_lines.join("\n"),
            self.stderr.trim()
        )
    }
}

/// Reads a child's stdout line by line on one thread (with arrival times) and collects its
/// stderr on another, so that reads can time out and nothing blocks the child.
pub fn watch_output(child: &mut Child) -> (Receiver<(Instant, String)>, Arc<Mutex<String>>) {
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout piped");
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&stderr);
    let mut err = child.stderr.take().expect("stderr piped");
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (lines, stderr)
}

impl SiphonProcess {
    /// Start `siphon <args>`.
    pub fn spawn(args: &[&str]) -> SiphonProcess {
        SiphonProcess::spawn_with_env(args, &[])
    }

    /// Start `siphon <args>` with extra environment variables.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> SiphonProcess {
        let mut command = siphon();
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn siphon {args:?}: {e}"));
        let (lines, stderr) = watch_output(&mut child);
        SiphonProcess {
            child,
            lines,
            stderr,
            stdout_seen: Vec::new(),
            stdout_times: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Sends a signal (`TERM`, `INT`, ...) to siphon, as a person or service manager would.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// The next stdout line, waiting at most `limit`.
    pub fn next_line(&mut self, limit: Duration) -> Option<String> {
        match self.lines.recv_timeout(limit) {
            Ok((at, line)) => {
                self.stdout_seen.push(line.clone());
                self.stdout_times
                    .push(at.saturating_duration_since(self.started));
                Some(line)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Read stdout until a JSON line with `"event": name` (returned), waiting at
    /// most `limit` in all. None on timeout or when stdout closes first.
    pub fn wait_for_event(&mut self, name: &str, limit: Duration) -> Option<serde_json::Value> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.next_line(left)?;
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                if value["event"] == name {
                    return Some(value);
                }
            }
        }
    }

    /// Stdout lines read so far.
    pub fn stdout_so_far(&self) -> &[String] {
        &self.stdout_seen
    }

    /// Stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait at most `limit` for siphon to exit (killed after that), then
    /// collect the rest of its output.
    pub fn wait(mut self, limit: Duration) -> SiphonOutcome {
        let status = wait_timeout(&mut self.child, limit);
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let elapsed = self.started.elapsed();
        // The reader thread ends at EOF, which follows the exit.
        while let Some(line) = self.next_line(Duration::from_millis(500)) {
            let _ = line;
        }
        // Give the stderr thread a moment to drain.
        thread::sleep(Duration::from_millis(50));
        SiphonOutcome {
            status,
            stdout_lines: std::mem::take(&mut self.stdout_seen),
            stdout_times: std::mem::take(&mut self.stdout_times),
            stderr: self.stderr_so_far(),
            elapsed,
        }
    }
}

impl Drop for SiphonProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
