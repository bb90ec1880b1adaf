//! Port of `librosa.effects.split(y, top_db, ref=np.max, frame_length, hop_length)`
//! (librosa 0.11) for mono signals.
//!
//! 1. `rms = librosa.feature.rms(y, frame_length, hop_length, center=True)`: the signal is
//!    padded with `frame_length // 2` zeros on both sides (`pad_mode="constant"`, the default
//!    since librosa 0.10) and cut into frames every `hop_length` samples.
//! 2. `db = amplitude_to_db(rms, ref=np.max)`, which equals
//!    `power_to_db(rms², ref=max(rms²), amin=1e-10)`.
//! 3. A frame is non-silent where `db > -top_db`.
//! 4. Runs of non-silent frames become `[start, end)` sample intervals
//!    (`frames_to_samples`: `frame * hop_length`), clipped to `len(y)`.
//!
//! Differences from librosa: the mean square is summed in `f64` (librosa uses `f32`),
//! which can only move a frame that sits on the threshold; and a signal whose loudest
//! frame is at or below `amin` (digital silence) has no intervals, where librosa
//! pins every frame to 0 dB and returns the whole signal as one interval.
//!
//! Evidence: `tests/librosa.rs` asserts librosa 0.11.0's intervals on a synthesized signal, sample for sample.

/// librosa's default analysis frame, in samples.
pub const FRAME_LENGTH: usize = 2048;
/// librosa's default hop between frames, in samples.
pub const HOP_LENGTH: usize = 512;
/// `amplitude_to_db`'s `amin` of 1e-5, squared for powers.
const AMIN: f64 = 1e-10;

/// Frame loudness of one signal, in dB below its loudest frame.
///
/// It does not depend on `top_db`: compute it once, then [`FramePower::split`] for each `top_db`.
#[derive(Debug, Clone)]
pub struct FramePower {
    /// `power_to_db(mse, ref=max(mse), amin=1e-10)` of each frame.
    db: Vec<f64>,
    /// Loudest frame's mean square.
    max_mse: f64,
    hop_length: usize,
    n_samples: usize,
}

impl FramePower {
    /// Mean square of each centred frame of `y`, converted to dB relative to the maximum.
    pub fn new(y: &[f32], frame_length: usize, hop_length: usize) -> Self {
        Self::from_samples(y.iter().copied(), frame_length, hop_length)
    }

    /// The same, in one pass over `samples`, holding one frame of them at a
    /// time: memory does not grow with the signal but for one number per
    /// hop. Each frame's sum runs over the same samples in the same order as
    /// over a slice (the padding adds exact zeros), so the result is the same
    /// to the bit.
    pub fn from_samples(samples: impl IntoIterator<Item = f32>, frame_length: usize, hop_length: usize) -> Self {
        assert!(
            frame_length > 0 && hop_length > 0,
            "frame_length and hop_length must be positive"
        );
        let pad = frame_length / 2;
        // The last `frame_length` samples of the padded signal.
        let mut window: std::collections::VecDeque<f32> = std::collections::VecDeque::with_capacity(frame_length + 1);
        let mut mse = Vec::new();
        let mut seen = 0usize;
        // Frame t covers padded[t*hop .. t*hop + frame_length]: it is complete when this many are seen.
        let mut next_end = frame_length;
        let mut push = |sample: f32, mse: &mut Vec<f64>| {
            window.push_back(sample);
            if window.len() > frame_length {
                window.pop_front();
            }
            seen += 1;
            if seen == next_end {
                let energy: f64 = window.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
                mse.push(energy / frame_length as f64);
                next_end += hop_length;
            }
        };
        for _ in 0..pad {
            push(0.0, &mut mse);
        }
        let mut n_samples = 0;
        for sample in samples {
            push(sample, &mut mse);
            n_samples += 1;
        }
        if n_samples == 0 {
            mse.clear();
        } else {
            for _ in 0..pad {
                push(0.0, &mut mse);
            }
        }

        let max_mse = mse.iter().copied().fold(0.0, f64::max);
        let ref_db = 10.0 * AMIN.max(max_mse).log10();
        let db = mse
            .iter()
            .map(|&p| 10.0 * AMIN.max(p).log10() - ref_db)
            .collect();
        Self {
            db,
            max_mse,
            hop_length,
            n_samples,
        }
    }

    /// Samples of the signal analysed.
    pub fn n_samples(&self) -> usize {
        self.n_samples
    }

    /// Non-silent `[start, end)` sample intervals: frames louder than `-top_db` dB.
    pub fn split(&self, top_db: f64) -> Vec<(usize, usize)> {
        if self.max_mse <= AMIN {
            return Vec::new();
        }
        let non_silent: Vec<bool> = self.db.iter().map(|&db| db > -top_db).collect();
        let last = non_silent.len() - 1;

        // Frames where the indicator flips, plus the ends when they are non-silent.
        let mut edges = Vec::new();
        if non_silent[0] {
            edges.push(0);
        }
        edges.extend((1..=last).filter(|&i| non_silent[i] != non_silent[i - 1]));
        if non_silent[last] {
            edges.push(last + 1);
        }

        let to_sample = |frame: usize| (frame * self.hop_length).min(self.n_samples);
        edges
            .chunks_exact(2)
            .map(|e| (to_sample(e[0]), to_sample(e[1])))
            .collect()
    }
}

