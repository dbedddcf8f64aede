//! Media end to end, through siphon's command line, against real peers:
//! siphon to siphon (speech both ways per codec, DTMF, echo), a SIPp UAS
//! echoing RTP (`-rtp_echo`), and a SIPp UAC playing SIPp's own pcap files
//! (PCMA speech, RFC 4733 DTMF). Scenarios in sip-fixtures/sipp/media/.
//!
//! Every test checks what came out: recordings (`--audio-out file:`)
//! aligned to their source by normalised cross-correlation, tone detection,
//! "dtmf" events, and the statistics in "ended". Measured figures are
//! printed on stderr (`cargo test --test media_peers -- --nocapture`).
//!
//! Run against another build with SIPHON_TEST_BIN=/path/to/siphon.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::calls::{CallOutcome, SiphonChild, tone_ratio};
use common::media::{
    Alignment, Segmented, Sound, align, align_segments, dtmf_digits, ended_stats, g711_audio,
    have_sound_tools, keep_artifacts, make_speech, one_at_a_time, pcap_rtp_packets, read_mono,
    sipp_media_port, sox_resample,
};
use common::{LOOPBACK, SippCommand, TempDir, require_peer};
use serde_json::Value;
use siphon::media::g711::decode_alaw;

const EVENT_WAIT: Duration = Duration::from_secs(15);
const EXIT_WAIT: Duration = Duration::from_secs(20);
const SIPP_TIMEOUT: Duration = Duration::from_secs(30);

// How a recording is judged. The recording is aligned to its source by a
// cross-correlation lag search (`align`), then piece by piece
// (`align_segments`: 0.5 s segments, each at its own lag within 200 ms of
// the global one). siphon's jitter buffer is adaptive: after a scheduling
// stall of the process (a loaded machine) it conceals what came late and
// grows its delay by whole frames, so the recording slips by 20-80 ms and no
// single lag fits all of it (measured here under load: global NCC down to
// 0.54 for Opus with every 0.5 s piece intact). The segment NCC measures
// whether the sound came through; the slips and the global NCC are printed
// beside it (not asserted: under load they measure the machine). On a quiet
// machine both NCCs are the same and there is no slip. A jitter buffer that
// slipped all the time would still fail: every slip costs part of a segment.
// A stall also makes siphon conceal audio that had arrived (after a stall
// the engine's timer catches up on playout before it reads the datagrams
// queued on its RTP socket, which then count as late), and that can pull
// even the segment NCC under the bar (0.86-0.88 measured for G.711): a call
// whose recordings show such a mark (a slip, or a hole in an otherwise good
// recording) and miss the bar is made again, up to ATTEMPTS calls; one that
// misses it without such a mark fails at once.

/// Segment NCC a G.711 recording must reach against its source. G.711 is a
/// waveform codec (about 35 dB SNR on speech), so on a lossless loopback what
/// is left is quantisation and two different resamplers (siphon's, sox's):
/// measured 0.998 (PCMU and PCMA, both ways) on a quiet machine, 0.95-0.98
/// under load or with the receiver stopped (SIGSTOP) for 100 ms.
const G711_MIN_NCC: f64 = 0.9;
/// The same for Opus (32 kbit/s class, 48 kHz): a perceptual codec keeps the
/// spectrum better than the waveform, so the bar is lower. Measured
/// 0.93-0.95 on a quiet machine, 0.82-0.94 under load.
const OPUS_MIN_NCC: f64 = 0.8;
/// SIPp's g711a.pcap as played by SIPp and recorded by siphon, against our
/// own decoding of the pcap: the same A-law codes, so only siphon's playout
/// (jitter buffer, 30 ms packets into its frames) can lower it. Measured
/// 1.000 over the pcap's span, 0.987 counting the recording around it.
const PCAP_MIN_NCC: f64 = 0.9;
/// Share of the recording's power at the tone's frequency (median over
/// 100 ms blocks, `tone_ratio`). Measured 1.000.
const TONE_MIN_RATIO: f64 = 0.8;
/// Alignment search: lags up to this far either way, and an overlap of at
/// least this much.
const MAX_LAG_SECS: f64 = 1.0;
const MIN_OVERLAP_SECS: f64 = 1.5;
const SEGMENT_SECS: f64 = 0.5;
const SEGMENT_SPAN_SECS: f64 = 0.2;
/// Calls made at most, when the recordings of a call show slips and miss
/// the mark (see `with_attempts`).
const ATTEMPTS: u32 = 3;

