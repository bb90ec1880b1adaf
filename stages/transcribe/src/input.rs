//! The audio format `pocketsphinx_continuous` reads: 16 kHz mono 16-bit PCM WAV.

use std::path::Path;

use anyhow::{bail, Context, Result};
use hound::{SampleFormat, WavReader};

/// Sample rate of the en-us acoustic model.
pub const SAMPLE_RATE: u32 = 16_000;

const CONVERT: &str = "convert it with `ffmpeg -i IN -ac 1 -ar 16000 -c:a pcm_s16le OUT.wav`";

/// Checks that `wav` is a 16 kHz mono 16-bit PCM WAV file named `*.wav`.
///
/// The decoder reads the WAV header only of files named `.wav`; it would decode any
/// other file as raw samples, header included, at whatever rate they have.
pub fn check_input(wav: &Path) -> Result<()> {
    if wav.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() != Some("wav") {
        bail!("{}: the file name must end in `.wav` for pocketsphinx_continuous to read its header", wav.display());
    }
    let reader = WavReader::open(wav).with_context(|| format!("{}: not a readable WAV file", wav.display()))?;
    let spec = reader.spec();
    let format = match spec.sample_format {
        SampleFormat::Int => format!("{}-bit PCM", spec.bits_per_sample),
        SampleFormat::Float => format!("{}-bit float", spec.bits_per_sample),
    };
    if spec.sample_rate != SAMPLE_RATE || spec.channels != 1 || format != "16-bit PCM" {
        bail!(
            "{}: audio is {} Hz, {} channel(s), {format}; transcription needs 16000 Hz mono 16-bit PCM: {CONVERT}",
            wav.display(),
            spec.sample_rate,
            spec.channels
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hound::{WavSpec, WavWriter};

    fn write_wav(dir: &Path, name: &str, sample_rate: u32, channels: u16) -> std::path::PathBuf {
        let path = dir.join(name);
        let spec = WavSpec { channels, sample_rate, bits_per_sample: 16, sample_format: SampleFormat::Int };
        let mut writer = WavWriter::create(&path, spec).unwrap();
        for _ in 0..sample_rate / 10 * u32::from(channels) {
            writer.write_sample(0i16).unwrap();
        }
        writer.finalize().unwrap();
        path
    }

    #[test]
    fn accepts_16k_mono_16_bit() {
        let dir = tempfile::tempdir().unwrap();
        check_input(&write_wav(dir.path(), "ok.wav", 16_000, 1)).unwrap();
    }

    #[test]
    fn rejects_44k_stereo_naming_the_format() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_input(&write_wav(dir.path(), "cd.wav", 44_100, 2)).unwrap_err().to_string();
        assert!(err.contains("44100 Hz, 2 channel(s), 16-bit PCM") && err.contains("-ar 16000"), "{err}");
    }

    #[test]
    fn rejects_8k_mono() {
        let dir = tempfile::tempdir().unwrap();
        let err = check_input(&write_wav(dir.path(), "phone.wav", 8_000, 1)).unwrap_err().to_string();
        assert!(err.contains("8000 Hz, 1 channel(s)"), "{err}");
    }

    #[test]
    fn rejects_a_file_that_is_not_wav() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("text.wav");
        std::fs::write(&path, "not audio").unwrap();
        let err = format!("{:#}", check_input(&path).unwrap_err());
        assert!(err.contains("not a readable WAV file"), "{err}");
    }

    #[test]
    fn rejects_a_name_without_wav_extension() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_wav(dir.path(), "clip.raw", 16_000, 1);
        let err = check_input(&path).unwrap_err().to_string();
        assert!(err.contains("must end in `.wav`"), "{err}");
    }
}
