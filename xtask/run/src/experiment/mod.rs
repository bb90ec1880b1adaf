//! `cargo xtask experiment <regime>`: a regime of pipeline.yaml run on a
//! target through the `Target` interface, with a record of every request
//! and every function invocation.
//!
//! - warm: the target deployed, `warmup` requests sent one after the other
//!   and left out of the figures, then the whole schedule open loop
//!   (`load.rs`);
//! - cold: before each request (steady) or burst, every function scaled to
//!   zero through the target and waited on until its replicas are gone; a
//!   group starts at its scheduled time or when the scale-down is done,
//!   whichever is later (the delay is recorded as lateness);
//! - every invocation's `cold_start` is checked against the regime; the
//!   mismatches are counted and left out of the figures, as SeBS does;
//! - a request is retried (same request id, the DAG's backoff doubling)
//!   when the gateway answers 429/502/503/504 or nothing.
//!
//! The results folder holds `requests.{jsonl,csv}`,
//! `invocations.{jsonl,csv}`, `summary.json` and `environment.json`.

mod capacity;
mod load;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use sha2::Digest as _;

use crate::deploy;
use crate::flags;
use crate::pipeline::{Pattern, Pipeline, Regime, Start};
use crate::verify;
use xtask::report::records::{self, InvocationRecord, RequestRecord, Summary};

