//! sample-frames' tool run, shared by the function and `cargo xtask bench`.

use std::path::Path;
use std::process::Command;

/// The ffmpeg run that writes `per_minute` JPEG frames a minute of `video` into
/// `frames_dir` as `frame-0001.jpg`, `frame-0002.jpg`, ...
pub fn command(video: &Path, per_minute: u32, frames_dir: &Path) -> Command {
    let mut cmd = stage_runtime::ffmpeg();
    cmd.arg("-i").arg(video).arg("-vf").arg(format!("fps={per_minute}/60"));
    cmd.args(["-q:v", "2"]).arg(frames_dir.join("frame-%04d.jpg"));
    cmd
}

/// The names of the frames in `frames_dir`, in frame order.
pub fn frame_names(frames_dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = std::fs::read_dir(frames_dir)?
        .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}
