//! Checks of the baresip harness (tests/common/calls.rs) with no siphon
//! involved: baresip registers with the Kamailio fixture, answers SIPp's
//! calls by itself (directly and through Kamailio with record-routing), and
//! dials and hangs up when told to over ctrl_tcp.

mod common;

use common::calls::{Baresip, BaresipConfig, read_wav_pcm16, self_check, sipp_caller};
use common::{Kamailio, SippCommand};
use std::time::Duration;

#[test]
fn call_helpers_self_check() {
    self_check();
}

#[test]
fn baresip_registers_with_kamailio() {
    if !common::require_peers(&["kamailio", "kamcmd", "baresip"]) {
        return;
    }
    let kamailio = Kamailio::start("MD5");
    let mut bob = Baresip::start(BaresipConfig::registered("bob", &kamailio, "bob-secret"));
    assert!(
        bob.wait_registered(&kamailio, Duration::from_secs(10)),
        "bob not in ul.dump:\n{}\n{}",
        kamailio.ul_dump(),
        bob.report()
    );
    let bindings = kamailio.bindings("bob");
    assert!(
        bindings
            .iter()
            .any(|b| b.contains(&format!("@127.0.0.1:{}", bob.sip_port()))),
        "{bindings:?}"
    );
    // ctrl_tcp answers commands.
    let calls = bob.list_calls().expect("listcalls");
    assert!(!calls.contains("ESTABLISHED"), "{calls}");
    // And reports its registration as an event too.
    assert!(
        bob.wait_event("REGISTER_OK", Duration::from_secs(1))
            .is_some()
            || bob.log().contains("200 OK"),
        "{}",
        bob.report()
    );
}

#[test]
fn baresip_auto_answers_a_sipp_call_directly() {
    if !common::require_peers(&["sipp", "baresip"]) {
        return;
    }
    let mut bob = Baresip::start(BaresipConfig::peer_to_peer("bob"));
    // baresip only accepts its own user part.
    let outcome = sipp_caller("uac_basic.xml", bob.sip_port())
        .args(&["-s", "bob"])
        .run();
    assert!(outcome.success(), "{}\n{}", outcome.report(), bob.report());
    let established = bob
        .wait_event("CALL_ESTABLISHED", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no CALL_ESTABLISHED\n{}", bob.report()));
    assert_eq!(established["direction"], "incoming", "{established}");
    let call_id = established["id"].as_str().unwrap_or_default().to_string();
    assert!(
        outcome.messages.contains(&format!("Call-ID: {call_id}")),
        "event id {call_id} is not the SIP Call-ID\n{}",
        outcome.report()
    );
    assert!(
        bob.wait_event("CALL_CLOSED", Duration::from_secs(5))
            .is_some(),
        "{}",
        bob.report()
    );
    // sndfile recorded what baresip sent: the 440 Hz tone, for about 1 s.
    let sent = bob
        .recordings()
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("-enc.wav"))
        .unwrap_or_else(|| panic!("no -enc.wav recording\n{}", bob.report()));
    let (samples, rate, _) = read_wav_pcm16(&sent).expect("a 16-bit WAV");
    assert!(
        samples.len() as u32 >= rate / 2,
        "only {} samples at {rate} Hz in {}",
        samples.len(),
        sent.display()
    );
    let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    assert!(peak > 8000, "peak {peak}: the tone is missing");
}

#[test]
fn baresip_registered_answers_a_call_through_kamailio() {
    if !common::require_peers(&["kamailio", "kamcmd", "sipp", "baresip"]) {
        return;
    }
    let kamailio = Kamailio::start("MD5");
    let mut bob = Baresip::start(BaresipConfig::registered("bob", &kamailio, "bob-secret"));
    assert!(
        bob.wait_registered(&kamailio, Duration::from_secs(10)),
        "{}",
        bob.report()
    );
    // uac_invite_rr.xml (peers fixture) follows Record-Route for ACK and BYE.
    let outcome = SippCommand::uac("uac_invite_rr.xml", &kamailio.addr())
        .args(&["-s", "bob"])
        .timeout(Duration::from_secs(20))
        .run();
    assert!(outcome.success(), "{}\n{}", outcome.report(), bob.report());
    assert!(
        outcome.messages.contains("Record-Route:"),
        "Kamailio did not record-route\n{}",
        outcome.report()
    );
    assert!(
        bob.wait_event("CALL_CLOSED", Duration::from_secs(5))
            .is_some(),
        "{}",
        bob.report()
    );
}

#[test]
fn baresip_dials_and_hangs_up_over_ctrl_tcp() {
    if !common::require_peers(&["sipp", "baresip"]) {
        return;
    }
    let mut bob = Baresip::start(BaresipConfig::peer_to_peer("bob"));
    // The peers fixture's UAS answers and waits for the caller's BYE.
    let sipp = SippCommand::uas("uas_answer.xml")
        .timeout(Duration::from_secs(20))
        .spawn();
    bob.dial(&format!("sip:service@{}", sipp.addr()))
        .unwrap_or_else(|e| panic!("{e}\n{}", bob.report()));
    let established = bob
        .wait_event("CALL_ESTABLISHED", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no CALL_ESTABLISHED\n{}", bob.report()));
    assert_eq!(established["direction"], "outgoing", "{established}");
    assert!(bob.list_calls().unwrap().contains("ESTABLISHED"));
    std::thread::sleep(Duration::from_millis(500));
    bob.hangup()
        .unwrap_or_else(|e| panic!("{e}\n{}", bob.report()));
    let outcome = sipp.wait();
    assert!(outcome.success(), "{}\n{}", outcome.report(), bob.report());
    assert!(
        bob.wait_event("CALL_CLOSED", Duration::from_secs(5))
            .is_some(),
        "{}",
        bob.report()
    );
}

/// The SiphonChild harness on a command that exists today (`register`):
/// JSON events read with a deadline, stdin kept open, Ctrl-C delivered.
#[test]
fn siphon_child_reads_events_and_delivers_ctrl_c() {
    if !common::require_peers(&["kamailio", "kamcmd"]) {
        return;
    }
    let kamailio = Kamailio::start("MD5");
    let user = format!("sip:alice@{}", kamailio.addr());
    let mut alice = common::calls::SiphonChild::spawn(&[
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
    ]);
    let registered = alice.expect_event("registered", Duration::from_secs(10));
    assert_eq!(registered["expires"], 60, "{registered}");
    assert_eq!(
        kamailio.bindings("alice").len(),
        1,
        "{}",
        kamailio.ul_dump()
    );
    // A key on stdin must not disturb it.
    alice.keys("x");
    assert!(alice.running());
    alice.interrupt();
    let outcome = alice.wait(Duration::from_secs(10));
    assert_eq!(outcome.code(), Some(0), "{}", outcome.report());
    outcome.assert_in_order(&["registered", "unregistered"]);
    assert!(
        kamailio.bindings("alice").is_empty(),
        "{}",
        kamailio.ul_dump()
    );
}
