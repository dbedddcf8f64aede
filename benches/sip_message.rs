//! Parsing and serialising SIP messages: `cargo bench --bench sip_message [-- --quick] [FILTER]`.
//!
//! A small hand-written harness (no benchmark crate): each case is warmed up, then timed in
//! `SAMPLES` samples that each run for at least the sample time (1 s, or 20 ms with
//! `--quick`, about 0.1 s per case). The table gives the median sample's ns/op and ops/s,
//! and the spread (slowest minus fastest sample, relative to the median). Everything runs
//! on the calling thread, so the figures are for one core.
//!
//! The messages are `sip-fixtures/bench/*.sip` (CRLF line endings), read at start.

use std::hint::black_box;
use std::time::Duration;

use siphon::sip::message::{Message, Request, Response};

mod harness;
use harness::{Measurement, SAMPLES, Timing, measure};

const FULL: Timing = Timing {
    warm_up: Duration::from_millis(500),
    sample: Duration::from_secs(1),
};
const QUICK: Timing = Timing {
    warm_up: Duration::from_millis(10),
    sample: Duration::from_millis(20),
};

fn load(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/sip-fixtures/bench/{name}.sip",
        env!("CARGO_MANIFEST_DIR")
    );
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // A checkout that rewrote the line endings would measure a different message.
    let bare_lf = data
        .iter()
        .enumerate()
        .any(|(i, b)| *b == b'\n' && (i == 0 || data[i - 1] != b'\r'));
    assert!(!bare_lf, "{path}: expected CRLF line endings");
    data
}

fn parse_request(data: &[u8]) -> Request {
    Request::parse(data).unwrap_or_else(|e| panic!("fixture does not parse: {e}"))
}

fn parse_response(data: &[u8]) -> Response {
    Response::parse(data).unwrap_or_else(|e| panic!("fixture does not parse: {e}"))
}

/// What a transaction layer reads from an incoming request to match it (RFC 3261 §17.2.3)
/// and a dialog layer to route it: top Via branch, CSeq, Call-ID, From and To tags.
fn transaction_keys(data: &[u8]) -> usize {
    let Ok(Message::Request(r)) = Message::parse(data) else {
        panic!("fixture does not parse");
    };
    let h = &r.headers;
    let via = h.top_via().expect("Via");
    let branch = via.branch().expect("branch");
    let cseq = h.cseq().expect("CSeq");
    let call_id = h.call_id().expect("Call-ID");
    let from = h.from().expect("From");
    let to = h.to().expect("To");
    black_box((branch, &cseq.method, call_id, from.tag(), to.tag()));
    branch.len() + cseq.seq as usize + call_id.len() + from.tag().map_or(0, str::len)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not, and then a
    // quick run checks that the cases still work without spending a minute on them.
    let mut quick = !std::env::args().any(|a| a == "--bench");
    let mut filter: Option<String> = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            a if a.starts_with('-') => {}
            a => filter = Some(a.to_string()),
        }
    }
    let mode = if quick { &QUICK } else { &FULL };

    let invite = load("invite");
    let ok200 = load("ok200");
    let register = load("register");

    // Check the fixtures once: they parse, and what we serialise parses back to the same.
    let invite_msg = parse_request(&invite);
    let ok200_msg = parse_response(&ok200);
    parse_request(&register);
    assert_eq!(parse_request(&invite_msg.to_bytes()), invite_msg);
    assert_eq!(parse_response(&ok200_msg.to_bytes()), ok200_msg);
    assert!(transaction_keys(&invite) > 0);

    type Case<'a> = (&'static str, usize, Box<dyn Fn() -> Measurement + 'a>);
    let cases: Vec<Case> = vec![
        (
            "parse_invite",
            invite.len(),
            Box::new(|| measure(mode, || Message::parse(black_box(&invite)))),
        ),
        (
            "parse_200_ok",
            ok200.len(),
            Box::new(|| measure(mode, || Message::parse(black_box(&ok200)))),
        ),
        (
            "parse_register",
            register.len(),
            Box::new(|| measure(mode, || Message::parse(black_box(&register)))),
        ),
        (
            "serialise_invite",
            invite_msg.to_bytes().len(),
            Box::new(|| measure(mode, || black_box(&invite_msg).to_bytes())),
        ),
        (
            "serialise_200_ok",
            ok200_msg.to_bytes().len(),
            Box::new(|| measure(mode, || black_box(&ok200_msg).to_bytes())),
        ),
        (
            "parse_invite_transaction_keys",
            invite.len(),
            Box::new(|| measure(mode, || transaction_keys(black_box(&invite)))),
        ),
    ];

    println!(
        "sip_message: {} mode, {SAMPLES} samples of >= {} ms per case, median",
        if quick { "quick" } else { "full" },
        mode.sample.as_millis()
    );
    println!(
        "{:<30} {:>6} {:>12} {:>12} {:>8}",
        "case", "bytes", "ns/op", "ops/s", "spread"
    );
    for (name, bytes, run) in &cases {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let m = run();
        println!(
            "{:<30} {:>6} {:>12.1} {:>12.0} {:>7.1}%",
            name,
            bytes,
            m.ns_per_op,
            1e9 / m.ns_per_op,
            m.spread * 100.0
        );
    }
}