pub fn run(pipeline: &Pipeline, global: &flags::Global, flags: &flags::Experiment) -> anyhow::Result<PathBuf> {
    let regime = regime(pipeline, flags)?;
    let (target_name, _) = pipeline.target(global.target.as_deref())?;
    let input = match (&flags.input, &regime.input) {
        (Some(input), _) | (None, Some(input)) => input.clone(),
        (None, None) => crate::media::synthesize(&pipeline.dir.join(".cache/media"))?.video,
    };
    let stamp = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
    let out = flags.out.clone().unwrap_or_else(|| {
        pipeline.dir.join(".xtask/experiments").join(format!("{}-{target_name}-{stamp}", flags.regime))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;

    let target = deploy::open(pipeline, global)?;
    target.deploy()?;
    let endpoints = target.endpoints()?;
    let (rt, store) = verify::connect(pipeline, &endpoints)?;

    let session = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let context = Context { pipeline, gateway: endpoints.gateway_url.clone(), store, input: input.clone(), cold: regime.start == Start::Cold };
    let offsets = load::offsets(&regime.pattern, regime.seed);
    let progress = indicatif::ProgressBar::new(u64::from(regime.warmup) + offsets.len() as u64);
    progress.set_style(indicatif::ProgressStyle::with_template("{spinner} [{bar:24}] {pos}/{len} {wide_msg}")?.progress_chars("=> "));
    progress.enable_steady_tick(Duration::from_millis(120));

    let started = Instant::now();
    let mut requests: Vec<RequestRecord> = Vec::new();
    let mut invocations: Vec<InvocationRecord> = Vec::new();
    for i in 0..regime.warmup {
        progress.set_message(format!("warm-up {}/{}", i + 1, regime.warmup));
        let id = format!("exp-{session}-warmup-{i}");
        let (request, calls) = rt.block_on(context.request(id, true, 0, Duration::ZERO, started));
        requests.push(request);
        invocations.extend(calls);
        progress.inc(1);
    }
    let schedule = Schedule { context: &context, target: target.as_ref(), rt: &rt, session: &session, concurrency: flags.concurrency, started, progress: &progress };
    let mut search = None;
    let cpu_before = target.cpu_seconds()?;
    match &regime.capacity {
        None => {
            let (measured, calls) = schedule.run(&regime, &offsets, 0)?;
            requests.extend(measured);
            invocations.extend(calls);
        }
        Some(capacity) => search = Some((capacity, capacity::search(&schedule, &regime, capacity, &mut requests, &mut invocations)?)),
    }
    let cpu_used = cpu_before.zip(target.cpu_seconds()?).map(|(before, after)| after - before);
    progress.finish_and_clear();

    records::write(&out, "requests", &requests)?;
    records::write(&out, "invocations", &invocations)?;
    let bursts = matches!(regime.pattern, Pattern::Burst { .. });
    let summary = Summary::new(&flags.regime, target_name, &requests, &invocations).with_cpu(cpu_used, &requests, bursts);
    let search = search.map(|(capacity, steps)| capacity::Search::new(capacity, steps, &summary));
    write_json(&out.join("summary.json"), &summary)?;
    let schedule = serde_json::json!({
        "start": format!("{:?}", regime.start).to_lowercase(),
        "pattern": regime.pattern.to_string(),
        "warmup": regime.warmup,
        "seed": regime.seed,
        "schedule_s": offsets.iter().map(Duration::as_secs_f64).collect::<Vec<_>>(),
    });
    write_json(&out.join("environment.json"), &environment(pipeline, target_name, &flags.regime, schedule, &input))?;
    print_summary(&summary);
    if let Some(search) = &search {
        write_json(&out.join("capacity.json"), search)?;
        search.print();
    }
    let report = xtask::report::write_run(&xtask::report::Run::read(&out)?)?;
    println!("report: {}", report.display());
    println!("results: {}", out.display());
    Ok(out)
}

/// The regime `flags` names, with the flags' overrides.
fn regime(pipeline: &Pipeline, flags: &flags::Experiment) -> anyhow::Result<Regime> {
    let Some(regime) = pipeline.experiments.get(&flags.regime) else {
        let known: Vec<String> = pipeline.experiments.keys().map(|name| format!("`{name}`")).collect();
        bail!(
            "no regime `{}` in {}\nhelp: the regimes are {}",
            flags.regime,
            pipeline.source.path.display(),
            if known.is_empty() { "none: add one under `experiments:`".into() } else { known.join(", ") }
        );
    };
    let mut regime = regime.clone();
    match &mut regime.pattern {
        Pattern::Steady { rate, requests, .. } => {
            if let Some(r) = flags.rate {
                if !(r.is_finite() && r > 0.0) {
                    bail!("--rate {r} starts no request\nhelp: give requests per second above 0, like 0.2");
                }
                *rate = r;
            }
            if let Some(n) = flags.requests {
                *requests = n;
            }
        }
        Pattern::Burst { size, .. } => {
            if flags.rate.is_some() {
                bail!("--rate applies to steady patterns; regime `{}` is a burst", flags.regime);
            }
            if let Some(n) = flags.requests {
                *size = n;
            }
        }
    }
    if regime.pattern.requests() == 0 {
        bail!("--requests 0 sends nothing\nhelp: use 1 or more");
    }
    Ok(regime)
}

/// What running a schedule needs: the requests' context, the target (to
/// scale to zero), the clock every record is measured from.
pub(crate) struct Schedule<'a> {
    context: &'a Context<'a>,
    target: &'a dyn deploy::Target,
    rt: &'a tokio::runtime::Runtime,
    session: &'a str,
    concurrency: usize,
    started: Instant,
    progress: &'a indicatif::ProgressBar,
}

impl Schedule<'_> {
    /// `offsets` of `regime`'s pattern from now, open loop, in groups (a cold
    /// regime scales to zero before each); request ids and groups counted
    /// from `first_group`.
    fn run(&self, regime: &Regime, offsets: &[Duration], first_group: usize) -> anyhow::Result<(Vec<RequestRecord>, Vec<InvocationRecord>)> {
        let (context, started, session) = (self.context, self.started, self.session);
        let mut requests = Vec::new();
        let mut invocations = Vec::new();
        let measured_from = started.elapsed();
        let groups = groups(regime, offsets);
        for (n, members) in groups.iter().enumerate() {
            let group = first_group + n;
            if context.cold {
                self.progress.set_message(format!("group {}/{}: scaling every function to zero", n + 1, groups.len()));
                deploy::scale_all_to_zero(context.pipeline, self.target)?;
            }
            let group_start = members.first().map_or(Duration::ZERO, |(_, offset)| *offset);
            // Not before its scheduled time; later if the scale-down took longer.
            let wait = (measured_from + group_start).saturating_sub(started.elapsed());
            std::thread::sleep(wait);
            let base = started.elapsed();
            let local: Vec<Duration> = members.iter().map(|(_, offset)| offset.saturating_sub(group_start)).collect();
            self.progress.set_message(format!("group {}/{}: {} requests", n + 1, groups.len(), members.len()));
            let id = |index: usize| format!("exp-{session}-{first_group}-{index}");
            let slots = self.rt.block_on(load::open_loop(&local, self.concurrency, |i| {
                let (index, offset) = members[i];
                let scheduled = measured_from + offset;
                Box::pin(async move { context.request(id(index), false, group, scheduled, started).await })
            }));
            for slot in slots {
                let (index, offset) = members[slot.index];
                match slot.result {
                    Some((mut request, calls)) => {
                        // Against the whole schedule: a cold group's scale-down delay counts.
                        request.late_ms = (base + slot.scheduled + slot.late).saturating_sub(measured_from + offset).as_secs_f64() * 1000.0;
                        requests.push(request);
                        invocations.extend(calls);
                    }
                    None => requests.push(RequestRecord {
                        request_id: id(index),
                        warmup: false,
                        group,
                        scheduled_s: (measured_from + offset).as_secs_f64(),
                        started_s: 0.0,
                        late_ms: 0.0,
                        dropped: true,
                        latency_ms: 0.0,
                        total_ms: 0.0,
                        attempts: 0,
                        status: 0,
                        outcome: "dropped".into(),
                        error: format!("{} requests were in flight (--concurrency)", self.concurrency),
                        clips: 0,
                        cost_unit: 0.0,
                    }),
                }
                self.progress.inc(1);
            }
        }
        Ok((requests, invocations))
    }
}

