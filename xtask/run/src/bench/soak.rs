//! `cargo xtask bench soak`: many requests through a local runtime of the
//! bench's own while function processes are SIGKILLed at random, then an
//! account of what became of everything: requests that succeeded, failed
//! with a classified error, or were lost (no answer, or a state that never
//! ended); objects under a request that its state does not name; multipart
//! uploads and staging files the store still holds; function temp folders
//! of dead processes. The goal for each of the last four is 0.
//!
//! The orchestrator is never killed: a request whose orchestrator dies is
//! taken over only when it is sent again after its lease, which a client
//! of this bench does not do. A benchmark, not a test: it never fails on a
//! figure.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use rand::{Rng as _, SeedableRng as _};

use crate::deploy::Target;
use crate::flags;
use crate::pipeline::Pipeline;
use crate::verify;

pub fn run(pipeline: &Pipeline, global: &flags::Global, flags: &flags::BenchSoak) -> anyhow::Result<()> {
    let runtime = super::own_local_runtime(pipeline, global, "bench-soak", "bench soak kills processes of a local runtime of its own")?;
    let input = match &flags.input {
        Some(input) => input.clone(),
        None => crate::media::synthesize(&pipeline.dir.join(".cache/media"))?.video,
    };
    crate::model::ensure(&pipeline.detector_model())?;
    runtime.deploy()?;
    let measured = (|| {
        let endpoints = runtime.endpoints()?;
        let (rt, store) = verify::connect(pipeline, &endpoints)?;
        rt.block_on(soak(pipeline, &endpoints.gateway_url, &store, &runtime.state().root, &input, flags))
    })();
    let stopped = runtime.teardown();
    let figures = measured?;
    stopped.context("the runtime the bench started did not stop")?;
    let orphans = orphans(&runtime.state().store(), pipeline)?;
    println!(
        "bench soak: {} requests of {} ({} at once), {} function processes SIGKILLed",
        flags.requests,
        input.display(),
        flags.concurrency,
        figures.killed
    );
    println!("  succeeded {}, failed with a classified error {}, lost {} (goal 0)", figures.succeeded, figures.failed.len(), figures.lost.len());
    for (id, why) in figures.failed.iter().chain(&figures.lost) {
        println!("    {id}: {why}");
    }
    println!("  objects no request state names: {} (goal 0)", figures.unnamed.len());
    for key in &figures.unnamed {
        println!("    {key}");
    }
    println!("  after the run: {} uploads or staging files in the store, {} temp folders of dead processes (goal 0 each)", orphans.0, orphans.1);
    Ok(())
}

#[derive(Default)]
struct Figures {
    killed: usize,
    succeeded: usize,
    failed: Vec<(String, String)>,
    lost: Vec<(String, String)>,
    unnamed: Vec<String>,
}

async fn soak(pipeline: &Pipeline, gateway: &str, store: &stage_runtime::Store, state_root: &Path, input: &Path, flags: &flags::BenchSoak) -> anyhow::Result<Figures> {
    let session = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let progress = indicatif::ProgressBar::new(flags.requests as u64);
    progress.set_style(indicatif::ProgressStyle::with_template("{spinner} [{bar:24}] {pos}/{len} {wide_msg}")?.progress_chars("=> "));
    progress.enable_steady_tick(Duration::from_millis(120));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let (done, state_root, kills, every, seed) = (done.clone(), state_root.to_path_buf(), flags.kills, flags.kill_every, flags.seed);
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut killed = 0;
            while killed < kills && !done.load(std::sync::atomic::Ordering::Relaxed) {
                // Uniform in 0.5..1.5 × the mean gap.
                tokio::time::sleep(every.mul_f64(rng.random_range(0.5..1.5))).await;
                let victims = function_processes(&state_root, false);
                if victims.is_empty() {
                    continue;
                }
                let (pid, function) = &victims[rng.random_range(0..victims.len())];
                // SAFETY: kill(2) on a pid we just read from /proc; at worst it is gone.
                if unsafe { libc::kill(*pid, libc::SIGKILL) } == 0 {
                    tracing::info!(pid, function, "soak: SIGKILL");
                    killed += 1;
                }
            }
            killed
        })
    };
    let ids: Vec<String> = (0..flags.requests).map(|i| format!("soak-{session}-{i:03}")).collect();
    let outcomes: Vec<(String, anyhow::Result<verify::Outcome>)> = futures::stream::iter(ids.iter().cloned())
        .map(|id| {
            let progress = &progress;
            async move {
                let outcome = verify::send(pipeline, gateway, store, input, None, id.clone(), progress).await;
                progress.inc(1);
                (id, outcome)
            }
        })
        .buffer_unordered(flags.concurrency.max(1))
        .collect()
        .await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    progress.finish_and_clear();
    let mut figures = Figures { killed: killer.await?, ..Figures::default() };
    let mut states: Vec<(String, Option<serde_json::Value>)> = Vec::new();
    for (id, outcome) in outcomes {
        states.push((id.clone(), outcome.as_ref().ok().map(|o| o.state.clone())));
        match outcome {
            Ok(o) if o.failure.is_none() && o.state["status"] == "succeeded" => figures.succeeded += 1,
            Ok(o) if o.state["status"] == "failed" && o.state["error"]["code"].is_string() => {
                figures.failed.push((id.clone(), format!("{} ({})", o.state["error"]["code"], o.failure.unwrap_or_default())));
            }
            Ok(o) => figures.lost.push((id.clone(), format!("the state says `{}`: {}", o.state["status"], o.failure.unwrap_or_default()))),
            Err(e) => figures.lost.push((id.clone(), format!("{e:#}"))),
        }
    }
    for (id, state) in &states {
        figures.unnamed.extend(unnamed(store, id, state.as_ref()).await?);
    }
    Ok(figures)
}

