//! The request's answer: which clips say the query, when in the source video,
//! what was said and what was seen there. [`assemble`] is a pure function of
//! the documents the function read; the function only fetches them.
//!
//! - **Hits.** A clip is a hit when its `matched` flag is true, or when it has
//!   none (no query: match-transcript did not run and every clip counts).
//!   Hits are in clip order.
//! - **Times.** Every time is in the source video: the clip's start (from
//!   detect-speech's `segments.json`) plus the time inside the clip, rounded
//!   to the millisecond. Frame `k` of a clip (0-based, in the order of
//!   detect-objects' `frames`, which is sample-frames' order) is at
//!   `k * 60 / per_minute` seconds into it: ffmpeg's `fps=per_minute/60`
//!   keeps the frame at 0 s first (measured with ffmpeg 5.1,
//!   `-vf fps=12/60,showinfo` on a 17 s clip: pts_time 0, 5, 10).
//! - **No detections.** A hit whose detections are missing (detect-objects or
//!   sample-frames was skipped for it) is still a hit, with no frames; its
//!   `skipped` list, copied from the items document, says why, so an empty
//!   `frames` never passes for "nothing seen".
//! - **Consistency.** The items document and `segments.json` must describe the
//!   same clips: one item per clip, each index once; either every item was
//!   matched against a query or none was; a `matched` flag agrees with its
//!   `match.json`. Anything else is an inconsistent request, an internal
//!   error (500), never a partial answer.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use match_transcript::{HitWord, Match};
use serde::{Deserialize, Serialize};
use stage_runtime::{Artifact, Artifacts, StageError};
use transcribe::Transcript;

/// The part of detect-speech's `segments.json` this function reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Segments {
    pub clips: Vec<Segment>,
}

/// A clip's span in the source video.
#[derive(Debug, Clone, Deserialize)]
pub struct Segment {
    pub start_s: f64,
    pub end_s: f64,
}

/// The fan-out's items document, written by the orchestrator.
#[derive(Debug, Clone, Deserialize)]
pub struct Items {
    pub items: Vec<Item>,
}

/// One clip's run of the fan-out steps.
#[derive(Debug, Clone, Deserialize)]
pub struct Item {
    pub scope: String,
    /// Position in `segments.clips`.
    pub index: usize,
    pub artifacts: Artifacts,
    #[serde(default)]
    pub skipped: Vec<Skipped>,
}

/// A step the orchestrator did not run for an item, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub function: String,
    pub reason: String,
}

/// The part of detect-objects' `detections.json` this function reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Detections {
    pub frames: Vec<FrameDetections>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FrameDetections {
    pub frame: String,
    pub detections: Vec<Detection>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Detection {
    pub label: String,
    pub score: f32,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

/// The documents the function read for one item (same position in `items`).
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// Its `match.json`, when it has one.
    pub matched: Option<Match>,
    /// Its transcript, read for hits.
    pub transcript: Option<Transcript>,
    /// Its `detections.json`, read for hits that have one.
    pub detections: Option<Detections>,
}

/// `result.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// The query as the client gave it; null without one.
    pub query: Option<String>,
    /// How many clips the video was cut into.
    pub clips: usize,
    pub hits: Vec<ClipHit>,
}

/// A clip that says the query (every clip without a query).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipHit {
    /// Its index in `segments.clips`.
    pub clip: usize,
    pub scope: String,
    pub start_s: f64,
    pub end_s: f64,
    /// The clip's whole transcript.
    pub text: String,
    /// The words of every occurrence of the query; none without a query.
    pub words: Vec<HitWord>,
    pub frames: Vec<Frame>,
    /// The steps not run for this clip (why `frames` may be empty).
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    pub frame: String,
    pub time_s: f64,
    pub detections: Vec<Found>,
}

/// A detection: `box` is `[x1, y1, x2, y2]` in the frame's pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Found {
    pub label: String,
    pub score: f32,
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
}

fn inconsistent(message: String) -> StageError {
    StageError::internal("inconsistent_request", message)
}

impl Item {
    /// The URI of artifact `name`, when the item has it.
    pub fn uri(&self, name: &str) -> Result<Option<&str>, StageError> {
        match self.artifacts.get(name) {
            None => Ok(None),
            Some(Artifact::One(uri)) => Ok(Some(uri)),
            Some(other) => Err(inconsistent(format!("item {}: `{name}` is {other:?}, not one URI", self.scope))),
        }
    }

    /// The URI of artifact `name`, which every item has.
    pub fn required(&self, name: &str) -> Result<&str, StageError> {
        self.uri(name)?.ok_or_else(|| inconsistent(format!("item {} has no `{name}`", self.scope)))
    }