/// What the caller says (espeak-ng, about 6 s: longer than the 4 s call).
const CALLER_TEXT: &str = "This is the calling side of a siphon media test. \
                           The quick brown fox jumps over the lazy dog, then runs home.";
/// What the callee says (different words, so that a recording of the wrong
/// stream cannot pass).
const CALLEE_TEXT: &str = "Hello, you have reached the answering side. \
                           Peter Piper picked a peck of pickled peppers, one two three.";

const SIPP_PCAP_DIR: &str = "/usr/share/sip-tester";

fn have_sipp() -> bool {
    require_peer("sipp")
}

fn file_arg(path: &Path) -> String {
    format!("file:{}", path.display())
}

/// How well a recording matches its source.
struct Match {
    global: Alignment,
    segmented: Segmented,
    rate: u32,
}

impl Match {
    fn describe(&self) -> String {
        format!(
            "segment ncc {:.4} (median {:.4}, holes {}), global ncc {:.4} at lag {:.1} ms over \
             {:.2} s, slips: {}",
            self.segmented.ncc,
            self.segmented.median_ncc(),
            self.segmented.holes(),
            self.global.ncc,
            self.global.lag_ms(self.rate),
            self.global.overlap as f64 / f64::from(self.rate),
            self.segmented.slip_list(self.rate)
        )
    }

    /// Ok if the segment NCC reaches `min_ncc`; else why not.
    fn verdict(&self, label: &str, min_ncc: f64) -> Result<(), String> {
        if self.segmented.ncc >= min_ncc {
            Ok(())
        } else {
            Err(format!(
                "{label}: the recording does not match what was sent (need segment ncc >= \
                 {min_ncc}): {}",
                self.describe()
            ))
        }
    }
}

/// Run `attempt` (one call, measured) up to ATTEMPTS times: it returns Ok
/// when the recordings pass, or Err((why, disturbed)) when they do not.
/// Only a failed attempt whose recordings show the marks of a scheduling
/// stall (see above: a slip, or a hole in an otherwise good recording) is
/// tried again; a failure on an undisturbed run fails at once.
fn with_attempts(what: &str, mut attempt: impl FnMut(u32) -> Result<(), (String, bool)>) {
    for n in 1..=ATTEMPTS {
        match attempt(n) {
            Ok(()) => return,
            Err((why, true)) if n < ATTEMPTS => {
                eprintln!("{what}: attempt {n} disturbed by a stall, trying again: {why}");
            }
            Err((why, disturbed)) => panic!(
                "{what}: attempt {n} of {ATTEMPTS} failed{}: {why}",
                if disturbed {
                    " (disturbed on every attempt: a loaded machine, or a jitter buffer \
                     that slips or drops audio by itself)"
                } else {
                    " with no mark of a stall"
                }
            ),
        }
    }
}

/// Align `recording` to `source` (a WAV at any rate, resampled with sox to
/// the recording's rate first).
fn match_files(source: &Path, recording: &Path, work: &Path, label: &str) -> (Match, Sound) {
    let rec = read_mono(recording);
    let resampled = work.join(format!("{label}-source-{}.wav", rec.rate));
    sox_resample(source, rec.rate, &resampled);
    let src = read_mono(&resampled);
    (match_sounds(&src, &rec, label), rec)
}

