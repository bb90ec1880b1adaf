//! `cargo xtask bench`: what the runtime costs. A fresh local runtime of its
//! own serves the synthesized test video once cold and `--runs` times warm;
//! the same tool work runs as often directly ([`direct`]); the warm requests'
//! state documents give each invocation's time outside its tool calls.
//!
//! A benchmark, not a test: it prints figures and their goals and never fails
//! on a timing. Warm and direct runs alternate (each going first in turn), so
//! a busy machine slows both; their CPU time is measured too, which other
//! work on the machine changes less than wall time.

pub mod build;
mod direct;
pub mod memory;
mod report;
mod search;
pub mod soak;
pub mod store;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use stage_runtime::Store;

use crate::deploy::{Embedded, Endpoints, Target};
use crate::flags;
use crate::pipeline::{Pipeline, TargetKind};
use crate::verify;
use direct::Direct;
use report::{Figures, Request};
use xtask::report::records::{self, InvocationRecord, RequestRecord, Summary};

/// A local runtime of a bench's own in `<state_dir>` (default
/// `.xtask/<default_dir>`), on free ports, refused if an earlier one still
/// runs there; `what` says why it must be `local`.
fn own_local_runtime<'p>(pipeline: &'p Pipeline, global: &flags::Global, default_dir: &str, what: &str) -> anyhow::Result<Embedded<'p>> {
    let (name, target) = pipeline.target(global.target.as_deref())?;
    if !matches!(target.kind, TargetKind::Local(_)) {
        bail!("{what}; target `{name}` is not a `local` one\nhelp: use --target local");
    }
    // Free ports for the bench's own runtime, which inherits them. Set before
    // this process starts any thread.
    for var in ["XTASK_GATEWAY_PORT", "XTASK_STORE_PORT"] {
        std::env::set_var(var, "0");
    }
    let root = global.state_dir.clone().unwrap_or_else(|| Path::new(".xtask").join(default_dir));
    let runtime = Embedded::new(pipeline, name, target.kind.clone(), &root)?;
    if let Some(pid) = runtime.runtime_pid()? {
        bail!("a runtime of an earlier bench still runs (pid {pid})\nhelp: stop it with `cargo xtask teardown --state-dir {}`", root.display());
    }
    Ok(runtime)
}

/// Measure, print the figures and write them to `<state_dir>/bench.json`
/// (`.xtask/bench-<target>` unless `--state-dir` says otherwise).
pub use search::run as search;

pub fn run(pipeline: &Pipeline, global: &flags::Global, flags: &flags::Bench) -> anyhow::Result<()> {
    if flags.runs == 0 {
        bail!("--runs 0 leaves nothing to take a median of\nhelp: use --runs 3 or more");
    }
    let (name, target) = pipeline.target(global.target.as_deref())?;
    if !matches!(target.kind, TargetKind::Local(_) | TargetKind::Docker(_)) {
        return run_remote(pipeline, global, flags.runs);
    }
    // Free ports for the bench's own runtime, which inherits them. Set before
    // this process starts any thread.
    for var in ["XTASK_GATEWAY_PORT", "XTASK_STORE_PORT"] {
        std::env::set_var(var, "0");
    }
    let state_dir = global.state_dir.clone().unwrap_or_else(|| Path::new(".xtask").join(format!("bench-{name}")));
    let target = Embedded::new(pipeline, name, target.kind.clone(), &state_dir)?;
    if let Some(pid) = target.runtime_pid()? {
        bail!(
            "a local runtime already runs for {} (pid {pid}); its functions may be warm, so the first request would not be cold\n\
             help: stop it with `cargo xtask teardown --target {name} --state-dir {}`",
            state_dir.display(),
            state_dir.display()
        );
    }
    let media = crate::media::synthesize(&pipeline.dir.join(".cache/media"))?;
    crate::model::ensure(&pipeline.detector_model())?;
    // Loaded before anything is timed, as a warm detect-objects holds it.
    let direct = Arc::new(Direct::new(pipeline)?);

    let load_before = load_average();
    target.deploy()?;
    let measured = (|| {
        let pid = target.runtime_pid()?.context("the runtime the bench started is not running")?;
        let cpu = Cpu::Embedded { pid, state: target.state().clone() };
        measure(pipeline, &target, cpu, direct, &media.video, flags.runs)
    })();
    let stopped = target.teardown();
    let figures = match measured {
        Ok((cold, warm, direct)) => Figures::new(&media.video, cold, warm, direct, [load_before, load_average()])?,
        Err(err) => {
            if let Err(stop) = stopped {
                eprintln!("warning: the runtime the bench started did not stop: {stop:#}");
            }
            return Err(err);
        }
    };
    write_figures(pipeline, name, &figures, &state_dir)?;
    stopped.context("the runtime the bench started did not stop")
}

