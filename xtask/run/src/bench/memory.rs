//! `cargo xtask bench memory`: how much memory each function takes with its
//! `max_inflight` calls in flight, against its declared limit (goal: none
//! above 80 %), and whether detect-speech's grows with the length of its
//! audio (goal: below 64 MiB, the same for 3 and 30 minutes).
//!
//! A local runtime of the bench's own first has detect-speech alone read a
//! 3- and a 30-minute speech WAV (espeak-ng, looped by ffmpeg), then serves
//! `--requests` requests of the test video at once: enough that every
//! function gets as many calls as its replicas take. Meanwhile a sampler
//! reads, every 10 ms, the memory of each function process and of every
//! process below it (its ffmpeg, its PocketSphinx): their PSS, which divides
//! a page shared by several processes among them, is what is compared with
//! the limit; the sum of their RSS, which counts such a page (ffmpeg's
//! libraries) in every process, is printed beside it as an upper bound.
//! Neither counts the page cache of files a replica writes, which a
//! container's cgroup is charged for too (and reclaims under pressure). Each
//! function's invocation log line names its process, so the calls it had in
//! flight at once are counted from their start and end times.
//!
//! The local runtime does not enforce limits: a function above 100 % here
//! would be killed by its container's. A benchmark, not a test: it prints
//! figures and their goals and never fails on one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context as _};
use futures::StreamExt as _;
use stage_runtime::{Artifact, Artifacts, Invocation};

use crate::deploy::Target;
use crate::flags;
use crate::pipeline::Pipeline;
use crate::verify;

/// The share of its limit a function may reach at its `max_inflight`.
const GOAL_SHARE: f64 = 0.8;
/// detect-speech's goal for any length of audio, MiB.
const SPEECH_GOAL_MIB: f64 = 64.0;
/// Lengths of the speech files detect-speech reads, seconds.
const SPEECH_LENGTHS: [u32; 2] = [180, 1800];

pub fn run(pipeline: &Pipeline, global: &flags::Global, flags: &flags::BenchMemory) -> anyhow::Result<()> {
    let runtime = super::own_local_runtime(pipeline, global, "bench-memory", "bench memory reads the processes of a local runtime of its own")?;
    let cache = pipeline.dir.join(".cache/media");
    let video = crate::media::synthesize(&cache)?.video;
    let speech: Vec<(u32, PathBuf)> = SPEECH_LENGTHS.iter().map(|&s| Ok((s, speech_wav(&cache, s)?))).collect::<anyhow::Result<_>>()?;
    crate::model::ensure(&pipeline.detector_model())?;
    // The entry holds a request for its whole life: at its max_inflight (32)
    // the machine would run that many requests' tools at once.
    let steps = pipeline.functions.iter().filter(|f| f.name != pipeline.dag.entry);
    let requests = flags.requests.unwrap_or_else(|| steps.map(|f| f.max_inflight).max().unwrap_or(1)).max(1);
    runtime.deploy()?;
    let measured = (|| {
        let endpoints = runtime.endpoints()?;
        let (rt, store) = verify::connect(pipeline, &endpoints)?;
        let sampler = Sampler::start(runtime.state().root.clone());
        let measured = rt.block_on(measure(pipeline, &endpoints.gateway_url, &store, &sampler, &speech, &video, requests));
        sampler.stop();
        measured
    })();
    let stopped = runtime.teardown();
    let (speech_peaks, load) = measured?;
    stopped.context("the runtime the bench started did not stop")?;

    println!("bench memory: detect-speech alone, one call (goal: below {SPEECH_GOAL_MIB:.0} MiB, whatever the length)");
    for (seconds, tree, reported) in &speech_peaks {
        println!(
            "  {:>3} min of speech: {:>6.1} MiB PSS, {:.1} MiB RSS (the function reports {reported:.1} MiB)",
            seconds / 60,
            mib(tree.pss),
            mib(tree.rss)
        );
    }
    if let [(_, short, _), (_, long, _)] = speech_peaks.as_slice() {
        println!("  30 min ÷ 3 min: {:.2} (goal 1.00: independent of length)", long.pss as f64 / short.pss.max(1) as f64);
    }
    println!();
    println!("bench memory: {requests} requests of {} at once; peak of a replica and its tools (goal: at most {:.0} % of the limit)", video.display(), GOAL_SHARE * 100.0);
    println!("{:<18} {:>9} {:>9} {:>9} {:>7} {:>9} {:>9}", "function", "PSS MiB", "RSS sum", "limit", "share", "in flight", "max");
    let mut above = Vec::new();
    for function in &pipeline.functions {
        let Some(peak) = load.get(&function.name) else {
            println!("{:<18} {:>9} (no process was seen: not called)", function.name, "-");
            continue;
        };
        let limit = function.memory_mb as f64;
        let share = mib(peak.memory.pss) / limit;
        if share > GOAL_SHARE {
            above.push(function.name.as_str());
        }
        println!(
            "{:<18} {:>9.1} {:>9.1} {:>7.0}Mi {:>6.0} % {:>9} {:>9}",
            function.name,
            mib(peak.memory.pss),
            mib(peak.memory.rss),
            limit,
            share * 100.0,
            peak.inflight,
            function.max_inflight
        );
    }
    match above.as_slice() {
        [] => println!("none above {:.0} % of its limit (goal)", GOAL_SHARE * 100.0),
        names => println!("above {:.0} % of their limit: {} (goal: none)", GOAL_SHARE * 100.0, names.join(", ")),
    }
    Ok(())
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// The highest memory of one function's replicas, and the calls that
/// replica had in flight at most.
struct Peak {
    memory: Memory,
    inflight: usize,
}

/// Memory of a process tree, KiB: its PSS (a shared page divided among the
/// processes that map it) and its RSS summed (a shared page in every one).
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    pss: u64,
    rss: u64,
}

