//! cut-clips' tool run, shared by the function and `cargo xtask bench`.

use std::path::Path;
use std::process::Command;

/// The ffmpeg run that re-encodes `video` from `start_s` to `end_s` into the clip `out`
/// (x264 `ultrafast` at crf 18, AAC 192k), so the clip starts exactly on its segment.
pub fn command(video: &Path, start_s: f64, end_s: f64, out: &Path) -> Command {
    let mut cmd = stage_runtime::ffmpeg();
    cmd.arg("-ss").arg(format!("{start_s:.3}")).arg("-i").arg(video);
    cmd.arg("-t").arg(format!("{:.3}", end_s - start_s));
    cmd.args(["-map", "0:v:0", "-map", "0:a:0", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18"]);
    cmd.args(["-c:a", "aac", "-b:a", "192k", "-movflags", "+faststart"]).arg(out);
    cmd
}

/// The file name of clip `index`.
pub fn clip_name(index: usize) -> String {
    format!("clip-{index:04}.mp4")
}
