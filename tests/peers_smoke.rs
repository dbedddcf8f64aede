//! Checks of the test harness and the SIP fixtures themselves, with no siphon
//! involved: Kamailio starts, authenticates (MD5 and SHA-256), registers,
//! unregisters and proxies a call; each SIPp registrar scenario passes against
//! a well-behaved SIPp client and stops by itself.

mod common;

use common::{
    Kamailio, LOOPBACK, SippCommand, header, parse_bindings, sip_transaction, status_code,
};
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

#[test]
fn free_ports_are_distinct() {
    let ports = common::free_udp_ports(50);
    let unique: std::collections::HashSet<_> = ports.iter().collect();
    assert_eq!(unique.len(), ports.len(), "{ports:?}");
    assert!(ports.iter().all(|&p| p != 0));
}

#[test]
fn parse_bindings_reads_ul_dump() {
    let dump = "{\n\tDomains: {\n\t\tDomain: {\n\t\t\tAoRs: {\n\t\t\t\tInfo: {\n\
                \t\t\t\t\tAoR: alice\n\t\t\t\t\tContacts: {\n\t\t\t\t\t\tContact: {\n\
                \t\t\t\t\t\t\tAddress: sip:alice@127.0.0.1:5080\n\t\t\t\t\t\t\tExpires: 60\n\
                \t\t\t\t\tAoR: bob\n\t\t\t\t\t\t\tAddress: sip:bob@127.0.0.1:5090\n";
    assert_eq!(parse_bindings(dump, "alice"), ["sip:alice@127.0.0.1:5080"]);
    assert_eq!(parse_bindings(dump, "bob"), ["sip:bob@127.0.0.1:5090"]);
    assert!(parse_bindings(dump, "carol").is_empty());
}

#[test]
fn kamailio_starts_dumps_location_and_stops() {
    if !common::require_peers(&["kamailio", "kamcmd"]) {
        return;
    }
    let kamailio = Kamailio::start("MD5");
    let dump = kamailio.ul_dump();
    assert!(dump.contains("Domain: location"), "ul.dump output:\n{dump}");
    assert!(kamailio.bindings("alice").is_empty(), "{dump}");

    // OPTIONS to the server itself is answered 200.
    let response = sip_transaction(
        kamailio.port(),
        &common::options_request(kamailio.port(), 1),
        Duration::from_secs(2),
    )
    .expect("an answer to OPTIONS");
    assert_eq!(status_code(&response), Some(200), "{response}");

    let pid_file = kamailio.dir().join("kamailio.pid");
    let pid = std::fs::read_to_string(&pid_file).expect("pid file");
    let pid = pid.trim().to_string();
    let dir = kamailio.dir().to_path_buf();
    let port = kamailio.port();
    drop(kamailio);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true),
        "kamailio pid {pid} still running after drop"
    );
    assert!(!dir.exists(), "{} not removed", dir.display());
    assert!(!common::udp_port_in_use(port), "port {port} still bound");
}

fn sipp_register(
    kamailio: &Kamailio,
    port: u16,
    user: &str,
    password: &str,
    expires: u32,
) -> common::SippOutcome {
    SippCommand::uac("uac_register_auth.xml", &kamailio.addr())
        .port(port)
        .args(&["-au", user, "-ap", password])
        .args(&[
            "-key",
            "user",
            user,
            "-key",
            "expires",
            &expires.to_string(),
        ])
        .timeout(Duration::from_secs(15))
        .run()
}

#[test]
fn kamailio_md5_register_unregister_and_wrong_password_with_sipp() {
    if !common::require_peers(&["kamailio", "kamcmd", "sipp"]) {
        return;
    }
    let kamailio = Kamailio::start("MD5");
    // The unregister must come from the same contact (SIPp's port).
    let port = common::free_udp_port();

    let run = sipp_register(&kamailio, port, "alice", "alice-secret", 60);
    assert!(run.success(), "{}", run.report());
    assert!(run.logs.contains("algorithm MD5"), "{}", run.report());
    let bindings = kamailio.bindings("alice");
    assert_eq!(bindings.len(), 1, "{}", kamailio.ul_dump());
    assert!(
        bindings[0].starts_with("sip:alice@127.0.0.1:"),
        "{bindings:?}"
    );
    assert!(
        kamailio.ul_dump().contains("Expires: 60"),
        "{}",
        kamailio.ul_dump()
    );

    let run = sipp_register(&kamailio, port, "alice", "alice-secret", 0);
    assert!(run.success(), "{}", run.report());
    assert!(
        kamailio.bindings_gone("alice", Duration::from_secs(2)),
        "{}\n{}",
        kamailio.ul_dump(),
        run.report()
    );

    // A wrong password is challenged again: SIPp sees 401 instead of 200.
    let run = sipp_register(&kamailio, port, "bob", "not-bobs-password", 60);
    assert!(!run.success(), "{}", run.report());
    let challenges = run.messages.matches("SIP/2.0 401 Unauthorized").count();
    assert!(challenges >= 2, "{}", run.report());
    assert!(
        kamailio.bindings("bob").is_empty(),
        "{}",
        kamailio.ul_dump()
    );
}

