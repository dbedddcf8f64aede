//! RFC 4475 (SIP torture tests) and RFC 5118 (IPv6 torture tests), one test per message.
//! Valid messages must parse with their key values read right; invalid ones must be
//! rejected the way the RFC says: a response status, or a silent drop.
//! The messages are in sip-fixtures/, bit-exact from the RFCs' archives.

use siphon::sip::message::{HeaderName, Message, ParseError, Response};
use siphon::sip::uas::{UasPolicy, inspect_request};

fn load(dir: &str, name: &str) -> Vec<u8> {
    let path = format!(
        "{}/sip-fixtures/{dir}/{name}.dat",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What a user agent does with a datagram: accept it, answer with a status, or drop it.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Accept,
    Status(u16),
    Drop,
}

fn verdict(data: &[u8]) -> Verdict {
    match Message::parse(data) {
        Err(ParseError::Reject {
            status, headers, ..
        }) => {
            // The rejection must be answerable: the response copies what the request had.
            let response = Response::for_request(&headers, status);
            let bytes = response.to_bytes();
            assert!(bytes.starts_with(format!("SIP/2.0 {status} ").as_bytes()));
            assert_eq!(response.headers.call_id(), headers.call_id());
            Verdict::Status(status)
        }
        Err(ParseError::Drop(_)) => Verdict::Drop,
        Ok(Message::Request(request)) => match inspect_request(&request, &UasPolicy::default()) {
            Ok(()) => Verdict::Accept,
            Err(response) => Verdict::Status(response.status),
        },
        // RFC 3261 §18.1.2: a response with more than one Via is discarded by a UAC.
        Ok(Message::Response(response)) => {
            if response.headers.get_all(&HeaderName::Via).count() > 1 {
                Verdict::Drop
            } else {
                Verdict::Accept
            }
        }
    }
}

/// The values a parser must read right, as `name=value` strings, for comparison.
struct Key {
    start: String,
    call_id: String,
    cseq: String,
    vias: usize,
    via1: String,
    from_tag: Option<String>,
    to_tag: Option<String>,
    body: usize,
    max_forwards: Option<String>,
}

fn key(data: &[u8]) -> Key {
    let message = Message::parse(data).unwrap_or_else(|e| panic!("must parse: {e}"));
    let headers = message.headers();
    let start = match &message {
        Message::Request(r) => format!("{} {}", r.method, r.uri),
        Message::Response(r) => format!("{} {}", r.status, r.reason),
    };
    let body = match &message {
        Message::Request(r) => r.body.len(),
        Message::Response(r) => r.body.len(),
    };
    let vias = headers.vias().unwrap();
    let cseq = headers.cseq().unwrap();
    Key {
        start,
        call_id: headers.call_id().unwrap().to_string(),
        cseq: format!("{} {}", cseq.seq, cseq.method),
        vias: vias.len(),
        via1: format!(
            "{} {} {}",
            vias[0].transport,
            vias[0].sent_by(),
            vias[0].branch().unwrap_or("-")
        ),
        from_tag: headers.from().unwrap().tag().map(String::from),
        to_tag: headers.to().unwrap().tag().map(String::from),
        body,
        max_forwards: headers.get(&HeaderName::MaxForwards).map(String::from),
    }
}

#[allow(clippy::too_many_arguments)]
fn check_key(
    name: &str,
    start: &str,
    call_id: &str,
    cseq: &str,
    vias: usize,
    via1: &str,
    from_tag: Option<&str>,
    to_tag: Option<&str>,
    body: usize,
) -> Key {
    let k = key(&load("rfc4475", name));
    assert_eq!(k.start, start, "start line");
    assert_eq!(k.call_id, call_id, "Call-ID");
    assert_eq!(k.cseq, cseq, "CSeq");
    assert_eq!(k.vias, vias, "Via count");
    assert_eq!(k.via1, via1, "top Via");
    assert_eq!(k.from_tag.as_deref(), from_tag, "From tag");
    assert_eq!(k.to_tag.as_deref(), to_tag, "To tag");
    assert_eq!(k.body, body, "body length");
    k
}

// RFC 4475 §3.1.1: valid messages.

#[test]
fn wsinv() {
    let k = check_key(
        "wsinv",
        "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam",
        "wsinv.ndaksdj@192.0.2.1",
        "9 INVITE",
        3,
        "UDP 192.0.2.2 390skdjuw",
        Some("98asjd8"),
        Some("1918181833n"),
        150,
    );
    assert_eq!(k.max_forwards.as_deref(), Some("0068"));
    let Message::Request(r) = Message::parse(&load("rfc4475", "wsinv")).unwrap() else {
        panic!()
    };
    // Folded unknown header joined with one space; the unusual value kept opaque.
    assert_eq!(
        r.headers.get_named("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(
        r.headers.get_named("UnknownHeaderWithUnusualValue"),
        Some(";;,,;;,;")
    );
    assert_eq!(r.headers.get(&HeaderName::Subject), Some(""));
    assert_eq!(verdict(&load("rfc4475", "wsinv")), Verdict::Accept);
}

#[test]
fn intmeth() {
    let k = check_key(
        "intmeth",
        "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{",
        "139122385 !interesting-Method0123456789_*+`.%indeed'~",
        1,
        "TCP host1.example.com z9hG4bK-.!%66*_+`'~",
        Some("_token~1'+`*%!-."),
        None,
        0,
    );
    assert_eq!(k.max_forwards.as_deref(), Some("255"));
    // An endpoint answers an unknown method with 501 (RFC 3261 §8.2.1).
    assert_eq!(verdict(&load("rfc4475", "intmeth")), Verdict::Status(501));
}

#[test]
fn esc01() {
    check_key(
        "esc01",
        "INVITE sip:sips%3Auser%40example.com@example.net",
        "esc01.239409asdfakjkn23onasd0-3234",
        "234234 INVITE",
        1,
        "UDP host5.example.net z9hG4bKkdjuw",
        Some("938"),
        None,
        150,
    );
    let Message::Request(r) = Message::parse(&load("rfc4475", "esc01")).unwrap() else {
        panic!()
    };
    let user = r.uri.as_sip().unwrap().user_unescaped().unwrap();
    assert_eq!(user, "sips:user@example.com");
    assert_eq!(verdict(&load("rfc4475", "esc01")), Verdict::Accept);
}

#[test]
fn escnull() {
    check_key(
        "escnull",
        "REGISTER sip:example.com",
        "escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd",
        "14398234 REGISTER",
        1,
        "UDP host5.example.com z9hG4bKkdjuw",
        Some("839923423"),
        None,
        0,
    );
    let Message::Request(r) = Message::parse(&load("rfc4475", "escnull")).unwrap() else {
        panic!()
    };
    let contacts = r.headers.contacts().unwrap();
    assert_eq!(contacts.len(), 2);
    assert_ne!(contacts[0].uri, contacts[1].uri);
    // The unescaped AOR keeps the NUL instead of being truncated.
    let to = r.headers.to().unwrap();
    assert_eq!(
        to.uri.as_sip().unwrap().user_unescaped().unwrap(),
        "null-\0-null"
    );
    // We are not a registrar: 405 (RFC 3261 §8.2.1).
    assert_eq!(verdict(&load("rfc4475", "escnull")), Verdict::Status(405));
}

#[test]
fn esc02() {
    check_key(
        "esc02",
        "RE%47IST%45R sip:registrar.example.com",
        "esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf",
        "29344 RE%47IST%45R",
        1,
        "TCP host.example.com z9hG4bK209%fzsnel234",
        Some("f232jadfj23"),
        None,
        0,
    );
    let Message::Request(r) = Message::parse(&load("rfc4475", "esc02")).unwrap() else {
        panic!()
    };
    // C%6Fntact is an unknown header, not a Contact.
    assert_eq!(r.headers.contacts().unwrap().len(), 2);
    assert!(r.headers.get_named("C%6Fntact").is_some());
    assert_eq!(verdict(&load("rfc4475", "esc02")), Verdict::Status(501));
}

#[test]
fn lwsdisp() {
    check_key(
        "lwsdisp",
        "OPTIONS sip:user@example.com",
        "lwsdisp.1234abcd@funky.example.com",
        "60 OPTIONS",
        1,
        "UDP funky.example.com z9hG4bKkdjuw",
        Some("323"),
        None,
        0,
    );
    assert_eq!(verdict(&load("rfc4475", "lwsdisp")), Verdict::Accept);
}

#[test]
fn longreq() {
    let from_tag = format!("12{}424", "982".repeat(50));
    let call_id = format!("longreq.one{}longcallid", "really".repeat(20));
    check_key(
        "longreq",
        "INVITE sip:user@example.com",
        &call_id,
        "3882340 INVITE",
        34,
        "TCP sip33.example.com -",
        Some(&from_tag),
        None,
        150,
    );
    assert_eq!(verdict(&load("rfc4475", "longreq")), Verdict::Accept);
}

#[test]
fn dblreq() {
    // The trailing INVITE-like bytes are outside Content-Length: 0 and are dropped.
    check_key(
        "dblreq",
        "REGISTER sip:example.com",
        "dblreq.0ha0isndaksdj99sdfafnl3lk233412",
        "8 REGISTER",
        1,
        "UDP 192.0.2.125 z9hG4bKkdjuw23492",
        Some("43251j3j324"),
        None,
        0,
    );
}

#[test]
fn semiuri() {
    check_key(
        "semiuri",
        "OPTIONS sip:user;par=u%40example.net@example.com",
        "semiuri.0ha0isndaksdj",
        "8 OPTIONS",
        1,
        "UDP 192.0.2.1 z9hG4bKkdjuw",
        Some("33242"),
        None,
        0,
    );
    let Message::Request(r) = Message::parse(&load("rfc4475", "semiuri")).unwrap() else {
        panic!()
    };
    let uri = r.uri.as_sip().unwrap();
    assert_eq!(uri.user_unescaped().unwrap(), "user;par=u@example.net");
    assert!(uri.params.is_empty());
    assert_eq!(verdict(&load("rfc4475", "semiuri")), Verdict::Accept);
}

#[test]
fn transports() {
    check_key(
        "transports",
        "OPTIONS sip:user@example.com",
        "transports.kijh4akdnaqjkwendsasfdj",
        "60 OPTIONS",
        5,
        "UDP t1.example.com z9hG4bKkdjuw",
        Some("323"),
        None,
        0,
    );
    let m = Message::parse(&load("rfc4475", "transports")).unwrap();
    let transports: Vec<String> = m
        .headers()
        .vias()
        .unwrap()
        .into_iter()
        .map(|v| v.transport)
        .collect();
    assert_eq!(transports, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
}

#[test]
fn mpart01() {
    check_key(
        "mpart01",
        "MESSAGE sip:kumiko@example.org",
        "3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..",
        "1 MESSAGE",
        1,
        "UDP 127.0.0.1:5070 z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-",
        Some("2fb0dcc9"),
        None,
        553,
    );
    let Message::Request(r) = Message::parse(&load("rfc4475", "mpart01")).unwrap() else {
        panic!()
    };
    // The binary part (NUL, bare CR and LF) is carried byte for byte.
    assert!(r.body.contains(&0));
    assert_eq!(Message::parse(&r.to_bytes()).unwrap(), Message::Request(r));
}

#[test]
fn unreason() {
    check_key(
        "unreason",
        "200 = 2**3 * 5**2 но сто девяносто девять - простое",
        "unreason.1234ksdfak3j2erwedfsASdf",
        "35 INVITE",
        1,
        "UDP 192.0.2.198 z9hG4bK1324923",
        Some("11141343"),
        Some("2229"),
        154,
    );
}

#[test]
fn noreason() {
    check_key(
        "noreason",
        "100 ",
        "noreason.asndj203insdf99223ndf",
        "35 INVITE",
        1,
        "UDP 192.0.2.105 z9hG4bK2398ndaoe",
        Some("39ansfi3"),
        Some("902jndnke3"),
        0,
    );
}

// RFC 4475 §3.1.2: invalid messages.

macro_rules! verdict_tests {
    ($dir:literal: $($name:ident $file:literal => $expected:expr;)*) => {
        $(
            #[test]
            fn $name() {
                assert_eq!(verdict(&load($dir, $file)), $expected);
            }
        )*
    };
}

verdict_tests! { "rfc4475":
    badinv01 "badinv01" => Verdict::Status(400);
    clerr "clerr" => Verdict::Status(400);
    ncl "ncl" => Verdict::Status(400);
    scalar02 "scalar02" => Verdict::Status(400);
    scalarlg "scalarlg" => Verdict::Drop;
    quotbal "quotbal" => Verdict::Status(400);
    ltgtruri "ltgtruri" => Verdict::Status(400);
    lwsruri "lwsruri" => Verdict::Status(400);
    lwsstart "lwsstart" => Verdict::Status(400);
    trws "trws" => Verdict::Status(400);
    escruri "escruri" => Verdict::Status(400);
    // RFC 4475 §3.1.2.12: the Date is not needed to process the request, so accept it.
    baddate "baddate" => Verdict::Accept;
    regbadct "regbadct" => Verdict::Status(400);
    badaspec "badaspec" => Verdict::Status(400);
    baddn "baddn" => Verdict::Status(400);
    badvers "badvers" => Verdict::Status(505);
    mismatch01 "mismatch01" => Verdict::Status(400);
    mismatch02 "mismatch02" => Verdict::Status(400);
    bigcode "bigcode" => Verdict::Drop;
    // §3.2.1: a bare magic cookie is still a branch; matching falls back (RFC 3261 §17.2.3).
    badbranch "badbranch" => Verdict::Accept;
    // §3.3: application-level handling at an endpoint.
    insuf "insuf" => Verdict::Status(400);
    unkscm "unkscm" => Verdict::Status(416);
    novelsc "novelsc" => Verdict::Status(416);
    // A REGISTER with odd schemes: an endpoint is not a registrar (405, RFC 3261 §8.2.1).
    unksm2 "unksm2" => Verdict::Status(405);
    bext01 "bext01" => Verdict::Status(420);
    invut "invut" => Verdict::Status(415);
    regaut01 "regaut01" => Verdict::Status(405);
    multi01 "multi01" => Verdict::Status(400);
    mcl01 "mcl01" => Verdict::Status(400);
    bcast "bcast" => Verdict::Drop;
    zeromf "zeromf" => Verdict::Accept;
    cparam01 "cparam01" => Verdict::Status(405);
    cparam02 "cparam02" => Verdict::Status(405);
    regescrt "regescrt" => Verdict::Status(405);
    sdp01 "sdp01" => Verdict::Status(406);
    inv2543 "inv2543" => Verdict::Accept;
}

#[test]
fn bext01_lists_the_unsupported_tags() {
    let Message::Request(r) = Message::parse(&load("rfc4475", "bext01")).unwrap() else {
        panic!()
    };
    let response = inspect_request(&r, &UasPolicy::default()).unwrap_err();
    let unsupported = response.headers.get(&HeaderName::Unsupported).unwrap();
    for tag in r.headers.tokens(&HeaderName::Require) {
        assert!(
            unsupported.contains(tag),
            "{tag} missing from {unsupported}"
        );
    }
}

#[test]
fn cparam_contact_parameters_land_in_the_right_place() {
    // §3.3.12: addr-spec form, the parameter belongs to the header field.
    let m = Message::parse(&load("rfc4475", "cparam01")).unwrap();
    let c = &m.headers().contacts().unwrap()[0];
    assert!(c.params.contains("unknownparam"));
    assert!(!c.uri.as_sip().unwrap().params.contains("unknownparam"));
    // §3.3.13: inside <>, it is a URI parameter.
    let m = Message::parse(&load("rfc4475", "cparam02")).unwrap();
    let c = &m.headers().contacts().unwrap()[0];
    assert!(c.uri.as_sip().unwrap().params.contains("unknownparam"));
    // §3.3.14: escaped headers inside <> survive a round trip.
    let m = Message::parse(&load("rfc4475", "regescrt")).unwrap();
    let c = &m.headers().contacts().unwrap()[0];
    assert!(
        c.uri
            .as_sip()
            .unwrap()
            .headers
            .as_deref()
            .unwrap()
            .starts_with("Route=")
    );
    let again = Message::parse(&m.to_bytes()).unwrap();
    assert_eq!(again.headers().contacts().unwrap()[0], *c);
}

#[test]
fn inv2543_body_runs_to_the_end_of_the_datagram() {
    let Message::Request(r) = Message::parse(&load("rfc4475", "inv2543")).unwrap() else {
        panic!()
    };
    assert!(r.body.starts_with(b"v=0"));
    assert!(r.headers.from().unwrap().tag().is_none());
}

#[test]
fn every_fixture_round_trips_or_is_rejected_without_panic() {
    for dir in ["rfc4475", "rfc5118"] {
        let path = format!("{}/sip-fixtures/{dir}", env!("CARGO_MANIFEST_DIR"));
        let mut count = 0;
        for entry in std::fs::read_dir(&path).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "dat") {
                let data = std::fs::read(&p).unwrap();
                if let Ok(m) = Message::parse(&data) {
                    let again = Message::parse(&m.to_bytes())
                        .unwrap_or_else(|e| panic!("{}: re-parse failed: {e}", p.display()));
                    assert_eq!(again, m, "{}", p.display());
                }
                for cut in (0..data.len()).step_by(7) {
                    let _ = Message::parse(&data[..cut]);
                }
                count += 1;
            }
        }
        assert!(count >= 12, "{dir}: only {count} fixtures");
    }
}

// RFC 5118: IPv6. These are parser tests (several are REGISTERs, which an endpoint
// would answer with 405), so the verdict is the parser's alone.

fn parse_verdict(data: &[u8]) -> Verdict {
    match Message::parse(data) {
        Ok(_) => Verdict::Accept,
        Err(ParseError::Reject { status, .. }) => Verdict::Status(status),
        Err(ParseError::Drop(_)) => Verdict::Drop,
    }
}

macro_rules! parse_tests {
    ($dir:literal: $($name:ident $file:literal => $expected:expr;)*) => {
        $(
            #[test]
            fn $name() {
                assert_eq!(parse_verdict(&load($dir, $file)), $expected);
            }
        )*
    };
}

parse_tests! { "rfc5118":
    ipv6_good "ipv6-good" => Verdict::Accept;
    ipv6_bad "ipv6-bad" => Verdict::Status(400);
    port_ambiguous "port-ambiguous" => Verdict::Accept;
    port_unambiguous "port-unambiguous" => Verdict::Accept;
    via_received_param_with_delim "via-received-param-with-delim" => Verdict::Accept;
    via_received_param_no_delim "via-received-param-no-delim" => Verdict::Accept;
    ipv6_in_sdp "ipv6-in-sdp" => Verdict::Accept;
    mult_ip_in_header "mult-ip-in-header" => Verdict::Accept;
    mult_ip_in_sdp "mult-ip-in-sdp" => Verdict::Accept;
    ipv4_mapped_ipv6 "ipv4-mapped-ipv6" => Verdict::Accept;
    ipv6_bug_abnf_3_colons "ipv6-bug-abnf-3-colons" => Verdict::Accept;
    ipv6_correct_abnf_2_colons "ipv6-correct-abnf-2-colons" => Verdict::Accept;
}

#[test]
fn ipv6_addresses_are_read() {
    let m = Message::parse(&load("rfc5118", "ipv6-good")).unwrap();
    let Message::Request(r) = m else { panic!() };
    let host = &r.uri.as_sip().unwrap().host;
    assert!(matches!(host, siphon::sip::Host::Ipv6(_)), "{host:?}");
    let m = Message::parse(&load("rfc5118", "via-received-param-no-delim")).unwrap();
    assert!(m.headers().top_via().unwrap().received().unwrap().is_ipv6());
}
