//! `cargo xtask bench search`: what the dataflow DAG and the query buy, on
//! the synthesized test video, through two local runtimes of the bench's own
//! that run side by side: the pipeline as declared, and the same pipeline
//! with its fanned-out steps chained in file order (each needs the one
//! before, leaving out the query's step: the per-clip chain the DAG had
//! before it was a dataflow graph).
//! Requests alternate between them, after one warm-up request each.
//!
//! It prints, as medians over `--runs`:
//! - the request's critical path (the longest chain of its steps' measured
//!   times, through the DAG's needs) against its end-to-end latency;
//! - CPU-seconds per request with a query that matches one clip against no
//!   query (goal <= 0.7);
//! - end-to-end latency of the dataflow DAG against the per-clip chain.
//!
//! A benchmark, not a test: it never fails on a figure.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::Serialize;

use super::{load_average, Cpu, Runtime};
use crate::deploy::{Embedded, Target};
use crate::flags;
use crate::pipeline::{longest_chain, Pipeline};
use crate::verify;

#[derive(Debug, Serialize)]
struct Figures {
    video: String,
    query: String,
    runs: usize,
    load_average: [f64; 2],
    critical_path_ms: f64,
    dataflow_latency_ms: f64,
    chain_latency_ms: f64,
    query_latency_ms: f64,
    no_query_cpu_s: f64,
    query_cpu_s: f64,
    detect_objects_calls: [u64; 2],
}

struct Measured {
    latency_ms: f64,
    cpu_s: f64,
    state: serde_json::Value,
}

