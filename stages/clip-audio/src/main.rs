//! clip-audio (VideoSearcher: the sound half of ffmpeg-2): a clip → its sound
//! as 16 kHz mono WAV for speech recognition.
//!
//! VideoSearcher compressed each clip's picture and extracted its sound in one
//! step, before transcription. Here they are two functions, so that a search
//! compresses the picture only of the clips whose transcript matched (the
//! picture is what frame sampling needs; x264 is most of that step's CPU),
//! and, without a query, both run at the same time.

use std::process::ExitCode;

use stage_runtime::{Artifact, Artifacts, Context, ErrorKind, Handler, Invocation, StageError};

struct ClipAudio {
    audio_rate: u32,
}

fn main() -> ExitCode {
    stage_runtime::serve(|_| Ok(ClipAudio { audio_rate: stage_runtime::param("VS_COMPRESS_AUDIO_SAMPLE_RATE", 16_000)? }))
}

impl Handler for ClipAudio {
    fn handle(&self, cx: &Context, inv: &Invocation) -> Result<Artifacts, StageError> {
        let clip = cx.fetch(inv, "clip", "clip.mp4")?;
        let audio = cx.work_dir().join("audio.wav");
        cx.run(&mut clip_audio::command(&clip, self.audio_rate, &audio), ErrorKind::Unprocessable)?;
        Ok(Artifacts::from([("audio_16k".to_string(), Artifact::One(cx.put(&audio, "audio.wav")?))]))
    }
}
