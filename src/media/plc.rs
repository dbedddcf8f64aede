//! Packet loss concealment by waveform substitution, after ITU-T G.711 Appendix I.
//!
//! Good frames go through [`Plc::good_frame`], lost ones are synthesised by
//! [`Plc::conceal`]. As in Appendix I the output is delayed by a quarter of the longest pitch
//! period (3.75 ms at 8 kHz, [`Plc::delay`]) so that the start of a loss can be blended into
//! the last received samples before they are played (G.711 App. I). All buffers are
//! allocated in [`Plc::new`]; frames of any length are accepted.

/// Shortest pitch period searched, 5 ms (G.711 App. I: 200 Hz).
const PITCH_MIN_MS: u32 = 5;
/// Longest pitch period searched, 15 ms (66.6 Hz).
const PITCH_MAX_MS: u32 = 15;
/// Correlation window, 20 ms.
const CORR_MS: u32 = 20;
/// Merge overlap after a loss: 4 ms plus 4 ms per further 10 ms lost, at most 10 ms.
const MERGE_BASE_MS: u32 = 4;
const MERGE_INCR_MS: u32 = 4;
const MERGE_MAX_MS: u32 = 10;
/// Attenuation: 20 % per 10 ms after the first 10 ms; silent from 60 ms.
const ATTEN_PER_10MS: f32 = 0.2;
const SILENT_AFTER_10MS: usize = 6;
/// Appendix I mutes after 60 ms of loss; we keep comfort noise of this peak amplitude
/// (uniform, about -59 dBFS RMS) under the concealment instead, so that no loss ever
/// becomes digital silence, even after quiet history.
const COMFORT_NOISE_PEAK: f32 = 60.0;
/// Floor of the correlation normaliser (App. I CORRMINPOWER, 250 for 80 terms).
const CORR_MIN_POWER_PER_TERM: f32 = 250.0 / 80.0;

/// Concealment state for one G.711 stream.
#[derive(Debug, Clone)]
pub struct Plc {
    pitch_min: usize,
    pitch_max: usize,
    corr_len: usize,
    /// Decimation of the coarse pitch search (2:1 at 8 kHz).
    ndec: usize,
    /// Output delay = longest quarter-period overlap (App. I POVERLAPMAX).
    delay: usize,
    frame10: usize,
    merge_base: usize,
    merge_incr: usize,
    merge_max: usize,
    /// Last `3 * pitch_max + delay` samples of the signal (App. I history, 48.75 ms).
    history: Vec<f32>,
    /// Copy of `history` taken at the start of a loss, with its tail blended.
    pitchbuf: Vec<f32>,
    /// Original last quarter period, kept to re-blend when periods are added.
    lastq: Vec<f32>,
    /// Continuation of the old pitch buffer, faded out when a period is added.
    fade: Vec<f32>,
    pitch: usize,
    poverlap: usize,
    /// Length of the repeated segment: 1, 2 or 3 pitch periods.
    pitch_blen: usize,
    poffset: usize,
    fade_pos: usize,
    /// Samples synthesised since the loss began (drives period additions and gain).
    syn_pos: usize,
    in_loss: bool,
    merge_len: usize,
    merge_pos: usize,
    /// xorshift32 state of the comfort noise.
    noise_state: u32,
}

impl Plc {
    /// A concealer for `sample_rate` Hz (clamped to 4..=192 kHz; designed for 8 kHz).
    pub fn new(sample_rate: u32) -> Plc {
        let rate = sample_rate.clamp(4000, 192_000);
        let ms = |m: u32| (rate as usize * m as usize) / 1000;
        let pitch_max = ms(PITCH_MAX_MS);
        let delay = pitch_max / 4;
        let hist_len = 3 * pitch_max + delay;
        Plc {
            pitch_min: ms(PITCH_MIN_MS),
            pitch_max,
            corr_len: ms(CORR_MS),
            ndec: (rate as usize / 4000).max(1),
            delay,
            frame10: ms(10),
            merge_base: ms(MERGE_BASE_MS),
            merge_incr: ms(MERGE_INCR_MS),
            merge_max: ms(MERGE_MAX_MS),
            history: vec![0.0; hist_len],
            pitchbuf: vec![0.0; hist_len],
            lastq: vec![0.0; delay],
            fade: vec![0.0; delay],
            pitch: pitch_max,
            poverlap: delay,
            pitch_blen: pitch_max,
            poffset: 0,
            fade_pos: 0,
            noise_state: 0x9E37_79B9,
            syn_pos: 0,
            in_loss: false,
            merge_len: 0,
            merge_pos: 0,
        }
    }

    /// Output delay in samples (App. I: 3.75 ms); both methods emit the signal this late.
    pub fn delay(&self) -> usize {
        self.delay
    }

