//! compress-clip (VideoSearcher: ffmpeg-2): a clip → H.264 at crf 30 (no
//! audio) plus its sound as 16 kHz mono WAV for speech recognition, in one
//! ffmpeg pass.

use std::process::ExitCode;

use stage_runtime::{Artifact, Artifacts, Context, ErrorKind, Handler, Invocation, StageError};

struct CompressClip {
    crf: u32,
    audio_rate: u32,
}

fn main() -> ExitCode {
    stage_runtime::serve(|_| {
        Ok(CompressClip {
            crf: stage_runtime::param("VS_COMPRESS_CRF", 30)?,
            audio_rate: stage_runtime::param("VS_COMPRESS_AUDIO_SAMPLE_RATE", 16_000)?,
        })
    })
}

impl Handler for CompressClip {
    fn handle(&self, cx: &Context, inv: &Invocation) -> Result<Artifacts, StageError> {
        let clip = cx.fetch(inv, "clip", "clip.mp4")?;
        let (video, audio) = (cx.work_dir().join("video.mp4"), cx.work_dir().join("audio.wav"));
        let mut cmd = compress_clip::command(&clip, self.crf, self.audio_rate, &video, &audio);
        cx.run(&mut cmd, ErrorKind::Unprocessable)?;
        Ok(Artifacts::from([
            ("compressed".to_string(), Artifact::One(cx.put(&video, "video.mp4")?)),
            ("audio_16k".to_string(), Artifact::One(cx.put(&audio, "audio.wav")?)),
        ]))
    }
}
