//! The validated pipeline: what every `cargo xtask` command works from.
//! Built only by `pipeline::load`, so every value here already passed the checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use indexmap::IndexMap;
use serde::Deserialize;

use super::diagnostic::{Diagnostic, Source};
use super::timeouts::Timeouts;
pub use crate::model::DetectorModel;

/// The whole pipeline.yaml.
#[derive(Debug)]
pub struct Pipeline {
    pub name: String,
    /// Every layer's timeout, derived from the functions' exec timeouts.
    pub timeouts: Timeouts,
    pub storage: Storage,
    /// Names of the secrets; targets provide their values.
    pub secrets: Vec<String>,
    /// Targets by name, in file order.
    pub targets: IndexMap<String, Target>,
    pub parameters: Parameters,
    /// Functions in file order.
    pub functions: Vec<Function>,
    pub dag: Dag,
    /// How images are built; `None` when the file has no `build:`.
    pub build: Option<Build>,
    /// Experiment regimes by name, in file order.
    pub experiments: IndexMap<String, Regime>,
    /// What `check` found worth saying that is not an error (artifacts nothing uses).
    pub warnings: Vec<super::Warning>,
    /// Absolute folder of the pipeline file; relative paths in it are relative to this.
    pub dir: PathBuf,
    /// The file's text and positions, to point later errors into it.
    pub source: Source,
}

#[derive(Debug, Clone)]
pub struct Storage {
    pub bucket: String,
    pub region: String,
    /// Name of the secret (in `Pipeline::secrets`) holding the S3 access key id.
    pub access_key_secret: String,
    /// Name of the secret (in `Pipeline::secrets`) holding the S3 secret key.
    pub secret_key_secret: String,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub kind: TargetKind,
}

/// Where the pipeline runs, with what each kind needs.
#[derive(Debug, Clone)]
pub enum TargetKind {
    /// The embedded runtime on this machine, each replica a process of the
    /// function's binary.
    Local(Embedded),
    /// The embedded runtime's gateway and store in front of the images of
    /// `cargo xtask build`, each replica a container with the declared
    /// memory and CPU enforced.
    Docker(Embedded),
    /// An OpenFaaS gateway (Community Edition, faasd, or the embedded
    /// runtime's own) reached through its REST API.
    OpenFaas(OpenFaas),
    /// A Kubernetes cluster running OpenFaaS, given manifests rendered from
    /// `templates/` (`cargo xtask render`).
    Kubernetes(Kubernetes),
}

/// Where an OpenFaaS gateway and its object store are, as this tool reaches
/// them and as the functions do (in a cluster: service names).
#[derive(Debug, Clone)]
pub struct OpenFaas {
    pub gateway: String,
    pub store: String,
    pub function_gateway: String,
    pub function_store: String,
    /// The address the functions bind in their pods (`0.0.0.0`).
    pub bind_addr: String,
    /// One file per secret of `secrets:`, holding its value (absolute).
    pub secrets_dir: PathBuf,
}

/// A Kubernetes cluster with OpenFaaS installed: where the functions go, how
/// they are declared, and where the gateway and the store are, as this tool
/// reaches them and as the functions do.
#[derive(Debug, Clone)]
pub struct Kubernetes {
    /// The functions' namespace (`openfaas-fn`).
    pub namespace: String,
    /// OpenFaaS's own namespace (`openfaas`): its gateway, and MinIO when rendered.
    pub openfaas_namespace: String,
    pub mode: KubernetesMode,
    /// The gateway as this tool reaches it; `None`: found in `openfaas_namespace` at deploy.
    pub gateway: Option<String>,
    /// The object store as this tool reaches it; `None`: found at deploy.
    pub store: Option<String>,
    /// The gateway as the functions reach it (`http://gateway.openfaas:8080`).
    pub function_gateway: String,
    /// The object store as the functions reach it (`http://minio.openfaas:9000`).
    pub function_store: String,
    /// The address the functions bind in their pods (`0.0.0.0`).
    pub bind_addr: String,
    /// One file per secret of `secrets:`, holding its value (absolute).
    pub secrets_dir: PathBuf,
    /// Render a MinIO Deployment and Service in `openfaas_namespace`, for
    /// clusters without object storage.
    pub minio: bool,
}