fn match_sounds(source: &Sound, recording: &Sound, label: &str) -> Match {
    assert_eq!(source.rate, recording.rate, "{label}: rates differ");
    let rate = f64::from(recording.rate);
    let global = align(
        &source.samples,
        &recording.samples,
        (MAX_LAG_SECS * rate) as usize,
        (MIN_OVERLAP_SECS * rate) as usize,
    )
    .unwrap_or_else(|| {
        panic!(
            "{label}: no alignment at all (recording {:.2} s, rms {:.0}; source {:.2} s)",
            recording.seconds(),
            recording.rms(),
            source.seconds()
        )
    });
    let segmented = align_segments(
        &source.samples,
        &recording.samples,
        recording.rate,
        &global,
        (SEGMENT_SECS * rate) as usize,
        (SEGMENT_SPAN_SECS * rate) as usize,
    );
    Match {
        global,
        segmented,
        rate: recording.rate,
    }
}

fn stat_u64(stats: &Value, name: &str) -> u64 {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("stats without integer {name:?}: {stats}"))
}

/// packets_received > 0 and packets_lost == 0 (loopback loses nothing), and
/// the codec named `codec`.
fn assert_clean_stats(outcome: &CallOutcome, codec: &str, who: &str) -> Value {
    let stats = ended_stats(outcome);
    assert!(
        stats["codec"]
            .as_str()
            .is_some_and(|c| c.eq_ignore_ascii_case(codec)),
        "{who}: stats codec is not {codec}: {stats}\n{}",
        outcome.report()
    );
    assert!(
        stat_u64(&stats, "packets_received") > 0,
        "{who}: no packets received: {stats}\n{}",
        outcome.report()
    );
    assert_eq!(
        stat_u64(&stats, "packets_lost"),
        0,
        "{who}: packets lost on loopback: {stats}\n{}",
        outcome.report()
    );
    stats
}

fn assert_answered_with(outcome: &CallOutcome, codec: &str, who: &str) {
    let answered = outcome.single("answered");
    assert!(
        answered["codec"]
            .as_str()
            .is_some_and(|c| c.eq_ignore_ascii_case(codec)),
        "{who}: answered with another codec than {codec}: {answered}\n{}",
        outcome.report()
    );
}

/// siphon listen (auto-answer), then the rest of its output once the call
/// has ended (SIGTERM after the "ended" event: recordings are complete
/// when siphon exits).
fn finish_callee(mut callee: SiphonChild) -> CallOutcome {
    let ended = callee.wait_for_event("ended", EVENT_WAIT);
    let report = if ended.is_none() {
        Some(callee.report_so_far())
    } else {
        None
    };
    let outcome = callee.stop(EXIT_WAIT);
    if let Some(report) = report {
        panic!("the callee reported no \"ended\"\n{report}");
    }
    assert!(
        outcome.status.is_some(),
        "the callee did not exit within {EXIT_WAIT:?} of SIGTERM\n{}",
        outcome.report()
    );
    outcome
}

// ---------------------------------------------------------------------------
// Self-checks (no siphon)
// ---------------------------------------------------------------------------

#[test]
fn helpers_align_and_read_pcaps() {
    // Heavy on the CPU for a moment: not beside a call.
    let _serial = one_at_a_time();
    common::media::self_check();
    if !have_sipp() {
        return;
    }
    // g711a.pcap: one PCMA stream of 30 ms packets with no gap.
    let packets = pcap_rtp_packets(&Path::new(SIPP_PCAP_DIR).join("g711a.pcap"));
    assert_eq!(packets.len(), 236);
    assert!(
        packets
            .iter()
            .all(|p| p.payload_type == 8 && p.payload.len() == 240)
    );
    for pair in packets.windows(2) {
        assert_eq!(pair[1].sequence, pair[0].sequence.wrapping_add(1));
        assert_eq!(pair[1].timestamp, pair[0].timestamp.wrapping_add(240));
    }
    let audio = g711_audio(&packets, 8, decode_alaw);
    assert_eq!(audio.samples.len(), 236 * 240);
    assert!(audio.rms() > 300.0, "g711a.pcap decodes to silence");
    // The DTMF pcaps carry RFC 4733 events at payload type 101, event code
    // 1 for "1" and 11 for "#", the last three packets marking the end.
    for (name, code) in [("dtmf_2833_1.pcap", 1u8), ("dtmf_2833_pound.pcap", 11)] {
        let packets = pcap_rtp_packets(&Path::new(SIPP_PCAP_DIR).join(name));
        assert_eq!(packets.len(), 10, "{name}");
        assert!(
            packets
                .iter()
                .all(|p| p.payload_type == 101 && p.payload.len() == 4 && p.payload[0] == code),
            "{name}: {packets:?}"
        );
        assert_eq!(
            packets.iter().filter(|p| p.payload[1] & 0x80 != 0).count(),
            3,
            "{name}: three end packets"
        );
    }
}

