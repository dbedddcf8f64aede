//! `siphon demo`, the README's first command: a real call to the in-process echo line over
//! loopback, for each codec, must be answered and get its packets back.

mod common;

use std::time::Duration;

use common::SiphonProcess;

fn demo(codec: &str) {
    let outcome = SiphonProcess::spawn(&["--json", "demo", "--codec", codec, "--duration", "2"])
        .wait(Duration::from_secs(30));
    assert_eq!(outcome.code(), Some(0), "{}", outcome.report());
    // The call flow is shown: INVITE out, 180 and 200 in, ACK and BYE out.
    let flow: Vec<String> = outcome
        .events_named("sip_message")
        .iter()
        .map(|e| e["first_line"].as_str().unwrap_or_default().to_string())
        .collect();
    for expected in ["INVITE ", "SIP/2.0 180", "SIP/2.0 200", "ACK ", "BYE "] {
        assert!(
            flow.iter().any(|l| l.starts_with(expected)),
            "{expected}: {flow:?}"
        );
    }
    let result = &outcome.events_named("demo_result")[0];
    assert_eq!(result["answered"], true, "{result}");
    let stats = &result["stats"];
    assert_eq!(
        stats["codec"].as_str().map(str::to_ascii_lowercase),
        Some(codec.to_string())
    );
    let sent = stats["packets_sent"].as_u64().unwrap();
    let received = stats["packets_received"].as_u64().unwrap();
    // 2 s at 20 ms: about 100 packets each way; on loopback nearly all come back.
    assert!(sent >= 90, "{stats}");
    assert!(received >= sent * 9 / 10, "{stats}");
    assert_eq!(stats["packets_lost"], 0, "{stats}");
    assert!(stats["mos"].as_f64().unwrap() > 4.0, "{stats}");
}

#[test]
fn demo_with_opus() {
    demo("opus");
}

#[test]
fn demo_with_pcmu() {
    demo("pcmu");
}

#[test]
fn demo_with_pcma() {
    demo("pcma");
}
