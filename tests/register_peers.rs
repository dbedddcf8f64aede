//! `siphon register` against real registrars: Kamailio (MD5 and SHA-256
//! digest) and SIPp scenarios that challenge, refuse, shorten or drop.
//!
//! The command line contract under test:
//!
//! ```text
//! siphon [--json] register --user sip:alice@HOST[:PORT] --password PW
//!        [--listen IP:PORT] [--expires SECS] [--duration SECS] ...
//! ```
//!
//! `--json` prints one JSON object per line: `{"event":"registered",
//! "expires":N,"contact":"..."}`, `{"event":"registration_failed",
//! "status":403,"reason":"Forbidden"}`, `{"event":"unregistered"}`. Exit 0 on
//! success, 1 on a run-time failure (one-line reason on stderr), 2 on a usage
//! error. `--duration` keeps the registration that long, then unregisters.

mod common;

use common::{Kamailio, SiphonOutcome, SiphonProcess, SippCommand, SippOutcome};
use std::time::Duration;

/// "127.0.0.1:5060" out of "sip:alice@127.0.0.1:5060;transport=udp".
fn host_port(uri: &str) -> &str {
    let after_user = uri.rsplit_once('@').map_or(uri, |(_, h)| h);
    after_user
        .split([';', '>', '?'])
        .next()
        .unwrap_or(after_user)
}

/// Register alice with Kamailio for 3 s, checking the binding while siphon
/// runs and its removal after siphon has unregistered.
fn kamailio_register_cycle(algorithm: &str) {
    if !common::require_peers(&["kamailio", "kamcmd"]) {
        return;
    }
    let kamailio = Kamailio::start(algorithm);
    let user = format!("sip:alice@{}", kamailio.addr());
    let mut siphon = SiphonProcess::spawn(&[
        "--json",
        "register",
        "--user",
        &user,
        "--password",
        "alice-secret",
        "--listen",
        "127.0.0.1:0",
        "--expires",
        "60",
        "--duration",
        "3",
    ]);

    let Some(registered) = siphon.wait_for_event("registered", Duration::from_secs(10)) else {
        let outcome = siphon.wait(Duration::from_secs(2));
        panic!(
            "no `registered` event within 10 s ({algorithm})\n{}\n--- kamailio log:\n{}",
            outcome.report(),
            kamailio.log()
        );
    };
    assert_eq!(
        registered["expires"], 60,
        "Kamailio grants the 60 s asked for: {registered}"
    );
    let contact = registered["contact"]
        .as_str()
        .unwrap_or_else(|| panic!("`contact` is not a string: {registered}"));

    // While siphon runs, the registrar holds exactly its binding.
    let bindings = kamailio.bindings("alice");
    assert_eq!(
        bindings.len(),
        1,
        "alice's bindings while registered ({algorithm}):\n{}",
        kamailio.ul_dump()
    );
    assert!(
        bindings[0].contains(host_port(contact)),
        "binding {} is not siphon's contact {contact}",
        bindings[0]
    );

    let outcome = siphon.wait(Duration::from_secs(15));
    assert_eq!(
        outcome.code(),
        Some(0),
        "{}\n--- kamailio log:\n{}",
        outcome.report(),
        kamailio.log()
    );
    assert!(
        outcome.elapsed >= Duration::from_millis(2900),
        "--duration 3 but siphon exited after {:?}",
        outcome.elapsed
    );
    assert_eq!(
        outcome.events_named("unregistered").len(),
        1,
        "{}",
        outcome.report()
    );
    assert!(
        kamailio.bindings_gone("alice", Duration::from_secs(2)),
        "alice still bound after unregistering ({algorithm}):\n{}",
        kamailio.ul_dump()
    );
}

#[test]
fn register_with_kamailio_md5_then_unregister() {
    kamailio_register_cycle("MD5");
}

#[test]
fn register_with_kamailio_sha256_then_unregister() {
    kamailio_register_cycle("SHA-256");
}

#[test]
fn register_with_kamailio_wrong_password_fails() {
    if !common::require_peers(&["kamailio", "kamcmd"]) {
        return;
    }
    let kamailio = Kamailio::start("MD5");
    let user = format!("sip:alice@{}", kamailio.addr());
    let siphon = SiphonProcess::spawn(&[
        "--json",
        "register",
        "--user",
        &user,
        "--password",
        "not-alices-password",
        "--listen",
        "127.0.0.1:0",
        "--expires",
        "60",
        "--duration",
        "3",
    ]);
    let outcome = siphon.wait(Duration::from_secs(10));
    assert_eq!(outcome.code(), Some(1), "{}", outcome.report());
    assert!(
        outcome.elapsed < Duration::from_secs(6),
        "a refused registration should fail fast, took {:?}",
        outcome.elapsed
    );
    let failed = outcome.events_named("registration_failed");
    assert_eq!(failed.len(), 1, "{}", outcome.report());
    let status = failed[0]["status"].as_u64();
    assert!(
        matches!(status, Some(401 | 403)),
        "status {status:?} in {}",
        failed[0]
    );
    assert!(
        outcome.events_named("registered").is_empty(),
        "{}",
        outcome.report()
    );
    assert!(
        !outcome.stderr.trim().is_empty(),
        "exit 1 needs a reason on stderr"
    );
    assert!(
        kamailio.bindings("alice").is_empty(),
        "{}",
        kamailio.ul_dump()
    );
}

