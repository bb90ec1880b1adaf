//! `cargo xtask verify`: check that the runtime is whole (gateway, every
//! function registered, object store reachable with our credentials), send
//! one request end to end, and check every artifact it produced.
//!
//! Architecture invariant: verify talks to the pipeline only the way a user
//! would: through the gateway and the object store.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Deserialize;
use stage_runtime::{Artifact, Artifacts, Invocation, Store};
use transcribe::overlap::{said_between, Overlap, MIN_CLIP_OVERLAP};

use crate::deploy::{Endpoints, Target};
use crate::flags;
use crate::pipeline::Pipeline;

/// What the request must produce when its input is the synthesized test
/// video, whose spoken sentences and faces are known.
struct Expected {
    sentences: Vec<String>,
    /// When each sentence was spoken, in seconds.
    speech_spans: Vec<(f64, f64)>,
    faces_shown: bool,
}

/// A verify that ran: `Ok(report)` passed every check.
pub fn run(pipeline: &Pipeline, target: &dyn Target, flags: &flags::Verify) -> anyhow::Result<bool> {
    let endpoints = target.endpoints()?;
    let (input, expected) = match &flags.input {
        Some(path) => (path.clone(), None),
        None => {
            let media = crate::media::synthesize(&pipeline.dir.join(".cache/media"))?;
            let expected = Expected {
                sentences: media.sentences.clone(),
                speech_spans: media.speech_spans.clone(),
                faces_shown: media.face_picture.is_some() };
            (media.video.clone(), Some(expected))
        }
    };
    let (rt, store) = connect(pipeline, &endpoints)?;
    let progress = indicatif::ProgressBar::new_spinner();
    progress.enable_steady_tick(Duration::from_millis(120));
    let request_id = format!("verify-{}", uuid::Uuid::new_v4().simple());
    let outcome = rt.block_on(send(pipeline, &endpoints.gateway_url, &store, &input, None, request_id, &progress));
    progress.finish_and_clear();
    let outcome = outcome?;
    println!(
        "request {}: {} in {:.1?}",
        outcome.request_id,
        outcome.state["outcome"].as_str().unwrap_or("?"),
        outcome.latency
    );
    print_table(&outcome.state);
    if let Some(path) = &flags.json {
        std::fs::write(path, serde_json::to_vec_pretty(&outcome.state)?)?;
    }
    if let Some(failure) = &outcome.failure {
        eprintln!("verify failed for request {}: {failure}", outcome.request_id);
        return Ok(false);
    }
    let face_label = pipeline.parameters.detector.model.face_label();
    let problems = rt.block_on(check(&store, &outcome, expected.as_ref(), face_label, pipeline.dag.result.is_some()))?;
    if problems.is_empty() {
        println!("verify: ok ({} clips, request {})", outcome.clips, outcome.request_id);
        return Ok(true);
    }
    eprintln!("verify failed for request {}:", outcome.request_id);
    for problem in &problems {
        eprintln!("  - {problem}");
    }
    Ok(false)
}

/// Name what is missing before sending anything.
/// A tokio runtime and the target's store, once the gateway, every
/// function it runs and the store answer.
pub(crate) fn connect(pipeline: &Pipeline, endpoints: &Endpoints) -> anyhow::Result<(tokio::runtime::Runtime, Store)> {
    let rt = tokio::runtime::Runtime::new()?;
    let store = {
        let _guard = rt.enter();
        endpoints.store()?
    };
    rt.block_on(preflight(pipeline, &endpoints.gateway_url, &store))?;
    Ok((rt, store))
}

pub(crate) async fn preflight(pipeline: &Pipeline, gateway: &str, store: &Store) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let health = client.get(format!("{gateway}/healthz")).send().await;
    match health {
        Ok(r) if r.status().is_success() => {}
        Ok(r) => bail!("the gateway at {gateway} answers /healthz with {}", r.status()),
        Err(e) => bail!("the gateway at {gateway} does not answer: {e}\nhelp: deploy with `cargo xtask deploy`"),
    }
    #[derive(Deserialize)]
    struct Listed {
        name: String,
        #[serde(default)]
        replicas: u64,
    }
    let listed: Vec<Listed> = client.get(format!("{gateway}/system/functions")).send().await?.json().await?;
    for function in &pipeline.functions {
        let Some(entry) = listed.iter().find(|l| l.name == function.name) else {
            bail!("function `{}` is not known to the gateway\nhelp: deploy again: `cargo xtask teardown && cargo xtask deploy`", function.name);
        };
        if entry.replicas > 0 {
            let url = format!("{gateway}/function/{}/_/health", function.name);
            let status = client.get(&url).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
            if status != 200 {
                bail!("function `{}` runs but its health check answers {status}\nhelp: see `cargo xtask logs {}`", function.name, function.name);
            }
        }
    }
    store.probe().await.map_err(|e| {
        anyhow::anyhow!("the object store refuses us: {e}\nhelp: the bucket `{}` or the credentials are wrong; `cargo xtask teardown && cargo xtask deploy` recreates both", store.bucket())
    })?;
    Ok(())
}