/// How a `kubernetes` target declares the functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubernetesMode {
    /// A Deployment and a Service per function, the shape faas-netes makes:
    /// works with OpenFaaS Community Edition.
    Deployments,
    /// An `openfaas.com/v1` Function per function, for OpenFaaS Pro's operator.
    FunctionCrd,
}

impl KubernetesMode {
    pub const ALL: [KubernetesMode; 2] = [KubernetesMode::Deployments, KubernetesMode::FunctionCrd];

    /// The word `mode:` takes.
    pub fn name(self) -> &'static str {
        match self {
            KubernetesMode::Deployments => "deployments",
            KubernetesMode::FunctionCrd => "function-crd",
        }
    }

    pub fn parse(name: &str) -> Option<KubernetesMode> {
        KubernetesMode::ALL.into_iter().find(|mode| mode.name() == name)
    }
}

/// What the embedded runtime (gateway and store on 127.0.0.1) needs.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub gateway_port: u16,
    pub store_port: u16,
    /// A function's replicas are stopped after this long without requests.
    pub idle_timeout: Duration,
}

impl TargetKind {
    /// The word `kind:` takes for this kind.
    pub fn name(&self) -> &'static str {
        match self {
            TargetKind::Local(_) => "local",
            TargetKind::Docker(_) => "docker",
            TargetKind::OpenFaas(_) => "openfaas",
            TargetKind::Kubernetes(_) => "kubernetes",
        }
    }

    /// The cluster settings, for the kind that has them.
    pub fn kubernetes(&self) -> Option<&Kubernetes> {
        match self {
            TargetKind::Kubernetes(kubernetes) => Some(kubernetes),
            TargetKind::Local(_) | TargetKind::Docker(_) | TargetKind::OpenFaas(_) => None,
        }
    }

    /// The embedded runtime's settings, for the kinds that use it.
    pub fn embedded(&self) -> Option<&Embedded> {
        match self {
            TargetKind::Local(embedded) | TargetKind::Docker(embedded) => Some(embedded),
            TargetKind::OpenFaas(_) | TargetKind::Kubernetes(_) => None,
        }
    }
}

/// Stage parameters, passed to every function as `VS_*` variables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameters {
    #[serde(default)]
    pub input: InputParameters,
    pub speech: SpeechParameters,
    pub compress: CompressParameters,
    pub frames: FramesParameters,
    pub detector: DetectorParameters,
}

/// What the pipeline takes: a larger or longer video is refused before any
/// work is done on it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputParameters {
    /// Largest input object, in bytes (`1Gi`): checked from the store's
    /// metadata before the video is downloaded.
    #[serde(deserialize_with = "memory")]
    pub max_size: u64,
    /// Longest input (`2h`), by its container's duration.
    #[serde(deserialize_with = "duration")]
    pub max_duration: Duration,
}

impl Default for InputParameters {
    fn default() -> Self {
        InputParameters { max_size: 1 << 30, max_duration: Duration::from_secs(2 * 3600) }
    }
}

fn memory<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let text = String::deserialize(deserializer)?;
    match super::units::parse_memory(&text) {
        Ok(0) => Err(serde::de::Error::custom(format!("`{text}` is 0: no input would fit"))),
        Ok(bytes) => Ok(bytes),
        Err(why) => Err(serde::de::Error::custom(format!("`{text}` {why}; write bytes with a unit, like `1Gi` or `500Mi`"))),
    }
}