/// Run a SIPp registrar scenario, point `siphon register` at it, and return
/// both outcomes. `siphon_args` follow `--user ... --password ... --listen ...`.
fn against_sipp(
    scenario: &str,
    sipp_args: &[&str],
    siphon_args: &[&str],
    siphon_limit: Duration,
) -> (SiphonOutcome, SippOutcome) {
    let sipp = SippCommand::uas(scenario)
        .args(sipp_args)
        .timeout(Duration::from_secs(40))
        .spawn();
    let user = format!("sip:alice@{}", sipp.addr());
    let mut args = vec![
        "--json",
        "register",
        "--user",
        &user,
        "--password",
        "alice-secret",
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(siphon_args);
    let siphon = SiphonProcess::spawn(&args).wait(siphon_limit);
    // A well-behaved siphon has finished the scenario by the time it exits;
    // otherwise SIPp would only sit out its timeout.
    let sipp = sipp.wait_at_most(Duration::from_secs(5));
    (siphon, sipp)
}

fn both_reports(siphon: &SiphonOutcome, sipp: &SippOutcome) -> String {
    format!("{}\n=== SIPp:\n{}", siphon.report(), sipp.report())
}

#[test]
fn register_sipp_sha256_challenge() {
    if !common::require_peers(&["sipp"]) {
        return;
    }
    let (siphon, sipp) = against_sipp(
        "reg_sha256_challenge.xml",
        &[],
        &["--expires", "60", "--duration", "2"],
        Duration::from_secs(15),
    );
    let report = both_reports(&siphon, &sipp);
    assert_eq!(siphon.code(), Some(0), "{report}");
    let registered = siphon.events_named("registered");
    assert_eq!(registered.len(), 1, "{report}");
    assert_eq!(registered[0]["expires"], 60, "{report}");
    assert_eq!(siphon.events_named("unregistered").len(), 1, "{report}");
    assert!(sipp.success(), "{report}");
}

#[test]
fn register_sipp_423_interval_too_brief() {
    if !common::require_peers(&["sipp"]) {
        return;
    }
    let (siphon, sipp) = against_sipp(
        "reg_423.xml",
        &[],
        &["--expires", "60", "--duration", "2"],
        Duration::from_secs(15),
    );
    let report = both_reports(&siphon, &sipp);
    assert_eq!(siphon.code(), Some(0), "{report}");
    let registered = siphon.events_named("registered");
    assert_eq!(registered.len(), 1, "{report}");
    assert_eq!(
        registered[0]["expires"], 120,
        "granted Min-Expires: {report}"
    );
    assert_eq!(siphon.events_named("unregistered").len(), 1, "{report}");
    assert!(sipp.success(), "{report}");
}

#[test]
fn register_sipp_short_expiry_refreshes() {
    if !common::require_peers(&["sipp"]) {
        return;
    }
    let (siphon, sipp) = against_sipp(
        "reg_short_expiry.xml",
        &[],
        &["--expires", "60", "--duration", "12"],
        Duration::from_secs(30),
    );
    let report = both_reports(&siphon, &sipp);
    assert_eq!(siphon.code(), Some(0), "{report}");
    let registered = siphon.timed_events_named("registered");
    assert!(
        registered.len() >= 2,
        "a 5 s grant over 12 s needs refreshes, got {} `registered` events\n{report}",
        registered.len()
    );
    for (_, event) in &registered {
        assert_eq!(event["expires"], 5, "{event}\n{report}");
    }
    // Each refresh succeeded before the previous grant ran out.
    for pair in registered.windows(2) {
        let gap = pair[1].0.saturating_sub(pair[0].0);
        assert!(
            gap <= Duration::from_millis(5500),
            "{gap:?} between registrations granted 5 s\n{report}"
        );
    }
    assert_eq!(siphon.events_named("unregistered").len(), 1, "{report}");
    assert!(sipp.success(), "{report}");
}

#[test]
fn register_sipp_first_request_dropped_is_retransmitted() {
    if !common::require_peers(&["sipp"]) {
        return;
    }
    // -nr: see reg_drop_first.xml (SIPp would swallow the retransmission).
    let (siphon, sipp) = against_sipp(
        "reg_drop_first.xml",
        &["-nr"],
        &["--expires", "60", "--duration", "2"],
        Duration::from_secs(15),
    );
    let report = both_reports(&siphon, &sipp);
    assert_eq!(siphon.code(), Some(0), "{report}");
    assert_eq!(siphon.events_named("registered").len(), 1, "{report}");
    assert_eq!(siphon.events_named("unregistered").len(), 1, "{report}");
    assert!(sipp.success(), "{report}");
}

#[test]
fn register_sipp_403_forbidden_fails() {
    if !common::require_peers(&["sipp"]) {
        return;
    }
    let (siphon, sipp) = against_sipp(
        "reg_403.xml",
        &[],
        &["--expires", "60", "--duration", "2"],
        Duration::from_secs(10),
    );
    let report = both_reports(&siphon, &sipp);
    assert_eq!(siphon.code(), Some(1), "{report}");
    assert!(
        siphon.elapsed < Duration::from_secs(5),
        "a 403 should fail at once: {report}"
    );
    let failed = siphon.events_named("registration_failed");
    assert_eq!(failed.len(), 1, "{report}");
    assert_eq!(failed[0]["status"], 403, "{report}");
    assert_eq!(failed[0]["reason"], "Forbidden", "{report}");
    assert!(siphon.events_named("registered").is_empty(), "{report}");
    assert!(!siphon.stderr.trim().is_empty(), "{report}");
    assert!(sipp.success(), "{report}");
}

/// SIGTERM (a service manager stopping siphon) unregisters before exit; the password comes
/// from the environment; nothing siphon prints, even with `-vv --sip-trace`, holds it.
#[test]
fn sigterm_unregisters_and_the_password_never_shows() {
    if !common::require_peers(&["kamailio", "kamcmd"]) {
        return;
    }
    let kamailio = Kamailio::start("MD5");
    let user = format!("sip:alice@{}", kamailio.addr());
    let mut siphon = SiphonProcess::spawn_with_env(
        &[
            "--json",
            "-vv",
            "--sip-trace",
            "register",
            "--user",
            &user,
            "--listen",
            "127.0.0.1:0",
            "--expires",
            "60",
        ],
        &[("SIPHON_PASSWORD", "alice-secret")],
    );
    assert!(
        siphon
            .wait_for_event("registered", Duration::from_secs(10))
            .is_some(),
        "not registered with the password from SIPHON_PASSWORD:\n{}",
        siphon.stderr_so_far()
    );
    assert_eq!(kamailio.bindings("alice").len(), 1);
    siphon.signal("TERM");
    let outcome = siphon.wait(Duration::from_secs(10));
    assert_eq!(outcome.code(), Some(0), "{}", outcome.report());
    assert_eq!(
        outcome.events_named("unregistered").len(),
        1,
        "{}",
        outcome.report()
    );
    assert!(
        kamailio.bindings_gone("alice", Duration::from_secs(2)),
        "{}",
        kamailio.ul_dump()
    );
    let everything = format!("{}{}", outcome.report(), outcome.stderr);
    assert!(
        everything.contains("Authorization: Digest"),
        "the trace shows the SIP messages"
    );
    assert!(
        !everything.contains("alice-secret"),
        "the password leaked:\n{everything}"
    );
}

/// Ctrl-C (SIGINT) unregisters too; the password comes from --password-file.
#[test]
fn ctrl_c_unregisters_with_password_file() {
    if !common::require_peers(&["kamailio", "kamcmd"]) {
        return;
    }
    let kamailio = Kamailio::start("SHA-256");
    let dir = common::TempDir::new("siphon-pw");
    let file = dir.path().join("password");
    std::fs::write(&file, "alice-secret\n").unwrap();
    let user = format!("sip:alice@{}", kamailio.addr());
    let mut siphon = SiphonProcess::spawn(&[
        "--json",
        "register",
        "--user",
        &user,
        "--password-file",
        file.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(
        siphon
            .wait_for_event("registered", Duration::from_secs(10))
            .is_some(),
        "{}",
        siphon.stderr_so_far()
    );
    siphon.signal("INT");
    let outcome = siphon.wait(Duration::from_secs(10));
    assert_eq!(outcome.code(), Some(0), "{}", outcome.report());
    assert_eq!(outcome.events_named("unregistered").len(), 1);
    assert!(
        kamailio.bindings_gone("alice", Duration::from_secs(2)),
        "{}",
        kamailio.ul_dump()
    );
}

/// A usage error exits 2 with a one-line reason, before any network traffic.
#[test]
fn usage_errors_exit_2() {
    for args in [
        &["register"][..],
        &["register", "--user", "not a uri"][..],
        &[
            "register",
            "--user",
            "sip:a@127.0.0.1",
            "--listen",
            "nonsense",
        ][..],
        &["register", "--bogus-flag"][..],
    ] {
        let outcome = SiphonProcess::spawn(args).wait(Duration::from_secs(10));
        assert_eq!(outcome.code(), Some(2), "{args:?}: {}", outcome.report());
    }
}
