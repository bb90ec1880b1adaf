//! `cargo xtask search VIDEO QUERY`: one request with a query, through the
//! target's gateway like `verify`, and its answer (`requests/<id>/result.json`,
//! written by the DAG's `answer` step) as a table: each matching clip's time
//! range in the video, the words heard there with the query's words marked,
//! and the objects seen in its frames.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Deserialize;

use crate::deploy::Target;
use crate::flags;
use crate::pipeline::Pipeline;
use crate::verify;

/// The part of `result.json` the table shows.
#[derive(Deserialize)]
struct Answer {
    query: Option<String>,
    clips: usize,
    hits: Vec<Hit>,
}

#[derive(Deserialize)]
struct Hit {
    start_s: f64,
    end_s: f64,
    text: String,
    words: Vec<Word>,
    frames: Vec<Frame>,
}

#[derive(Deserialize)]
struct Word {
    word: String,
    start_s: f64,
}

#[derive(Deserialize)]
struct Frame {
    detections: Vec<Detection>,
}

#[derive(Deserialize)]
struct Detection {
    label: String,
    score: f64,
}

pub fn run(pipeline: &Pipeline, target: &dyn Target, flags: &flags::Search) -> anyhow::Result<()> {
    if pipeline.dag.result.is_none() {
        bail!("the pipeline's DAG has no `result`, so a request has no answer to show\nhelp: name the artifact of the answer step in `dag.result`");
    }
    if !flags.video.is_file() {
        bail!("{} is not a file\nhelp: give the path of a video to search", flags.video.display());
    }
    let endpoints = target.endpoints()?;
    let (rt, store) = verify::connect(pipeline, &endpoints)?;
    let progress = indicatif::ProgressBar::new_spinner();
    progress.enable_steady_tick(Duration::from_millis(120));
    let request_id = format!("search-{}", uuid::Uuid::new_v4().simple());
    let outcome = rt.block_on(verify::send(
        pipeline,
        &endpoints.gateway_url,
        &store,
        &flags.video,
        Some(&flags.query),
        request_id,
        &progress,
    ));
    progress.finish_and_clear();
    let outcome = outcome?.succeeded()?;
    let Some(uri) = outcome.state["result"].as_str() else {
        bail!("request {} succeeded but published no answer: its state has no `result`", outcome.request_id);
    };
    let bytes = rt.block_on(store.get_bytes(uri)).with_context(|| format!("read the answer {uri}"))?;
    if flags.json {
        println!("{}", String::from_utf8_lossy(&bytes));
    } else {
        let answer: Answer = serde_json::from_slice(&bytes).with_context(|| format!("the answer {uri} is not a result document"))?;
        print!("{}", table(&answer));
    }
    eprintln!("request {} in {:.1?}; answer: {uri}", outcome.request_id, outcome.latency);
    Ok(())
}

