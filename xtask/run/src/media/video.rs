//! The video files: a moving test pattern with the speech track (and a face picture
//! for part of the time), and its video-only and audio-only copies.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use super::run;
use super::speech::SAMPLE_RATE;

/// Picture size and rate; a keyframe every second.
pub const SIZE: &str = "640x360";
pub const FPS: u32 = 25;
/// Height of the face picture in the frame (the photo's face is about a quarter of it).
pub const FACE_HEIGHT: u32 = 240;

/// Flags that keep ffmpeg's output byte-identical between runs: no encoder version,
/// no creation time, no copied metadata.
const BITEXACT: [&str; 6] = ["-fflags", "+bitexact", "-flags", "+bitexact", "-map_metadata", "-1"];

/// Encodes `testsrc2` plus the `speech` track (raw s16le mono) into an H.264/AAC mp4 of
/// `duration_s`, showing `face` (a picture and the times to show it) over the pattern.
pub fn encode(speech: &Path, duration_s: f64, face: Option<(&Path, &[(f64, f64)])>, out: &Path) -> Result<()> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-loglevel", "error", "-y"]);
    cmd.args(["-f", "lavfi", "-i", &format!("testsrc2=size={SIZE}:rate={FPS}")]);
    cmd.args(["-f", "s16le", "-ar", &SAMPLE_RATE.to_string(), "-ac", "1", "-i"]).arg(speech);
    match face {
        Some((picture, spans)) => {
            cmd.arg("-i").arg(picture);
            let enable: Vec<String> = spans.iter().map(|(a, b)| format!("between(t,{a:.3},{b:.3})")).collect();
            let graph = format!(
                "[2:v]scale=-2:{FACE_HEIGHT},loop=loop=-1:size=1[face];\
                 [0:v][face]overlay=x=W-w-40:y=(H-h)/2:shortest=1:enable='{}'[v]",
                enable.join("+")
            );
            cmd.args(["-filter_complex", &graph, "-map", "[v]"]);
        }
        None => {
            cmd.args(["-map", "0:v"]);
        }
    }
    cmd.args(["-map", "1:a", "-t", &format!("{duration_s:.3}")]);
    cmd.args(["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", "-threads", "2"]);
    cmd.args(["-g", &FPS.to_string(), "-keyint_min", &FPS.to_string(), "-sc_threshold", "0"]);
    cmd.args(["-c:a", "aac", "-b:a", "128k", "-ar", "44100", "-ac", "2"]);
    cmd.args(BITEXACT).args(["-movflags", "+faststart"]).arg(out);
    run(&mut cmd, "ffmpeg")?;
    Ok(())
}

/// Copies one kind of stream (`v` or `a`) of `video` into `out`, unchanged.
pub fn copy_streams(video: &Path, kind: &str, out: &Path) -> Result<()> {
    run(
        Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-y", "-i"])
            .arg(video)
            .args(["-map", &format!("0:{kind}"), "-c", "copy"])
            .args(BITEXACT)
            .arg(out),
        "ffmpeg",
    )?;
    Ok(())
}