/// `scenario` (SIPp UAS, `uas_args`) against `peer` (SIPp UAC, `uac_args`).
fn selftest(uas: &str, uas_args: &[&str], uac: &str, uac_args: &[&str]) {
    let server = SippCommand::uas(uas)
        .timeout(SIPP_TIMEOUT)
        .args(uas_args)
        .spawn();
    let client = SippCommand::uac(uac, &server.addr())
        .timeout(SIPP_TIMEOUT)
        .args(uac_args)
        .run();
    let server = server.wait();
    assert!(
        client.success() && server.success(),
        "client:\n{}\n\nserver:\n{}",
        client.report(),
        server.report()
    );
}

#[test]
fn selftest_uas_rtp_echo() {
    if !have_sipp() {
        return;
    }
    let media = sipp_media_port().to_string();
    let peer_media = sipp_media_port().to_string();
    selftest(
        "media/uas_rtp_echo.xml",
        &["-mp", &media, "-rtp_echo"],
        "calls/selftest/uac_caller_bye_received.xml",
        &["-mp", &peer_media],
    );
}

#[test]
fn selftest_uac_play_pcma() {
    if !have_sipp() {
        return;
    }
    let media = sipp_media_port().to_string();
    let peer_media = sipp_media_port().to_string();
    selftest(
        "media/selftest/uas_answer_pcma.xml",
        &["-mp", &peer_media],
        "media/uac_play_pcma.xml",
        &["-mp", &media],
    );
}

#[test]
fn selftest_uac_dtmf_1_pound() {
    if !have_sipp() {
        return;
    }
    let media = sipp_media_port().to_string();
    let peer_media = sipp_media_port().to_string();
    selftest(
        "calls/selftest/uas_answer.xml",
        &["-mp", &peer_media],
        "media/uac_dtmf_1_pound.xml",
        &["-mp", &media],
    );
}

// ---------------------------------------------------------------------------
// 1. Speech siphon to siphon, both ways, per codec
// ---------------------------------------------------------------------------

/// siphon calls siphon with `--codecs codec` for 4 s; the caller plays
/// speech (`--audio-in file:`), the callee plays other speech; each records
/// what it hears. Each recording must match what the other side played
/// (ncc >= min_ncc) and not what its own side played.
fn speech_both_ways(codec: &str, codec_name: &str, rate: u32, min_ncc: f64) {
    let _serial = one_at_a_time();
    if !have_sound_tools() {
        return;
    }
    let dir = TempDir::new("media-speech");
    let caller_speech = make_speech(dir.path(), "caller-speech", CALLER_TEXT);
    let callee_speech = make_speech(dir.path(), "callee-speech", CALLEE_TEXT);
    with_attempts(&format!("speech {codec}"), |n| {
        speech_call(
            dir.path(),
            n,
            [&caller_speech, &callee_speech],
            codec,
            codec_name,
            rate,
            min_ncc,
        )
    });
}

