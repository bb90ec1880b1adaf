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

/// The URIs of `(item, uri)` pairs.
fn uris<'a>(wanted: &[(usize, &'a str)]) -> Vec<&'a str> {
    wanted.iter().map(|(_, uri)| *uri).collect()
}

impl Handler for Answer {
    fn handle(&self, cx: &Context, inv: &Invocation) -> Result<Artifacts, StageError> {
        let segments: Segments = cx.get_json(one(inv, "segments")?)?;
        let items: Items = cx.get_json(one(inv, "items")?)?;
        answer::check(&segments, &items)?;
        // Which documents each item needs, then each kind all at once.
        let (mut matches, mut transcripts, mut detections) = (Vec::new(), Vec::new(), Vec::new());
        for (i, item) in items.items.iter().enumerate() {
            if let Some(uri) = item.uri("match")? {
                matches.push((i, uri));
            }
            if item.is_hit()? {
                transcripts.push((i, item.required("transcript")?));
                if let Some(uri) = item.uri("detections")? {
                    detections.push((i, uri));
                }
            }
        }
        let mut fetched: Vec<Fetched> = items.items.iter().map(|_| Fetched::default()).collect();
        for ((i, _), doc) in matches.iter().zip(cx.get_json_all(&uris(&matches))?) {
            fetched[*i].matched = Some(doc);
        }
        for ((i, _), doc) in transcripts.iter().zip(cx.get_json_all(&uris(&transcripts))?) {
            fetched[*i].transcript = Some(doc);
        }
        for ((i, _), doc) in detections.iter().zip(cx.get_json_all(&uris(&detections))?) {
            fetched[*i].detections = Some(doc);
        }
        let result = answer::assemble(&segments, &items, &fetched, self.per_minute)?;
        Ok(Artifacts::from([("result".to_string(), Artifact::One(cx.put_json(&result, "result.json")?))]))
    }
}
