//! extract-audio (VideoSearcher: ffmpeg-0): the request's video → mono WAV at
//! the speech detector's sample rate. It is the pipeline's entry, so it also
//! classifies inputs that are not a video with sound: empty, corrupt, no audio
//! track (`no_audio`: the request ends with no speech), no video track.
//! A corrupt file that still probes as a video with sound fails in ffmpeg
//! itself, also as `bad_media`.

use std::path::Path;
use std::process::ExitCode;

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
        cx.run(&mut extract_audio::command(&video, self.sample_rate, &audio), ErrorKind::Unprocessable)?;
        Ok(Artifacts::from([("audio".to_string(), Artifact::One(cx.put(&audio, "audio.wav")?))]))
    }
}

/// Refuse what is not a video with an audio track, naming what is wrong.
fn probe(cx: &Context, media: &Path) -> Result<(), StageError> {
    if std::fs::metadata(media).map(|m| m.len()).unwrap_or(0) == 0 {
        return Err(StageError::unprocessable("empty_input", "the input video is empty (0 bytes)"));
    }
    let out = cx.run(&mut extract_audio::probe_command(media), ErrorKind::Unprocessable).map_err(|e| {
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
        // A truncated file can list fewer streams than it had: only a video
        // whose first frame decodes is a video without sound.
        let mut decode = stage_runtime::ffmpeg();
        decode.arg("-i").arg(media).args(["-map", "0:v:0", "-frames:v", "1", "-f", "null", "-"]);
        cx.run(&mut decode, ErrorKind::Unprocessable).map_err(|e| {
            StageError::unprocessable("bad_media", format!("the input video does not decode: {}", e.message))
        })?;
        return Err(StageError::unprocessable("no_audio", "the video has no audio track, so it has no speech"));
    }
    Ok(())
}
