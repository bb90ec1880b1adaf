//! clip-audio's tool run, shared by the function and `cargo xtask bench`.

use std::path::Path;
use std::process::Command;

/// The ffmpeg run that writes `clip`'s sound to `audio`: mono 16-bit WAV at
/// `audio_rate`, what the speech recogniser reads.
pub fn command(clip: &Path, audio_rate: u32, audio: &Path) -> Command {
    let mut cmd = stage_runtime::ffmpeg();
    cmd.arg("-i").arg(clip);
    cmd.args(["-map", "0:a:0", "-vn", "-ac", "1", "-ar"]).arg(audio_rate.to_string());
    cmd.args(["-c:a", "pcm_s16le"]).arg(audio);
    cmd
}
