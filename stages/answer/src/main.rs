//! answer: the request's answer, run once after the fan-out. Reads which clips
//! matched the query (every clip without one), their transcripts and what was
//! seen in their frames, and writes `result.json` with every time in the
//! source video. The rules are in the library's documentation.

use std::num::NonZeroU32;
use std::process::ExitCode;

use answer::{Fetched, Items, Segments};
use stage_runtime::{one, Artifact, Artifacts, Context, Handler, Invocation, StageError};

struct Answer {
    /// sample-frames' rate, which places each frame in its clip.
    per_minute: NonZeroU32,
}

fn main() -> ExitCode {
    stage_runtime::serve(|_| {
        Ok(Answer { per_minute: stage_runtime::param("VS_FRAMES_PER_MINUTE", NonZeroU32::new(12).unwrap())? })
    })
}

impl Handler for Answer {
    fn handle(&self, cx: &Context, inv: &Invocation) -> Result<Artifacts, StageError> {
        let segments: Segments = cx.get_json(one(inv, "segments")?)?;
        let items: Items = cx.get_json(one(inv, "items")?)?;
        answer::check(&segments, &items)?;
        let mut fetched = Vec::with_capacity(items.items.len());
        for item in &items.items {
            let hit = item.is_hit()?;
            let mut docs = Fetched::default();
            if let Some(uri) = item.uri("match")? {
                docs.matched = Some(cx.get_json(uri)?);
            }
            if hit {
                docs.transcript = Some(cx.get_json(item.required("transcript")?)?);
                if let Some(uri) = item.uri("detections")? {
                    docs.detections = Some(cx.get_json(uri)?);
                }
            }
            fetched.push(docs);
        }
        let result = answer::assemble(&segments, &items, &fetched, self.per_minute)?;
        Ok(Artifacts::from([("result".to_string(), Artifact::One(cx.put_json(&result, "result.json")?))]))
    }
}