    /// Whether the last call was a concealment.
    pub fn in_loss(&self) -> bool {
        self.in_loss
    }

    /// Pitch period (samples) chosen at the start of the current or last loss.
    pub fn pitch(&self) -> usize {
        self.pitch
    }

    /// Takes a received frame and replaces it with the delayed output. After a loss the
    /// start of the frame is cross-faded from the synthetic signal (G.711 App. I).
    pub fn good_frame(&mut self, frame: &mut [i16]) {
        if self.in_loss {
            self.in_loss = false;
            let lost_10ms = self.syn_pos.div_ceil(self.frame10.max(1)).max(1);
            self.merge_len = (self.merge_base + self.merge_incr * (lost_10ms - 1))
                .min(self.merge_max)
                .max(1);
            self.merge_pos = 0;
        }
        let chunk = self.history.len() - self.delay;
        for part in frame.chunks_mut(chunk) {
            for s in part.iter_mut() {
                if self.merge_pos >= self.merge_len {
                    break;
                }
                // App. I: linear OLA, synthetic weight falling to zero.
                let w = (self.merge_pos + 1) as f32 / self.merge_len as f32;
                let synth = self.synth_sample();
                *s = saturate(synth * (1.0 - w) + f32::from(*s) * w);
                self.merge_pos += 1;
            }
            self.push_history(part);
        }
    }

    /// Fills `out` with concealment for a lost frame (already delayed like good frames).
    pub fn conceal(&mut self, out: &mut [i16]) {
        if out.is_empty() {
            return;
        }
        if !self.in_loss {
            self.start_loss();
        }
        self.merge_pos = 0;
        self.merge_len = 0;
        let chunk = self.history.len() - self.delay;
        for part in out.chunks_mut(chunk) {
            for s in part.iter_mut() {
                *s = saturate(self.synth_sample());
            }
            self.push_history(part);
        }
    }

    /// Appends `part` (at most `history.len() - delay` samples) to the history and replaces
    /// it with the samples `delay` older.
    fn push_history(&mut self, part: &mut [i16]) {
        let h = self.history.len();
        let n = part.len();
        self.history.copy_within(n.., 0);
        for (dst, &s) in self.history[h - n..].iter_mut().zip(part.iter()) {
            *dst = f32::from(s);
        }
        let start = h - self.delay - n;
        for (o, &v) in part.iter_mut().zip(&self.history[start..start + n]) {
            *o = saturate(v);
        }
    }

    /// First lost frame: pick the pitch and build a one-period buffer (G.711 App. I).
    fn start_loss(&mut self) {
        self.in_loss = true;
        self.syn_pos = 0;
        self.pitchbuf.copy_from_slice(&self.history);
        self.pitch = self.find_pitch();
        self.poverlap = (self.pitch / 4).clamp(1, self.delay.max(1));
        let h = self.pitchbuf.len();
        let q = self.poverlap;
        self.lastq[..q].copy_from_slice(&self.pitchbuf[h - q..]);
        self.pitch_blen = self.pitch;
        self.poffset = 0;
        self.fade_pos = q; // no fade pending
        self.blend_tail();
        // The blended quarter period has not been played yet (it is within the delay).
        self.history[h - q..].copy_from_slice(&self.pitchbuf[h - q..]);
    }

    /// Blends the last quarter period into the samples that precede the repeated segment,
    /// so the wrap from its end to its start is smooth (App. I 1/4-period OLA).
    fn blend_tail(&mut self) {
        let h = self.pitchbuf.len();
        let q = self.poverlap;
        let start = h - self.pitch_blen;
        for i in 0..q {
            let w = (i + 1) as f32 / q as f32;
            self.pitchbuf[h - q + i] = self.lastq[i] * (1.0 - w) + self.pitchbuf[start - q + i] * w;
        }
    }

    /// After 10 and 20 ms of loss, repeat one more period (G.711 App. I).
    fn add_period(&mut self) {
        let q = self.poverlap;
        let save = self.poffset;
        for i in 0..q {
            self.fade[i] = self.raw_sample();
        }
        self.poffset = save;
        while self.poffset > self.pitch {
            self.poffset -= self.pitch;
        }
        self.pitch_blen += self.pitch;
        self.blend_tail();
        self.fade_pos = 0;
    }

    fn raw_sample(&mut self) -> f32 {
        let start = self.pitchbuf.len() - self.pitch_blen;
        let v = self.pitchbuf[start + self.poffset];
        self.poffset += 1;
        if self.poffset >= self.pitch_blen {
            self.poffset = 0;
        }
        v
    }

