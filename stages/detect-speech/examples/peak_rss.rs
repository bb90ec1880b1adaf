//! Peak memory of detect-speech's work on one WAV file, as the function does
//! it (one pass over the samples, then the segment search):
//! `cargo run --release -p detect-speech --example peak_rss -- AUDIO.wav`.
//! Run it on a short and a long file: the peak should not grow with length.
//! A 3- and a 30-minute speech file, from espeak-ng and ffmpeg:
//!
//! ```sh
//! espeak-ng -w /tmp/speech.wav "$(printf 'The quick brown fox jumps over the lazy dog. %.0s' $(seq 40))"
//! ffmpeg -stream_loop -1 -i /tmp/speech.wav -t 180 -ar 22050 -ac 1 /tmp/speech-3min.wav
//! ffmpeg -stream_loop -1 -i /tmp/speech.wav -t 1800 -ar 22050 -ac 1 /tmp/speech-30min.wav
//! ```

use detect_speech::{detect_segments_in, read_wav_power, SpeechParams};

fn kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    status.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.trim().trim_end_matches(" kB").parse().ok()).expect("a VmHWM line")
}

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: peak_rss AUDIO.wav"))?;
    let before = kb("VmHWM:");
    let (power, sample_rate) = read_wav_power(std::path::Path::new(&path))?;
    let segments = detect_segments_in(&power, sample_rate, &SpeechParams::default())?;
    let seconds = power.n_samples() as f64 / f64::from(sample_rate);
    println!(
        "{path}: {:.0} s of audio, {} clips; peak RSS {:.1} MiB ({:.1} MiB before reading)",
        seconds,
        segments.clips.len(),
        kb("VmHWM:") as f64 / 1024.0,
        before as f64 / 1024.0
    );
    Ok(())
}
