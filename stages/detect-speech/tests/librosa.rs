//! Evidence that [`detect_speech::split`] is `librosa.effects.split(y, top_db,
//! ref=np.max, frame_length=2048, hop_length=512)`: `tests/librosa/reference.py`
//! synthesizes a 16-bit signal with integer arithmetic, runs librosa on it and
//! writes `tests/librosa/reference.json`; this test rebuilds the same int16
//! samples from the parameters in that file and asserts librosa's intervals
//! exactly, sample for sample, for every `top_db` there.
//!
//! Why exactly and not within a tolerance: librosa computes each frame's power
//! in `f32` (mean, `sqrt`, square, `log10`), the crate in `f64`. On this signal
//! the two differ by at most `max_abs_db_f32_minus_f64` (about 7e-6 dB, which
//! the script measures by running librosa's own code in `float64`), while no
//! frame lies closer to a threshold than `closest_frame_db_to_threshold`
//! (0.019 dB at the closest; the script refuses a signal with a frame within
//! `min_margin_db` = 1e-3 dB). So no frame can change sides, and a mismatch is
//! a bug. Each case also has frames within 1 dB of its threshold, the ones a
//! wrong dB formula or reference would move (moving `top_db` 30 by 0.02 dB
//! already changes its intervals).

use std::io::Cursor;

use detect_speech::wav::read_wav_from;
use detect_speech::{read_wav_power, split};
use hound::{SampleFormat, WavSpec};

mod common {
    pub mod encode;
}
use serde::Deserialize;
use sha2::{Digest, Sha256};

const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/librosa/reference.json");
const REGENERATE: &str =
    "python3 -m venv /tmp/librosa-venv, pip install the versions in the header of \
     stages/detect-speech/tests/librosa/reference.py, then run it with that venv's python";

#[derive(Debug, Deserialize)]
struct Reference {
    librosa: String,
    numpy: String,
    signal: Signal,
    max_abs_db_f32_minus_f64: f64,
    min_margin_db: f64,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Signal {
    sample_rate: u32,
    n_samples: usize,
    noise_seed: u32,
    floor_seed: u32,
    floor_level: i64,
    syllable_k: i64,
    parts: Vec<Part>,
    samples_sha256: String,
    wav_sha256: String,
}

/// One stretch of the signal, as `PARTS` in reference.py.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Part {
    /// The noise floor alone.
    Floor { length: usize },
    /// Digital silence: not even the floor.
    Zero { length: usize },
    Tone {
        length: usize,
        level: i64,
        k: i64,
        fade: i64,
    },
    /// Low-passed noise, amplitude-modulated at a syllable rate.
    Speech {
        length: usize,
        level: i64,
        fade: i64,
    },
}

#[derive(Debug, Deserialize)]
struct Case {
    top_db: f64,
    intervals: Vec<(usize, usize)>,
    closest_frame_db_to_threshold: f64,
    frames_within_1db: usize,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(REFERENCE)
        .unwrap_or_else(|e| panic!("cannot read {REFERENCE} ({e})\nhelp: {REGENERATE}"));
    let reference: Reference = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("cannot parse {REFERENCE} ({e})\nhelp: {REGENERATE}"));
    assert!(
        !reference.cases.is_empty(),
        "{REFERENCE} has no cases\nhelp: {REGENERATE}"
    );
    reference
}

/// reference.py's `Lcg`: 32-bit, Numerical Recipes constants, in [-32768, 32767].
struct Lcg(u32);

impl Lcg {
    fn next(&mut self) -> i64 {
        self.0 = self.0.wrapping_mul(1664525).wrapping_add(1013904223);
        i64::from(self.0 >> 16) - 32768
    }
}

/// reference.py's `Circle`: Minsky's integer circle (`>>` floors, as in Python).
struct Circle {
    k: i64,
    c: i64,
    s: i64,
}

impl Circle {
    fn new(k: i64) -> Circle {
        Circle { k, c: 16384, s: 0 }
    }

    fn next(&mut self) -> i64 {
        self.c -= (self.s * self.k) >> 16;
        self.s += (self.c * self.k) >> 16;
        self.s
    }
}

/// Linear fade in and out, in [0, 32768] (the division is of non-negative numbers).
fn fade_q15(n: usize, length: usize, fade: i64) -> i64 {
    let ramp = n.min(length - 1 - n) as i64;
    if ramp >= fade {
        32768
    } else {
        ramp * 32768 / fade
    }
}

