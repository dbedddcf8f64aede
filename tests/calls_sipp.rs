//! Calls against SIPp (sip-fixtures/sipp/calls/).
//!
//! `selftest_*`: each scenario against a SIPp peer that plays siphon's part
//! (sip-fixtures/sipp/calls/selftest/), so a broken scenario shows up
//! without siphon. The other tests run siphon:
//! - SIPp calls `siphon --json listen --listen 127.0.0.1:0 --auto-answer`
//!   (the port comes from its first event, "listening");
//! - `siphon --json call sip:service@127.0.0.1:PORT` calls a SIPp UAS.
//!
//! Each asserts that SIPp's scenario passed (exit 0) and what siphon printed
//! and how it exited.

mod common;

use common::calls::{
    CallOutcome, LoggedMessage, SiphonChild, assert_call_event_shape, check_digest,
    logged_messages, received_requests, sipp_callee, sipp_caller,
};
use common::{SippOutcome, require_peer};
use serde_json::Value;
use std::collections::HashSet;
use std::net::UdpSocket;
use std::time::Duration;

const EVENT_WAIT: Duration = Duration::from_secs(15);
const EXIT_WAIT: Duration = Duration::from_secs(20);

fn have_sipp() -> bool {
    require_peer("sipp")
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Run `uas` (SIPp server) and `uac` (SIPp client against it), each with its
/// extra arguments; both must pass.
fn selftest(uas: &str, uas_args: &[&str], uac: &str, uac_args: &[&str]) {
    let server = sipp_callee(uas).args(uas_args).spawn();
    let client = sipp_caller(uac, server.port()).args(uac_args).run();
    let server = server.wait();
    assert!(
        client.success() && server.success(),
        "client:\n{}\n\nserver:\n{}",
        client.report(),
        server.report()
    );
}

/// The Call-IDs of the INVITEs SIPp sent (UAC scenarios), in order, without
/// repeats (retransmissions).
fn sent_invite_call_ids(outcome: &SippOutcome) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for m in logged_messages(&outcome.messages) {
        if m.sent && m.method() == Some("INVITE") {
            if let Some(id) = m.header("Call-ID") {
                if !ids.iter().any(|i| i == id) {
                    ids.push(id.to_string());
                }
            }
        }
    }
    ids
}

/// The media port in the first SDP SIPp sent in a 2xx/18x (UAS scenarios).
fn sipp_answer_media_port(outcome: &SippOutcome) -> Option<u16> {
    logged_messages(&outcome.messages)
        .iter()
        .filter(|m| m.sent && m.status().is_some())
        .find_map(|m: &LoggedMessage| {
            m.body()
                .lines()
                .find_map(|l| l.strip_prefix("m=audio "))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|p| p.parse().ok())
        })
}

/// Every call event carries a non-empty call_id; all events are objects
/// with an "event" name.
fn check_event_shapes(siphon: &CallOutcome) {
    for event in siphon.events() {
        assert!(event["event"].is_string(), "{event}\n{}", siphon.report());
        assert_call_event_shape(&event);
    }
}

/// The "ended" event of call `call_id`.
fn ended_of(siphon: &CallOutcome, call_id: &str) -> Value {
    siphon
        .events_named("ended")
        .into_iter()
        .find(|e| e["call_id"] == call_id)
        .unwrap_or_else(|| panic!("no ended event for {call_id}\n{}", siphon.report()))
}

fn assert_ended(event: &Value, reason: &str, status: Option<u64>, siphon: &CallOutcome) {
    assert_eq!(event["reason"], reason, "{event}\n{}", siphon.report());
    if let Some(status) = status {
        assert_eq!(event["status"], status, "{event}\n{}", siphon.report());
    }
    if let Some(d) = event.get("duration_s") {
        assert!(d.as_f64().is_some_and(|d| d >= 0.0), "{event}");
    }
}