fn duration<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    match super::units::parse_duration(&text) {
        Ok(d) if d.is_zero() => Err(serde::de::Error::custom(format!("`{text}` is 0: no input would fit"))),
        Ok(d) => Ok(d),
        Err(why) => Err(serde::de::Error::custom(format!("`{text}` {why}; write a duration, like `2h` or `90m`"))),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeechParameters {
    /// Sample rate (Hz) the audio is analysed at.
    pub sample_rate: u32,
    /// Silence threshold range (dB below peak) searched for segments.
    pub top_db: Bounds,
    /// Wanted sentence length range, in seconds.
    pub sentence_seconds: Bounds,
}

/// An inclusive `{ min, max }` range.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    pub min: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressParameters {
    /// x264 constant rate factor (0-51).
    pub crf: u32,
    /// Sample rate (Hz) of the compressed clip's audio.
    pub audio_sample_rate: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FramesParameters {
    /// Frames sampled per minute of clip.
    pub per_minute: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorParameters {
    /// The model, by name; it fixes the file and the decoder.
    pub model: DetectorModel,
    /// The folder of the model files (`cargo xtask model` fetches them there),
    /// as written (relative to `Pipeline::dir` when relative).
    pub model_dir: PathBuf,
    pub score_threshold: f64,
    pub nms_iou: f64,
    /// Square input size (pixels) the frames are resized to.
    pub input_size: u32,
}

impl DetectorParameters {
    /// The model's file in `model_dir`, for a pipeline file in the folder `dir`.
    pub fn model_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.model_dir).join(self.model.file())
    }
}

/// One serverless function: a binary built from `source`.
#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    /// Absolute path of the crate folder.
    pub source: PathBuf,
    pub memory_mb: u64,
    /// Cores reserved for one replica (Kubernetes' `requests.cpu`): what a
    /// scheduler counts when it places replicas, and a replica's share of a
    /// busy machine.
    pub cpu: f64,
    /// Cores one replica may use at most (`limits.cpu`); `None`: whatever is
    /// idle, as a pod without a CPU limit.
    pub cpu_limit: Option<f64>,
    pub timeout: Duration,
    /// Requests one replica handles at once.
    pub max_inflight: usize,
    pub scale: Scale,
    pub env: BTreeMap<String, String>,
    /// Names of the secrets it receives.
    pub secrets: Vec<String>,
    /// Files copied into its image.
    pub assets: Vec<Asset>,
}

/// A file of the host copied into a function's image (the detector's model).
#[derive(Debug, Clone)]
pub struct Asset {
    /// Absolute path on the host.
    pub from: PathBuf,
    /// Absolute path inside the image.
    pub to: String,
}

/// `build:`: the base image, the platforms and where images go.
#[derive(Debug, Clone)]
pub struct Build {
    /// Absolute folder of the base image's recipe (`Dockerfile`, `packages`).
    pub base: PathBuf,
    pub base_recipe: BaseRecipe,
    /// In file order, without repeats.
    pub platforms: Vec<Platform>,
    /// Registry host and path prefix (`127.0.0.1:5000/videosearcher`); `None`
    /// keeps images in the local engine only.
    pub registry: Option<String>,
    /// Cargo profile of the function binaries.
    pub profile: String,
    /// Images assembled or pushed at once.
    pub parallel: usize,
}

/// How the base image is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseRecipe {
    /// A root filesystem per platform from Debian packages (mmdebstrap), for
    /// engines that cannot pull.
    Bootstrap,
    /// `base-image/Dockerfile`, for engines that can pull its `FROM`.
    Dockerfile,
}