/// The schedule in groups, each `(index, offset)`: a warm regime is one
/// group; a cold one a group per request (steady) or per burst.
fn groups(regime: &Regime, offsets: &[Duration]) -> Vec<Vec<(usize, Duration)>> {
    let indexed: Vec<(usize, Duration)> = offsets.iter().copied().enumerate().collect();
    match (regime.start, &regime.pattern) {
        (Start::Warm, _) => vec![indexed],
        (Start::Cold, Pattern::Steady { .. }) => indexed.into_iter().map(|slot| vec![slot]).collect(),
        (Start::Cold, Pattern::Burst { size, .. }) => indexed.chunks(*size as usize).map(<[_]>::to_vec).collect(),
    }
}

struct Context<'a> {
    pipeline: &'a Pipeline,
    gateway: String,
    store: stage_runtime::Store,
    input: PathBuf,
    cold: bool,
}

impl Context<'_> {
    /// One request, retried with the same id on 429/502/503/504 or no
    /// answer; its record and its invocations'.
    async fn request(&self, id: String, warmup: bool, group: usize, scheduled: Duration, experiment_start: Instant) -> (RequestRecord, Vec<InvocationRecord>) {
        let started_s = experiment_start.elapsed().as_secs_f64();
        let retry = &self.pipeline.dag.retry;
        let mut backoff = retry.backoff;
        let mut attempts = 0;
        let hidden = indicatif::ProgressBar::hidden();
        let (outcome, error) = loop {
            attempts += 1;
            let result = verify::send(self.pipeline, &self.gateway, &self.store, &self.input, None, id.clone(), &hidden).await;
            let transient = match &result {
                Ok(outcome) => matches!(outcome.status, 429 | 502 | 503 | 504),
                Err(_) => true,
            };
            if !transient || attempts >= retry.attempts.max(1) {
                break match result {
                    Ok(outcome) => (Some(outcome), String::new()),
                    Err(e) => (None, format!("{e:#}")),
                };
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        };
        let total_ms = (experiment_start.elapsed().as_secs_f64() - scheduled.as_secs_f64()) * 1000.0;
        let mut record = RequestRecord {
            request_id: id.clone(),
            warmup,
            group,
            scheduled_s: scheduled.as_secs_f64(),
            started_s,
            late_ms: 0.0,
            dropped: false,
            latency_ms: 0.0,
            total_ms,
            attempts,
            status: 0,
            outcome: "error".into(),
            error,
            clips: 0,
            cost_unit: 0.0,
        };
        let Some(outcome) = outcome else { return (record, Vec::new()) };
        let calls = records::invocations(&id, warmup, &outcome.state, self.cold);
        record.latency_ms = outcome.latency.as_secs_f64() * 1000.0;
        record.status = outcome.status;
        record.clips = outcome.clips;
        record.cost_unit = calls.iter().map(|c| c.cost_unit).sum();
        match outcome.failure {
            None => record.outcome = "succeeded".into(),
            Some(failure) => {
                record.outcome = "failed".into();
                record.error = failure;
            }
        }
        (record, calls)
    }
}