pub fn run(pipeline: &Pipeline, global: &flags::Global, flags: &flags::BenchSearch) -> anyhow::Result<()> {
    if flags.runs == 0 {
        bail!("--runs 0 leaves nothing to take a median of\nhelp: use --runs 1 or more");
    }
    let (name, target) = pipeline.target(global.target.as_deref())?;
    if !matches!(target.kind, crate::pipeline::TargetKind::Local(_)) {
        bail!("bench search runs two local runtimes of its own; target `{name}` is not a `local` one\nhelp: use --target local");
    }
    let Some(fan) = &pipeline.dag.fan_out else { bail!("the pipeline has no fan-out: there is no per-clip chain to compare with") };
    // The same pipeline with its fanned-out steps in a chain.
    let mut chained = crate::pipeline::load(&global.file)?;
    // A step that needs an optional input (the query) is left out of the
    // chain: without one it is skipped, and so would be all after it.
    let optional: Vec<String> = chained.dag.inputs.iter().filter(|input| !input.required).map(|input| input.name.clone()).collect();
    if let Some(chain_fan) = &mut chained.dag.fan_out {
        let mut before: Option<String> = None;
        for step in &mut chain_fan.steps {
            if step.needs.iter().any(|need| optional.contains(need)) {
                continue;
            }
            if let Some(before) = before.filter(|before| !step.needs.contains(before)) {
                step.needs.push(before);
            }
            before = Some(step.produces[0].clone());
        }
    }
    for var in ["XTASK_GATEWAY_PORT", "XTASK_STORE_PORT"] {
        std::env::set_var(var, "0");
    }
    let root = global.state_dir.clone().unwrap_or_else(|| Path::new(".xtask").join("bench-search"));
    let dataflow = Embedded::new(pipeline, name, target.kind.clone(), &root.join("dataflow"))?;
    let chain = Embedded::new(&chained, name, target.kind.clone(), &root.join("chain"))?;
    for (runtime, dir) in [(&dataflow, "dataflow"), (&chain, "chain")] {
        if let Some(pid) = runtime.runtime_pid()? {
            bail!("a runtime of an earlier bench still runs (pid {pid})\nhelp: stop it with `cargo xtask teardown --state-dir {}`", root.join(dir).display());
        }
    }
    let media = crate::media::synthesize(&pipeline.dir.join(".cache/media"))?;
    crate::model::ensure(&pipeline.detector_model())?;
    let load_before = load_average();
    dataflow.deploy()?;
    let measured = chain.deploy().and_then(|()| {
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(measure(pipeline, &chained, [&dataflow, &chain], &media.video, &flags.query, flags.runs))
    });
    let stopped = [dataflow.teardown(), chain.teardown()];
    let (df, ch, q) = measured?;
    for stop in stopped {
        stop.context("a runtime the bench started did not stop")?;
    }
    let median = |runs: &[Measured], f: &dyn Fn(&Measured) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let calls = |runs: &[Measured]| median(runs, &|m| m.state["summary"]["detect-objects"]["invocations"].as_f64().unwrap_or(0.0)) as u64;
    let figures = Figures {
        video: media.video.display().to_string(),
        query: flags.query.clone(),
        runs: flags.runs,
        load_average: [load_before, load_average()],
        critical_path_ms: median(&df, &|m| critical_path_ms(pipeline, &m.state)),
        dataflow_latency_ms: median(&df, &|m| m.latency_ms),
        chain_latency_ms: median(&ch, &|m| m.latency_ms),
        query_latency_ms: median(&q, &|m| m.latency_ms),
        no_query_cpu_s: median(&df, &|m| m.cpu_s),
        query_cpu_s: median(&q, &|m| m.cpu_s),
        detect_objects_calls: [calls(&df), calls(&q)],
    };
    print(&figures, fan.steps.len());
    std::fs::create_dir_all(&root)?;
    let path = root.join("bench.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&figures)?)?;
    println!("figures: {}", path.display());
    Ok(())
}

/// A warm-up request on each runtime, then `runs` rounds of: no query on
/// the dataflow DAG, no query on the chain, the query on the dataflow DAG.
async fn measure(
    pipeline: &Pipeline,
    chained: &Pipeline,
    runtimes: [&Embedded<'_>; 2],
    video: &Path,
    query: &str,
    runs: usize,
) -> anyhow::Result<(Vec<Measured>, Vec<Measured>, Vec<Measured>)> {
    let mut infos = Vec::new();
    for runtime in runtimes {
        let endpoints = runtime.endpoints()?;
        let store = endpoints.store()?;
        let pid = runtime.runtime_pid()?.context("a runtime the bench started is not running")?;
        infos.push((Runtime { endpoints, cpu: Cpu::Embedded { pid, state: runtime.state().clone() } }, store));
    }
    let pipelines = [pipeline, chained];
    let progress = indicatif::ProgressBar::new((2 + 3 * runs) as u64);
    progress.set_style(indicatif::ProgressStyle::with_template("{spinner} [{bar:24}] {pos}/{len} {wide_msg}")?.progress_chars("=> "));
    progress.enable_steady_tick(Duration::from_millis(120));
    let session = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let one = |which: usize, query: Option<&str>, id: String| {
        let (info, store) = &infos[which];
        request(pipelines[which], info, store, video, query.map(str::to_string), id, &progress)
    };
    one(0, None, format!("bench-search-{session}-warmup-dataflow")).await?;
    one(1, None, format!("bench-search-{session}-warmup-chain")).await?;
    let (mut df, mut ch, mut q) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        df.push(one(0, None, format!("bench-search-{session}-{i}-dataflow")).await?);
        ch.push(one(1, None, format!("bench-search-{session}-{i}-chain")).await?);
        q.push(one(0, Some(query), format!("bench-search-{session}-{i}-query")).await?);
    }
    progress.finish_and_clear();
    Ok((df, ch, q))
}

/// One request, with the CPU time of its runtime's tree while it ran.
async fn request(
    pipeline: &Pipeline,
    info: &Runtime,
    store: &stage_runtime::Store,
    video: &Path,
    query: Option<String>,
    id: String,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<Measured> {
    verify::preflight(pipeline, &info.endpoints.gateway_url, store).await?;
    let before = info.cpu_seconds().await;
    let outcome = verify::send(pipeline, &info.endpoints.gateway_url, store, video, query.as_deref(), id, progress).await?.succeeded()?;
    let cpu_s = info.cpu_seconds().await - before;
    progress.inc(1);
    Ok(Measured { latency_ms: outcome.latency.as_secs_f64() * 1000.0, cpu_s, state: outcome.state })
}

/// The longest chain of the request's measured step times (every attempt
/// of a step, in the state document), through the DAG's needs; the fan-out
/// costs its longest item. A skipped step costs nothing.
fn critical_path_ms(pipeline: &Pipeline, state: &serde_json::Value) -> f64 {
    let mut took: BTreeMap<(Option<String>, String), f64> = BTreeMap::new();
    for step in state["steps"].as_array().into_iter().flatten() {
        let key = (step["scope"].as_str().map(str::to_string), step["function"].as_str().unwrap_or_default().to_string());
        let ms: f64 = step["attempts"].as_array().into_iter().flatten().filter_map(|a| a["elapsed_ms"].as_f64()).sum();
        *took.entry(key).or_default() += ms;
    }
    let took = &took;
    let cost_in = |scope: Option<String>, step: &crate::pipeline::Step| {
        Duration::from_secs_f64(took.get(&(scope, step.function.clone())).copied().unwrap_or(0.0) / 1000.0)
    };
    let dag = &pipeline.dag;
    let scopes: Vec<String> = state["items"].as_object().map(|items| items.keys().cloned().collect()).unwrap_or_default();
    let longest_item = dag.fan_out.as_ref().map_or(Duration::ZERO, |fan| {
        // A flag the item never got (its producer was skipped) held nothing up.
        let item = |scope: &String| {
            let artifacts = &state["items"][scope];
            let mut steps = fan.steps.clone();
            for step in &mut steps {
                step.when = step.when.take().filter(|flag| artifacts.get(flag).is_some());
            }
            longest_chain(&steps, &|step| cost_in(Some(scope.clone()), step), None).1
        };
        scopes.iter().map(item).max().unwrap_or_default()
    });
    longest_chain(&dag.steps, &|step| cost_in(None, step), dag.fan_node(longest_item).as_ref()).1.as_secs_f64() * 1000.0
}

fn print(f: &Figures, fan_steps: usize) {
    let s = |ms: f64| format!("{:.1} s", ms / 1000.0);
    println!("bench search: {} ({} runs, load average {:.1} → {:.1})", f.video, f.runs, f.load_average[0], f.load_average[1]);
    println!(
        "  critical path {} of {} end to end: latency ÷ critical path {:.2} (the rest is the orchestrator, the gateway, waits)",
        s(f.critical_path_ms),
        s(f.dataflow_latency_ms),
        f.dataflow_latency_ms / f.critical_path_ms
    );
    println!(
        "  CPU per request: query {:?} {:.1} s (detect-objects ×{}), no query {:.1} s (×{}): ratio {:.2} (goal <= 0.7)",
        f.query,
        f.query_cpu_s,
        f.detect_objects_calls[1],
        f.no_query_cpu_s,
        f.detect_objects_calls[0],
        f.query_cpu_s / f.no_query_cpu_s
    );
    println!(
        "  latency: dataflow DAG {} against the per-clip chain of {fan_steps} steps {}: ratio {:.2}; with the query {}",
        s(f.dataflow_latency_ms),
        s(f.chain_latency_ms),
        f.dataflow_latency_ms / f.chain_latency_ms,
        s(f.query_latency_ms)
    );
}