    /// Whether the clip is a hit: its `matched` flag, or true without a query.
    pub fn is_hit(&self) -> Result<bool, StageError> {
        let flag = match self.artifacts.get("matched") {
            None => None,
            Some(Artifact::Flag(value)) => Some(*value),
            Some(other) => return Err(inconsistent(format!("item {}: `matched` is {other:?}, not a flag", self.scope))),
        };
        match (flag, self.uri("match")?) {
            (Some(value), Some(_)) => Ok(value),
            (None, None) => Ok(true),
            (Some(_), None) => Err(inconsistent(format!("item {} has `matched` but no `match`", self.scope))),
            (None, Some(_)) => Err(inconsistent(format!("item {} has `match` but no `matched`", self.scope))),
        }
    }
}

/// The items and the segments describe the same clips: one item per clip,
/// and either every item was matched against a query or none was.
pub fn check(segments: &Segments, items: &Items) -> Result<(), StageError> {
    let clips = segments.clips.len();
    let mut seen = BTreeMap::new();
    for item in &items.items {
        if item.index >= clips {
            return Err(inconsistent(format!(
                "item {} is clip {}, but segments.json has {clips} clips",
                item.scope, item.index
            )));
        }
        if let Some(other) = seen.insert(item.index, &item.scope) {
            return Err(inconsistent(format!("items {other} and {} are both clip {}", item.scope, item.index)));
        }
    }
    if let Some(missing) = (0..clips).find(|index| !seen.contains_key(index)) {
        return Err(inconsistent(format!("segments.json has clip {missing}, but no item is clip {missing}")));
    }
    let with_match: Vec<&str> = items.items.iter().filter(|i| i.artifacts.contains_key("match")).map(|i| i.scope.as_str()).collect();
    if !with_match.is_empty() && with_match.len() != items.items.len() {
        let without = items.items.iter().find(|i| !i.artifacts.contains_key("match")).map_or("", |i| i.scope.as_str());
        return Err(inconsistent(format!("item {} was matched against the query, item {without} was not", with_match[0])));
    }
    Ok(())
}

/// The answer from the parsed documents; `fetched[i]` belongs to `items.items[i]`.
pub fn assemble(
    segments: &Segments,
    items: &Items,
    fetched: &[Fetched],
    per_minute: NonZeroU32,
) -> Result<Answer, StageError> {
    check(segments, items)?;
    if fetched.len() != items.items.len() {
        return Err(StageError::internal("internal", format!("{} items but {} fetched", items.items.len(), fetched.len())));
    }
    let mut query: Option<&str> = None;
    let mut hits = Vec::new();
    for (item, docs) in items.items.iter().zip(fetched) {
        let hit = item.is_hit()?;
        if let Some(doc) = &docs.matched {
            match query {
                None => query = Some(&doc.query),
                Some(q) if q != doc.query => {
                    return Err(inconsistent(format!("item {} was matched against {:?}, others against {q:?}", item.scope, doc.query)));
                }
                Some(_) => {}
            }
            if doc.matched != hit {
                return Err(inconsistent(format!(
                    "item {}: `matched` is {hit} but its match.json says {}",
                    item.scope, doc.matched
                )));
            }
        } else if item.artifacts.contains_key("match") {
            return Err(StageError::internal("internal", format!("item {}: its match.json was not read", item.scope)));
        }
        if !hit {
            continue;
        }
        let segment = &segments.clips[item.index];
        let start = segment.start_s;
        let transcript = docs.transcript.as_ref().ok_or_else(|| {
            StageError::internal("internal", format!("item {}: its transcript was not read", item.scope))
        })?;
        let words = docs
            .matched
            .iter()
            .flat_map(|doc| &doc.hits)
            .flat_map(|h| &h.words)
            .map(|w| HitWord { word: w.word.clone(), start_s: ms(start + w.start_s), end_s: ms(start + w.end_s) })
            .collect();
        let step = 60.0 / f64::from(per_minute.get());
        let frames = docs
            .detections
            .iter()
            .flat_map(|d| d.frames.iter().enumerate())
            .map(|(k, f)| Frame {
                frame: f.frame.clone(),
                time_s: ms(start + k as f64 * step),
                detections: f
                    .detections
                    .iter()
                    .map(|d| Found { label: d.label.clone(), score: d.score, bbox: [d.x1, d.y1, d.x2, d.y2] })
                    .collect(),
            })
            .collect();
        hits.push(ClipHit {
            clip: item.index,
            scope: item.scope.clone(),
            start_s: ms(segment.start_s),
            end_s: ms(segment.end_s),
            text: transcript.text.clone(),
            words,
            frames,
            skipped: item.skipped.clone(),
        });
    }
    hits.sort_by_key(|h| h.clip);
    Ok(Answer { query: query.map(str::to_string), clips: segments.clips.len(), hits })
}

/// Seconds rounded to the millisecond, so sums print as the times they are.
fn ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests;