/// One call of `speech_both_ways`: the signalling and statistics checks
/// panic; the recordings' verdict is returned (with whether they slipped).
fn speech_call(
    work: &Path,
    attempt: u32,
    [caller_speech, callee_speech]: [&Path; 2],
    codec: &str,
    codec_name: &str,
    rate: u32,
    min_ncc: f64,
) -> Result<(), (String, bool)> {
    let caller_rec = work.join(format!("caller-rec-{attempt}.wav"));
    let callee_rec = work.join(format!("callee-rec-{attempt}.wav"));
    let (callee, port) = SiphonChild::listen(&[
        "--auto-answer",
        "--codecs",
        codec,
        "--audio-in",
        &file_arg(callee_speech),
        "--audio-out",
        &file_arg(&callee_rec),
    ]);
    let caller = SiphonChild::call(
        &format!("sip:callee@{LOOPBACK}:{port}"),
        &[
            "--codecs",
            codec,
            "--duration",
            "4",
            "--audio-in",
            &file_arg(caller_speech),
            "--audio-out",
            &file_arg(&caller_rec),
        ],
    );
    let caller = caller.wait(EXIT_WAIT);
    let callee = finish_callee(callee);
    keep_artifacts(work, &format!("speech-{codec}"));
    assert_eq!(caller.code(), Some(0), "caller\n{}", caller.report());
    assert_answered_with(&caller, codec_name, "caller");
    assert_answered_with(&callee, codec_name, "callee");
    let caller_stats = assert_clean_stats(&caller, codec_name, "caller");
    let callee_stats = assert_clean_stats(&callee, codec_name, "callee");

    let mut verdicts = Vec::new();
    for (label, source, recording, own_source, outcome) in [
        (
            "caller to callee",
            caller_speech,
            &callee_rec,
            callee_speech,
            &callee,
        ),
        (
            "callee to caller",
            callee_speech,
            &caller_rec,
            caller_speech,
            &caller,
        ),
    ] {
        let tag = format!("{}-{attempt}", label.replace(' ', "-"));
        let (matched, rec) = match_files(source, recording, work, &tag);
        assert_eq!(
            rec.rate,
            rate,
            "{codec} {label}: recording at {} Hz\n{}",
            rec.rate,
            outcome.report()
        );
        assert!(
            rec.seconds() > 3.0,
            "{codec} {label}: recording only {:.2} s long\n{}",
            rec.seconds(),
            outcome.report()
        );
        // The control: the recording is not what this side itself played.
        let (own, _) = match_files(own_source, recording, work, &format!("{tag}-own"));
        eprintln!(
            "{codec} {label} (attempt {attempt}): {} (own speech: ncc {:.3}); recording {:.2} s \
             at {} Hz, rms {:.0}",
            matched.describe(),
            own.global.ncc,
            rec.seconds(),
            rec.rate,
            rec.rms()
        );
        assert!(
            own.global.ncc < 0.5 && own.segmented.ncc < 0.5,
            "{codec} {label}: the recording matches this side's own speech: {}",
            own.describe()
        );
        verdicts.push((
            matched.verdict(&format!("{codec} {label}"), min_ncc),
            matched.segmented.disturbed(min_ncc),
        ));
    }
    eprintln!("{codec} stats: caller {caller_stats}, callee {callee_stats}");
    let disturbed = verdicts.iter().any(|(_, slipped)| *slipped);
    let failures: Vec<String> = verdicts.into_iter().filter_map(|(v, _)| v.err()).collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err((
            format!(
                "{}\ncaller:\n{}\ncallee:\n{}",
                failures.join("\n"),
                caller.report(),
                callee.report()
            ),
            disturbed,
        ))
    }
}

#[test]
fn speech_both_ways_pcmu() {
    speech_both_ways("pcmu", "PCMU", 8000, G711_MIN_NCC);
}

#[test]
fn speech_both_ways_pcma() {
    speech_both_ways("pcma", "PCMA", 8000, G711_MIN_NCC);
}

#[test]
fn speech_both_ways_opus() {
    speech_both_ways("opus", "opus", 48000, OPUS_MIN_NCC);
}