/// `librosa.effects.split(y, top_db=top_db, ref=np.max, frame_length=2048, hop_length=512)`.
pub fn split(y: &[f32], top_db: f64) -> Vec<(usize, usize)> {
    FramePower::new(y, FRAME_LENGTH, HOP_LENGTH).split(top_db)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: usize = 22050;

    /// Concatenates (amplitude, seconds) parts: 440 Hz tones, or silence for amplitude 0.
    fn signal(parts: &[(f32, f64)]) -> Vec<f32> {
        let mut y = Vec::new();
        for &(amp, secs) in parts {
            let n = (secs * SR as f64) as usize;
            y.extend(
                (0..n).map(|i| {
                    amp * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / SR as f32).sin()
                }),
            );
        }
        y
    }

    /// Each interval must hold its tone and reach at most half a frame plus one hop past it:
    /// a centred frame hears a tone from half a frame before it starts to half a frame after.
    fn assert_near(got: &[(usize, usize)], want: &[(f64, f64)]) {
        assert_eq!(got.len(), want.len(), "intervals {got:?}, want {want:?} s");
        let slack = FRAME_LENGTH / 2 + HOP_LENGTH;
        for (&(s, e), &(ws, we)) in got.iter().zip(want) {
            let (ws, we) = ((ws * SR as f64) as usize, (we * SR as f64) as usize);
            assert!(s <= ws && ws - s <= slack, "start {s} vs {ws} in {got:?}");
            assert!(e >= we && e - we <= slack, "end {e} vs {we} in {got:?}");
        }
    }

    #[test]
    fn tones_between_silences_are_found_within_half_a_frame_and_a_hop() {
        let y = signal(&[(0.0, 1.0), (0.5, 2.0), (0.0, 1.5), (0.8, 1.0), (0.0, 0.5)]);
        assert_near(&split(&y, 30.0), &[(1.0, 3.0), (4.5, 5.5)]);
    }

    #[test]
    fn interval_reaching_the_end_is_clipped_to_the_signal() {
        let y = signal(&[(0.0, 0.5), (0.5, 1.0)]);
        let intervals = split(&y, 30.0);
        assert_eq!(intervals.last().unwrap().1, y.len());
        assert_near(&intervals, &[(0.5, 1.5)]);
    }

    #[test]
    fn all_zero_and_empty_signals_have_no_intervals() {
        assert_eq!(split(&vec![0.0; SR * 3], 40.0), vec![]);
        assert_eq!(split(&[], 40.0), vec![]);
    }

    #[test]
    fn constant_loudness_is_one_interval() {
        let y = signal(&[(0.3, 2.0)]);
        assert_eq!(split(&y, 20.0), vec![(0, y.len())]);
    }

    #[test]
    fn top_db_decides_whether_a_quiet_part_is_silence() {
        // A tone 20 dB below the loud one (amplitude / 10).
        let y = signal(&[(0.5, 1.0), (0.05, 1.0), (0.5, 1.0)]);
        assert_near(&split(&y, 15.0), &[(0.0, 1.0), (2.0, 3.0)]);
        assert_near(&split(&y, 25.0), &[(0.0, 3.0)]);
    }

    #[test]
    fn frame_count_and_edges_follow_librosa() {
        // 1 + len // hop frames; a single loud sample lights up the frames whose window holds it.
        let mut y = vec![0.0f32; 5000];
        y[2600] = 1.0;
        let power = FramePower::new(&y, FRAME_LENGTH, HOP_LENGTH);
        assert_eq!(power.db.len(), 1 + 5000 / HOP_LENGTH);
        // Frame t covers samples [t*512 - 1024, t*512 + 1024): frames 4..=7 hold sample 2600.
        assert_eq!(power.split(60.0), vec![(4 * HOP_LENGTH, 8 * HOP_LENGTH)]);
    }

    /// The slice form this module had before it streamed: each frame's
    /// energy summed over `y[start..end]` directly.
    fn mse_over_slices(y: &[f32], frame_length: usize, hop_length: usize) -> Vec<f64> {
        let pad = frame_length / 2;
        let n_frames = if y.is_empty() { 0 } else { 1 + (y.len() + 2 * pad - frame_length) / hop_length };
        (0..n_frames)
            .map(|t| {
                let start = (t * hop_length).saturating_sub(pad);
                let end = (t * hop_length + frame_length - pad).min(y.len());
                y[start..end].iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / frame_length as f64
            })
            .collect()
    }

    #[test]
    fn streaming_gives_the_slices_frames_to_the_bit() {
        // Noise of varying loudness, at lengths around frame and hop boundaries.
        let mut state = 12345u32;
        let mut noise = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32 - 0.5) * 0.8
        };
        for len in [1, 511, 512, 1023, 1024, 2047, 2048, 2049, 5000, 22050 * 3 + 7] {
            let y: Vec<f32> = (0..len).map(|i| noise() * (1.0 + (i as f32 / 3000.0).sin())).collect();
            let streamed = FramePower::from_samples(y.iter().copied(), FRAME_LENGTH, HOP_LENGTH);
            let reference = mse_over_slices(&y, FRAME_LENGTH, HOP_LENGTH);
            assert_eq!(streamed.db.len(), reference.len(), "{len} samples");
            let max = reference.iter().copied().fold(0.0, f64::max);
            assert_eq!(streamed.max_mse.to_bits(), max.to_bits(), "{len} samples");
            let ref_db = 10.0 * AMIN.max(max).log10();
            for (t, (db, mse)) in streamed.db.iter().zip(&reference).enumerate() {
                assert_eq!(db.to_bits(), (10.0 * AMIN.max(*mse).log10() - ref_db).to_bits(), "{len} samples, frame {t}");
            }
            assert_eq!(streamed.n_samples(), len);
        }
    }
}
