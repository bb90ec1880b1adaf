//! detect-speech (VideoSearcher: librosa): the request's audio → the speech
//! segments to cut, by librosa's energy split and VideoSearcher's top_db search.

use std::process::ExitCode;

use detect_speech::{detect_segments_in, read_wav_power, SpeechParams};
use stage_runtime::{param, Artifact, Artifacts, Context, Handler, Invocation, StageError};

struct DetectSpeech {
    params: SpeechParams,
}

fn main() -> ExitCode {
    stage_runtime::serve(|_| {
        let defaults = SpeechParams::default();
        let params = SpeechParams {
            top_db_min: param("VS_SPEECH_TOP_DB_MIN", defaults.top_db_min)?,
            top_db_max: param("VS_SPEECH_TOP_DB_MAX", defaults.top_db_max)?,
            min_sentence_s: param("VS_SPEECH_SENTENCE_MIN_S", defaults.min_sentence_s)?,
            max_sentence_s: param("VS_SPEECH_SENTENCE_MAX_S", defaults.max_sentence_s)?,
        };
        Ok(DetectSpeech { params })
    })
}

impl Handler for DetectSpeech {
    fn handle(&self, cx: &Context, inv: &Invocation) -> Result<Artifacts, StageError> {
        let wav = cx.fetch(inv, "audio", "audio.wav")?;
        // Decoding the samples is part of the analysis, as librosa.load is;
        // they are read in one pass, never held whole.
        let (power, sample_rate) =
            cx.tool(|| read_wav_power(&wav)).map_err(|e| StageError::unprocessable("bad_media", format!("{e:#}")))?;
        let segments = cx
            .tool(|| detect_segments_in(&power, sample_rate, &self.params))
            .map_err(|e| StageError::bad_input("bad_parameters", format!("{e:#}")))?;
        Ok(Artifacts::from([(
            "segments".to_string(),
            Artifact::One(cx.put_json(&segments, "segments.json")?),
        )]))
    }
}
