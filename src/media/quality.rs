//! Call quality by a simplified ITU-T G.107 E-model (narrowband):
//! `R = 93.2 - Id - Ie,eff`, with all other impairments at their defaults, and MOS from R
//! (G.107 annex B).

use std::time::Duration;

/// G.107 default R (R0 - Is + A with default parameters).
pub const R_DEFAULT: f64 = 93.2;

/// Codec impairment data: Ie and Bpl per ITU-T G.113 Appendix I.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Codec {
    /// G.711 with Appendix I concealment: Ie 0, Bpl 25.1 (4.3 without PLC).
    G711,
    /// Opus. Assumption: G.113 lists no values; we take Ie 5 and Bpl 20, in the range
    /// published estimates give for Opus at usual VoIP bit rates, and 6.5 ms lookahead.
    Opus,
    /// Any other codec: equipment impairment, robustness and algorithmic delay (lookahead,
    /// beyond the packet time).
    Custom {
        ie: f64,
        bpl: f64,
        lookahead: Duration,
    },
}

impl Codec {
    pub fn ie(self) -> f64 {
        match self {
            Codec::G711 => 0.0,
            Codec::Opus => 5.0,
            Codec::Custom { ie, .. } => ie,
        }
    }

    pub fn bpl(self) -> f64 {
        match self {
            Codec::G711 => 25.1,
            Codec::Opus => 20.0,
            Codec::Custom { bpl, .. } => bpl,
        }
    }

    pub fn lookahead(self) -> Duration {
        match self {
            Codec::G711 => Duration::ZERO,
            Codec::Opus => Duration::from_micros(6500),
            Codec::Custom { lookahead, .. } => lookahead,
        }
    }
}

/// What the estimate is computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityInput {
    pub codec: Codec,
    /// Round-trip time, e.g. from RTCP (RFC 3550 §6.4.1).
    pub rtt: Duration,
    /// Current jitter buffer delay.
    pub jitter_buffer: Duration,
    /// Packet time (packetisation delay).
    pub ptime: Duration,
    /// Packet loss in percent (0..100), after the jitter buffer (lost + late).
    pub loss_percent: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    pub r: f64,
    pub mos: f64,
    /// One-way mouth-to-ear delay used for Id.
    pub delay: Duration,
}

/// Mouth-to-ear delay: half the RTT + jitter buffer + packetisation + lookahead.
pub fn mouth_to_ear(input: &QualityInput) -> Duration {
    (input.rtt / 2)
        .saturating_add(input.jitter_buffer)
        .saturating_add(input.ptime)
        .saturating_add(input.codec.lookahead())
}

/// Delay impairment, the common simplification of G.107 Id (Cole and Rosenbluth):
/// `0.024 d + 0.11 (d - 177.3) H(d - 177.3)`, d in ms.
pub fn delay_impairment(one_way: Duration) -> f64 {
    let d = one_way.as_secs_f64() * 1000.0;
    0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 }
}

/// G.107 effective equipment impairment with random loss (BurstR = 1):
/// `Ie + (95 - Ie) Ppl / (Ppl + Bpl)`.
pub fn effective_equipment_impairment(codec: Codec, loss_percent: f64) -> f64 {
    let ppl = if loss_percent.is_nan() {
        0.0
    } else {
        loss_percent.clamp(0.0, 100.0)
    };
    let ie = codec.ie();
    let bpl = codec.bpl().max(f64::MIN_POSITIVE);
    ie + (95.0 - ie) * ppl / (ppl + bpl)
}

/// R for a codec, one-way delay and loss.
pub fn r_factor(codec: Codec, one_way: Duration, loss_percent: f64) -> f64 {
    R_DEFAULT - delay_impairment(one_way) - effective_equipment_impairment(codec, loss_percent)
}

/// G.107 annex B: MOS = 1 + 0.035 R + R (R - 60)(100 - R) 7e-6, within 1..4.5.
pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r <= 0.0 {
        return 1.0;
    }
    if r >= 100.0 {
        return 4.5;
    }
    (1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6).clamp(1.0, 4.5)
}