/// A request that left a state document.
pub(crate) struct Outcome {
    pub request_id: String,
    /// Its state document, `requests/<id>/state.json`.
    pub state: serde_json::Value,
    pub clips: usize,
    /// From the call to the entry function until its whole answer arrived.
    pub latency: Duration,
    /// The entry function's HTTP status.
    pub status: u16,
    /// Why the entry function did not answer 200 (its status and answer).
    pub failure: Option<String>,
}

impl Outcome {
    /// The outcome of a request that succeeded; an error with its failure otherwise.
    pub fn succeeded(self) -> anyhow::Result<Outcome> {
        match self.failure {
            Some(failure) => bail!("{failure}"),
            None => Ok(self),
        }
    }
}

/// Upload the input, call the entry function as request `request_id`, and show
/// progress from the state document in `progress`'s message.
pub(crate) async fn send(
    pipeline: &Pipeline,
    gateway: &str,
    store: &Store,
    input: &Path,
    query: Option<&str>,
    request_id: String,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<Outcome> {
    let file_name = input.file_name().and_then(|n| n.to_str()).unwrap_or("input.mp4").replace(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_'), "_");
    let key = format!("requests/{request_id}/input/{file_name}");
    let (uri, _) = store.upload(input, &key).await.with_context(|| format!("upload {}", input.display()))?;
    let mut inputs = Artifacts::from([("video".into(), Artifact::One(uri))]);
    if let Some(query) = query {
        let key = format!("requests/{request_id}/input/query.json");
        let document = serde_json::to_vec(&serde_json::json!({ "query": query }))?;
        inputs.insert("query".into(), Artifact::One(store.put_bytes(&key, document.into()).await?));
    }
    let inv = Invocation { request_id: request_id.clone(), scope: None, inputs };

    progress.set_message(format!("request {request_id}: sent"));
    let entry = &pipeline.dag.entry;
    let state_uri = store.uri(&format!("requests/{request_id}/state.json"));
    let request = reqwest::Client::new()
        .post(format!("{gateway}/function/{entry}"))
        .json(&inv)
        .timeout(pipeline.timeouts.client);
    // A task of its own, so the clock stops when the answer arrives, not when
    // the progress loop next looks.
    let started = Instant::now();
    let mut call = tokio::spawn(async move {
        let response = request.send().await?;
        let status = response.status();
        let body = response.text().await?;
        Ok::<_, reqwest::Error>((status, body, started.elapsed()))
    });
    let answer = loop {
        tokio::select! {
            answer = &mut call => break answer,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if let Ok(bytes) = store.get_bytes(&state_uri).await {
                    if let Ok(state) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                        let steps = state["steps"].as_array().map_or(0, Vec::len);
                        let last = state["steps"].as_array().and_then(|s| s.last()).and_then(|s| s["function"].as_str()).unwrap_or("");
                        progress.set_message(format!("request {request_id}: {steps} steps done, last {last} ({:.0?})", started.elapsed()));
                    }
                }
            }
        }
    };
    let (status, body, latency) = answer?.with_context(|| format!("the request to `{entry}` failed"))?;
    let state: serde_json::Value = match store.get_bytes(&state_uri).await {
        Ok(bytes) => serde_json::from_slice(&bytes).context("the request state is not JSON")?,
        Err(e) => bail!("`{entry}` answered {status} and left no request state ({e}): {body}"),
    };
    let failure = (!status.is_success()).then(|| format!("the request failed with {status}: {}", body.trim()));
    let clips = state["items"].as_object().map_or(0, |m| m.len());
    Ok(Outcome { request_id, state, clips, latency, status: status.as_u16(), failure })
}