fn register_request(port: u16, branch: &str, cseq: u32, authorization: Option<&str>) -> String {
    let authorization = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    format!(
        "REGISTER sip:{LOOPBACK}:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {LOOPBACK}:{{local_port}};branch=z9hG4bK-{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:carol@{LOOPBACK}:{port}>;tag=smoke\r\n\
         To: <sip:carol@{LOOPBACK}:{port}>\r\n\
         Call-ID: smoke-sha256-{}@{LOOPBACK}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:carol@{LOOPBACK}:{{local_port}}>\r\n\
         Expires: 60\r\n\
         {authorization}\
         Content-Length: 0\r\n\r\n",
        std::process::id()
    )
}

fn sha256_hex(s: &str) -> String {
    format!("{:x}", Sha256::digest(s.as_bytes()))
}

fn param<'a>(challenge: &'a str, name: &str) -> Option<&'a str> {
    challenge.split([',', ' ']).find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k == name).then(|| v.trim_matches('"'))
    })
}

/// RFC 8760 digest with SHA-256 and qop=auth.
fn sha256_authorization(challenge: &str, port: u16, password: &str) -> String {
    let realm = param(challenge, "realm").expect("realm");
    let nonce = param(challenge, "nonce").expect("nonce");
    let uri = format!("sip:{LOOPBACK}:{port}");
    let ha1 = sha256_hex(&format!("carol:{realm}:{password}"));
    let ha2 = sha256_hex(&format!("REGISTER:{uri}"));
    let (nc, cnonce) = ("00000001", "0a4f113b");
    let response = sha256_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    format!(
        "Digest username=\"carol\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm=SHA-256, cnonce=\"{cnonce}\", qop=auth, nc={nc}"
    )
}

#[test]
fn kamailio_sha256_challenges_and_accepts_a_sha256_digest() {
    if !common::require_peers(&["kamailio", "kamcmd"]) {
        return;
    }
    let kamailio = Kamailio::start("SHA-256");
    let port = kamailio.port();
    let limit = Duration::from_secs(3);

    // Every request a new transaction: its own branch and the next CSeq.
    for (round, (password, expected)) in [("wrong", 401), ("carol-secret", 200)]
        .into_iter()
        .enumerate()
    {
        let cseq = 2 * round as u32 + 1;
        let first = sip_transaction(
            port,
            &register_request(port, &format!("r{cseq}"), cseq, None),
            limit,
        )
        .unwrap_or_else(|| panic!("no answer to REGISTER\n{}", kamailio.log()));
        assert_eq!(status_code(&first), Some(401), "{first}");
        let challenge = header(&first, "WWW-Authenticate").expect("WWW-Authenticate");
        assert!(challenge.contains("algorithm=SHA-256"), "{challenge}");
        assert!(challenge.contains("realm=\"siphon.test\""), "{challenge}");
        assert!(challenge.contains("qop=\"auth\""), "{challenge}");

        let authorization = sha256_authorization(challenge, port, password);
        let second = sip_transaction(
            port,
            &register_request(
                port,
                &format!("r{}", cseq + 1),
                cseq + 1,
                Some(&authorization),
            ),
            limit,
        )
        .unwrap_or_else(|| {
            panic!(
                "no answer to the authenticated REGISTER\n{}",
                kamailio.log()
            )
        });
        assert_eq!(status_code(&second), Some(expected), "{second}");
        if expected == 200 {
            let contact = header(&second, "Contact").expect("Contact in 200");
            assert!(contact.contains("expires=60"), "{contact}");
        }
    }
    assert_eq!(
        kamailio.bindings("carol").len(),
        1,
        "{}",
        kamailio.ul_dump()
    );
}

