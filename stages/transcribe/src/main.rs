//! transcribe (VideoSearcher: deepspeech): a clip's 16 kHz mono audio → its
//! words with timings, by PocketSphinx's US English model. A machine without
//! the recogniser or its model can't start this function.

use std::process::ExitCode;

use stage_runtime::{Artifact, Artifacts, Context, ErrorKind, Handler, Invocation, StageError};
use transcribe::Options;

struct Transcribe {
    options: Options,
}

fn main() -> ExitCode {
    stage_runtime::serve(|_| {
        let options = Options::default();
        transcribe::check_tools(&options)?;
        Ok(Transcribe { options })
    })
}

impl Handler for Transcribe {
    fn handle(&self, cx: &Context, inv: &Invocation) -> Result<Artifacts, StageError> {
        let wav = cx.fetch(inv, "audio_16k", "audio.wav")?;
        transcribe::check_input(&wav).map_err(|e| StageError::unprocessable("bad_media", format!("{e:#}")))?;
        let output = cx.run(&mut transcribe::command(&wav, &self.options), ErrorKind::Internal)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let transcript = transcribe::parse(&stdout).map_err(|e| StageError::internal("bad_tool_output", format!("{e:#}")))?;
        Ok(Artifacts::from([("transcript".to_string(), Artifact::One(cx.put_json(&transcript, "transcript.json")?))]))
    }
}