/// `siphon listen --auto-answer <extra>` (`extra` may give its own
/// `--auto-answer=SECS`), SIPp `scenario` with `sipp_args`
/// against it, then wait for siphon's "ended" events (`calls` of them) and
/// stop siphon with SIGTERM (it must exit 0).
fn sipp_calls_listener(
    listen_extra: &[&str],
    scenario: &str,
    sipp_args: &[&str],
    calls: usize,
) -> (SippOutcome, CallOutcome) {
    let mut args = Vec::new();
    if !listen_extra.iter().any(|a| a.starts_with("--auto-answer")) {
        args.push("--auto-answer");
    }
    args.extend(listen_extra);
    let (mut phone, port) = SiphonChild::listen(&args);
    let sipp = sipp_caller(scenario, port).args(sipp_args).run();
    if sipp.success() {
        for _ in 0..calls {
            if phone.wait_for_event("ended", EVENT_WAIT).is_none() {
                break;
            }
        }
    }
    let siphon = phone.stop(EXIT_WAIT);
    assert!(
        sipp.success(),
        "SIPp {scenario} failed against siphon listen\n{}\n\n{}",
        sipp.report(),
        siphon.report()
    );
    assert_eq!(
        siphon.code(),
        Some(0),
        "siphon listen after SIGTERM\n{}",
        siphon.report()
    );
    check_event_shapes(&siphon);
    (sipp, siphon)
}

/// A SIPp UAS running `scenario`, then `siphon call sip:service@<it> <extra>`;
/// returns both outcomes once siphon exits.
fn siphon_calls_sipp(
    scenario: &str,
    sipp_args: &[&str],
    extra: &[&str],
) -> (SippOutcome, CallOutcome) {
    let sipp = sipp_callee(scenario)
        .args(sipp_args)
        .timeout(Duration::from_secs(20))
        .spawn();
    let uri = format!("sip:service@{}", sipp.addr());
    let siphon = SiphonChild::call(&uri, extra).wait(EXIT_WAIT);
    let sipp = sipp.wait();
    check_event_shapes(&siphon);
    (sipp, siphon)
}

fn assert_sipp_passed(sipp: &SippOutcome, siphon: &CallOutcome) {
    assert!(
        sipp.success(),
        "SIPp scenario failed\n{}\n\n{}",
        sipp.report(),
        siphon.report()
    );
}

// ---------------------------------------------------------------------------
// Scenario self-tests (no siphon)
// ---------------------------------------------------------------------------

#[test]
fn selftest_uac_basic() {
    if !have_sipp() {
        return;
    }
    selftest("selftest/uas_answer.xml", &[], "uac_basic.xml", &[]);
}

#[test]
fn selftest_uac_basic_20_in_a_row() {
    if !have_sipp() {
        return;
    }
    selftest(
        "selftest/uas_answer.xml",
        &["-m", "20"],
        "uac_basic.xml",
        &["-m", "20", "-r", "5"],
    );
}

#[test]
fn selftest_uac_basic_10_at_once() {
    if !have_sipp() {
        return;
    }
    selftest(
        "selftest/uas_answer.xml",
        &["-m", "10"],
        "uac_basic.xml",
        &["-m", "10", "-l", "10", "-r", "10"],
    );
}

#[test]
fn selftest_uac_cancel_and_uas_ring_then_cancel() {
    if !have_sipp() {
        return;
    }
    selftest(
        "selftest/uas_ring_cancelled.xml",
        &[],
        "uac_cancel.xml",
        &[],
    );
    selftest("uas_ring_then_cancel.xml", &[], "uac_cancel.xml", &[]);
}

#[test]
fn selftest_uac_hold_and_uas_hold_by_caller() {
    if !have_sipp() {
        return;
    }
    selftest("selftest/uas_hold.xml", &[], "uac_hold.xml", &[]);
    selftest("uas_hold_by_caller.xml", &[], "uac_hold.xml", &[]);
}

#[test]
fn selftest_uac_unknown_codec() {
    if !have_sipp() {
        return;
    }
    selftest(
        "selftest/uas_reject_488.xml",
        &[],
        "uac_unknown_codec.xml",
        &[],
    );
}

#[test]
fn selftest_uac_options_in_dialog() {
    if !have_sipp() {
        return;
    }
    selftest(
        "selftest/uas_options.xml",
        &[],
        "uac_options_in_dialog.xml",
        &[],
    );
}

#[test]
fn selftest_uac_no_sdp() {
    if !have_sipp() {
        return;
    }
    selftest("selftest/uas_offer_in_200.xml", &[], "uac_no_sdp.xml", &[]);
}

