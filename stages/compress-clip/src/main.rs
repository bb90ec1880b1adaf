//! compress-clip (VideoSearcher: the picture half of ffmpeg-2): a clip →
//! H.264 at crf 30, without its sound (clip-audio extracts that), for frame
//! sampling. In a search it runs only for the clips whose transcript matched.

use std::process::ExitCode;

use stage_runtime::{Artifact, Artifacts, Context, ErrorKind, Handler, Invocation, StageError};

struct CompressClip {
    crf: u32,
}

fn main() -> ExitCode {
    stage_runtime::serve(|_| {
        Ok(CompressClip { crf: stage_runtime::param("VS_COMPRESS_CRF", 30)? })
    })
}

impl Handler for CompressClip {
    fn handle(&self, cx: &Context, inv: &Invocation) -> Result<Artifacts, StageError> {
        let clip = cx.fetch(inv, "clip", "clip.mp4")?;
        let video = cx.work_dir().join("video.mp4");
        cx.run(&mut compress_clip::command(&clip, self.crf, &video), ErrorKind::Unprocessable)?;
        Ok(Artifacts::from([("compressed".to_string(), Artifact::One(cx.put(&video, "video.mp4")?))]))
    }
}