    /// Next synthetic sample, with period additions, their OLA, and attenuation.
    fn synth_sample(&mut self) -> f32 {
        let f10 = self.frame10.max(1);
        if (self.syn_pos == f10 || self.syn_pos == 2 * f10) && self.pitch_blen < 3 * self.pitch {
            self.add_period();
        }
        let mut v = self.raw_sample();
        if self.fade_pos < self.poverlap {
            let w = (self.fade_pos + 1) as f32 / self.poverlap as f32;
            v = self.fade[self.fade_pos] * (1.0 - w) + v * w;
            self.fade_pos += 1;
        }
        let gain = if self.syn_pos < f10 {
            1.0
        } else if self.syn_pos >= SILENT_AFTER_10MS * f10 {
            0.0
        } else {
            (1.0 - ATTEN_PER_10MS * (self.syn_pos - f10) as f32 / f10 as f32).max(0.0)
        };
        self.syn_pos = self.syn_pos.saturating_add(1);
        // A floor of comfort noise under the substitution: a lost frame after quiet history
        // (a lost speech onset) is never digital silence either.
        v * gain + self.comfort_noise()
    }

    /// One sample of low-level noise in [-COMFORT_NOISE_PEAK, COMFORT_NOISE_PEAK].
    fn comfort_noise(&mut self) -> f32 {
        let mut x = self.noise_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.noise_state = x;
        (x as f32 / u32::MAX as f32 * 2.0 - 1.0) * COMFORT_NOISE_PEAK
    }

    /// Normalised cross-correlation of the last 20 ms against lags of 5..15 ms: a 2:1
    /// decimated coarse search, then a full-rate search around the best (App. I findpitch).
    fn find_pitch(&self) -> usize {
        let buf = &self.pitchbuf;
        let h = buf.len();
        let l = &buf[h - self.corr_len..];
        let r = &buf[h - self.corr_len - self.pitch_max..];
        let diff = self.pitch_max - self.pitch_min;
        let score = |j: usize, step: usize| -> f32 {
            let mut energy = 0.0f32;
            let mut corr = 0.0f32;
            let mut terms = 0usize;
            for i in (0..self.corr_len).step_by(step) {
                let x = r[j + i];
                energy += x * x;
                corr += x * l[i];
                terms += 1;
            }
            let floor = CORR_MIN_POWER_PER_TERM * terms as f32;
            corr / energy.max(floor).sqrt()
        };
        let mut best = 0usize;
        let mut best_corr = f32::NEG_INFINITY;
        for j in (0..=diff).step_by(self.ndec) {
            let c = score(j, self.ndec);
            if c >= best_corr {
                best_corr = c;
                best = j;
            }
        }
        let lo = best.saturating_sub(self.ndec - 1);
        let hi = (best + self.ndec - 1).min(diff);
        let mut fine = lo;
        let mut fine_corr = f32::NEG_INFINITY;
        for j in lo..=hi {
            let c = score(j, 1);
            if c > fine_corr {
                fine_corr = c;
                fine = j;
            }
        }
        self.pitch_max - fine
    }
}