impl Memory {
    fn max(self, other: Memory) -> Memory {
        Memory { pss: self.pss.max(other.pss), rss: self.rss.max(other.rss) }
    }
}

type SpeechPeak = (u32, Memory, f64);

async fn measure(
    pipeline: &Pipeline,
    gateway: &str,
    store: &stage_runtime::Store,
    sampler: &Sampler,
    speech: &[(u32, PathBuf)],
    video: &Path,
    requests: usize,
) -> anyhow::Result<(Vec<SpeechPeak>, BTreeMap<String, Peak>)> {
    let session = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let client = reqwest::Client::new();
    let mut speech_peaks = Vec::new();
    for (seconds, wav) in speech {
        let request_id = format!("memory-{session}-speech-{seconds}");
        let (uri, _) = store.upload(wav, &format!("requests/{request_id}/input/speech.wav")).await?;
        let inv = Invocation { request_id, scope: None, inputs: Artifacts::from([("audio".to_string(), Artifact::One(uri))]) };
        sampler.reset();
        let response = client.post(format!("{gateway}/function/detect-speech")).json(&inv).timeout(pipeline.timeouts.client).send().await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.context("detect-speech answered no JSON")?;
        if !status.is_success() {
            bail!("detect-speech on {} answered {status}: {body}", wav.display());
        }
        let trees = sampler.peaks().into_iter().filter(|(_, (function, _))| function == "detect-speech").map(|(_, (_, memory))| memory);
        let tree = trees.reduce(Memory::max).context("no detect-speech process was seen while it worked")?;
        speech_peaks.push((*seconds, tree, body["metrics"]["peak_rss_mb"].as_f64().unwrap_or(0.0)));
    }

    sampler.reset();
    let progress = indicatif::ProgressBar::new_spinner();
    progress.enable_steady_tick(Duration::from_millis(120));
    let ids: Vec<String> = (0..requests).map(|i| format!("memory-{session}-{i:02}")).collect();
    let outcomes: Vec<anyhow::Result<verify::Outcome>> = futures::stream::iter(ids.iter().cloned())
        .map(|id| verify::send(pipeline, gateway, store, video, None, id, &progress))
        .buffer_unordered(requests)
        .collect()
        .await;
    progress.finish_and_clear();
    for outcome in outcomes {
        outcome?.succeeded().context("a request of the bench failed; its memory figures would be of less work")?;
    }
    let inflight = inflight_by_pid(&sampler.state_root.join("logs"), &format!("memory-{session}-"))?;
    let mut load: BTreeMap<String, Peak> = BTreeMap::new();
    for (pid, (function, memory)) in sampler.peaks() {
        let peak = Peak { memory, inflight: inflight.get(&pid).copied().unwrap_or(0) };
        match load.get(&function) {
            Some(seen) if seen.memory.pss >= peak.memory.pss => {}
            _ => {
                load.insert(function, peak);
            }
        }
    }
    Ok((speech_peaks, load))
}

/// A speech WAV of `seconds` (mono, 22 050 Hz as extract-audio writes it):
/// espeak-ng's sentences looped by ffmpeg, made once into `cache`.
fn speech_wav(cache: &Path, seconds: u32) -> anyhow::Result<PathBuf> {
    let out = cache.join(format!("speech-{seconds}s.wav"));
    if out.exists() {
        return Ok(out);
    }
    std::fs::create_dir_all(cache)?;
    let spoken = cache.join("speech-loop.wav");
    let text = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. \
                It is easy to tell the depth of a well. These days a chicken leg is a rare dish.";
    let status = std::process::Command::new("espeak-ng")
        .args(["-g", "20", "-w"])
        .arg(&spoken)
        .arg(text)
        .status()
        .context("run espeak-ng\nhelp: apt-get install espeak-ng")?;
    if !status.success() {
        bail!("espeak-ng failed ({status})");
    }
    let partial = cache.join(format!(".speech-{seconds}s.wav.partial"));
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-stream_loop", "-1", "-i"])
        .arg(&spoken)
        .args(["-t", &seconds.to_string(), "-ar", "22050", "-ac", "1", "-f", "wav"])
        .arg(&partial)
        .status()
        .context("run ffmpeg\nhelp: apt-get install ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg failed to loop the speech to {seconds} s ({status})");
    }
    std::fs::rename(&partial, &out)?;
    Ok(out)
}