#[test]
fn selftest_uac_no_ack() {
    if !have_sipp() {
        return;
    }
    selftest(
        "selftest/uas_bye_without_ack.xml",
        &[],
        "uac_no_ack.xml",
        &[],
    );
}

#[test]
fn selftest_uas_busy_and_uac_busy_expected() {
    if !have_sipp() {
        return;
    }
    selftest("uas_busy.xml", &[], "selftest/uac_busy.xml", &[]);
    selftest("uas_busy.xml", &[], "uac_busy_expected.xml", &[]);
}

#[test]
fn selftest_uas_answer_then_bye() {
    if !have_sipp() {
        return;
    }
    selftest(
        "uas_answer_then_bye.xml",
        &[],
        "selftest/uac_caller_bye_received.xml",
        &[],
    );
}

#[test]
fn selftest_uas_early_media() {
    if !have_sipp() {
        return;
    }
    selftest(
        "uas_early_media.xml",
        &[],
        "selftest/uac_caller_bye_received.xml",
        &[],
    );
}

#[test]
fn selftest_uas_challenge() {
    if !have_sipp() {
        return;
    }
    let server = sipp_callee("uas_challenge.xml").spawn();
    let client = sipp_caller("selftest/uac_auth_caller.xml", server.port())
        .args(&["-au", "alice", "-ap", "alice-secret"])
        .run();
    let server = server.wait();
    assert!(
        client.success() && server.success(),
        "client:\n{}\n\nserver:\n{}",
        client.report(),
        server.report()
    );
    // The digest check the siphon test applies, on SIPp's own credentials.
    let invites = received_requests(&server.messages, "INVITE");
    let credentials = invites
        .iter()
        .find_map(|m| m.header("Proxy-Authorization"))
        .unwrap_or_else(|| panic!("no Proxy-Authorization\n{}", server.report()));
    check_digest(credentials, "INVITE", "alice-secret").expect("SIPp's digest");
    assert!(check_digest(credentials, "INVITE", "bob-secret").is_err());

    // A wrong password passes SIPp's regexps (user and realm are right), so
    // the test's own digest check is what catches it.
    let server = sipp_callee("uas_challenge.xml").spawn();
    let _client = sipp_caller("selftest/uac_auth_caller.xml", server.port())
        .args(&["-au", "alice", "-ap", "wrong"])
        .run();
    let server = server.wait();
    let invites = received_requests(&server.messages, "INVITE");
    let credentials = invites
        .iter()
        .find_map(|m| m.header("Proxy-Authorization"))
        .expect("credentials");
    assert!(check_digest(credentials, "INVITE", "alice-secret").is_err());
}

#[test]
fn selftest_uas_redirect() {
    if !have_sipp() {
        return;
    }
    let target = sipp_callee("uas_answer_then_bye.xml").spawn();
    let port = target.port().to_string();
    let redirect = sipp_callee("uas_redirect.xml")
        .args(&["-key", "target_port", &port])
        .spawn();
    let client = sipp_caller("selftest/uac_follow_redirect.xml", redirect.port()).run();
    let redirect = redirect.wait();
    let target = target.wait();
    assert!(
        client.success() && redirect.success() && target.success(),
        "client:\n{}\n\nredirect:\n{}\n\ntarget:\n{}",
        client.report(),
        redirect.report(),
        target.report()
    );
}

#[test]
fn selftest_uas_retransmit_2xx() {
    if !have_sipp() {
        return;
    }
    selftest(
        "uas_retransmit_2xx.xml",
        &["-nr"],
        "selftest/uac_ack_each_2xx.xml",
        &["-nr"],
    );
}