/// Live processes of this runtime's functions, the orchestrator only if
/// `orchestrator`: they carry `XTASK_STATE_DIR` in their environment, and
/// their parent does not (their tools, ffmpeg and the like, inherit it from
/// them).
pub(super) fn function_processes(state_root: &Path, orchestrator: bool) -> Vec<(i32, String)> {
    let marker = format!("XTASK_STATE_DIR={}", state_root.display());
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let marked: Vec<(i32, i32, String)> = entries
        .filter_map(|entry| {
            let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
            vars.contains(&marker.as_bytes()).then_some(())?;
            let function = vars.iter().find_map(|v| v.strip_prefix(b"FUNCTION_NAME="))?;
            // `pid (comm) state ppid ...`: the comm may hold spaces, so count from its `)`.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid: i32 = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid, String::from_utf8_lossy(function).into_owned()))
        })
        .collect();
    let pids: BTreeSet<i32> = marked.iter().map(|(pid, _, _)| *pid).collect();
    marked
        .into_iter()
        .filter(|(_, ppid, function)| !pids.contains(ppid) && (orchestrator || function != "orchestrator"))
        .map(|(pid, _, function)| (pid, function))
        .collect()
}

/// Keys under `requests/<id>/` that its state does not name (the state
/// itself aside); `state` as its request read it, else read here.
async fn unnamed(store: &stage_runtime::Store, id: &str, state: Option<&serde_json::Value>) -> anyhow::Result<Vec<String>> {
    let stored = store.list(&format!("requests/{id}/")).await?;
    let read;
    let state = match state {
        Some(state) => state,
        None => match store.get_bytes(&store.uri(&format!("requests/{id}/state.json"))).await {
            Ok(bytes) => {
                read = serde_json::from_slice::<serde_json::Value>(&bytes)?;
                &read
            }
            Err(_) => return Ok(stored),
        },
    };
    fn collect(value: &serde_json::Value, into: &mut BTreeSet<String>) {
        match value {
            serde_json::Value::String(uri) => {
                into.insert(uri.clone());
            }
            serde_json::Value::Array(values) => values.iter().for_each(|v| collect(v, into)),
            serde_json::Value::Object(map) => map.values().for_each(|v| collect(v, into)),
            _ => {}
        }
    }
    // What the state names: its inputs, artifacts, items, result, and each step's outputs.
    let mut uris = BTreeSet::new();
    for part in [&state["inputs"], &state["artifacts"], &state["items"], &state["result"]] {
        collect(part, &mut uris);
    }
    for step in state["steps"].as_array().into_iter().flatten() {
        collect(&step["outputs"], &mut uris);
    }
    let mut named: BTreeSet<String> = uris.iter().filter_map(|uri| store.key_of(uri).ok()).collect();
    named.insert(format!("requests/{id}/state.json"));
    Ok(stored.into_iter().filter(|key| !named.contains(key)).collect())
}

/// Entries left in the store's `uploads/` and `staging/`, and function temp
/// folders (`<function>-<pid>-…`) whose process is gone.
fn orphans(store_root: &Path, pipeline: &Pipeline) -> anyhow::Result<(usize, usize)> {
    let mut uploads = 0;
    for dir in ["uploads", "staging"] {
        uploads += std::fs::read_dir(store_root.join(dir)).map_or(0, |entries| entries.count());
    }
    let temp = pipeline.functions.iter().map(|function| stage_runtime::dead_work_dirs(&function.name).len()).sum();
    Ok((uploads, temp))
}
