//! Sample-rate conversion with rubato's FFT resampler (band-limited; never linear
//! interpolation), and a fixed-capacity sample FIFO. Everything is allocated up front.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

/// Why a resampler could not be built.
#[derive(Debug, thiserror::Error)]
#[error("resampler {from} Hz -> {to} Hz: {reason}")]
pub struct ResampleSetupError {
    pub from: u32,
    pub to: u32,
    pub reason: String,
}

/// A streaming mono resampler fed in arbitrary amounts: input is gathered into 10 ms
/// chunks, each converted as soon as it is complete.
pub struct StreamResampler {
    inner: Fft<f32>,
    from: u32,
    to: u32,
    chunk: Vec<f32>,
    fill: usize,
    out: Vec<f32>,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .finish()
    }
}

impl StreamResampler {
    pub fn new(from: u32, to: u32) -> Result<StreamResampler, ResampleSetupError> {
        let err = |reason: String| ResampleSetupError { from, to, reason };
        if from == 0 || to == 0 {
            return Err(err("zero rate".into()));
        }
        let chunk = (from as usize / 100).max(1);
        let inner = Fft::<f32>::new(from as usize, to as usize, chunk, 1, FixedSync::Input)
            .map_err(|e| err(e.to_string()))?;
        let out = vec![0.0; inner.output_frames_max()];
        let chunk_len = inner.input_frames_next();
        Ok(StreamResampler {
            inner,
            from,
            to,
            chunk: vec![0.0; chunk_len],
            fill: 0,
            out,
        })
    }

    pub fn rates(&self) -> (u32, u32) {
        (self.from, self.to)
    }

    /// Output delay in output samples.
    pub fn delay(&self) -> usize {
        self.inner.output_delay()
    }

    /// Feeds `input`; every converted block is handed to `emit`.
    pub fn process(&mut self, mut input: &[f32], mut emit: impl FnMut(&[f32])) {
        while !input.is_empty() {
            let take = (self.chunk.len() - self.fill).min(input.len());
            self.chunk[self.fill..self.fill + take].copy_from_slice(&input[..take]);
            self.fill += take;
            input = &input[take..];
            if self.fill < self.chunk.len() {
                break;
            }
            self.fill = 0;
            let frames_in = self.chunk.len();
            let frames_out = self.out.len();
            let (Ok(src), Ok(mut dst)) = (
                InterleavedSlice::new(&self.chunk[..], 1, frames_in),
                InterleavedSlice::new_mut(&mut self.out[..], 1, frames_out),
            ) else {
                continue;
            };
            if let Ok((_, produced)) = self.inner.process_into_buffer(&src, &mut dst, None) {
                emit(&self.out[..produced]);
            }
        }
    }
}

/// Converts a whole clip (e.g. a WAV file) at once, with the resampler's start-up delay
/// trimmed so that the output lines up with the input.
pub fn resample_clip(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, ResampleSetupError> {
    if from == to || input.is_empty() {
        return Ok(input.to_vec());
    }
    let err = |reason: String| ResampleSetupError { from, to, reason };
    let mut r = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Input)
        .map_err(|e| err(e.to_string()))?;
    let src = InterleavedSlice::new(input, 1, input.len()).map_err(|e| err(e.to_string()))?;
    let out = r
        .process_all(&src, input.len(), None)
        .map_err(|e| err(e.to_string()))?;
    Ok(out.take_data())
}

/// A bounded FIFO of samples over a preallocated ring.
#[derive(Debug, Clone)]
pub struct Fifo<T> {
    buf: Vec<T>,
    head: usize,
    len: usize,
}

impl<T: Copy + Default> Fifo<T> {
    pub fn new(capacity: usize) -> Fifo<T> {
        Fifo {
            buf: vec![T::default(); capacity.max(1)],
            head: 0,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// Appends `data`; when full, the oldest samples make room (bounded latency).
    pub fn push_slice(&mut self, data: &[T]) {
        let cap = self.buf.len();
        let data = if data.len() > cap {
            &data[data.len() - cap..]
        } else {
            data
        };
        let overflow = (self.len + data.len()).saturating_sub(cap);
        self.discard(overflow);
        for &x in data {
            let i = (self.head + self.len) % cap;
            self.buf[i] = x;
            self.len += 1;
        }
    }

    /// Drops up to `n` of the oldest samples.
    pub fn discard(&mut self, n: usize) {
        let n = n.min(self.len);
        self.head = (self.head + n) % self.buf.len();
        self.len -= n;
    }

    /// Moves up to `out.len()` samples into `out`; returns how many.
    pub fn pop_into(&mut self, out: &mut [T]) -> usize {
        let n = out.len().min(self.len);
        let cap = self.buf.len();
        for o in out.iter_mut().take(n) {
            *o = self.buf[self.head];
            self.head = (self.head + 1) % cap;
        }
        self.len -= n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin() * 0.5)
            .collect()
    }

    /// Zero crossings per second / 2.
    fn frequency(x: &[f32], rate: u32) -> f32 {
        let crossings = x
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        crossings as f32 * rate as f32 / (2.0 * x.len() as f32)
    }

    #[test]
    fn streaming_keeps_frequency_and_rate() {
        for (from, to) in [(8000, 48000), (48000, 8000), (44100, 48000), (48000, 16000)] {
            let input = sine(from, 440.0, from as usize);
            let mut r = StreamResampler::new(from, to).unwrap();
            let mut out = Vec::new();
            for piece in input.chunks(333) {
                r.process(piece, |o| out.extend_from_slice(o));
            }
            let expected = to as usize;
            assert!(
                out.len() + to as usize / 100 >= expected && out.len() <= expected,
                "{from}->{to}: {} samples",
                out.len()
            );
            let settled = &out[r.delay() + 100..];
            let f = frequency(settled, to);
            assert!((f - 440.0).abs() < 5.0, "{from}->{to}: {f} Hz");
            let peak = settled.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            assert!((peak - 0.5).abs() < 0.03, "{from}->{to}: peak {peak}");
        }
    }

    #[test]
    fn clip_is_aligned() {
        let input = sine(16000, 300.0, 16000);
        let out = resample_clip(&input, 16000, 8000).unwrap();
        assert_eq!(out.len(), 8000);
        // Aligned: sample 2k of the output is sample 4k of the input.
        for k in [1000usize, 2000, 4000] {
            assert!((out[k] - input[2 * k]).abs() < 0.02, "k={k}");
        }
    }

    #[test]
    fn fifo_wraps_and_bounds() {
        let mut f = Fifo::<i16>::new(4);
        f.push_slice(&[1, 2, 3]);
        let mut out = [0; 2];
        assert_eq!(f.pop_into(&mut out), 2);
        assert_eq!(out, [1, 2]);
        f.push_slice(&[4, 5, 6, 7]);
        assert_eq!(f.len(), 4);
        let mut out = [0; 8];
        assert_eq!(f.pop_into(&mut out), 4);
        assert_eq!(&out[..4], &[4, 5, 6, 7]);
        f.push_slice(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(f.pop_into(&mut out), 4);
        assert_eq!(&out[..4], &[3, 4, 5, 6]);
    }
}
