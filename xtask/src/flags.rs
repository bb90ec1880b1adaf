//! Every command and flag of `cargo xtask`. Doc comments are the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Build, deploy, verify and measure the VideoSearcher pipeline declared in pipeline.yaml
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version, about)]
pub struct Xtask {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The pipeline declaration to use
    #[arg(short = 'f', long = "file", global = true, default_value = "pipeline.yaml")]
    pub file: PathBuf,
    /// The target (from `targets:` in the pipeline file) to act on; default: the first `local` one
    #[arg(long, global = true)]
    pub target: Option<String>,
    /// Folder for the target's state: logs, secrets, stored objects (default: `.xtask/<target>`)
    #[arg(long, global = true, env = "XTASK_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

impl Global {
    /// The state folder of `target`: `--state-dir`, or `.xtask/<target>`.
    pub fn state_dir(&self, target: &str) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| PathBuf::from(".xtask").join(target))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the pipeline file without side effects
    Check(Check),
    /// Build the function images (and their base) for every platform, tagged by content
    Build(Build),
    /// Write the Kubernetes manifests of a `kubernetes` target (`--target`) into a folder, one file per object
    Render(Render),
    /// Deploy the pipeline to the target and wait until it answers (`local`, `docker`: start the embedded runtime in the background)
    #[command(visible_alias = "up")]
    Deploy(Deploy),
    /// Remove the pipeline from the target (`local`, `docker`: stop the runtime and every replica it started)
    #[command(visible_alias = "down")]
    Teardown(Teardown),
    /// Show what the target runs: gateway, store, functions and their replicas.
    /// Exits 3 when nothing is deployed
    Status(Status),
    /// Set a function's replicas and wait until they are ready (0: until none is left)
    Scale(Scale),
    /// Show the logs of the target's runtime or of one function
    Logs(Logs),
    /// Send one request end to end and check every artifact it produced
    Verify(Verify),
    /// Search a video: where are these words said, and what is seen then?
    /// Prints the matching clips as a table (time range, words heard, objects seen)
    Search(Search),
    /// Synthesize the deterministic test media (spoken sentences, a picture with faces)
    Media(Media),
    /// Fetch detector models into the cache, checked against their pinned SHA-256s
    Model(Model),
    /// Measure the runtime's overhead against the same work run directly
    Bench(Bench),
    /// Run an experiment regime of pipeline.yaml on the target: an open-loop
    /// schedule of requests, warm or cold, with per-request and
    /// per-invocation records and a summary
    Experiment(Experiment),
    /// Put experiment runs side by side: latency percentiles with the
    /// median's interval, success, cost per request, the cold-start penalty,
    /// and their latency CDFs (Markdown and SVG)
    Report(Report),
}

#[derive(Debug, Args)]
pub struct Check {}

#[derive(Debug, Clone, Args)]
pub struct Build {
    /// Build only this function (repeatable)
    #[arg(long = "function", value_name = "NAME")]
    pub functions: Vec<String>,
    /// Build only for this platform (repeatable), one of `build.platforms`
    #[arg(long = "platform", value_name = "OS/ARCH")]
    pub platforms: Vec<String>,
    /// Push the images to `build.registry` and write one multi-arch index per function
    #[arg(long, overrides_with = "no_push")]
    pub push: bool,
    /// Keep the images in the local engine (the default)
    #[arg(long, overrides_with = "push")]
    pub no_push: bool,
    /// Print each image's hash and whether it would be built, and why; build nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Use this registry and path instead of `build.registry` (`host:port/path`)
    #[arg(long, value_name = "HOST/PATH")]
    pub registry: Option<String>,
}

#[derive(Debug, Args)]
pub struct Render {
    /// The folder to write: `<namespace>/<kind>-<name>.yaml` per object and
    /// `openfaas-values.yaml`; files of an earlier render there are replaced
    #[arg(long, value_name = "DIR", required_unless_present = "explain_timeouts")]
    pub out: Option<PathBuf>,
    /// Print every timeout the pipeline derives (watchdog, gateway, queue
    /// worker, the orchestrator's deadlines, the client) and the rules they
    /// keep, then stop (needs no target)
    #[arg(long)]
    pub explain_timeouts: bool,
}

#[derive(Debug, Args)]
pub struct Deploy {
    /// Serve in the foreground instead of starting a background process (`local`, `docker`)
    #[arg(long)]
    pub foreground: bool,
}

#[derive(Debug, Args)]
pub struct Teardown {}

#[derive(Debug, Args)]
pub struct Status {}