/// A target the bench does not start itself (an OpenFaaS gateway, a
/// cluster): deployed (an apply of what is there already changes nothing),
/// every function scaled to zero through the target and waited on until its
/// replicas are gone, then the cold request and the warm ones. Its CPU time
/// is not this machine's to measure; it stays deployed.
fn run_remote(pipeline: &Pipeline, global: &flags::Global, runs: usize) -> anyhow::Result<()> {
    let (name, _) = pipeline.target(global.target.as_deref())?;
    let target = crate::deploy::open(pipeline, global)?;
    let media = crate::media::synthesize(&pipeline.dir.join(".cache/media"))?;
    crate::model::ensure(&pipeline.detector_model())?;
    let direct = Arc::new(Direct::new(pipeline)?);
    let load_before = load_average();
    target.deploy()?;
    crate::deploy::scale_all_to_zero(pipeline, target.as_ref())?;
    let (cold, warm, direct) = measure(pipeline, target.as_ref(), Cpu::Elsewhere, direct, &media.video, runs)?;
    let figures = Figures::new(&media.video, cold, warm, direct, [load_before, load_average()])?;
    let state_dir = global.state_dir.clone().unwrap_or_else(|| Path::new(".xtask").join(format!("bench-{name}")));
    write_figures(pipeline, name, &figures, &state_dir)?;
    println!("note: target `{name}` runs elsewhere: its CPU time is not measured here (NaN), and it stays deployed");
    Ok(())
}

fn write_figures(pipeline: &Pipeline, target: &str, figures: &Figures, state_dir: &Path) -> anyhow::Result<()> {
    println!();
    figures.print();
    std::fs::create_dir_all(state_dir).with_context(|| format!("create {}", state_dir.display()))?;
    let path = state_dir.join("bench.json");
    std::fs::write(&path, serde_json::to_vec_pretty(figures)?).with_context(|| format!("write {}", path.display()))?;
    println!("figures: {}", path.display());
    let cold = write_results(pipeline, target, "cold", std::slice::from_ref(&figures.cold), &figures.input, state_dir)?;
    let warm = write_results(pipeline, target, "warm", &figures.warm, &figures.input, state_dir)?;
    println!("records and reports: {} and {} (compare them with `cargo xtask report {} {}`)", cold.display(), warm.display(), warm.display(), cold.display());
    Ok(())
}

/// The bench's `cold` or `warm` requests as an experiment's results folder
/// (`<state_dir>/<which>`): the same records, summary, environment and
/// report, so that `cargo xtask report` reads them like any run.
fn write_results(pipeline: &Pipeline, target: &str, which: &str, requests: &[Request], input: &Path, state_dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let dir = state_dir.join(which);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let records: Vec<RequestRecord> = requests.iter().map(|r| r.record.clone()).collect();
    let calls: Vec<InvocationRecord> = requests.iter().flat_map(|r| r.invocations.iter().cloned()).collect();
    records::write(&dir, "requests", &records)?;
    records::write(&dir, "invocations", &calls)?;
    let cpu: f64 = requests.iter().map(|r| r.cpu_s).sum();
    let name = format!("bench-{which}");
    let summary = Summary::new(&name, target, &records, &calls).with_cpu(Some(cpu).filter(|cpu| cpu.is_finite()), &records, false);
    crate::experiment::write_json(&dir.join("summary.json"), &summary)?;
    let how = serde_json::json!({
        "start": which,
        "pattern": match which {
            "cold" => "1 request after scaling to zero".to_string(),
            _ => format!("{} requests one after another", requests.len()),
        },
        "warmup": 0,
        "schedule_s": records.iter().map(|r| r.scheduled_s).collect::<Vec<_>>(),
    });
    crate::experiment::write_json(&dir.join("environment.json"), &crate::experiment::environment(pipeline, target, &name, how, input))?;
    xtask::report::write_run(&xtask::report::Run::read(&dir)?)?;
    Ok(dir)
}