/// A platform images are built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Platform {
    Amd64,
    Arm64,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Platform::Amd64, Platform::Arm64];

    /// `linux/amd64`, as OCI and Docker write it.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Amd64 => "linux/amd64",
            Platform::Arm64 => "linux/arm64",
        }
    }

    /// The architecture alone (`amd64`), as image configs and Debian write it.
    pub fn arch(self) -> &'static str {
        match self {
            Platform::Amd64 => "amd64",
            Platform::Arm64 => "arm64",
        }
    }

    /// The Rust target the function binaries are compiled for.
    pub fn rust_target(self) -> &'static str {
        match self {
            Platform::Amd64 => "x86_64-unknown-linux-gnu",
            Platform::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    pub fn parse(name: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|platform| platform.name() == name)
    }

    /// The platform of this machine, whose images run here without emulation.
    pub fn host() -> Option<Platform> {
        Platform::ALL.into_iter().find(|platform| platform.rust_target().starts_with(std::env::consts::ARCH))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the requests of an experiment arrive (`experiments.<name>`).
#[derive(Debug, Clone, PartialEq)]
pub struct Regime {
    pub start: Start,
    pub pattern: Pattern,
    /// Requests sent before the measured ones and left out of the figures
    /// (warm regimes only).
    pub warmup: u32,
    /// Seeds the jitter of a steady pattern.
    pub seed: u64,
    /// The video to send (absolute); `None`: the synthesized test video.
    pub input: Option<PathBuf>,
    /// A capacity search instead of one schedule (steady, warm regimes only).
    pub capacity: Option<Capacity>,
}

/// How a capacity search raises its steady rate and when a step no longer counts as sustained.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    /// A step whose p95 latency is above this is not sustained.
    pub p95: Duration,
    /// Nor one with more failed or dropped requests than this.
    pub failures: u32,
    /// Each step's rate is the one before times this (above 1).
    pub factor: f64,
    /// Steps at most; the search ends at the first step not sustained.
    pub steps: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Every function's replicas ready, warm-up requests sent first.
    Warm,
    /// Before each request (steady) or burst, every function scaled to zero
    /// through the target and waited on until its replicas are gone.
    Cold,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// `requests` at `rate` per second, each start moved by up to `jitter`
    /// of the interval (seeded).
    Steady { rate: f64, requests: u32, jitter: f64 },
    /// `bursts` times `size` requests at once, `gap` apart.
    Burst { size: u32, bursts: u32, gap: Duration },
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pattern::Steady { rate, requests, jitter } if *jitter > 0.0 => write!(f, "steady {requests} at {rate}/s ±{jitter}"),
            Pattern::Steady { rate, requests, .. } => write!(f, "steady {requests} at {rate}/s"),
            Pattern::Burst { size, bursts: 1, .. } => write!(f, "burst of {size}"),
            Pattern::Burst { size, bursts, gap } => write!(f, "{bursts} bursts of {size}, {}s apart", gap.as_secs_f64()),
        }
    }
}

impl Pattern {
    /// Requests the pattern sends, warm-up not counted.
    pub fn requests(&self) -> u32 {
        match self {
            Pattern::Steady { requests, .. } => *requests,
            Pattern::Burst { size, bursts, .. } => size * bursts,
        }
    }
}

/// Replica count bounds; `min: 0` lets the function scale to zero.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub min: u32,
    pub max: u32,
}

/// What the entry function (the orchestrator) runs for a request: a
/// dataflow graph. Each step names the artifacts it needs and produces, and
/// runs as soon as its needs exist; steps that do not depend on each other
/// run at the same time.
#[derive(Debug, Clone)]
pub struct Dag {
    /// The function that receives requests and drives the steps.
    pub entry: String,
    /// What a request brings, in declaration order.
    pub inputs: Vec<Input>,
    /// The steps over the whole request (the fan-out is one more node among them).
    pub steps: Vec<Step>,
    pub fan_out: Option<FanOut>,
    /// The artifact published as the request's answer, `requests/<id>/result.json`.
    pub result: Option<String>,
    pub retry: Retry,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub name: String,
    /// A request without it is refused; an optional input that is absent
    /// makes the steps that need it skip.
    pub required: bool,
}