#[test]
fn kamailio_proxies_a_call_to_a_registered_user() {
    if !common::require_peers(&["kamailio", "kamcmd", "sipp"]) {
        return;
    }
    let kamailio = Kamailio::start("MD5");
    let bob_port = common::free_udp_port();

    // bob registers from the port his SIPp UAS will listen on.
    let run = SippCommand::uac("uac_register_auth.xml", &kamailio.addr())
        .port(bob_port)
        .args(&["-au", "bob", "-ap", "bob-secret"])
        .args(&["-key", "user", "bob", "-key", "expires", "60"])
        .timeout(Duration::from_secs(15))
        .run();
    assert!(run.success(), "{}", run.report());
    assert_eq!(kamailio.bindings("bob").len(), 1, "{}", kamailio.ul_dump());

    let bob = SippCommand::uas("uas_answer.xml")
        .port(bob_port)
        .timeout(Duration::from_secs(25))
        .spawn();
    let caller = SippCommand::uac("uac_invite_rr.xml", &kamailio.addr())
        .args(&["-s", "bob"])
        .timeout(Duration::from_secs(20))
        .run();
    let callee = bob.wait();
    assert!(caller.success(), "caller:\n{}", caller.report());
    assert!(callee.success(), "callee:\n{}", callee.report());
    // The proxy record-routed, and the in-dialog requests went through it.
    assert!(
        callee.messages.contains("Record-Route: <sip:127.0.0.1:"),
        "{}",
        callee.report()
    );
    assert!(
        caller
            .messages
            .contains(&format!("Route: <sip:{}", kamailio.addr())),
        "{}",
        caller.report()
    );

    // A call to a user with no binding: 404.
    let nobody = SippCommand::uac("uac_invite_rr.xml", &kamailio.addr())
        .args(&["-s", "carol"])
        .timeout(Duration::from_secs(10))
        .run();
    assert!(!nobody.success(), "{}", nobody.report());
    assert!(
        nobody.messages.contains("SIP/2.0 404"),
        "{}",
        nobody.report()
    );
}

/// Run a registrar scenario against its self-test client; both must pass.
fn selftest(uas: &str, uac: &str, uas_args: &[&str]) -> Duration {
    let started = Instant::now();
    let server = SippCommand::uas(uas)
        .args(uas_args)
        .timeout(Duration::from_secs(30))
        .spawn();
    let client = SippCommand::uac(uac, &server.addr())
        .timeout(Duration::from_secs(30))
        .run();
    let server = server.wait();
    assert!(client.success(), "client {uac}:\n{}", client.report());
    assert!(server.success(), "server {uas}:\n{}", server.report());
    started.elapsed()
}

#[test]
fn sipp_reg_sha256_challenge_selftest() {
    if !common::require_peers(&["sipp"]) {
        return;
    }
    selftest("reg_sha256_challenge.xml", "selftest/uac_sha256.xml", &[]);
}

#[test]
fn sipp_reg_423_selftest() {
    if !common::require_peers(&["sipp"]) {
        return;
    }
    selftest("reg_423.xml", "selftest/uac_423.xml", &[]);
}

#[test]
fn sipp_reg_short_expiry_selftest() {
    if !common::require_peers(&["sipp"]) {
        return;
    }
    let took = selftest("reg_short_expiry.xml", "selftest/uac_short_expiry.xml", &[]);
    assert!(took >= Duration::from_secs(5), "{took:?}");
}

#[test]
fn sipp_reg_drop_first_selftest() {
    if !common::require_peers(&["sipp"]) {
        return;
    }
    selftest(
        "reg_drop_first.xml",
        "selftest/uac_drop_first.xml",
        &["-nr"],
    );
}

#[test]
fn sipp_reg_403_selftest() {
    if !common::require_peers(&["sipp"]) {
        return;
    }
    selftest("reg_403.xml", "selftest/uac_403.xml", &[]);
}

#[test]
fn sipp_reg_drop_first_fails_a_client_that_does_not_retransmit() {
    if !common::require_peers(&["sipp"]) {
        return;
    }
    // The scenarios must fail a misbehaving client, not just pass a good one:
    // a client that never retransmits (-nr) gets no answer, and the server's
    // run fails after its 3 s wait for the retransmission.
    let server = SippCommand::uas("reg_drop_first.xml")
        .args(&["-nr"])
        .timeout(Duration::from_secs(15))
        .spawn();
    let client = SippCommand::uac("selftest/uac_drop_first.xml", &server.addr())
        .args(&["-nr"])
        .timeout(Duration::from_secs(8))
        .run();
    let server = server.wait();
    assert!(!client.success(), "{}", client.report());
    assert!(!server.success(), "{}", server.report());
    assert!(
        server.error_log.contains("receive timeout"),
        "{}",
        server.report()
    );
}
