//! The media path allocates nothing per packet: with a counting global allocator, two
//! sessions exchanging audio for two seconds (about 200 packets each way, sent, received,
//! jitter-buffered, decoded, recorded) allocate next to nothing. Its own test binary, so
//! that the allocator sees only this.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use siphon::media::{AudioSink, AudioSource, MediaConfig, MediaSession};
use siphon::sdp::{CodecChoice, Direction, NegotiatedMedia, OpusParams};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn negotiated(
    codec: CodecChoice,
    rtp: std::net::SocketAddr,
    rtcp: std::net::SocketAddr,
) -> NegotiatedMedia {
    let codec = codec.offer_codec();
    NegotiatedMedia {
        remote_rtp: rtp,
        remote_rtcp: rtcp,
        rtcp_mux: false,
        opus: (codec.name == "opus").then(|| OpusParams::parse("useinbandfec=1")),
        codec,
        telephone_event_pt: Some(101),
        ptime_ms: 20,
        direction: Direction::SendRecv,
        remote_direction: Direction::SendRecv,
    }
}

#[test]
fn steady_state_media_does_not_allocate_per_packet() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("siphon-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for codec in [CodecChoice::Pcmu, CodecChoice::Opus] {
        rt.block_on(async {
            let bind = || UdpSocket::bind("127.0.0.1:0").unwrap();
            let (a_rtp, a_rtcp, b_rtp, b_rtcp) = (bind(), bind(), bind(), bind());
            let na = negotiated(
                codec,
                b_rtp.local_addr().unwrap(),
                b_rtcp.local_addr().unwrap(),
            );
            let nb = negotiated(
                codec,
                a_rtp.local_addr().unwrap(),
                a_rtcp.local_addr().unwrap(),
            );
            let config = |negotiated, source, sink| MediaConfig {
                negotiated,
                source,
                sink,
                echo: false,
            };
            let a = MediaSession::start(
                a_rtp,
                a_rtcp,
                config(
                    na,
                    AudioSource::Tone(440.0),
                    AudioSink::File(dir.join(format!("{codec}.wav"))),
                ),
            )
            .unwrap();
            let b = MediaSession::start(
                b_rtp,
                b_rtcp,
                config(nb, AudioSource::Tone(300.0), AudioSink::Null),
            )
            .unwrap();
            // Warm up: jitter buffers start, first RTCP, timer wheel levels touched.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let (sent0, recv0) = (a.stats().packets_sent, a.stats().packets_received);
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(2)).await;
            let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
            let packets = (a.stats().packets_sent - sent0) + (a.stats().packets_received - recv0);
            a.stop().await;
            b.stop().await;
            eprintln!(
                "{codec}: {allocations} allocations for {packets} packets at A (and as many at B)"
            );
            assert!(packets > 150, "{packets}");
            // RTCP (a compound every ~5 s per side, decoded into owned packets) and the
            // test's own timers may allocate a little; per-packet allocation would show
            // as hundreds.
            assert!(
                allocations <= 40,
                "{allocations} allocations for {packets} packets"
            );
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
}