#[derive(Debug, Args)]
pub struct Scale {
    /// The function to scale
    pub function: String,
    /// How many replicas it should have
    #[arg(long)]
    pub replicas: u64,
    /// How long to wait for them
    #[arg(long, default_value = "60s", value_parser = crate::pipeline::parse_duration)]
    pub wait: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct Logs {
    /// Only this function's log (default: the runtime's own log)
    pub function: Option<String>,
    /// Number of lines to show from the end
    #[arg(short = 'n', long, default_value_t = 50)]
    pub lines: usize,
}

#[derive(Debug, Args)]
pub struct Verify {
    /// Video to send (default: the synthesized test video, made if missing)
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Write the request summary as JSON to this file
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Search {
    /// The video to search
    pub video: PathBuf,
    /// The words to find: a word or a phrase (case, punctuation and
    /// apostrophes do not count; a phrase matches as consecutive words)
    pub query: String,
    /// Print the answer document (`requests/<id>/result.json`) instead of the table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct Media {
    /// Output folder
    #[arg(long, default_value = ".cache/media")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct Model {
    /// The models to fetch, by the name `parameters.detector.model` takes
    /// (default: the one the pipeline file selects)
    #[arg(value_enum, value_name = "NAME", conflicts_with = "all")]
    pub names: Vec<crate::model::DetectorModel>,
    /// Fetch every model `parameters.detector.model` can name
    #[arg(long)]
    pub all: bool,
    /// Folder to put them in (default: `parameters.detector.model_dir` of the pipeline file)
    #[arg(long, env = "VS_MODEL_DIR", value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Bench {
    #[command(subcommand)]
    pub what: Option<BenchWhat>,
    /// Number of warm runs to take the median of
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

#[derive(Debug, Args)]
pub struct Experiment {
    /// The regime (`experiments.<name>` in pipeline.yaml)
    pub regime: String,
    /// Measured requests, instead of the regime's (steady: `requests`; burst: `size` per burst)
    #[arg(long)]
    pub requests: Option<u32>,
    /// Requests per second, instead of the regime's (steady patterns)
    #[arg(long)]
    pub rate: Option<f64>,
    /// Most requests in flight at once; a start beyond it is dropped and counted
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Video to send, instead of the regime's
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Results folder (default `.xtask/experiments/<regime>-<target>-<time>`)
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Report {
    /// Results folders of `cargo xtask experiment`
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Where to write `report.md` and `latency-cdf.svg`
    #[arg(long, default_value = ".xtask/report")]
    pub out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Measure `cargo xtask build`: a full build and push under a fresh image
    /// name, then no-op builds; where the time goes and what the layers hold
    Build(BenchBuild),
    /// Measure the experiment's load generator alone: how late its starts
    /// are at a steady rate (goal: p99 below 1 ms at 200 req/s)
    Schedule(BenchSchedule),
    /// Many requests while function processes are SIGKILLed at random: how
    /// many succeeded, failed classified or were lost; unnamed objects,
    /// orphaned uploads and temp folders (goal 0 each)
    Soak(BenchSoak),
    /// Peak memory of every function with its max_inflight calls in flight,
    /// against its limit (goal: none above 80 %), and of detect-speech on 3
    /// and 30 minutes of speech (goal: below 64 MiB, independent of length)
    Memory(BenchMemory),
    /// Measure the embedded object store: concurrent uploads while others
    /// list the bucket, each upload's latency and the throughput
    Store(BenchStore),
    /// Measure what the dataflow DAG and the query buy on the test video:
    /// critical path against latency, CPU with a query matching one clip
    /// against none (goal <= 0.7), latency against the per-clip chain
    Search(BenchSearch),
}

#[derive(Debug, Args)]
pub struct BenchSearch {
    /// Rounds of measured requests (each: no query on both runtimes, then the query)
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The query; the default is said in one clip of the test video
    #[arg(long, default_value = "glass of water")]
    pub query: String,
}

#[derive(Debug, Args)]
pub struct BenchSoak {
    /// Requests in all
    #[arg(long, default_value_t = 50)]
    pub requests: usize,
    /// Requests in flight at once
    #[arg(long, default_value_t = 3)]
    pub concurrency: usize,
    /// Function processes to SIGKILL (never the orchestrator)
    #[arg(long, default_value_t = 10)]
    pub kills: usize,
    /// Mean time between kills
    #[arg(long, default_value = "20s", value_parser = crate::pipeline::parse_duration)]
    pub kill_every: std::time::Duration,
    /// Seed of the kills' times and victims
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The video of every request (default: the synthesized test video)
    #[arg(long)]
    pub input: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BenchMemory {
    /// Requests of the test video sent at once (default: the largest
    /// max_inflight of a function the entry calls)
    #[arg(long)]
    pub requests: Option<usize>,
}

#[derive(Debug, Args)]
pub struct BenchStore {
    /// Uploads at once
    #[arg(long, default_value_t = 32)]
    pub uploads: usize,
    /// Size of each upload, MiB
    #[arg(long, default_value_t = 4)]
    pub mib: usize,
    /// Objects in the bucket before the uploads begin
    #[arg(long, default_value_t = 2000)]
    pub objects: usize,
    /// Clients listing the bucket in a loop meanwhile
    #[arg(long, default_value_t = 2)]
    pub listers: usize,
}

#[derive(Debug, Args)]
pub struct BenchSchedule {
    /// Starts per second
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Seconds to run
    #[arg(long, default_value_t = 10)]
    pub seconds: u32,
}

#[derive(Debug, Args)]
pub struct BenchBuild {
    /// Number of no-op builds to take the median of
    #[arg(long, default_value_t = 3)]
    pub noop_runs: usize,
    /// Registry host and path to push under (a fresh path below it is used)
    #[arg(long, default_value = "127.0.0.1:5000/videosearcher-bench")]
    pub registry: String,
}