/// One call of a function in the DAG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub function: String,
    /// The artifacts it is given; it runs once they exist, and is skipped
    /// when one of them will not (its producer was skipped).
    pub needs: Vec<String>,
    /// The artifacts its answer carries.
    pub produces: Vec<String>,
    /// A flag artifact: the step is skipped when it is false. A flag that no
    /// step produced (its producer was skipped) does not stop it.
    pub when: Option<String>,
}

/// Steps run for every item of an artifact, `max_parallel` items at a time.
#[derive(Debug, Clone)]
pub struct FanOut {
    /// The artifact (a list) whose items are fanned out (e.g. `clips`).
    pub over: String,
    /// The artifact name each item is passed to the steps under (e.g. `clip`).
    pub item: String,
    /// The artifact the fan-out produces once every item is done: a document
    /// listing each item's artifacts and skipped steps, in item order.
    pub collect: Option<String>,
    pub max_parallel: usize,
    /// The most items a request may have: the request's budget covers this
    /// many, and the orchestrator refuses more.
    pub max_items: usize,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone)]
pub struct Retry {
    /// Tries per step call, the first included (>= 1).
    pub attempts: u32,
    /// Wait before the first retry.
    pub backoff: Duration,
}

/// The fan-out as a node of the request's graph: what it waits for, what it
/// produces, and what it costs.
pub struct FanNode {
    pub needs: Vec<String>,
    pub produces: Vec<String>,
    pub cost: Duration,
}

/// The longest chain through `steps` by `cost` (and through the fan-out
/// node, listed with an empty name), following each step's needs to their
/// producers: its steps in order with their costs, and its total. The steps
/// are acyclic (checked); the depth bound only keeps a cycle in a hand-built
/// model from recursing forever.
pub fn longest_chain(steps: &[Step], cost: &dyn Fn(&Step) -> Duration, fan: Option<&FanNode>) -> (Vec<(String, Duration)>, Duration) {
    struct Node<'a> {
        name: String,
        produces: &'a [String],
        needs: Vec<&'a String>,
        cost: Duration,
    }
    let mut nodes: Vec<Node> = steps
        .iter()
        .map(|step| Node { name: step.function.clone(), produces: &step.produces, needs: step.needs.iter().chain(&step.when).collect(), cost: cost(step) })
        .collect();
    if let Some(fan) = fan {
        nodes.push(Node { name: String::new(), produces: &fan.produces, needs: fan.needs.iter().collect(), cost: fan.cost });
    }
    // Per node: when it ends at the latest, and the node before it on its chain.
    fn settle(node: usize, nodes: &[Node], finish: &mut [Option<(Duration, Option<usize>)>], depth: usize) -> Duration {
        if let Some((end, _)) = finish[node] {
            return end;
        }
        let mut before = (Duration::ZERO, None);
        if depth <= nodes.len() {
            for need in &nodes[node].needs {
                let producer = nodes.iter().position(|n| n.produces.contains(need));
                if let Some(p) = producer.filter(|p| *p != node) {
                    let end = settle(p, nodes, finish, depth + 1);
                    if end > before.0 {
                        before = (end, Some(p));
                    }
                }
            }
        }
        let end = before.0 + nodes[node].cost;
        finish[node] = Some((end, before.1));
        end
    }
    let mut finish = vec![None; nodes.len()];
    for node in 0..nodes.len() {
        settle(node, &nodes, &mut finish, 0);
    }
    let Some(last) = (0..nodes.len()).max_by_key(|&node| finish[node].map(|(end, _)| end)) else {
        return (Vec::new(), Duration::ZERO);
    };
    let total = finish[last].map_or(Duration::ZERO, |(end, _)| end);
    let mut path = Vec::new();
    let mut at = Some(last);
    while let Some(node) = at {
        path.push((nodes[node].name.clone(), nodes[node].cost));
        at = finish[node].and_then(|(_, before)| before);
    }
    path.reverse();
    (path, total)
}

