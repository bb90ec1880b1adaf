//! sample-frames (VideoSearcher: ffmpeg-3): still frames from the compressed
//! clip at a fixed rate (VideoSearcher: 12 per minute, one every 5 s).

use std::process::ExitCode;

use stage_runtime::{Artifact, Artifacts, Context, ErrorKind, Handler, Invocation, StageError};

struct SampleFrames {
    per_minute: u32,
}

fn main() -> ExitCode {
    stage_runtime::serve(|_| Ok(SampleFrames { per_minute: stage_runtime::param("VS_FRAMES_PER_MINUTE", 12)? }))
}

impl Handler for SampleFrames {
    fn handle(&self, cx: &Context, inv: &Invocation) -> Result<Artifacts, StageError> {
        let video = cx.fetch(inv, "compressed", "video.mp4")?;
        let frames_dir = cx.work_dir().join("frames");
        std::fs::create_dir(&frames_dir).map_err(anyhow::Error::from)?;
        cx.run(&mut sample_frames::command(&video, self.per_minute, &frames_dir), ErrorKind::Unprocessable)?;
        let names = sample_frames::frame_names(&frames_dir).map_err(anyhow::Error::from)?;
        let frames = names
            .iter()
            .map(|name| cx.put(&frames_dir.join(name), name))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Artifacts::from([("frames".to_string(), Artifact::Many(frames))]))
    }
}