/// The cold request, then `runs` pairs of a warm request and a direct run.
/// Ctrl-C stops it with an error, so the caller still stops the runtime.
fn measure(
    pipeline: &Pipeline,
    target: &dyn Target,
    cpu: Cpu,
    direct: Arc<Direct>,
    video: &Path,
    runs: usize,
) -> anyhow::Result<(Request, Vec<Request>, Vec<direct::DirectRun>)> {
    let endpoints = target.endpoints()?;
    let rt = tokio::runtime::Runtime::new()?;
    let store = {
        let _guard = rt.enter();
        endpoints.store()?
    };
    let info = Runtime { endpoints, cpu };
    let progress = indicatif::ProgressBar::new(1 + 2 * runs as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:24}] {pos}/{len} {wide_msg}")?.progress_chars("=> "),
    );
    progress.enable_steady_tick(Duration::from_millis(120));
    let session = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let bench_start = Instant::now();
    let all = async {
        verify::preflight(pipeline, &info.endpoints.gateway_url, &store).await?;
        let cold = request(pipeline, &info, &store, video, format!("bench-{session}-cold"), true, bench_start, &progress).await?;
        progress.inc(1);
        let (mut warm, mut direct_runs) = (Vec::new(), Vec::new());
        for i in 1..=runs {
            if i % 2 == 0 {
                direct_runs.push(direct_run(&direct, video, &progress, i, runs).await?);
            }
            warm.push(request(pipeline, &info, &store, video, format!("bench-{session}-warm-{i}"), false, bench_start, &progress).await?);
            progress.inc(1);
            if i % 2 == 1 {
                direct_runs.push(direct_run(&direct, video, &progress, i, runs).await?);
            }
        }
        anyhow::Ok((cold, warm, direct_runs))
    };
    let result = rt.block_on(async {
        tokio::select! {
            result = all => result,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    progress.finish_and_clear();
    // A direct run cut short by Ctrl-C may still be on a blocking thread.
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

/// One direct run on a blocking thread, with the CPU time of this process and its tools.
async fn direct_run(
    direct: &Arc<Direct>,
    video: &Path,
    progress: &indicatif::ProgressBar,
    i: usize,
    runs: usize,
) -> anyhow::Result<direct::DirectRun> {
    progress.set_message(format!("direct run {i}/{runs}"));
    let (direct, video) = (direct.clone(), video.to_path_buf());
    let before = crate::local::cpu::tree_seconds(std::process::id());
    let mut run = tokio::task::spawn_blocking(move || direct.run(&video)).await??;
    run.cpu_s = crate::local::cpu::tree_seconds(std::process::id()) - before;
    progress.inc(1);
    Ok(run)
}

/// One request through the gateway, and the invocations its state document records.
/// `cold`: what the request is expected to be (each invocation's cold start
/// is checked against it, as an experiment does).
#[allow(clippy::too_many_arguments)]
async fn request(
    pipeline: &Pipeline,
    info: &Runtime,
    store: &Store,
    video: &Path,
    request_id: String,
    cold: bool,
    bench_start: Instant,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<Request> {
    let sent = bench_start.elapsed().as_secs_f64();
    let before = info.cpu_seconds().await;
    let outcome = verify::send(pipeline, &info.endpoints.gateway_url, store, video, None, request_id, progress).await?.succeeded()?;
    let cpu_s = info.cpu_seconds().await - before;
    let invocations = records::invocations(&outcome.request_id, false, &outcome.state, cold);
    let mut linear_ms = std::collections::BTreeMap::new();
    for invocation in invocations.iter().filter(|i| i.scope.is_empty()) {
        *linear_ms.entry(invocation.function.clone()).or_insert(0.0) += invocation.paused_ms + invocation.elapsed_ms;
    }
    let record = RequestRecord {
        request_id: outcome.request_id,
        warmup: false,
        group: 0,
        scheduled_s: sent,
        started_s: sent,
        late_ms: 0.0,
        dropped: false,
        latency_ms: outcome.latency.as_secs_f64() * 1000.0,
        total_ms: (bench_start.elapsed().as_secs_f64() - sent) * 1000.0,
        attempts: 1,
        status: outcome.status,
        outcome: "succeeded".into(),
        error: String::new(),
        clips: outcome.clips,
        cost_unit: invocations.iter().map(|i| i.cost_unit).sum(),
    };
    Ok(Request { record, cpu_s, linear_ms, invocations })
}

/// Where the bench's target answers, and how its CPU time is read.
struct Runtime {
    endpoints: Endpoints,
    cpu: Cpu,
}

/// Whose CPU time a request costs.
enum Cpu {
    /// The embedded runtime's: the root of its process tree and its state
    /// folder (which names its containers).
    Embedded { pid: u32, state: crate::local::StateDir },
    /// Another machine's: not measured.
    Elsewhere,
}

impl Runtime {
    /// CPU seconds of the runtime's process tree (with a `local` target's
    /// replicas) and of its containers (a `docker` target's replicas); NaN
    /// for a target elsewhere.
    async fn cpu_seconds(&self) -> f64 {
        match &self.cpu {
            Cpu::Embedded { pid, state } => crate::local::cpu_seconds(*pid, state).await,
            Cpu::Elsewhere => f64::NAN,
        }
    }
}

/// The 1-minute load average, to judge how busy the machine was.
fn load_average() -> f64 {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}