impl Dag {
    /// The fan-out as a node of the request's graph, costing `cost`: it
    /// needs `over` and what its steps take from the request, and produces
    /// its `collect`.
    pub fn fan_node(&self, cost: Duration) -> Option<FanNode> {
        self.fan_out.as_ref().map(|fan| {
            let inside: Vec<&String> = fan.steps.iter().flat_map(|step| &step.produces).chain([&fan.item]).collect();
            let mut needs = vec![fan.over.clone()];
            let outer = fan.steps.iter().flat_map(|step| step.needs.iter().chain(&step.when)).filter(|name| !inside.contains(name));
            needs.extend(outer.cloned());
            FanNode { needs, produces: fan.collect.iter().cloned().collect(), cost }
        })
    }

    /// Number of steps, linear and fanned out, without the entry.
    pub fn step_count(&self) -> usize {
        self.steps.len()
            + self
                .fan_out
                .as_ref()
                .map_or(0, |fan_out| fan_out.steps.len())
    }

    /// Every step's function: the request's, then the fanned-out ones.
    pub fn all_steps(&self) -> impl Iterator<Item = &str> {
        let fanned = self.fan_out.iter().flat_map(|fan_out| fan_out.steps.iter());
        self.steps.iter().chain(fanned).map(|step| step.function.as_str())
    }
}

impl Pipeline {
    pub fn function(&self, name: &str) -> Option<&Function> {
        self.functions.iter().find(|function| function.name == name)
    }