/// A file source must not cost received audio. `MediaSession::start` used to read and
/// resample the whole WAV on siphon's single-threaded runtime (~65 ms to 8 kHz, ~170 ms to
/// 48 kHz for a 7 s clip in a debug build) while the callee's RTP was already arriving:
/// the caller's recording then lost the first 20-40 ms (a negative lag in the first
/// segment). Now the file loads on a blocking thread and the start is never lost.
/// The callee's first packet can still arrive before the caller has processed the 200 OK
/// (RTP may precede it); the jitter buffer later trims that one frame of extra delay, so
/// one slip of at most a frame is allowed.
#[test]
fn file_source_does_not_cost_received_audio() {
    let _serial = one_at_a_time();
    if !have_sound_tools() {
        return;
    }
    let dir = TempDir::new("media-file-start");
    let caller_speech = make_speech(dir.path(), "caller-speech", CALLER_TEXT);
    let callee_speech = make_speech(dir.path(), "callee-speech", CALLEE_TEXT);
    let callee_8k = dir.path().join("callee-speech-8k.wav");
    sox_resample(&callee_speech, 8000, &callee_8k);
    let rec = dir.path().join("caller-rec.wav");
    let (callee, port) = SiphonChild::listen(&[
        "--auto-answer",
        "--codecs",
        "pcmu",
        "--audio-in",
        &file_arg(&callee_8k),
    ]);
    let caller = SiphonChild::call(
        &format!("sip:callee@{LOOPBACK}:{port}"),
        &[
            "--codecs",
            "pcmu",
            "--duration",
            "3",
            "--audio-in",
            &file_arg(&caller_speech),
            "--audio-out",
            &file_arg(&rec),
        ],
    );
    let caller = caller.wait(EXIT_WAIT);
    let _callee = finish_callee(callee);
    keep_artifacts(dir.path(), "file-start");
    assert_eq!(caller.code(), Some(0), "caller\n{}", caller.report());
    let (matched, _) = match_files(&callee_8k, &rec, dir.path(), "file-start");
    let first = matched.segmented.segments.iter().find(|s| s.sound).copied();
    eprintln!(
        "file source, callee to caller: {}; first segment {first:?}",
        matched.describe()
    );
    assert!(
        matched.segmented.ncc >= G711_MIN_NCC
            && matched.segmented.slips <= 1
            && first.is_some_and(|f| f.lag >= 0),
        "the caller's recording lost audio at the start (a negative lag: the start of what \
         the callee sent is missing): {}; first segment {first:?}",
        matched.describe()
    );
}

// ---------------------------------------------------------------------------
// 2. SIPp echoes our RTP (-rtp_echo)
// ---------------------------------------------------------------------------

#[test]
fn sipp_rtp_echo_returns_our_tone() {
    let _serial = one_at_a_time();
    if !have_sipp() {
        return;
    }
    let dir = TempDir::new("media-sipp-echo");
    let rec = dir.path().join("rec.wav");
    let media = sipp_media_port();
    let sipp = SippCommand::uas("media/uas_rtp_echo.xml")
        .timeout(SIPP_TIMEOUT)
        .args(&["-mp", &media.to_string(), "-rtp_echo"])
        .spawn();
    let caller = SiphonChild::call(
        &format!("sip:echo@{}", sipp.addr()),
        &[
            "--codecs",
            "pcmu",
            "--audio-in",
            "tone:440",
            "--audio-out",
            &file_arg(&rec),
        ],
    );
    let caller = caller.wait(EXIT_WAIT);
    keep_artifacts(dir.path(), "sipp-echo");
    let sipp = sipp.wait_at_most(Duration::from_secs(10));
    assert!(
        sipp.success(),
        "SIPp:\n{}\n\nsiphon:\n{}",
        sipp.report(),
        caller.report()
    );
    assert_eq!(caller.code(), Some(0), "{}", caller.report());
    let answered = caller.single("answered");
    assert_eq!(
        answered["remote_rtp"],
        format!("{LOOPBACK}:{media}").as_str(),
        "{}",
        caller.report()
    );
    assert_eq!(caller.single("ended")["reason"], "remote_bye");
    let stats = assert_clean_stats(&caller, "PCMU", "caller");

    let sound = read_mono(&rec);
    assert_eq!(sound.rate, 8000, "recording rate");
    let ratio = tone_ratio(&sound.to_i16(), sound.rate, 440.0);
    eprintln!(
        "SIPp rtp_echo: recording {:.2} s, rms {:.0}, 440 Hz ratio {ratio:.3}; stats {stats}",
        sound.seconds(),
        sound.rms()
    );
    assert!(
        sound.seconds() > 3.0,
        "recording only {:.2} s\n{}",
        sound.seconds(),
        caller.report()
    );
    assert!(
        ratio >= TONE_MIN_RATIO && sound.rms() > 1000.0,
        "our 440 Hz tone did not come back through SIPp: ratio {ratio:.3}, rms {:.0}\n{}",
        sound.rms(),
        caller.report()
    );
}