#[test]
fn selftest_uas_retransmit_2xx_fails_a_caller_that_acks_once() {
    if !have_sipp() {
        return;
    }
    // SIPp as a caller re-sends its ACK for a repeated 200 on its own (even
    // with -nr), so the caller that ACKs only once is a raw UDP socket.
    let server = sipp_callee("uas_retransmit_2xx.xml")
        .args(&["-nr"])
        .timeout(Duration::from_secs(10))
        .spawn();
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let lp = socket.local_addr().unwrap().port();
    let sp = server.port();
    let sdp = "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let invite = format!(
        "INVITE sip:service@127.0.0.1:{sp} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK-raw-inv\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:raw@127.0.0.1:{lp}>;tag=raw1\r\n\
         To: <sip:service@127.0.0.1:{sp}>\r\n\
         Call-ID: raw-{}@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:raw@127.0.0.1:{lp}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        std::process::id(),
        sdp.len()
    );
    socket
        .send_to(invite.as_bytes(), ("127.0.0.1", sp))
        .unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = socket.recv_from(&mut buf).expect("the 200");
    let ok = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let to = common::header(&ok, "To").expect("To").to_string();
    let call_id = common::header(&ok, "Call-ID").expect("Call-ID").to_string();
    let ack = format!(
        "ACK sip:127.0.0.1:{sp} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK-raw-ack\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:raw@127.0.0.1:{lp}>;tag=raw1\r\n\
         To: {to}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 ACK\r\n\
         Content-Length: 0\r\n\r\n"
    );
    socket.send_to(ack.as_bytes(), ("127.0.0.1", sp)).unwrap();
    // The repeated 200 gets no ACK.
    let server = server.wait();
    assert!(!server.success(), "{}", server.report());
    assert_eq!(
        received_requests(&server.messages, "ACK").len(),
        1,
        "{}",
        server.report()
    );
}

// ---------------------------------------------------------------------------
// SIPp calls siphon listen
// ---------------------------------------------------------------------------

