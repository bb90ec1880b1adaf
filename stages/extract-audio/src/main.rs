//! extract-audio (VideoSearcher: ffmpeg-0): the request's video → mono WAV at
//! the speech detector's sample rate. It is the pipeline's entry, so it also
//! classifies inputs that are not a video with sound: empty, corrupt, no audio
//! track (`no_audio`: the request ends with no speech), no video track.

use std::path::Path;
use std::process::{Command, ExitCode};

use stage_runtime::{Artifact, Artifacts, Context, ErrorKind, Handler, Invocation, StageError};

struct ExtractAudio {
    sample_rate: u32,
}

fn main() -> ExitCode {
    stage_runtime::serve(|_| Ok(ExtractAudio { sample_rate: stage_runtime::param("VS_SPEECH_SAMPLE_RATE", 22_050)? }))
}

impl Handler for ExtractAudio {
    fn handle(&self, cx: &Context, inv: &Invocation) -> Result<Artifacts, StageError> {
        let video = cx.fetch(inv, "video", "input")?;
        probe(cx, &video)?;
        let audio = cx.work_dir().join("audio.wav");
        let mut cmd = stage_runtime::ffmpeg();
        cmd.arg("-i").arg(&video).args(["-vn", "-ac", "1", "-ar"]).arg(self.sample_rate.to_string());
        cmd.args(["-c:a", "pcm_s16le"]).arg(&audio);
        cx.run(&mut cmd, ErrorKind::Unprocessable)?;
        Ok(Artifacts::from([("audio".to_string(), Artifact::One(cx.put(&audio, "audio.wav")?))]))
    }
}

/// Refuse what is not a video with an audio track, naming what is wrong.
fn probe(cx: &Context, media: &Path) -> Result<(), StageError> {
    if std::fs::metadata(media).map(|m| m.len()).unwrap_or(0) == 0 {
        return Err(StageError::unprocessable("empty_input", "the input video is empty (0 bytes)"));
    }
    let mut cmd = Command::new("ffprobe");
    cmd.args(["-v", "error", "-show_entries", "stream=codec_type", "-of", "csv=p=0"]).arg(media);
    let out = cx.run(&mut cmd, ErrorKind::Unprocessable).map_err(|e| {
        StageError::unprocessable("bad_media", format!("the input is not a readable video: {}", e.message))
    })?;
    let streams = String::from_utf8_lossy(&out.stdout);
    let has = |kind: &str| streams.lines().any(|l| l.trim() == kind);
    if !has("video") && !has("audio") {
        return Err(StageError::unprocessable("bad_media", "the input has neither video nor audio streams"));
    }
    if !has("video") {
        return Err(StageError::unprocessable("no_video", "the input has an audio track but no video track"));
    }
    if !has("audio") {
        return Err(StageError::unprocessable("no_audio", "the video has no audio track, so it has no speech"));
    }
    Ok(())
}
