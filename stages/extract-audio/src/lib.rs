//! extract-audio's tool runs, shared by the function and `cargo xtask bench`.

use std::path::Path;
use std::process::Command;

/// The ffmpeg run that writes `video`'s sound to `audio` as mono 16-bit WAV at `sample_rate`.
pub fn command(video: &Path, sample_rate: u32, audio: &Path) -> Command {
    let mut cmd = stage_runtime::ffmpeg();
    cmd.arg("-i").arg(video).args(["-vn", "-ac", "1", "-ar"]).arg(sample_rate.to_string());
    cmd.args(["-c:a", "pcm_s16le"]).arg(audio);
    cmd
}

/// The ffprobe run that prints the type of each of `media`'s streams, one
/// per line, then its container's duration in seconds (`N/A` if unknown).
pub fn probe_command(media: &Path) -> Command {
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-show_entries", "stream=codec_type:format=duration", "-of", "csv=p=0"]).arg(media);
    cmd
}
