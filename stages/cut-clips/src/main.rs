//! cut-clips (VideoSearcher: ffmpeg-1): one clip per detected speech segment.
//!
//! VideoSearcher cut with `-c copy`, which can only start at a keyframe: a
//! clip then begins up to a GOP early and carries the previous sentence's
//! audio into the transcript. We re-encode (x264 `ultrafast`, near-lossless
//! `crf 18`, PCM-exact AAC) so every clip starts and ends on its segment; the
//! extra CPU is small next to compress-clip, which re-encodes anyway.

use std::process::ExitCode;

use serde::Deserialize;
use stage_runtime::{Artifact, Artifacts, Context, ErrorKind, Handler, Invocation, StageError};

struct CutClips;

/// The part of detect-speech's `segments.json` this stage reads.
#[derive(Deserialize)]
struct Segments {
    clips: Vec<Clip>,
}

#[derive(Deserialize)]
struct Clip {
    index: usize,
    start_s: f64,
    end_s: f64,
}

fn main() -> ExitCode {
    stage_runtime::serve(|_| Ok(CutClips))
}

impl Handler for CutClips {
    fn handle(&self, cx: &Context, inv: &Invocation) -> Result<Artifacts, StageError> {
        let segments: Segments = cx.get_json(stage_runtime::one(inv, "segments")?)?;
        let video = cx.fetch(inv, "video", "input")?;
        // Each clip is uploaded while the next one is cut.
        let mut uploads = Vec::with_capacity(segments.clips.len());
        for clip in &segments.clips {
            if !(clip.end_s > clip.start_s && clip.start_s >= 0.0) {
                return Err(StageError::bad_input(
                    "bad_segment",
                    format!("segment {} has start {} and end {}", clip.index, clip.start_s, clip.end_s),
                ));
            }
            let name = cut_clips::clip_name(clip.index);
            let out = cx.work_dir().join(&name);
            cx.run(&mut cut_clips::command(&video, clip.start_s, clip.end_s, &out), ErrorKind::Unprocessable)?;
            uploads.push(cx.put_in_background(out, &name)?);
        }
        let clips = cx.finish_uploads(uploads)?;
        Ok(Artifacts::from([("clips".to_string(), Artifact::Many(clips))]))
    }
}