/// The most calls each process had in flight at once, from the invocation
/// log lines (`ts_ms` at the end, `duration_ms`, `pid`) of requests whose
/// id starts with `prefix`.
fn inflight_by_pid(logs: &Path, prefix: &str) -> anyhow::Result<BTreeMap<i32, usize>> {
    let mut events: BTreeMap<i32, Vec<(f64, i32)>> = BTreeMap::new();
    for entry in std::fs::read_dir(logs).with_context(|| format!("read {}", logs.display()))? {
        let text = std::fs::read_to_string(entry?.path())?;
        for line in text.lines().filter(|l| l.starts_with('{')) {
            let Ok(line) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            let (Some(id), Some(pid), Some(end), Some(duration)) =
                (line["request_id"].as_str(), line["pid"].as_i64(), line["ts_ms"].as_f64(), line["duration_ms"].as_f64())
            else {
                continue;
            };
            if id.starts_with(prefix) {
                let calls = events.entry(pid as i32).or_default();
                calls.extend([(end - duration, 1), (end, -1)]);
            }
        }
    }
    Ok(events
        .into_iter()
        .map(|(pid, mut calls)| {
            // Ends before starts at the same instant: back-to-back calls do not overlap.
            calls.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let (mut now, mut most) = (0i32, 0i32);
            for (_, step) in calls {
                now += step;
                most = most.max(now);
            }
            (pid, most as usize)
        })
        .collect())
}

/// Samples the resident memory of every function process of one runtime
/// with all the processes below it, on a thread of its own.
struct Sampler {
    state_root: PathBuf,
    peaks: Arc<Mutex<BTreeMap<i32, (String, Memory)>>>,
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(state_root: PathBuf) -> Sampler {
        let (peaks, done) = (Arc::new(Mutex::new(BTreeMap::new())), Arc::new(AtomicBool::new(false)));
        let thread = {
            let (peaks, done, root) = (peaks.clone(), done.clone(), state_root.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    let processes = super::soak::function_processes(&root, true);
                    let table = process_table();
                    let mut peaks = peaks.lock().unwrap_or_else(|e| e.into_inner());
                    for (pid, function) in processes {
                        let memory = tree_memory(&table, pid);
                        let entry = peaks.entry(pid).or_insert((function, Memory::default()));
                        entry.1 = entry.1.max(memory);
                    }
                    drop(peaks);
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Sampler { state_root, peaks, done, thread: Some(thread) }
    }

    fn reset(&self) {
        self.peaks.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Per process: its function and the highest memory of its tree.
    fn peaks(&self) -> BTreeMap<i32, (String, Memory)> {
        self.peaks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn stop(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Every process: its parent and its resident memory, KiB.
fn process_table() -> BTreeMap<i32, (i32, u64)> {
    // SAFETY: sysconf has no preconditions.
    let page_kb = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64) / 1024;
    let Ok(entries) = std::fs::read_dir("/proc") else { return BTreeMap::new() };
    entries
        .filter_map(|entry| {
            let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid … rss` (rss is the 24th field); count from the comm's `)`.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ppid = fields.get(1)?.parse().ok()?;
            let rss_pages: u64 = fields.get(21)?.parse().ok()?;
            Some((pid, (ppid, rss_pages * page_kb)))
        })
        .collect()
}

/// PSS of one process, KiB (the kernel walks its page tables for it: read
/// only for the processes measured).
fn pss_kb(pid: i32) -> u64 {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    rollup.lines().find_map(|l| l.strip_prefix("Pss:")).and_then(|v| v.trim().trim_end_matches(" kB").parse().ok()).unwrap_or(0)
}

/// The memory of `root` and all processes below it.
fn tree_memory(table: &BTreeMap<i32, (i32, u64)>, root: i32) -> Memory {
    let mut total = Memory::default();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if let Some((_, rss)) = table.get(&pid) {
            total.rss += rss;
            total.pss += pss_kb(pid);
        }
        stack.extend(table.iter().filter(|(_, (ppid, _))| *ppid == pid).map(|(child, _)| *child));
    }
    total
}
