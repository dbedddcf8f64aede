//! Parses SIP messages from files and prints the verdict: `cargo run --example parse_sip -- FILE...`
fn main() {
    for path in std::env::args().skip(1) {
        let data = std::fs::read(&path).expect("readable file");
        match siphon::sip::Message::parse(&data) {
            Ok(m) => println!(
                "{path}: OK {:?}",
                m.headers()
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>()
            ),
            Err(e) => println!("{path}: {e}"),
        }
    }
}