    /// The target named `name`, or the first `local` one when `None`.
    pub fn target(&self, name: Option<&str>) -> anyhow::Result<(&str, &Target)> {
        let known = || {
            let names: Vec<String> = self
                .targets
                .keys()
                .map(|name| format!("`{name}`"))
                .collect();
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        match name {
            Some(name) => match self.targets.get_key_value(name) {
                Some((name, target)) => Ok((name.as_str(), target)),
                None => bail!("unknown target `{name}` (known: {})", known()),
            },
            None => match self
                .targets
                .iter()
                .find(|(_, target)| matches!(target.kind, TargetKind::Local(_)))
            {
                Some((name, target)) => Ok((name.as_str(), target)),
                None => bail!(
                    "no `local` target in {} (known: {})",
                    self.source.path.display(),
                    known()
                ),
            },
        }
    }

    /// The detector model on this machine: the file `parameters.detector.model`
    /// names in `model_dir` (absolute).
    pub fn detector_model(&self) -> PathBuf {
        self.parameters.detector.model_path(&self.dir)
    }

    /// Where the detector model is inside the images: the `to` of the asset
    /// whose `from` is the model. `None` when no function carries it.
    pub fn detector_model_in_images(&self) -> Option<&str> {
        let model = self.detector_model();
        self.functions.iter().flat_map(|f| &f.assets).find(|asset| asset.from == model).map(|asset| asset.to.as_str())
    }

    /// The stage parameters as the `VS_*` environment variables every
    /// function receives; `model` is where the function finds the detector
    /// model (on this machine, or inside its image).
    pub fn parameter_env(&self, model: &Path) -> Vec<(String, String)> {
        let p = &self.parameters;
        [
            ("VS_INPUT_MAX_BYTES", p.input.max_size.to_string()),
            ("VS_INPUT_MAX_SECONDS", p.input.max_duration.as_secs_f64().to_string()),
            ("VS_SPEECH_SAMPLE_RATE", p.speech.sample_rate.to_string()),
            ("VS_SPEECH_TOP_DB_MIN", p.speech.top_db.min.to_string()),
            ("VS_SPEECH_TOP_DB_MAX", p.speech.top_db.max.to_string()),
            (
                "VS_SPEECH_SENTENCE_MIN_S",
                p.speech.sentence_seconds.min.to_string(),
            ),
            (
                "VS_SPEECH_SENTENCE_MAX_S",
                p.speech.sentence_seconds.max.to_string(),
            ),
            ("VS_COMPRESS_CRF", p.compress.crf.to_string()),
            (
                "VS_COMPRESS_AUDIO_SAMPLE_RATE",
                p.compress.audio_sample_rate.to_string(),
            ),
            ("VS_FRAMES_PER_MINUTE", p.frames.per_minute.to_string()),
            ("VS_DETECTOR_MODEL", model.display().to_string()),
            ("VS_DETECTOR_DECODER", p.detector.model.decoder().to_string()),
            (
                "VS_DETECTOR_SCORE_THRESHOLD",
                p.detector.score_threshold.to_string(),
            ),
            ("VS_DETECTOR_NMS_IOU", p.detector.nms_iou.to_string()),
            ("VS_DETECTOR_INPUT_SIZE", p.detector.input_size.to_string()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
    }

    /// An error about the file as a whole.
    pub fn error_in_file(&self, message: impl Into<String>, help: Option<String>) -> Diagnostic {
        super::diagnostic::error_in_file(&self.source.path, message, help)
    }

    /// An error pointing at the value at `path` in the pipeline file
    /// (e.g. `functions.detect-objects.timeout`), for commands after `load`.
    pub fn error_at(
        &self,
        path: &str,
        message: impl Into<String>,
        help: Option<String>,
    ) -> Diagnostic {
        self.source.error_at_value(path, message, help)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository's pipeline.yaml, loaded from a temp folder with its source folders.
    fn repository_pipeline() -> (tempfile::TempDir, Pipeline) {
        pipeline_from(include_str!("../../../pipeline.yaml"))
    }

    /// `text` as pipeline.yaml in a temp folder with the repository's source folders.
    fn pipeline_from(text: &str) -> (tempfile::TempDir, Pipeline) {
        let dir = tempfile::tempdir().unwrap();
        for line in text.lines() {
            if let Some(source) = line.trim().strip_prefix("source: ") {
                std::fs::create_dir_all(dir.path().join(source)).unwrap();
            }
            if let Some(base) = line.trim().strip_prefix("base: ") {
                std::fs::create_dir_all(dir.path().join(base)).unwrap();
                for file in ["Dockerfile", "packages"] {
                    std::fs::write(dir.path().join(base).join(file), "").unwrap();
                }
            }
        }
        let path = dir.path().join("pipeline.yaml");
        std::fs::write(&path, text).unwrap();
        let pipeline = super::super::load(&path).unwrap();
        (dir, pipeline)
    }

    #[test]
    fn parameter_env_sets_every_variable_with_an_absolute_model() {
        let (dir, pipeline) = repository_pipeline();
        let env = pipeline.parameter_env(&pipeline.detector_model());
        let names: Vec<&str> = env.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "VS_INPUT_MAX_BYTES",
                "VS_INPUT_MAX_SECONDS",
                "VS_SPEECH_SAMPLE_RATE",
                "VS_SPEECH_TOP_DB_MIN",
                "VS_SPEECH_TOP_DB_MAX",
                "VS_SPEECH_SENTENCE_MIN_S",
                "VS_SPEECH_SENTENCE_MAX_S",
                "VS_COMPRESS_CRF",
                "VS_COMPRESS_AUDIO_SAMPLE_RATE",
                "VS_FRAMES_PER_MINUTE",
                "VS_DETECTOR_MODEL",
                "VS_DETECTOR_DECODER",
                "VS_DETECTOR_SCORE_THRESHOLD",
                "VS_DETECTOR_NMS_IOU",
                "VS_DETECTOR_INPUT_SIZE",
            ]
        );
        let value = |name: &str| env.iter().find(|(n, _)| n == name).unwrap().1.clone();
        let model = dir
            .path()
            .canonicalize()
            .unwrap()
            .join(".cache/models/centerface.onnx");
        assert_eq!(value("VS_DETECTOR_MODEL"), model.display().to_string());
        assert_eq!(value("VS_SPEECH_TOP_DB_MIN"), "24");
        assert_eq!(value("VS_INPUT_MAX_BYTES"), (1u64 << 30).to_string());
        assert_eq!(value("VS_INPUT_MAX_SECONDS"), "7200");
        assert_eq!(value("VS_DETECTOR_SCORE_THRESHOLD"), "0.5");
        assert_eq!(value("VS_COMPRESS_AUDIO_SAMPLE_RATE"), "16000");
    }

    #[test]
    fn one_line_switches_the_detector_model_its_decoder_and_its_asset() {
        let text = include_str!("../../../pipeline.yaml");
        assert_eq!(text.matches("model: centerface").count(), 1);
        let (dir, pipeline) = pipeline_from(&text.replace("model: centerface", "model: yolov12n-coco"));
        let models = dir.path().canonicalize().unwrap().join(".cache/models");
        assert_eq!(pipeline.detector_model(), models.join("yolov12n.onnx"));
        let env = pipeline.parameter_env(Path::new("/opt/m.onnx"));
        let value = |name: &str| env.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert_eq!(value("VS_DETECTOR_DECODER"), "yolov8");
        let detector = pipeline.function("detect-objects").unwrap();
        assert_eq!(detector.assets[0].from, models.join("yolov12n.onnx"), "the image carries the chosen model");
        assert_eq!(pipeline.detector_model_in_images(), Some("/opt/videosearcher/models/detector.onnx"));

        let (_dir, pipeline) = repository_pipeline();
        assert_eq!(pipeline.parameters.detector.model, DetectorModel::CenterFace, "the default stays MIT-licensed");
    }

    #[test]
    fn target_defaults_to_the_first_local_one() {
        let (_dir, pipeline) = repository_pipeline();
        let (name, target) = pipeline.target(None).unwrap();
        assert_eq!(name, "local");
        let TargetKind::Local(Embedded { gateway_port, store_port, idle_timeout }) = target.kind else {
            panic!("the first target is local: {target:?}")
        };
        assert_eq!(
            (gateway_port, store_port, idle_timeout),
            (8080, 9000, Duration::from_secs(300))
        );
        assert_eq!(pipeline.target(Some("docker")).unwrap().1.kind.name(), "docker");
        let err = pipeline.target(Some("cloud")).unwrap_err();
        assert_eq!(err.to_string(), "unknown target `cloud` (known: `local`, `docker`, `openfaas`, `kubernetes`)");
    }

    #[test]
    fn functions_keep_file_order_and_parsed_quantities() {
        let (dir, pipeline) = repository_pipeline();
        let names: Vec<&str> = pipeline.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names[..3],
            ["orchestrator", "extract-audio", "detect-speech"]
        );
        let orchestrator = pipeline.function("orchestrator").unwrap();
        assert_eq!(orchestrator.memory_mb, 128);
        assert_eq!(orchestrator.cpu, 0.5);
        assert_eq!(orchestrator.timeout, Duration::from_secs(110 * 60));
        assert_eq!(
            orchestrator.source,
            dir.path()
                .canonicalize()
                .unwrap()
                .join("stages/orchestrator")
        );
        assert_eq!(
            pipeline.function("detect-objects").unwrap().env["RUST_LOG"],
            "info"
        );
        assert_eq!(pipeline.dag.step_count(), 10);
        assert_eq!(pipeline.dag.retry.backoff, Duration::from_millis(500));
        assert!(pipeline.function("nope").is_none());
    }

    #[test]
    fn the_repository_timeouts_explained() {
        let (_dir, pipeline) = repository_pipeline();
        expect_test::expect_file!["timeouts.table"].assert_eq(&pipeline.timeouts.table());
        let plan = super::super::plan::plan(&pipeline);
        let deadline = |name: &str| pipeline.timeouts.call(name).unwrap().attempt.as_millis() as u64;
        assert_eq!(plan.steps[0].deadline_ms, deadline("extract-audio"));
        assert_eq!(plan.fan_out.unwrap().max_items, 10);
    }
}
