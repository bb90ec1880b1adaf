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
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the pipeline file without side effects
    Check(Check),
    /// Build the function images (and their base) for every platform, tagged by content
    Build(Build),
    /// Start the embedded local runtime (object store + gateway) in the background
    Up(Up),
    /// Stop the embedded local runtime and every function process it started
    Down(Down),
    /// Show what the local runtime runs: gateway, store, functions and their replicas
    Status(Status),
    /// Show the logs of the local runtime or of one function
    Logs(Logs),
    /// Send one request end to end and check every artifact it produced
    Verify(Verify),
    /// Synthesize the deterministic test media (spoken sentences, a picture with faces)
    Media(Media),
    /// Fetch the detector model into the cache, checked against its pinned SHA-256
    Model(Model),
    /// Measure the runtime's overhead against the same work run directly
    Bench(Bench),
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
pub struct Up {
    /// Serve in the foreground instead of starting a background process
    #[arg(long)]
    pub foreground: bool,
    /// Folder for the runtime's state, logs and stored objects
    #[arg(long, env = "XTASK_STATE_DIR", default_value = ".xtask/local")]
    pub state_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct Down {
    #[arg(long, env = "XTASK_STATE_DIR", default_value = ".xtask/local")]
    pub state_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct Status {
    #[arg(long, env = "XTASK_STATE_DIR", default_value = ".xtask/local")]
    pub state_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct Logs {
    /// Only this function's log (default: the runtime's own log)
    pub function: Option<String>,
    /// Number of lines to show from the end
    #[arg(short = 'n', long, default_value_t = 50)]
    pub lines: usize,
    #[arg(long, env = "XTASK_STATE_DIR", default_value = ".xtask/local")]
    pub state_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct Verify {
    /// Video to send (default: the synthesized test video, made if missing)
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Write the request summary as JSON to this file
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long, env = "XTASK_STATE_DIR", default_value = ".xtask/local")]
    pub state_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct Media {
    /// Output folder
    #[arg(long, default_value = ".cache/media")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct Model {
    /// Cache folder for models
    #[arg(long, env = "VS_MODEL_DIR", default_value = ".cache/models")]
    pub cache: PathBuf,
}

#[derive(Debug, Args)]
pub struct Bench {
    #[command(subcommand)]
    pub what: Option<BenchWhat>,
    /// Number of warm runs to take the median of
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    #[arg(long, env = "XTASK_STATE_DIR", default_value = ".xtask/bench")]
    pub state_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Measure `cargo xtask build`: a full build and push under a fresh image
    /// name, then no-op builds; where the time goes and what the layers hold
    Build(BenchBuild),
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
