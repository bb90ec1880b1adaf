//! compress-clip's tool run, shared by the function and `cargo xtask bench`.

use std::path::Path;
use std::process::Command;

/// The one ffmpeg pass that writes `clip`'s picture to `video` (H.264 at `crf`, no audio)
/// and its sound to `audio` (mono 16-bit WAV at `audio_rate`).
pub fn command(clip: &Path, crf: u32, audio_rate: u32, video: &Path, audio: &Path) -> Command {
    let mut cmd = stage_runtime::ffmpeg();
    cmd.arg("-i").arg(clip);
    cmd.args(["-map", "0:v:0", "-an", "-c:v", "libx264", "-crf"]).arg(crf.to_string()).arg(video);
    cmd.args(["-map", "0:a:0", "-vn", "-ac", "1", "-ar"]).arg(audio_rate.to_string());
    cmd.args(["-c:a", "pcm_s16le"]).arg(audio);
    cmd
}
