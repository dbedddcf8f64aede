//! G.711 companding (ITU-T G.711 §2-§3, tables 1a/1b and 2a/2b) between 16-bit linear PCM
//! and 8-bit A-law / μ-law codes.
//!
//! The standard works on 13-bit (A-law) and 14-bit (μ-law) uniform PCM. Like the ITU-T
//! reference code (G.191 STL `g711.c`) we take 16-bit input, drop the low bits, and treat a
//! negative sample by its one's complement so that the quantiser is symmetric about -1/2.
//! Decoding returns the standard's reconstruction values (the midpoints of the decision
//! intervals) scaled to 16 bits: μ-law ±32124 (8031 << 2), A-law ±32256 (4032 << 3).

/// μ-law bias in the 16-bit domain (33 << 2; G.711 table 2a offsets every segment by 33).
const ULAW_BIAS: i32 = 0x84;
/// A-law even-bit inversion (G.711 §2, table 1a note 1).
const ALAW_XOR: u8 = 0x55;
/// μ-law transmits all bits inverted (G.711 §3, table 2a note 1).
const ULAW_XOR: u8 = 0xFF;

const fn ulaw_to_linear_const(code: u8) -> i16 {
    let u = !code;
    let exponent = (u >> 4) & 0x07;
    let mantissa = (u & 0x0F) as i32;
    // G.711 table 2a: value = (2*mantissa + 33) * 2^exponent - 33, here scaled by 4.
    let t = ((mantissa << 3) + ULAW_BIAS) << exponent;
    if u & 0x80 != 0 {
        (ULAW_BIAS - t) as i16
    } else {
        (t - ULAW_BIAS) as i16
    }
}

const fn alaw_to_linear_const(code: u8) -> i16 {
    let ix = (code ^ ALAW_XOR) & 0x7F;
    let exponent = ix >> 4;
    let mut mantissa = (ix & 0x0F) as i32;
    // G.711 table 1a: segments 1..7 carry an implicit leading one.
    if exponent > 0 {
        mantissa += 16;
    }
    // Left-justify and add half a quantisation step (the interval midpoint).
    mantissa = (mantissa << 4) + 8;
    if exponent > 1 {
        mantissa <<= exponent - 1;
    }
    if code & 0x80 != 0 {
        mantissa as i16
    } else {
        -mantissa as i16
    }
}

const fn build_table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_to_linear_const(i as u8)
        } else {
            ulaw_to_linear_const(i as u8)
        };
        i += 1;
    }
    t
}

static ULAW_TABLE: [i16; 256] = build_table(false);
static ALAW_TABLE: [i16; 256] = build_table(true);

/// Number of significant bits in `v` (0 for 0).
#[inline]
fn bit_len(v: u32) -> u32 {
    32 - v.leading_zeros()
}

/// One 16-bit sample to μ-law (G.711 §3, table 2a).
#[inline]
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let (magnitude, sign_mask) = if sample < 0 {
        // One's complement, as G.191: -1 maps to the negative zero code 0x7F.
        (!sample as i32, 0x7F)
    } else {
        (sample as i32, ULAW_XOR)
    };
    // Bias and clip so the top segment saturates at code 0x80/0x00.
    let biased = (magnitude + ULAW_BIAS).min(0x7FFF) as u32;
    let exponent = bit_len(biased >> 8); // 0..=7
    let mantissa = (biased >> (exponent + 3)) & 0x0F;
    (((exponent << 4) | mantissa) as u8) ^ sign_mask
}

/// One μ-law code to 16-bit PCM (G.711 §3, table 2a).
#[inline]
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_TABLE[code as usize]
}

/// One 16-bit sample to A-law (G.711 §2, table 1a).
#[inline]
pub fn linear_to_alaw(sample: i16) -> u8 {
    let (magnitude, sign_bit) = if sample < 0 {
        (!sample as i32, 0x00)
    } else {
        (sample as i32, 0x80)
    };
    // 12-bit magnitude in units of the segment 0/1 step (16 in the 16-bit domain).
    let ix = (magnitude >> 4) as u32; // 0..=2047
    let code = if ix < 16 {
        ix
    } else {
        let len = bit_len(ix); // 5..=11
        let exponent = len - 4; // 1..=7
        let mantissa = (ix >> (len - 5)) - 16;
        (exponent << 4) | mantissa
    };
    (code as u8 | sign_bit) ^ ALAW_XOR
}