fn table(answer: &Answer) -> String {
    let query = answer.query.as_deref().unwrap_or("");
    let mut out = match answer.hits.len() {
        0 => format!("no clip of the {} says {query:?}\n", answer.clips),
        n => format!("{n} of {} clips say {query:?}:\n", answer.clips),
    };
    if answer.hits.is_empty() {
        return out;
    }
    let rows: Vec<[String; 3]> = answer
        .hits
        .iter()
        .map(|hit| {
            let heard = excerpt(&hit.text, query);
            let mut at: Vec<String> = hit.words.iter().take(MAX_TIMES).map(|w| format!("{} at {}", w.word, clock(w.start_s))).collect();
            if hit.words.len() > MAX_TIMES {
                at.push(format!("{} more", hit.words.len() - MAX_TIMES));
            }
            let heard = if at.is_empty() { heard } else { format!("{heard} ({})", at.join(", ")) };
            [format!("{}–{}", clock(hit.start_s), clock(hit.end_s)), heard, objects(&hit.frames)]
        })
        .collect();
    let header = ["time", "words heard", "objects seen"];
    let widths: Vec<usize> = (0..3)
        .map(|c| rows.iter().map(|row| row[c].chars().count()).chain([header[c].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: [&str; 3]| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    out += &line(header);
    for row in &rows {
        out += &line([&row[0], &row[1], &row[2]]);
    }
    out
}

/// Words of context either side of the matches in the table, words shown
/// at most, and match times listed at most.
const CONTEXT_WORDS: usize = 5;
const MAX_WORDS: usize = 16;
const MAX_TIMES: usize = 3;

/// The part of the transcript around the query's runs of words, those in
/// capitals; the first words when nothing is marked.
fn excerpt(text: &str, query: &str) -> String {
    let norm = |word: &str| word.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect::<String>();
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let terms: Vec<String> = query.split_whitespace().map(norm).filter(|t| !t.is_empty()).collect();
    let mut marked = vec![false; tokens.len()];
    if !terms.is_empty() {
        for start in 0..tokens.len().saturating_sub(terms.len() - 1) {
            if terms.iter().enumerate().all(|(k, term)| norm(tokens[start + k]) == *term) {
                marked[start..start + terms.len()].iter_mut().for_each(|m| *m = true);
            }
        }
    }
    let (from, to) = match (marked.iter().position(|m| *m), marked.iter().rposition(|m| *m)) {
        (Some(first), Some(last)) => {
            let from = first.saturating_sub(CONTEXT_WORDS);
            (from, (last + 1 + CONTEXT_WORDS).min(tokens.len()).min(from + MAX_WORDS))
        }
        _ => (0, (2 * CONTEXT_WORDS).min(tokens.len())),
    };
    let words: Vec<String> =
        (from..to).map(|i| if marked[i] { tokens[i].to_uppercase() } else { tokens[i].to_string() }).collect();
    format!("{}{}{}", if from > 0 { "… " } else { "" }, words.join(" "), if to < tokens.len() { " …" } else { "" })
}

/// `label ×count (best score)` for every label seen in the frames.
fn objects(frames: &[Frame]) -> String {
    let mut seen: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for detection in frames.iter().flat_map(|frame| &frame.detections) {
        let entry = seen.entry(&detection.label).or_insert((0, 0.0));
        entry.0 += 1;
        entry.1 = entry.1.max(detection.score);
    }
    if seen.is_empty() {
        return if frames.is_empty() { "(no frames)".into() } else { format!("nothing in {} frames", frames.len()) };
    }
    seen.iter().map(|(label, (count, best))| format!("{label} ×{count} ({best:.2})")).collect::<Vec<_>>().join(", ")
}

/// `m:ss.s`
fn clock(seconds: f64) -> String {
    let minutes = (seconds / 60.0).floor();
    format!("{}:{:04.1}", minutes as u64, seconds - minutes * 60.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_marks_the_words_and_counts_the_objects() {
        let answer: Answer = serde_json::from_value(serde_json::json!({
            "query": "glass", "clips": 4,
            "hits": [{
                "start_s": 12.25, "end_s": 21.0, "text": "the house is on the left side of the road i would like a glass of water please i will call you later",
                "words": [{"word": "glass", "start_s": 15.5, "end_s": 15.9}],
                "frames": [
                    {"detections": [{"label": "face", "score": 0.9}, {"label": "face", "score": 0.7}]},
                    {"detections": []}
                ]
            }]
        }))
        .unwrap();
        assert_eq!(
            table(&answer),
            "1 of 4 clips say \"glass\":\n\
             time           words heard                                                             objects seen\n\
             0:12.2–0:21.0  … road i would like a GLASS of water please i will … (glass at 0:15.5)  face ×2 (0.90)\n"
        );
    }

    #[test]
    fn no_hit_says_so() {
        let answer: Answer = serde_json::from_value(serde_json::json!({"query": "zebra", "clips": 4, "hits": []})).unwrap();
        assert_eq!(table(&answer), "no clip of the 4 says \"zebra\"\n");
    }
}
