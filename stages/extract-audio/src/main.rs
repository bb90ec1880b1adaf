//! extract-audio (VideoSearcher: ffmpeg-0): the request's video → mono WAV at
//! the speech detector's sample rate. It is the pipeline's entry, so it also
//! classifies inputs that are not a video with sound: empty, corrupt, no audio
//! track (`no_audio`: the request ends with no speech), no video track.
//! A corrupt file that still probes as a video with sound fails in ffmpeg
//! itself, also as `bad_media`. Inputs beyond the pipeline's declared limits
//! (`parameters.input`) are refused before any work: a larger object from
//! the store's metadata, before it is downloaded (`input_too_large`); a
//! longer video from its header (`input_too_long`).

use std::path::Path;
use std::process::ExitCode;

use stage_runtime::{Artifact, Artifacts, Context, ErrorKind, Handler, Invocation, StageError};

struct ExtractAudio {
    sample_rate: u32,
    max_bytes: u64,
    max_seconds: f64,
}

fn main() -> ExitCode {
    stage_runtime::serve(|_| {
        Ok(ExtractAudio {
            sample_rate: stage_runtime::param("VS_SPEECH_SAMPLE_RATE", 22_050)?,
            max_bytes: stage_runtime::param("VS_INPUT_MAX_BYTES", 1 << 30)?,
            max_seconds: stage_runtime::param("VS_INPUT_MAX_SECONDS", 7200.0)?,
        })
    })
}

impl Handler for ExtractAudio {
    fn handle(&self, cx: &Context, inv: &Invocation) -> Result<Artifacts, StageError> {
        let size = cx.runtime().block_on(cx.store().size(stage_runtime::one(inv, "video")?))?;
        if size > self.max_bytes {
            return Err(StageError::unprocessable(
                "input_too_large",
                format!(
                    "the input video is {} MiB, above the pipeline's limit of {} MiB (`parameters.input.max_size`); it was not downloaded",
                    size >> 20,
                    self.max_bytes >> 20
                ),
            ));
        }
        let video = cx.fetch(inv, "video", "input")?;
        let seconds = probe(cx, &video)?;
        if seconds > self.max_seconds {
            return Err(StageError::unprocessable(
                "input_too_long",
                format!(
                    "the input video lasts {seconds:.0} s, above the pipeline's limit of {:.0} s (`parameters.input.max_duration`)",
                    self.max_seconds
                ),
            ));
        }
        let audio = cx.work_dir().join("audio.wav");
        cx.run(&mut extract_audio::command(&video, self.sample_rate, &audio), ErrorKind::Unprocessable)?;
        Ok(Artifacts::from([("audio".to_string(), Artifact::One(cx.put(&audio, "audio.wav")?))]))
    }
}

/// Refuse what is not a video with an audio track, naming what is wrong;
/// its duration in seconds (0 when its container does not say).
fn probe(cx: &Context, media: &Path) -> Result<f64, StageError> {
    if std::fs::metadata(media).map(|m| m.len()).unwrap_or(0) == 0 {
        return Err(StageError::unprocessable("empty_input", "the input video is empty (0 bytes)"));
    }
    let out = cx.run(&mut extract_audio::probe_command(media), ErrorKind::Unprocessable).map_err(|e| {
        StageError::unprocessable("bad_media", format!("the input is not a readable video: {}", e.message))
    })?;
    let streams = String::from_utf8_lossy(&out.stdout);
    let has = |kind: &str| streams.lines().any(|l| l.trim() == kind);
    let seconds = streams.lines().find_map(|l| l.trim().parse::<f64>().ok()).unwrap_or(0.0);
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
    Ok(seconds)
}