#[test]
fn listen_answers_a_basic_call() {
    if !have_sipp() {
        return;
    }
    let (sipp, siphon) = sipp_calls_listener(&[], "uac_basic.xml", &[], 1);
    siphon.assert_in_order(&["listening", "incoming_call", "answered", "ended"]);
    let call_ids = sent_invite_call_ids(&sipp);
    assert_eq!(call_ids.len(), 1, "{}", sipp.report());
    let incoming = siphon.single("incoming_call");
    assert_eq!(incoming["call_id"], call_ids[0].as_str(), "{incoming}");
    assert!(
        incoming["from"]
            .as_str()
            .is_some_and(|f| f.contains("sipp@127.0.0.1")),
        "{incoming}"
    );
    let answered = siphon.single("answered");
    assert_eq!(answered["call_id"], call_ids[0].as_str());
    assert_eq!(answered["codec"], "PCMU", "{answered}");
    assert!(
        answered["remote_rtp"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{answered}"
    );
    let ended = ended_of(&siphon, &call_ids[0]);
    assert_ended(&ended, "remote_bye", None, &siphon);
}

#[test]
fn listen_cancelled_while_ringing() {
    if !have_sipp() {
        return;
    }
    let (sipp, siphon) = sipp_calls_listener(&["--auto-answer=5"], "uac_cancel.xml", &[], 1);
    let call_id = sent_invite_call_ids(&sipp).remove(0);
    assert!(
        siphon.events_named("answered").is_empty(),
        "{}",
        siphon.report()
    );
    siphon.assert_in_order(&["incoming_call", "ended"]);
    let ended = ended_of(&siphon, &call_id);
    assert_ended(&ended, "cancelled", None, &siphon);
}

#[test]
fn listen_held_and_resumed_by_the_caller() {
    if !have_sipp() {
        return;
    }
    let (sipp, siphon) = sipp_calls_listener(&[], "uac_hold.xml", &[], 1);
    let call_id = sent_invite_call_ids(&sipp).remove(0);
    siphon.assert_in_order(&["answered", "held", "resumed", "ended"]);
    assert_eq!(siphon.single("held")["call_id"], call_id.as_str());
    assert_eq!(siphon.single("resumed")["call_id"], call_id.as_str());
    assert_ended(&ended_of(&siphon, &call_id), "remote_bye", None, &siphon);
}

#[test]
fn listen_refuses_an_unknown_codec_with_488() {
    if !have_sipp() {
        return;
    }
    let (sipp, siphon) = sipp_calls_listener(&[], "uac_unknown_codec.xml", &[], 1);
    let call_id = sent_invite_call_ids(&sipp).remove(0);
    assert!(
        siphon.events_named("answered").is_empty(),
        "{}",
        siphon.report()
    );
    let ended = ended_of(&siphon, &call_id);
    assert_eq!(ended["status"], 488, "{ended}\n{}", siphon.report());
}

#[test]
fn listen_answers_options_inside_the_dialog() {
    if !have_sipp() {
        return;
    }
    let (sipp, siphon) = sipp_calls_listener(&[], "uac_options_in_dialog.xml", &[], 1);
    let call_id = sent_invite_call_ids(&sipp).remove(0);
    assert_eq!(siphon.single("answered")["call_id"], call_id.as_str());
    assert_ended(&ended_of(&siphon, &call_id), "remote_bye", None, &siphon);
}

#[test]
fn listen_offers_in_the_200_when_the_invite_has_no_sdp() {
    if !have_sipp() {
        return;
    }
    let (sipp, siphon) = sipp_calls_listener(&[], "uac_no_sdp.xml", &[], 1);
    let call_id = sent_invite_call_ids(&sipp).remove(0);
    let answered = siphon.single("answered");
    assert_eq!(answered["call_id"], call_id.as_str());
    assert_eq!(answered["codec"], "PCMU", "{answered}");
    assert_ended(&ended_of(&siphon, &call_id), "remote_bye", None, &siphon);
}

fn assert_all_answered_and_ended(sipp: &SippOutcome, siphon: &CallOutcome, calls: usize) {
    let call_ids = sent_invite_call_ids(sipp);
    assert_eq!(call_ids.len(), calls, "{}", sipp.report());
    let answered: HashSet<String> = siphon
        .events_named("answered")
        .iter()
        .filter_map(|e| e["call_id"].as_str().map(str::to_string))
        .collect();
    let ended: HashSet<String> = siphon
        .events_named("ended")
        .iter()
        .filter(|e| e["reason"] == "remote_bye")
        .filter_map(|e| e["call_id"].as_str().map(str::to_string))
        .collect();
    for id in &call_ids {
        assert!(
            answered.contains(id),
            "{id} not answered\n{}",
            siphon.report()
        );
        assert!(ended.contains(id), "{id} not ended\n{}", siphon.report());
    }
    assert_eq!(answered.len(), calls, "{}", siphon.report());
}

#[test]
fn listen_takes_20_calls_in_a_row() {
    if !have_sipp() {
        return;
    }
    let (sipp, siphon) = sipp_calls_listener(&[], "uac_basic.xml", &["-m", "20", "-r", "5"], 20);
    assert_all_answered_and_ended(&sipp, &siphon, 20);
}

#[test]
fn listen_takes_10_calls_at_once() {
    if !have_sipp() {
        return;
    }
    let (sipp, siphon) = sipp_calls_listener(
        &["--max-calls", "10"],
        "uac_basic.xml",
        &["-m", "10", "-l", "10", "-r", "10"],
        10,
    );
    assert_all_answered_and_ended(&sipp, &siphon, 10);
}

#[test]
fn listen_busy_beyond_max_calls() {
    if !have_sipp() {
        return;
    }
    let (mut phone, port) = SiphonChild::listen(&["--auto-answer", "--max-calls", "1"]);
    // The first call lasts ~2.5 s (hold and resume before its BYE).
    let first = sipp_caller("uac_hold.xml", port).spawn();
    let answered = phone.expect_event("answered", EVENT_WAIT);
    let second = sipp_caller("uac_busy_expected.xml", port).run();
    let first = first.wait();
    let _ = phone.wait_for_event("ended", EVENT_WAIT);
    let siphon = phone.stop(EXIT_WAIT);
    assert!(
        second.success(),
        "second call not refused with 486\n{}\n{}",
        second.report(),
        siphon.report()
    );
    assert!(first.success(), "{}\n{}", first.report(), siphon.report());
    let busy_call = sent_invite_call_ids(&second).remove(0);
    assert_ne!(answered["call_id"], busy_call.as_str());
    assert!(
        !siphon
            .events_named("answered")
            .iter()
            .any(|e| e["call_id"] == busy_call.as_str()),
        "{}",
        siphon.report()
    );
    assert_eq!(siphon.code(), Some(0), "{}", siphon.report());
}

#[test]
fn listen_hangs_up_when_the_ack_never_comes() {
    if !have_sipp() {
        return;
    }
    // T1 = 50 ms: Timer H (64*T1) fires after 3.2 s.
    let (mut phone, port) = SiphonChild::listen(&["--auto-answer", "--t1-ms", "50"]);
    let sipp = sipp_caller("uac_no_ack.xml", port).run();
    let _ = phone.wait_for_event("ended", EVENT_WAIT);
    let siphon = phone.stop(EXIT_WAIT);
    assert_sipp_passed(&sipp, &siphon);
    let call_id = sent_invite_call_ids(&sipp).remove(0);
    let ended = ended_of(&siphon, &call_id);
    assert_ne!(ended["reason"], "remote_bye", "{ended}");
}

// ---------------------------------------------------------------------------
// siphon call to a SIPp UAS
// ---------------------------------------------------------------------------

#[test]
fn call_answered_then_the_callee_hangs_up() {
    if !have_sipp() {
        return;
    }
    let (sipp, siphon) = siphon_calls_sipp("uas_answer_then_bye.xml", &[], &[]);
    assert_sipp_passed(&sipp, &siphon);
    assert_eq!(siphon.code(), Some(0), "{}", siphon.report());
    siphon.assert_in_order(&["ringing", "answered", "ended"]);
    let invites = received_requests(&sipp.messages, "INVITE");
    let call_id = invites[0].header("Call-ID").expect("Call-ID").to_string();
    let answered = siphon.single("answered");
    assert_eq!(answered["call_id"], call_id.as_str(), "{answered}");
    assert_eq!(answered["codec"], "PCMU", "{answered}");
    let media_port = sipp_answer_media_port(&sipp).expect("SIPp's SDP");
    assert_eq!(
        answered["remote_rtp"],
        format!("127.0.0.1:{media_port}").as_str(),
        "{answered}"
    );
    assert_ended(&ended_of(&siphon, &call_id), "remote_bye", None, &siphon);
}

#[test]
fn call_to_a_busy_callee_fails_with_486() {
    if !have_sipp() {
        return;
    }
    let (sipp, siphon) = siphon_calls_sipp("uas_busy.xml", &[], &[]);
    assert_sipp_passed(&sipp, &siphon);
    assert_eq!(siphon.code(), Some(1), "{}", siphon.report());
    assert_eq!(
        siphon.stderr_lines().len(),
        1,
        "one line on stderr\n{}",
        siphon.report()
    );
    assert!(siphon.events_named("answered").is_empty());
    let ended = siphon.single("ended");
    assert_ended(&ended, "rejected", Some(486), &siphon);
}

#[test]
fn call_cancelled_by_ctrl_c_while_ringing() {
    if !have_sipp() {
        return;
    }
    let sipp = sipp_callee("uas_ring_then_cancel.xml")
        .timeout(Duration::from_secs(20))
        .spawn();
    let uri = format!("sip:service@{}", sipp.addr());
    let mut phone = SiphonChild::call(&uri, &[]);
    phone.expect_event("ringing", EVENT_WAIT);
    phone.interrupt();
    let siphon = phone.wait(EXIT_WAIT);
    let sipp = sipp.wait();
    assert_sipp_passed(&sipp, &siphon);
    assert!(
        siphon.code().is_some(),
        "siphon died of the signal instead of cancelling\n{}",
        siphon.report()
    );
    assert!(siphon.events_named("answered").is_empty());
    let ended = siphon.single("ended");
    assert_ended(&ended, "cancelled", Some(487), &siphon);
}

#[test]
fn call_answers_a_407_challenge_then_hangs_up() {
    if !have_sipp() {
        return;
    }
    let sipp = sipp_callee("uas_challenge.xml")
        .timeout(Duration::from_secs(20))
        .spawn();
    let uri = format!("sip:service@{}", sipp.addr());
    let user = format!("sip:alice@{}", sipp.addr());
    let siphon = SiphonChild::call(
        &uri,
        &[
            "--user",
            &user,
            "--password",
            "alice-secret",
            "--duration",
            "1",
        ],
    )
    .wait(EXIT_WAIT);
    let sipp = sipp.wait();
    assert_sipp_passed(&sipp, &siphon);
    assert_eq!(siphon.code(), Some(0), "{}", siphon.report());
    let invites = received_requests(&sipp.messages, "INVITE");
    let credentials = invites
        .iter()
        .find_map(|m| m.header("Proxy-Authorization"))
        .unwrap_or_else(|| panic!("no Proxy-Authorization\n{}", sipp.report()));
    check_digest(credentials, "INVITE", "alice-secret")
        .unwrap_or_else(|e| panic!("{e}\n{}", sipp.report()));
    let call_id = invites[0].header("Call-ID").expect("Call-ID");
    siphon.assert_in_order(&["answered", "ended"]);
    assert_ended(&ended_of(&siphon, call_id), "local_bye", None, &siphon);
}

#[test]
fn call_follows_a_302_once() {
    if !have_sipp() {
        return;
    }
    let target = sipp_callee("uas_answer_then_bye.xml")
        .timeout(Duration::from_secs(20))
        .spawn();
    let target_port = target.port().to_string();
    let redirect = sipp_callee("uas_redirect.xml")
        .args(&["-key", "target_port", &target_port])
        .timeout(Duration::from_secs(20))
        .spawn();
    let uri = format!("sip:service@{}", redirect.addr());
    let siphon = SiphonChild::call(&uri, &[]).wait(EXIT_WAIT);
    let redirect = redirect.wait();
    let target = target.wait();
    assert_sipp_passed(&redirect, &siphon);
    assert_sipp_passed(&target, &siphon);
    assert_eq!(siphon.code(), Some(0), "{}", siphon.report());
    let invite = received_requests(&target.messages, "INVITE").remove(0);
    assert!(
        invite
            .start_line()
            .starts_with(&format!("INVITE sip:redirected@127.0.0.1:{target_port}")),
        "{}",
        invite.text
    );
    let answered = siphon.single("answered");
    assert_eq!(answered["codec"], "PCMU", "{answered}");
    let ended = siphon.single("ended");
    assert_ended(&ended, "remote_bye", None, &siphon);
}

#[test]
fn call_acks_every_retransmitted_200() {
    if !have_sipp() {
        return;
    }
    let (sipp, siphon) = siphon_calls_sipp("uas_retransmit_2xx.xml", &["-nr"], &[]);
    assert_sipp_passed(&sipp, &siphon);
    assert_eq!(siphon.code(), Some(0), "{}", siphon.report());
    let acks = received_requests(&sipp.messages, "ACK");
    assert!(acks.len() >= 2, "{} ACKs\n{}", acks.len(), sipp.report());
    siphon.single("answered");
    assert_ended(&siphon.single("ended"), "remote_bye", None, &siphon);
}

#[test]
fn call_reports_early_media_before_the_answer() {
    if !have_sipp() {
        return;
    }
    let (sipp, siphon) = siphon_calls_sipp("uas_early_media.xml", &[], &[]);
    assert_sipp_passed(&sipp, &siphon);
    assert_eq!(siphon.code(), Some(0), "{}", siphon.report());
    siphon.assert_in_order(&["early_media", "answered", "ended"]);
    let call_id = received_requests(&sipp.messages, "INVITE")[0]
        .header("Call-ID")
        .expect("Call-ID")
        .to_string();
    assert_eq!(siphon.single("early_media")["call_id"], call_id.as_str());
    assert_ended(&ended_of(&siphon, &call_id), "remote_bye", None, &siphon);
}

#[test]
fn call_holds_resumes_and_hangs_up_with_keys() {
    if !have_sipp() {
        return;
    }
    let sipp = sipp_callee("uas_hold_by_caller.xml")
        .timeout(Duration::from_secs(30))
        .spawn();
    let uri = format!("sip:service@{}", sipp.addr());
    let mut phone = SiphonChild::call(&uri, &[]);
    phone.expect_event("answered", EVENT_WAIT);
    phone.keys("H\n");
    phone.expect_event("held", EVENT_WAIT);
    phone.keys("H\n");
    phone.expect_event("resumed", EVENT_WAIT);
    phone.keys("h\n");
    let siphon = phone.wait(EXIT_WAIT);
    let sipp = sipp.wait();
    assert_sipp_passed(&sipp, &siphon);
    assert_eq!(siphon.code(), Some(0), "{}", siphon.report());
    siphon.assert_in_order(&["answered", "held", "resumed", "ended"]);
    assert_ended(&siphon.single("ended"), "local_bye", None, &siphon);
}
