//! compress-clip's tool run, shared by the function and `cargo xtask bench`.

use std::path::Path;
use std::process::Command;

/// The ffmpeg run that writes `clip`'s picture to `video`: H.264 at `crf`, no audio.
pub fn command(clip: &Path, crf: u32, video: &Path) -> Command {
    let mut cmd = stage_runtime::ffmpeg();
    cmd.arg("-i").arg(clip);
    cmd.args(["-map", "0:v:0", "-an", "-c:v", "libx264", "-crf"]).arg(crf.to_string()).arg(video);
    cmd
}
