//! WAV input, mixed down to mono `f32` samples in [-1, 1].

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use hound::{SampleFormat, WavReader};

use crate::split::{FramePower, FRAME_LENGTH, HOP_LENGTH};

/// Mono audio: one `f32` sample per frame, in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct MonoAudio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

impl MonoAudio {
    /// Length in seconds (`n_samples / sr`).
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate as f64
    }
}

/// Reads a WAV file (integer PCM of any width, or 32-bit float) as mono.
pub fn read_wav(path: &Path) -> Result<MonoAudio> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    read_wav_from(std::io::BufReader::new(file))
        .with_context(|| format!("cannot read {}", path.display()))
}

/// Reads WAV data from any reader as mono; channels are averaged like `librosa.to_mono`.
///
/// Integer samples are scaled by `2^(bits-1)`, as soundfile (librosa's loader) does.
pub fn read_wav_from<R: Read + 'static>(reader: R) -> Result<MonoAudio> {
    let mut mono = MonoSamples::open(reader)?;
    let samples = (&mut mono).collect();
    let sample_rate = mono.sample_rate;
    mono.finish()?;
    Ok(MonoAudio { samples, sample_rate })
}

/// The frame loudness of a WAV file and its sample rate, in one pass over
/// its samples: memory stays one frame of samples however long the audio
/// is (`detect-speech` never holds the whole signal).
pub fn read_wav_power(path: &Path) -> Result<(FramePower, u32)> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut mono = MonoSamples::open(std::io::BufReader::new(file))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let power = FramePower::from_samples(&mut mono, FRAME_LENGTH, HOP_LENGTH);
    let sample_rate = mono.sample_rate;
    mono.finish().with_context(|| format!("cannot read {}", path.display()))?;
    Ok((power, sample_rate))
}

/// The samples of a WAV stream, mixed down to mono as they are read.
pub struct MonoSamples {
    interleaved: Box<dyn Iterator<Item = hound::Result<f32>>>,
    channels: usize,
    pub sample_rate: u32,
    /// Why the samples ended early, if they did.
    error: Option<hound::Error>,
}

impl MonoSamples {
    pub fn open<R: Read + 'static>(reader: R) -> Result<MonoSamples> {
        let wav = WavReader::new(reader).map_err(|e| match e {
            hound::Error::FormatError(msg) => anyhow::anyhow!("not a WAV file ({msg})"),
            other => anyhow::Error::new(other).context("cannot parse the WAV header"),
        })?;
        let spec = wav.spec();
        if spec.sample_rate == 0 || spec.channels == 0 {
            bail!(
                "WAV header has sample rate {} and {} channels",
                spec.sample_rate,
                spec.channels
            );
        }
        let interleaved: Box<dyn Iterator<Item = hound::Result<f32>>> =
            match (spec.sample_format, spec.bits_per_sample) {
                (SampleFormat::Float, 32) => Box::new(wav.into_samples::<f32>()),
                (SampleFormat::Int, bits @ 1..=32) => {
                    let scale = (1u64 << (bits - 1)) as f32;
                    Box::new(wav.into_samples::<i32>().map(move |s| s.map(|s| s as f32 / scale)))
                }
                (format, bits) => {
                    bail!("unsupported WAV sample format {format:?} with {bits} bits")
                }
            };
        Ok(MonoSamples {
            interleaved,
            channels: spec.channels as usize,
            sample_rate: spec.sample_rate,
            error: None,
        })
    }

    /// Once the samples are read: an error if they ended because one could
    /// not be decoded.
    pub fn finish(self) -> Result<()> {
        match self.error {
            Some(e) => Err(anyhow::Error::new(e).context("cannot decode the WAV samples")),
            None => Ok(()),
        }
    }
}

impl Iterator for MonoSamples {
    type Item = f32;

    /// The mean of one frame's channels (a frame cut short at the end is dropped).
    fn next(&mut self) -> Option<f32> {
        let mut sum = 0.0f32;
        for _ in 0..self.channels {
            match self.interleaved.next()? {
                Ok(sample) => sum += sample,
                Err(e) => {
                    self.error = Some(e);
                    return None;
                }
            }
        }
        Some(sum / self.channels as f32)
    }
}

// The test helper the integration tests share.
#[cfg(test)]
#[path = "../tests/common/encode.rs"]
mod wav_encode;

#[cfg(test)]
mod tests {
    use super::*;
    use hound::WavSpec;
    use std::io::Cursor;

    use super::wav_encode::encode;

    #[test]
    fn int16_stereo_is_scaled_and_mixed_down() {
        let spec = WavSpec {
            channels: 2,
            sample_rate: 22050,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        let bytes = encode::<i16>(spec, &[i16::MIN, i16::MIN, 16384, 0, -16384, 16384]);
        let audio = read_wav_from(Cursor::new(bytes)).unwrap();
        assert_eq!(
            audio,
            MonoAudio {
                samples: vec![-1.0, 0.25, 0.0],
                sample_rate: 22050
            }
        );
    }

    #[test]
    fn float32_mono_is_kept() {
        let spec = WavSpec {
            channels: 1,
            sample_rate: 16000,
            bits_per_sample: 32,
            sample_format: SampleFormat::Float,
        };
        let audio = read_wav_from(Cursor::new(encode::<f32>(spec, &[0.5, -0.125]))).unwrap();
        assert_eq!(audio.samples, vec![0.5, -0.125]);
        assert_eq!(audio.duration_s(), 2.0 / 16000.0);
    }

    #[test]
    fn non_wav_input_is_rejected() {
        let err = read_wav_from(Cursor::new(b"ID3\x04 this is an mp3".to_vec())).unwrap_err();
        assert!(format!("{err:#}").starts_with("not a WAV file"), "{err:#}");
    }
}