// ---------------------------------------------------------------------------
// 3. SIPp plays g711a.pcap (PCMA speech) into siphon listen
// ---------------------------------------------------------------------------

#[test]
fn sipp_pcap_pcma_is_recorded() {
    let _serial = one_at_a_time();
    if !have_sipp() {
        return;
    }
    let pcap = PathBuf::from(SIPP_PCAP_DIR).join("g711a.pcap");
    assert!(pcap.is_file(), "{} is missing (sip-tester)", pcap.display());
    let packets = pcap_rtp_packets(&pcap);
    let reference = g711_audio(&packets, 8, decode_alaw);
    let sent = packets.iter().filter(|p| p.payload_type == 8).count() as u64;
    let dir = TempDir::new("media-pcap-pcma");
    with_attempts("g711a.pcap", |attempt| {
        pcap_call(dir.path(), attempt, &reference, sent)
    });
}

/// One call of `sipp_pcap_pcma_is_recorded` (see `speech_call`).
fn pcap_call(
    work: &Path,
    attempt: u32,
    reference: &Sound,
    sent: u64,
) -> Result<(), (String, bool)> {
    let rec = work.join(format!("rec-{attempt}.wav"));
    let (callee, port) = SiphonChild::listen(&[
        "--auto-answer",
        "--codecs",
        "pcma",
        "--audio-in",
        "silence",
        "--audio-out",
        &file_arg(&rec),
    ]);
    let media = sipp_media_port();
    let sipp = SippCommand::uac("media/uac_play_pcma.xml", &format!("{LOOPBACK}:{port}"))
        .timeout(SIPP_TIMEOUT)
        .args(&["-mp", &media.to_string()])
        .run();
    let callee = finish_callee(callee);
    keep_artifacts(work, "pcap-pcma");
    assert!(
        sipp.success(),
        "SIPp:\n{}\n\nsiphon:\n{}",
        sipp.report(),
        callee.report()
    );
    assert_answered_with(&callee, "PCMA", "callee");
    let stats = assert_clean_stats(&callee, "PCMA", "callee");
    assert_eq!(
        stat_u64(&stats, "packets_received"),
        sent,
        "siphon should count every packet of the pcap: {stats}"
    );

    let sound = read_mono(&rec);
    assert_eq!(sound.rate, 8000, "recording rate");
    let matched = match_sounds(reference, &sound, "g711a.pcap");
    eprintln!(
        "g711a.pcap via SIPp (attempt {attempt}): {}; reference {:.2} s, recording {:.2} s, rms \
         {:.0} (reference {:.0}); stats {stats}",
        matched.describe(),
        reference.seconds(),
        sound.seconds(),
        sound.rms(),
        reference.rms()
    );
    matched.verdict("g711a.pcap", PCAP_MIN_NCC).map_err(|why| {
        (
            format!("{why}\n{}", callee.report()),
            matched.segmented.disturbed(PCAP_MIN_NCC),
        )
    })
}

// ---------------------------------------------------------------------------
// 4. DTMF from SIPp's pcaps (RFC 4733, payload type 101)
// ---------------------------------------------------------------------------

