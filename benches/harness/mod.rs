//! The timing loop shared by the benchmarks (std only, no benchmark crate): a warm-up
//! that sizes batches between clock reads, then the median of `SAMPLES` samples.

use std::hint::black_box;
use std::time::{Duration, Instant};

pub const SAMPLES: usize = 5;

/// How long to warm up and how long each sample runs at least.
pub struct Timing {
    pub warm_up: Duration,
    pub sample: Duration,
}

/// One timed case: the median of the samples.
pub struct Measurement {
    pub ns_per_op: f64,
    pub spread: f64,
}

/// Warms `op` up, then times `SAMPLES` samples of at least `mode.sample` each.
pub fn measure<R>(mode: &Timing, mut op: impl FnMut() -> R) -> Measurement {
    // Warm-up, doubling the batch until it takes ~1 ms: sizes the batches between clock reads.
    let mut batch: u64 = 1;
    let start = Instant::now();
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            black_box(op());
        }
        if t.elapsed() < Duration::from_millis(1) {
            batch *= 2;
        }
        if start.elapsed() >= mode.warm_up {
            break;
        }
    }
    let mut samples: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let mut iterations: u64 = 0;
            let t = Instant::now();
            let elapsed = loop {
                for _ in 0..batch {
                    black_box(op());
                }
                iterations += batch;
                let elapsed = t.elapsed();
                if elapsed >= mode.sample {
                    break elapsed;
                }
            };
            elapsed.as_nanos() as f64 / iterations as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    let median = samples[SAMPLES / 2];
    Measurement {
        ns_per_op: median,
        spread: (samples[SAMPLES - 1] - samples[0]) / median,
    }
}