/// reference.py's `synthesize`, step for step.
fn synthesize(signal: &Signal) -> Vec<i16> {
    let (mut noise, mut floor) = (Lcg(signal.noise_seed), Lcg(signal.floor_seed));
    let mut out = Vec::with_capacity(signal.n_samples);
    for part in &signal.parts {
        let (length, fade) = match *part {
            Part::Floor { length } | Part::Zero { length } => (length, None),
            Part::Tone { length, fade, .. } | Part::Speech { length, fade, .. } => {
                (length, Some(fade))
            }
        };
        let mut osc = match part {
            Part::Tone { k, .. } => Some(Circle::new(*k)),
            _ => None,
        };
        let mut syllable = Circle::new(signal.syllable_k);
        let mut lowpass = 0i64;
        for n in 0..length {
            let mut v = match *part {
                Part::Tone { level, .. } => (osc.as_mut().unwrap().next() * level) >> 14,
                Part::Speech { level, .. } => {
                    lowpass += (noise.next() - lowpass) >> 2;
                    let env = syllable.next() + 16384;
                    let env = (env * env) >> 15;
                    (((lowpass * level) >> 15) * env) >> 15
                }
                Part::Floor { .. } | Part::Zero { .. } => 0,
            };
            if let Some(fade) = fade {
                v = (v * fade_q15(n, length, fade)) >> 15;
            }
            let f = floor.next();
            if !matches!(part, Part::Zero { .. }) {
                v += (f * signal.floor_level) >> 15;
            }
            out.push(v.clamp(-32768, 32767) as i16);
        }
    }
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The samples as a 16-bit mono WAV, written by hound.
fn wav_bytes(samples: &[i16], sample_rate: u32) -> Vec<u8> {
    let spec = WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: SampleFormat::Int,
    };
    common::encode::encode(spec, samples)
}

#[test]
fn synthesis_rebuilds_the_samples_librosa_saw() {
    let reference = reference();
    let samples = synthesize(&reference.signal);
    assert_eq!(samples.len(), reference.signal.n_samples);
    let pcm: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    assert_eq!(
        sha256_hex(&pcm),
        reference.signal.samples_sha256,
        "the int16 samples differ from reference.py's: the two synthesizers diverged"
    );
}

#[test]
fn wav_rs_reads_the_wav_librosa_loaded_as_i_over_32768() {
    let reference = reference();
    let samples = synthesize(&reference.signal);
    let bytes = wav_bytes(&samples, reference.signal.sample_rate);
    // Python's `wave` module wrote the file librosa loaded; hound writes the same bytes.
    assert_eq!(sha256_hex(&bytes), reference.signal.wav_sha256);
    let audio = read_wav_from(Cursor::new(bytes)).unwrap();
    assert_eq!(audio.sample_rate, reference.signal.sample_rate);
    let want: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    assert_eq!(audio.samples, want);
}

#[test]
fn split_gives_librosas_intervals_sample_for_sample() {
    let reference = reference();
    assert!(
        reference.librosa.starts_with("0.11."),
        "split.rs ports librosa 0.11; the reference was made with librosa {} (numpy {})",
        reference.librosa,
        reference.numpy
    );
    let samples = synthesize(&reference.signal);
    let y: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();

    // The production path as well: detect-speech reads its WAV in one pass.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signal.wav");
    std::fs::write(&path, wav_bytes(&samples, reference.signal.sample_rate)).unwrap();
    let (power, sample_rate) = read_wav_power(&path).unwrap();
    assert_eq!(sample_rate, reference.signal.sample_rate);
    assert_eq!(power.n_samples(), y.len());

    assert!(!reference.cases.is_empty(), "reference.json has no top_db cases to compare");
    for case in &reference.cases {
        let top_db = case.top_db;
        // What makes the exact comparison sound (see the module doc).
        assert!(
            case.closest_frame_db_to_threshold >= reference.min_margin_db
                && reference.min_margin_db > 10.0 * reference.max_abs_db_f32_minus_f64,
            "top_db {top_db}: a frame lies {} dB from the threshold, f32 and f64 differ by up to {} dB",
            case.closest_frame_db_to_threshold,
            reference.max_abs_db_f32_minus_f64
        );
        assert!(
            case.frames_within_1db > 0,
            "top_db {top_db}: no frame near the threshold"
        );
        assert!(
            !case.intervals.is_empty(),
            "top_db {top_db}: librosa found no interval"
        );

        assert_eq!(
            split(&y, top_db),
            case.intervals,
            "top_db {top_db}, split(y)"
        );
        assert_eq!(
            power.split(top_db),
            case.intervals,
            "top_db {top_db}, read_wav_power"
        );
    }
}