#[test]
fn sipp_pcap_dtmf_1_and_pound() {
    let _serial = one_at_a_time();
    if !have_sipp() {
        return;
    }
    let (callee, port) = SiphonChild::listen(&["--auto-answer", "--codecs", "pcmu"]);
    let media = sipp_media_port();
    let sipp = SippCommand::uac("media/uac_dtmf_1_pound.xml", &format!("{LOOPBACK}:{port}"))
        .timeout(SIPP_TIMEOUT)
        .args(&["-mp", &media.to_string()])
        .run();
    let callee = finish_callee(callee);
    assert!(
        sipp.success(),
        "SIPp:\n{}\n\nsiphon:\n{}",
        sipp.report(),
        callee.report()
    );
    let digits = dtmf_digits(&callee);
    eprintln!("DTMF from SIPp's pcaps: {digits:?}");
    assert_eq!(
        digits,
        ["1", "#"],
        "each digit once, in order\n{}",
        callee.report()
    );
    let call_id = callee.single("ended")["call_id"].clone();
    for event in callee.events_named("dtmf") {
        assert_eq!(event["call_id"], call_id, "dtmf of another call: {event}");
    }
}

// ---------------------------------------------------------------------------
// 5. DTMF siphon to siphon
// ---------------------------------------------------------------------------

fn dtmf_between_siphons(codec: &str) {
    let _serial = one_at_a_time();
    let (callee, port) = SiphonChild::listen(&["--auto-answer", "--codecs", codec]);
    let caller = SiphonChild::call(
        &format!("sip:callee@{LOOPBACK}:{port}"),
        &["--codecs", codec, "--dtmf", "12#", "--duration", "4"],
    );
    let caller = caller.wait(EXIT_WAIT);
    let callee = finish_callee(callee);
    assert_eq!(caller.code(), Some(0), "caller\n{}", caller.report());
    let digits = dtmf_digits(&callee);
    eprintln!("DTMF siphon to siphon ({codec}): {digits:?}");
    assert_eq!(
        digits,
        ["1", "2", "#"],
        "each digit once, in order\ncaller:\n{}\ncallee:\n{}",
        caller.report(),
        callee.report()
    );
    assert!(
        dtmf_digits(&caller).is_empty(),
        "the caller reported digits it sent itself\n{}",
        caller.report()
    );
}

#[test]
fn dtmf_siphon_to_siphon_pcmu() {
    dtmf_between_siphons("pcmu");
}

#[test]
fn dtmf_siphon_to_siphon_opus() {
    dtmf_between_siphons("opus");
}

// ---------------------------------------------------------------------------
// 6. Echo: siphon listen --echo
// ---------------------------------------------------------------------------

#[test]
fn echo_returns_the_callers_tone() {
    let _serial = one_at_a_time();
    let dir = TempDir::new("media-echo");
    let rec = dir.path().join("rec.wav");
    // The callee itself plays silence: a tone in the caller's recording can
    // only be its own, sent back.
    let (callee, port) = SiphonChild::listen(&["--auto-answer", "--echo", "--audio-in", "silence"]);
    let caller = SiphonChild::call(
        &format!("sip:echo@{LOOPBACK}:{port}"),
        &[
            "--duration",
            "4",
            "--audio-in",
            "tone:440",
            "--audio-out",
            &file_arg(&rec),
        ],
    );
    let caller = caller.wait(EXIT_WAIT);
    let callee = finish_callee(callee);
    keep_artifacts(dir.path(), "echo");
    assert_eq!(caller.code(), Some(0), "caller\n{}", caller.report());
    let codec = caller.single("answered")["codec"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let stats = assert_clean_stats(&caller, &codec, "caller");
    assert_clean_stats(&callee, &codec, "callee");

    let sound = read_mono(&rec);
    let ratio = tone_ratio(&sound.to_i16(), sound.rate, 440.0);
    eprintln!(
        "echo ({codec}): recording {:.2} s at {} Hz, rms {:.0}, 440 Hz ratio {ratio:.3}; \
         stats {stats}",
        sound.seconds(),
        sound.rate,
        sound.rms()
    );
    assert!(
        sound.seconds() > 3.0,
        "recording only {:.2} s\n{}",
        sound.seconds(),
        caller.report()
    );
    assert!(
        ratio >= TONE_MIN_RATIO && sound.rms() > 1000.0,
        "the caller did not hear its 440 Hz tone back: ratio {ratio:.3}, rms {:.0}\n\
         caller:\n{}\ncallee:\n{}",
        sound.rms(),
        caller.report(),
        callee.report()
    );
}