/// `cargo xtask bench schedule`: the generator at `rate` for `seconds`
/// against requests that take 50 ms each, and how late its starts were.
pub fn bench_schedule(rate: f64, seconds: u32) -> anyhow::Result<()> {
    if !(rate.is_finite() && rate > 0.0) || seconds == 0 {
        bail!("--rate and --seconds must be above 0");
    }
    let requests = (rate * f64::from(seconds)).round() as u32;
    let offsets = load::offsets(&Pattern::Steady { rate, requests, jitter: 0.0 }, 1);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let slots = rt.block_on(load::open_loop(&offsets, usize::MAX, |_| Box::pin(tokio::time::sleep(Duration::from_millis(50)))));
    let mut late: Vec<f64> = slots.iter().map(|slot| slot.late.as_secs_f64() * 1000.0).collect();
    late.sort_by(f64::total_cmp);
    let at = |q: f64| late[((late.len() - 1) as f64 * q).round() as usize];
    println!("{requests} starts at {rate}/s for {seconds}s, each request 50 ms: start error p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms", at(0.5), at(0.99), at(1.0));
    println!("goal: p99 < 1 ms: {}", if at(0.99) < 1.0 { "met" } else { "NOT met" });
    Ok(())
}

pub(crate) fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(value)?).with_context(|| format!("write {}", path.display()))
}

/// What the run ran on, to compare runs honestly; `schedule` (an object:
/// `start`, `pattern`, `warmup`, `seed`, `schedule_s`) says how requests came.
pub(crate) fn environment(pipeline: &Pipeline, target: &str, name: &str, schedule: serde_json::Value, input: &Path) -> serde_json::Value {
    let sha256 = |path: &Path| std::fs::read(path).map(|bytes| hex::encode(sha2::Sha256::digest(bytes))).unwrap_or_default();
    let git = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(&pipeline.dir)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string());
    let memory_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| text.lines().find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok()))?)
        .unwrap_or(0);
    let manifest = xtask::build::manifest::Images::read(&xtask::build::manifest_path(pipeline));
    let images: std::collections::BTreeMap<String, String> = manifest
        .functions
        .iter()
        .filter_map(|(function, set)| Some((function.clone(), set.index.as_ref()?.digest.clone())))
        .collect();
    let mut environment = serde_json::json!({
        "regime": name,
        "target": target,
        "pipeline_sha256": sha256(&pipeline.source.path),
        "input": input.display().to_string(),
        "input_sha256": sha256(input),
        "image_digests": images,
        "tool_version": env!("CARGO_PKG_VERSION"),
        "git_revision": git,
        "host_cpus": std::thread::available_parallelism().map_or(1, usize::from),
        "host_memory_mb": memory_kb / 1024,
        "started_at": jiff::Timestamp::now().to_string(),
    });
    if let (Some(environment), serde_json::Value::Object(schedule)) = (environment.as_object_mut(), schedule) {
        environment.extend(schedule);
    }
    environment
}

fn print_summary(summary: &Summary) {
    let l = &summary.latency_ms;
    println!(
        "regime `{}` on `{}`: {}/{} succeeded, {} dropped, {} late",
        summary.regime, summary.target, summary.succeeded, summary.scheduled, summary.dropped, summary.late
    );
    println!(
        "latency (s): mean {:.2}  p50 {:.2} (95% CI {:.2}..{:.2})  p90 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
        l.mean / 1000.0,
        l.p50 / 1000.0,
        summary.median_ci_ms[0] / 1000.0,
        summary.median_ci_ms[1] / 1000.0,
        l.p90 / 1000.0,
        l.p95 / 1000.0,
        l.p99 / 1000.0,
        l.max / 1000.0
    );
    println!(
        "cost per request {:.2} s×GB; {} invocations, {} cold starts, {} mismatches left out",
        summary.cost_unit_per_request, summary.invocations, summary.cold_starts, summary.mismatches
    );
    if let Some(cpu) = summary.cpu_s_per_request {
        println!("CPU {cpu:.2} s per request on {} cores", summary.cores);
    }
    if let Some(ratio) = summary.burst_time_over_cpu_bound {
        println!("a burst took {ratio:.2}× the least its CPU allows (its requests × CPU per request ÷ cores)");
    }
    for (function, memory) in &summary.memory {
        if memory.flagged {
            println!("warning: {function} peaked at {:.0} MiB of its {} MiB limit (above 80 %)", memory.peak_rss_mb, memory.limit_mb);
        }
    }
}
