//! Calls between siphon and a real softphone (baresip 1.0), through the
//! Kamailio fixture (registrar and record-routing proxy), and siphon to
//! siphon with no server.
//!
//! baresip is bob (auto-answer, PCMU/PCMA, sends a 440 Hz tone, records what
//! it receives); siphon is alice (`--user sip:alice@127.0.0.1:KPORT
//! --password alice-secret`).

mod common;

use common::calls::{Baresip, BaresipConfig, CallOutcome, SiphonChild, read_wav_pcm16, tone_ratio};
use common::{Kamailio, TempDir};
use std::time::Duration;

const EVENT_WAIT: Duration = Duration::from_secs(15);
const EXIT_WAIT: Duration = Duration::from_secs(20);

fn alice_args(kamailio: &Kamailio) -> Vec<String> {
    vec![
        "--user".to_string(),
        format!("sip:alice@{}", kamailio.addr()),
        "--password".to_string(),
        "alice-secret".to_string(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn ended(siphon: &CallOutcome) -> serde_json::Value {
    siphon.single("ended")
}

#[test]
fn siphon_calls_baresip_through_kamailio_and_hangs_up() {
    if !common::require_peers(&["kamailio", "kamcmd", "baresip"]) {
        return;
    }
    let kamailio = Kamailio::start("MD5");
    let mut bob = Baresip::start(BaresipConfig::registered("bob", &kamailio, "bob-secret"));
    assert!(
        bob.wait_registered(&kamailio, Duration::from_secs(10)),
        "{}",
        bob.report()
    );
    let mut args = alice_args(&kamailio);
    args.extend(["--duration".to_string(), "2".to_string()]);
    let uri = format!("sip:bob@{}", kamailio.addr());
    let siphon = SiphonChild::call(&uri, &strs(&args)).wait(EXIT_WAIT);
    assert_eq!(
        siphon.code(),
        Some(0),
        "{}\n{}\n--- kamailio:\n{}",
        siphon.report(),
        bob.report(),
        kamailio.log()
    );
    siphon.assert_in_order(&["answered", "ended"]);
    let answered = siphon.single("answered");
    assert_eq!(answered["codec"], "PCMU", "{answered}");
    let ended = ended(&siphon);
    assert_eq!(ended["reason"], "local_bye", "{}", siphon.report());
    if let Some(d) = ended["duration_s"].as_f64() {
        assert!((1.5..5.0).contains(&d), "{ended}");
    }
    // baresip saw the same call (its event id is the Call-ID) end.
    let established = bob
        .wait_event("CALL_ESTABLISHED", Duration::from_secs(2))
        .unwrap_or_else(|| panic!("{}", bob.report()));
    assert_eq!(established["id"], answered["call_id"], "{established}");
    let closed = bob
        .wait_event("CALL_CLOSED", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("baresip did not see the BYE\n{}", bob.report()));
    assert_eq!(closed["id"], answered["call_id"], "{closed}");
}

#[test]
fn baresip_calls_siphon_through_kamailio_and_hangs_up() {
    if !common::require_peers(&["kamailio", "kamcmd", "baresip"]) {
        return;
    }
    let kamailio = Kamailio::start("MD5");
    let mut bob = Baresip::start(BaresipConfig::registered("bob", &kamailio, "bob-secret"));
    let mut args = alice_args(&kamailio);
    args.push("--auto-answer".to_string());
    let (mut alice, port) = SiphonChild::listen(&strs(&args));
    alice.expect_event("registered", EVENT_WAIT);
    assert!(
        kamailio
            .bindings("alice")
            .iter()
            .any(|b| b.contains(&format!("@127.0.0.1:{port}"))),
        "alice not bound to port {port}:\n{}",
        kamailio.ul_dump()
    );
    assert!(
        bob.wait_registered(&kamailio, Duration::from_secs(10)),
        "{}",
        bob.report()
    );

    bob.dial(&format!("sip:alice@{}", kamailio.addr()))
        .unwrap_or_else(|e| panic!("{e}\n{}", bob.report()));
    let incoming = alice.expect_event("incoming_call", EVENT_WAIT);
    assert!(
        incoming["from"].as_str().is_some_and(|f| f.contains("bob")),
        "{incoming}"
    );
    let answered = alice.expect_event("answered", EVENT_WAIT);
    assert_eq!(answered["call_id"], incoming["call_id"]);
    assert_eq!(answered["codec"], "PCMU", "{answered}");
    bob.wait_event("CALL_ESTABLISHED", EVENT_WAIT)
        .unwrap_or_else(|| panic!("{}", bob.report()));
    std::thread::sleep(Duration::from_secs(1));
    bob.hangup()
        .unwrap_or_else(|e| panic!("{e}\n{}", bob.report()));
    let ended = alice.expect_event("ended", EVENT_WAIT);
    assert_eq!(ended["call_id"], incoming["call_id"], "{ended}");
    assert_eq!(ended["reason"], "remote_bye", "{ended}");

    let siphon = alice.stop(EXIT_WAIT);
    assert_eq!(siphon.code(), Some(0), "{}", siphon.report());
    assert!(
        kamailio.bindings("alice").is_empty(),
        "alice still registered after SIGTERM:\n{}",
        kamailio.ul_dump()
    );
}

#[test]
fn siphon_calls_siphon_without_a_server() {
    let (callee, port) = SiphonChild::listen(&["--auto-answer"]);
    let uri = format!("sip:anyone@127.0.0.1:{port}");
    let caller = SiphonChild::call(&uri, &["--duration", "2"]).wait(EXIT_WAIT);
    let mut callee = callee;
    let _ = callee.wait_for_event("ended", EVENT_WAIT);
    let callee = callee.stop(EXIT_WAIT);
    assert_eq!(
        caller.code(),
        Some(0),
        "{}\n{}",
        caller.report(),
        callee.report()
    );
    caller.assert_in_order(&["answered", "ended"]);
    let call_id = caller.single("answered")["call_id"].clone();
    assert_eq!(ended(&caller)["reason"], "local_bye", "{}", caller.report());

    callee.assert_in_order(&["listening", "incoming_call", "answered", "ended"]);
    assert_eq!(callee.single("incoming_call")["call_id"], call_id);
    let callee_ended = ended(&callee);
    assert_eq!(callee_ended["call_id"], call_id);
    assert_eq!(callee_ended["reason"], "remote_bye", "{}", callee.report());
    assert_eq!(callee.code(), Some(0), "{}", callee.report());
}

/// Media, both ways, peer to peer: baresip sends its 440 Hz WAV, siphon
/// sends `tone:440`; each records what it receives.
#[test]
fn siphon_and_baresip_hear_each_others_tone() {
    if !common::require_peers(&["baresip"]) {
        return;
    }
    let dir = TempDir::new("heard");
    let heard = dir.path().join("alice-heard.wav");
    let audio_out = format!("file:{}", heard.display());
    let mut bob = Baresip::start(BaresipConfig::peer_to_peer("bob"));
    // Replaces the default --audio-out null.
    let (mut alice, port) = SiphonChild::listen(&["--auto-answer", "--audio-out", &audio_out]);
    bob.dial(&format!("sip:alice@127.0.0.1:{port}"))
        .unwrap_or_else(|e| panic!("{e}\n{}", bob.report()));
    alice.expect_event("answered", EVENT_WAIT);
    bob.wait_event("CALL_ESTABLISHED", EVENT_WAIT)
        .unwrap_or_else(|| panic!("{}", bob.report()));
    std::thread::sleep(Duration::from_secs(3));
    bob.hangup()
        .unwrap_or_else(|e| panic!("{e}\n{}", bob.report()));
    alice.expect_event("ended", EVENT_WAIT);
    let siphon = alice.stop(EXIT_WAIT);
    assert_eq!(siphon.code(), Some(0), "{}", siphon.report());

    // What siphon received.
    let (samples, rate, channels) = read_wav_pcm16(&heard).unwrap_or_else(|| {
        panic!(
            "{} is not a 16-bit WAV\n{}",
            heard.display(),
            siphon.report()
        )
    });
    assert_eq!(channels, 1, "mono expected");
    assert!(
        samples.len() as u32 >= 2 * rate,
        "only {} samples at {rate} Hz",
        samples.len()
    );
    let ratio = tone_ratio(&samples, rate, 440.0);
    assert!(ratio > 0.5, "440 Hz is {ratio:.2} of what siphon heard");

    // What baresip received (sndfile's -dec.wav).
    let dec = bob
        .recordings()
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .unwrap_or_else(|| panic!("no -dec.wav\n{}", bob.report()));
    let (samples, rate, _) = read_wav_pcm16(&dec).expect("baresip's recording");
    assert!(
        samples.len() as u32 >= 2 * rate,
        "baresip received only {} samples at {rate} Hz",
        samples.len()
    );
    let ratio = tone_ratio(&samples, rate, 440.0);
    assert!(ratio > 0.5, "440 Hz is {ratio:.2} of what baresip heard");
}