/// One A-law code to 16-bit PCM (G.711 §2, table 1a).
#[inline]
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_TABLE[code as usize]
}

/// Encodes `min(pcm.len(), out.len())` samples to μ-law; returns how many.
pub fn encode_ulaw(pcm: &[i16], out: &mut [u8]) -> usize {
    let n = pcm.len().min(out.len());
    for (o, &s) in out[..n].iter_mut().zip(&pcm[..n]) {
        *o = linear_to_ulaw(s);
    }
    n
}

/// Decodes `min(codes.len(), out.len())` μ-law codes; returns how many.
pub fn decode_ulaw(codes: &[u8], out: &mut [i16]) -> usize {
    let n = codes.len().min(out.len());
    for (o, &c) in out[..n].iter_mut().zip(&codes[..n]) {
        *o = ulaw_to_linear(c);
    }
    n
}

/// Encodes `min(pcm.len(), out.len())` samples to A-law; returns how many.
pub fn encode_alaw(pcm: &[i16], out: &mut [u8]) -> usize {
    let n = pcm.len().min(out.len());
    for (o, &s) in out[..n].iter_mut().zip(&pcm[..n]) {
        *o = linear_to_alaw(s);
    }
    n
}

/// Decodes `min(codes.len(), out.len())` A-law codes; returns how many.
pub fn decode_alaw(codes: &[u8], out: &mut [i16]) -> usize {
    let n = codes.len().min(out.len());
    for (o, &c) in out[..n].iter_mut().zip(&codes[..n]) {
        *o = alaw_to_linear(c);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values are derived by hand from G.711 tables 1a/2a, not from this code.
    //
    // μ-law (table 2a, 14-bit values, x4 for 16 bits): the transmitted byte is the
    // inverted 8-bit code; sign bit 1 = positive. Reconstruction of segment s, step q:
    // (2q + 33) * 2^s - 33.
    #[test]
    fn ulaw_decode_known_values() {
        // 0x00 -> inverted 0xFF: negative, segment 7, step 15: (30+33)*128-33 = 8031 -> -32124.
        assert_eq!(ulaw_to_linear(0x00), -32124);
        // 0x80 -> inverted 0x7F: positive, same magnitude.
        assert_eq!(ulaw_to_linear(0x80), 32124);
        // 0xFF -> inverted 0x00: positive, segment 0, step 0: 33-33 = 0.
        assert_eq!(ulaw_to_linear(0xFF), 0);
        // 0x7F -> inverted 0x80: "negative zero".
        assert_eq!(ulaw_to_linear(0x7F), 0);
        // 0xFE -> inverted 0x01: +(2+33-33) = 2 -> 8.
        assert_eq!(ulaw_to_linear(0xFE), 8);
        assert_eq!(ulaw_to_linear(0x7E), -8);
        // 0xF0 -> inverted 0x0F: +(30+33-33) = 30 -> 120 (top of segment 0).
        assert_eq!(ulaw_to_linear(0xF0), 120);
        // 0xEF -> inverted 0x10: segment 1, step 0: 33*2-33 = 33 -> 132.
        assert_eq!(ulaw_to_linear(0xEF), 132);
        // 0x8F -> inverted 0x70: segment 7, step 0: 33*128-33 = 4191 -> 16764.
        assert_eq!(ulaw_to_linear(0x8F), 16764);
    }

    // A-law (table 1a, 13-bit values, x8 for 16 bits): even bits inverted (xor 0x55); sign
    // bit 1 = positive. Segments 0 and 1 have step 2; reconstruction is the interval midpoint.
    #[test]
    fn alaw_decode_known_values() {
        // 0xD5 ^ 0x55 = 0x80: positive, segment 0, step 0: midpoint of [0,2) = 1 -> 8.
        assert_eq!(alaw_to_linear(0xD5), 8);
        // 0x55 ^ 0x55 = 0x00: negative counterpart.
        assert_eq!(alaw_to_linear(0x55), -8);
        // 0x2A ^ 0x55 = 0x7F: negative, segment 7, step 15: [3968,4096) midpoint 4032 -> -32256.
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        // 0xDA ^ 0x55 = 0x8F: segment 0, step 15: [30,32) -> 31 -> 248.
        assert_eq!(alaw_to_linear(0xDA), 248);
        // 0xC5 ^ 0x55 = 0x90: segment 1, step 0: [32,34) -> 33 -> 264.
        assert_eq!(alaw_to_linear(0xC5), 264);
        // 0xA5 ^ 0x55 = 0xF0: segment 7, step 0: [2048,2176) -> 2112 -> 16896.
        assert_eq!(alaw_to_linear(0xA5), 16896);
    }

    #[test]
    fn ulaw_round_trip_all_codes() {
        for c in 0..=255u8 {
            let back = linear_to_ulaw(ulaw_to_linear(c));
            if c == 0x7F {
                // Negative zero decodes to 0, which encodes as positive zero.
                assert_eq!(back, 0xFF);
            } else {
                assert_eq!(back, c, "code {c:#04x}");
            }
        }
    }

    #[test]
    fn alaw_round_trip_all_codes() {
        for c in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(c)), c, "code {c:#04x}");
        }
    }

    #[test]
    fn encode_decode_is_monotonic() {
        let mut prev_u = i16::MIN;
        let mut prev_a = i16::MIN;
        for x in i16::MIN..=i16::MAX {
            let u = ulaw_to_linear(linear_to_ulaw(x));
            let a = alaw_to_linear(linear_to_alaw(x));
            assert!(u >= prev_u, "μ-law not monotonic at {x}");
            assert!(a >= prev_a, "A-law not monotonic at {x}");
            prev_u = u;
            prev_a = a;
        }
        // The decoded tables sorted by value contain every code exactly once per level.
        let mut u: Vec<i16> = ULAW_TABLE.to_vec();
        u.sort_unstable();
        u.dedup();
        assert_eq!(u.len(), 255); // two zero codes
        let mut a: Vec<i16> = ALAW_TABLE.to_vec();
        a.sort_unstable();
        a.dedup();
        assert_eq!(a.len(), 256);
    }

    #[test]
    fn quantisation_error_bound_all_inputs() {
        for x in i16::MIN..=i16::MAX {
            // μ-law: half a step of the segment (step 8 << segment), or clipping at ±32124
            // beyond the top decision level (±32636).
            let c = linear_to_ulaw(x);
            let y = ulaw_to_linear(c);
            let segment = ((!c) >> 4) & 0x07;
            let err = (i32::from(x) - i32::from(y)).abs();
            if (i32::from(x)).abs() < 32636 {
                assert!(err <= 4 << segment, "μ-law x={x} y={y} err={err}");
            } else {
                assert_eq!(y.abs(), 32124, "μ-law clip at {x}");
            }
            // A-law: half a step (16 in segments 0 and 1, 16 << (segment-1) above).
            let c = linear_to_alaw(x);
            let y = alaw_to_linear(c);
            let segment = ((c ^ ALAW_XOR) >> 4) & 0x07;
            let half = if segment == 0 { 8 } else { 4 << segment };
            let err = (i32::from(x) - i32::from(y)).abs();
            assert!(err <= half, "A-law x={x} y={y} err={err}");
        }
    }

    #[test]
    fn slices_use_the_shorter_length() {
        let pcm = [0i16, 1000, -1000, i16::MAX, i16::MIN];
        let mut codes = [0u8; 3];
        assert_eq!(encode_ulaw(&pcm, &mut codes), 3);
        assert_eq!(codes[0], 0xFF);
        let mut back = [0i16; 8];
        assert_eq!(decode_ulaw(&codes, &mut back), 3);
        assert_eq!(encode_alaw(&pcm, &mut []), 0);
        let mut a = [0u8; 5];
        assert_eq!(encode_alaw(&pcm, &mut a), 5);
        assert_eq!(a[3], 0xAA);
        assert_eq!(a[4], 0x2A);
        assert_eq!(decode_alaw(&a, &mut back[..2]), 2);
        assert_eq!(back[0], 8);
    }
}
