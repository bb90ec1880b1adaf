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
        let mut cmd = stage_runtime::ffmpeg();
        cmd.arg("-i").arg(&video).arg("-vf").arg(format!("fps={}/60", self.per_minute));
        cmd.args(["-q:v", "2"]).arg(frames_dir.join("frame-%04d.jpg"));
        cx.run(&mut cmd, ErrorKind::Unprocessable)?;
        let mut names: Vec<String> = std::fs::read_dir(&frames_dir)
            .map_err(anyhow::Error::from)?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        names.sort();
        let frames = names
            .iter()
            .map(|name| cx.put(&frames_dir.join(name), name))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Artifacts::from([("frames".to_string(), Artifact::Many(frames))]))
    }
}