#[inline]
fn saturate(v: f32) -> i16 {
    // `as` saturates and maps NaN to 0.
    v.round() as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 8000;
    const FRAME: usize = 160; // 20 ms

    fn tone(freq: f64, amp: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / RATE as f64).sin()) as i16
            })
            .collect()
    }

    /// Runs `signal` through the PLC in 20 ms frames, losing the frames in `lost`.
    fn run(signal: &[i16], lost: &[usize]) -> Vec<i16> {
        let mut plc = Plc::new(RATE);
        let mut out = Vec::with_capacity(signal.len());
        for (k, chunk) in signal.chunks(FRAME).enumerate() {
            let mut frame = chunk.to_vec();
            if lost.contains(&k) {
                plc.conceal(&mut frame);
            } else {
                plc.good_frame(&mut frame);
            }
            out.extend_from_slice(&frame);
        }
        out
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    fn correlation(a: &[i16], b: &[i16]) -> f64 {
        let dot: f64 = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum();
        let ea: f64 = a.iter().map(|&x| f64::from(x).powi(2)).sum();
        let eb: f64 = b.iter().map(|&x| f64::from(x).powi(2)).sum();
        dot / (ea * eb).sqrt()
    }

    fn max_step(x: &[i16]) -> i32 {
        x.windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn good_frames_are_only_delayed() {
        let signal = tone(440.0, 8000.0, 8000);
        let out = run(&signal, &[]);
        let d = Plc::new(RATE).delay();
        assert_eq!(d, 30);
        assert!(out[..d].iter().all(|&v| v == 0));
        assert_eq!(&out[d..], &signal[..signal.len() - d]);
    }

    #[test]
    fn one_lost_frame_of_a_sine_is_concealed() {
        let signal = tone(200.0, 8000.0, 20 * FRAME);
        let lost = 10;
        let out = run(&signal, &[lost]);
        let d = Plc::new(RATE).delay();
        // The lost input samples come out `d` later.
        let (a, b) = (lost * FRAME + d, (lost + 1) * FRAME + d);
        let concealed = &out[a..b];
        let truth = &signal[lost * FRAME..(lost + 1) * FRAME];
        assert!(concealed.iter().any(|&v| v != 0), "silence");
        let ratio_db = 20.0 * (rms(concealed) / rms(truth)).log10();
        assert!(ratio_db.abs() < 3.0, "RMS off by {ratio_db:.2} dB");
        let c = correlation(concealed, truth);
        assert!(c > 0.8, "correlation {c:.3}");
        // No jump at the start of the loss or at the merge larger than the sine's own
        // largest step (about 2*pi*200/8000*8000 = 1257) plus a margin.
        let bound = max_step(&signal) + 200;
        assert!(
            max_step(&out[d..]) <= bound,
            "step {} > {bound}",
            max_step(&out[d..])
        );
    }

    #[test]
    fn concealment_tracks_a_non_integer_pitch() {
        // 170 Hz: period 47.06 samples, not a whole number.
        let signal = tone(170.0, 6000.0, 20 * FRAME);
        let out = run(&signal, &[8]);
        let d = Plc::new(RATE).delay();
        let concealed = &out[8 * FRAME + d..9 * FRAME + d];
        let truth = &signal[8 * FRAME..9 * FRAME];
        assert!(correlation(concealed, truth) > 0.8);
        assert!(max_step(&out[d..]) <= max_step(&signal) + 300);
    }

    #[test]
    fn long_loss_fades_to_comfort_noise_after_60ms() {
        let signal = tone(200.0, 8000.0, 20 * FRAME);
        let lost: Vec<usize> = (8..13).collect(); // 100 ms
        let out = run(&signal, &lost);
        let d = Plc::new(RATE).delay();
        let start = 8 * FRAME + d;
        // First 10 ms at full level, then decaying.
        let first = rms(&out[start..start + 80]);
        assert!(first > 0.6 * rms(&signal));
        let r: Vec<f64> = (1..6)
            .map(|k| rms(&out[start + 80 * k..start + 80 * (k + 1)]))
            .collect();
        assert!(r.windows(2).all(|w| w[1] < w[0]), "not decaying: {r:?}");
        // From 60 ms after the loss began until the end of the loss: comfort noise, far
        // below the signal (-59 dBFS) but never digital silence.
        let tail = &out[start + 480..13 * FRAME + d];
        assert!(rms(tail) < 60.0, "tail too loud: {}", rms(tail));
        let longest_zero_run = tail.split(|&v| v != 0).map(<[i16]>::len).max().unwrap_or(0);
        assert!(longest_zero_run < 8, "{longest_zero_run} zeros in a row");
        // The merge into the next good frame ramps in rather than jumping.
        assert!(max_step(&out[start..]) <= max_step(&signal) + 200);
        assert!(out[14 * FRAME..].iter().any(|&v| v != 0));
    }

    #[test]
    fn odd_frame_sizes_and_silence_never_panic() {
        let mut plc = Plc::new(RATE);
        plc.conceal(&mut []);
        plc.good_frame(&mut []);
        let mut one = [1000i16];
        plc.conceal(&mut one);
        plc.good_frame(&mut one);
        let mut big = vec![i16::MAX; 5000];
        plc.good_frame(&mut big);
        plc.conceal(&mut big);
        let mut small = [i16::MIN; 7];
        for _ in 0..200 {
            plc.conceal(&mut small);
        }
        // After a long loss only the comfort noise is left.
        assert!(
            small
                .iter()
                .all(|&v| v.unsigned_abs() <= COMFORT_NOISE_PEAK as u16)
        );
        plc.good_frame(&mut small);
        for rate in [0, 1, 8000, 16000, 48000, u32::MAX] {
            let mut p = Plc::new(rate);
            let mut f = vec![123i16; 333];
            p.conceal(&mut f);
            p.good_frame(&mut f);
            p.conceal(&mut f);
        }
    }

    #[test]
    fn lost_frames_in_small_pieces_match_whole_frames() {
        // Concealing 20 ms as 4 x 5 ms gives the same output as one 20 ms call.
        let signal = tone(250.0, 5000.0, 10 * FRAME);
        let whole = run(&signal, &[6, 7]);
        let mut plc = Plc::new(RATE);
        let mut out = Vec::new();
        for (k, chunk) in signal.chunks(FRAME).enumerate() {
            for piece in chunk.chunks(40) {
                let mut f = piece.to_vec();
                if k == 6 || k == 7 {
                    plc.conceal(&mut f);
                } else {
                    plc.good_frame(&mut f);
                }
                out.extend_from_slice(&f);
            }
        }
        assert_eq!(whole, out);
    }
}
