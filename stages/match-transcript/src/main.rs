//! match-transcript (VideoSearcher: grep): does a clip's transcript say the
//! request's query, and where? Writes every hit to `match.json` and answers
//! the verdict as the flag `matched`, which later steps can be conditional on.
//! The matching rules are in the library's documentation.

use std::process::ExitCode;

use match_transcript::Query;
use stage_runtime::{one, Artifact, Artifacts, Context, Handler, Invocation, StageError};
use transcribe::Transcript;

struct MatchTranscript;

fn main() -> ExitCode {
    stage_runtime::serve(|_| Ok(MatchTranscript))
}

impl Handler for MatchTranscript {
    fn handle(&self, cx: &Context, inv: &Invocation) -> Result<Artifacts, StageError> {
        let query_uri = one(inv, "query")?;
        let query: Query = cx.get_json(query_uri)?;
        let transcript: Transcript = cx.get_json(one(inv, "transcript")?)?;
        let found = match_transcript::find(&query.query, &transcript)
            .map_err(|e| StageError::bad_input("empty_query", format!("{query_uri}: {e}")))?;
        let matched = found.matched;
        Ok(Artifacts::from([
            ("match".to_string(), Artifact::One(cx.put_json(&found, "match.json")?)),
            ("matched".to_string(), Artifact::Flag(matched)),
        ]))
    }
}