pub fn estimate(input: &QualityInput) -> Quality {
    let delay = mouth_to_ear(input);
    let r = r_factor(input.codec, delay, input.loss_percent);
    Quality {
        r,
        mos: mos_from_r(r),
        delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(codec: Codec, rtt_ms: u64, loss: f64) -> QualityInput {
        QualityInput {
            codec,
            rtt: Duration::from_millis(rtt_ms),
            jitter_buffer: Duration::from_millis(20),
            ptime: Duration::from_millis(20),
            loss_percent: loss,
        }
    }

    #[test]
    fn clean_g711_call_is_about_4_4() {
        let q = estimate(&input(Codec::G711, 20, 0.0));
        // d = 10 + 20 + 20 = 50 ms, Id = 1.2, R = 92.0.
        assert_eq!(q.delay, Duration::from_millis(50));
        assert!((q.r - 92.0).abs() < 1e-9, "{}", q.r);
        assert!((4.35..=4.45).contains(&q.mos), "{}", q.mos);
        // R = 93.2 exactly gives the familiar 4.41.
        assert!((mos_from_r(93.2) - 4.409).abs() < 0.001);
    }

    #[test]
    fn loss_lowers_mos() {
        let clean = estimate(&input(Codec::G711, 20, 0.0));
        let lossy = estimate(&input(Codec::G711, 20, 5.0));
        // Ie,eff = 95 * 5 / 30.1 = 15.78.
        assert!((clean.r - lossy.r - 95.0 * 5.0 / 30.1).abs() < 1e-9);
        assert!(
            lossy.mos < clean.mos - 0.4,
            "{} vs {}",
            lossy.mos,
            clean.mos
        );
        assert!(lossy.mos > 3.5);
    }

    #[test]
    fn monotonic_in_loss_and_delay() {
        for codec in [Codec::G711, Codec::Opus] {
            let mut prev = f64::INFINITY;
            for tenth in 0..=1000 {
                let m = estimate(&input(codec, 50, f64::from(tenth) / 10.0)).mos;
                assert!(m <= prev, "loss {tenth}");
                prev = m;
            }
            let mut prev = f64::INFINITY;
            for rtt in (0..2000).step_by(5) {
                let m = estimate(&input(codec, rtt, 1.0)).mos;
                assert!(m <= prev, "rtt {rtt}");
                prev = m;
            }
        }
        let mut prev = 0.0;
        for r in -20..=120 {
            let m = mos_from_r(f64::from(r));
            assert!(m >= prev && (1.0..=4.5).contains(&m), "R {r}");
            prev = m;
        }
    }

    #[test]
    fn delay_knee_at_177_ms() {
        let below = delay_impairment(Duration::from_millis(170));
        let above = delay_impairment(Duration::from_millis(300));
        assert!((below - 4.08).abs() < 1e-9);
        assert!((above - (7.2 + 0.11 * 122.7)).abs() < 1e-9);
    }

    #[test]
    fn odd_inputs_are_safe() {
        for loss in [f64::NAN, f64::INFINITY, -5.0, 1e9] {
            let q = estimate(&input(Codec::G711, 20, loss));
            assert!((1.0..=4.5).contains(&q.mos));
        }
        let q = estimate(&QualityInput {
            codec: Codec::Custom {
                ie: f64::NAN,
                bpl: 0.0,
                lookahead: Duration::MAX,
            },
            rtt: Duration::MAX,
            jitter_buffer: Duration::MAX,
            ptime: Duration::MAX,
            loss_percent: 0.0,
        });
        assert_eq!(q.mos, 1.0);
        // Opus with its assumed Ie scores a little below G.711.
        assert!(
            estimate(&input(Codec::Opus, 20, 0.0)).mos < estimate(&input(Codec::G711, 20, 0.0)).mos
        );
    }
}