/// Every expected artifact, checked in the store. Returns what is wrong.
/// `face_label`: what the detector calls a face it sees (`face`, or COCO's `person`).
async fn check(store: &Store, outcome: &Outcome, expected: Option<&Expected>, face_label: &str, answers: bool) -> anyhow::Result<Vec<String>> {
    let mut problems = Vec::new();
    let state = &outcome.state;
    if state["status"] != "succeeded" {
        problems.push(format!("request status is {}, not succeeded", state["status"]));
    }
    let segments_uri = state["artifacts"]["segments"].as_str().unwrap_or_default();
    let segments: serde_json::Value = serde_json::from_slice(&store.get_bytes(segments_uri).await?)?;
    let segment_count = segments["clips"].as_array().map_or(0, Vec::len);
    let clip_uris = state["artifacts"]["clips"].as_array().map_or(0, Vec::len);
    if clip_uris != segment_count || outcome.clips != segment_count {
        problems.push(format!("{segment_count} speech segments but {clip_uris} clips cut and {} processed", outcome.clips));
    }
    if expected.is_some() && segment_count < 3 {
        problems.push(format!("the test video yields {segment_count} clips; at least 3 expected"));
    }
    let clips = state["artifacts"]["clips"].as_array().cloned().unwrap_or_default();
    let mut faces = 0;
    let mut frames_total = 0;
    for (scope, artifacts) in state["items"].as_object().into_iter().flatten() {
        let artifacts: Artifacts = serde_json::from_value(artifacts.clone())?;
        for name in ["clip", "compressed", "audio_16k", "transcript", "frames", "detections"] {
            let Some(artifact) = artifacts.get(name) else {
                problems.push(format!("{scope}: no `{name}` artifact"));
                continue;
            };
            for uri in artifact.uris() {
                match store.size(uri).await {
                    Ok(size) if size > 0 => {}
                    Ok(_) => problems.push(format!("{scope}: `{name}` object {uri} is empty")),
                    Err(e) => problems.push(format!("{scope}: `{name}` object {uri} is missing: {e}")),
                }
            }
        }
        if let Some(Artifact::One(uri)) = artifacts.get("transcript") {
            let transcript: serde_json::Value = serde_json::from_slice(&store.get_bytes(uri).await?)?;
            let heard = transcript["text"].as_str().unwrap_or("");
            let clip_uri = artifacts.get("clip").and_then(|a| a.uris().first()).map(String::as_str);
            match expected {
                // Any input: something must have been heard.
                None if heard.trim().is_empty() => problems.push(format!("{scope}: empty transcript")),
                None => {}
                // The test video: what was said during this clip's segment must show.
                Some(e) => match clips.iter().position(|clip| clip.as_str() == clip_uri) {
                    None => problems.push(format!("{scope}: its clip is not one of the request's clips")),
                    Some(i) => {
                        let (from, to) = (segments["clips"][i]["start_s"].as_f64().unwrap_or(0.0), segments["clips"][i]["end_s"].as_f64().unwrap_or(0.0));
                        let said = said_between(&e.sentences, &e.speech_spans, from, to);
                        let overlap = Overlap::of(&said.join(" "), heard);
                        if let Err(problem) = overlap.check(MIN_CLIP_OVERLAP) {
                            problems.push(format!("{scope} ({from}..{to} s): transcript: {problem}\n{overlap}"));
                        }
                    }
                },
            }
        }
        let frame_count = artifacts.get("frames").map_or(0, |a| a.uris().len());
        frames_total += frame_count;
        if frame_count == 0 {
            problems.push(format!("{scope}: no frames sampled"));
        }
        if let Some(Artifact::One(uri)) = artifacts.get("detections") {
            let detections: serde_json::Value = serde_json::from_slice(&store.get_bytes(uri).await?)
                .map_err(|e| anyhow::anyhow!("{scope}: detections are not JSON: {e}"))?;
            let Some(frames) = detections["frames"].as_array() else {
                problems.push(format!("{scope}: detections have no `frames` list"));
                continue;
            };
            if frames.len() != frame_count {
                problems.push(format!("{scope}: {frame_count} frames but {} detection entries", frames.len()));
            }
            for frame in frames {
                for d in frame["detections"].as_array().into_iter().flatten() {
                    let valid = ["x1", "y1", "x2", "y2", "score"].iter().all(|k| d[k].is_number()) && d["label"].is_string();
                    if !valid {
                        problems.push(format!("{scope}: malformed detection {d}"));
                    }
                    faces += (d["label"] == face_label) as usize;
                }
            }
        }
    }
    // No query: the answer lists every clip.
    match state["result"].as_str() {
        None if answers => problems.push("the request published no answer (`result` in its state)".into()),
        None => {}
        Some(uri) => {
            let answer: serde_json::Value = serde_json::from_slice(&store.get_bytes(uri).await?)?;
            let hits = answer["hits"].as_array().map_or(0, Vec::len);
            if hits != segment_count {
                problems.push(format!("the answer has {hits} hits for {segment_count} clips and no query"));
            }
        }
    }
    if expected.is_some_and(|e| e.faces_shown) && faces == 0 {
        problems.push(format!("the test video shows a face but no `{face_label}` was detected in {frames_total} frames"));
    }
    println!("checked: {segment_count} segments, {} clips, {frames_total} frames, {faces} faces", outcome.clips);
    Ok(problems)
}

/// Per stage: invocations, time, cold starts, memory and cost.
pub fn print_table(state: &serde_json::Value) {
    let Some(summary) = state["summary"].as_object() else { return };
    println!(
        "{:<16} {:>5} {:>5} {:>5} {:>10} {:>10} {:>10} {:>9} {:>10}",
        "function", "calls", "cold", "skip", "total ms", "max ms", "peak MiB", "limit", "cost GB-s"
    );
    let mut cost = 0.0;
    for (function, s) in summary {
        let f = |k: &str| s[k].as_f64().unwrap_or(0.0);
        cost += f("cost_units");
        println!(
            "{:<16} {:>5} {:>5} {:>5} {:>10.0} {:>10.0} {:>10.1} {:>7}Mi {:>10.3}",
            function,
            f("invocations"),
            f("cold_starts"),
            f("skipped"),
            f("duration_ms_total"),
            f("duration_ms_max"),
            f("peak_rss_mb_max"),
            f("memory_limit_mb"),
            f("cost_units")
        );
    }
    println!("{:<16} {:>82.3}", "total", cost);
}
