//! pipeline.yaml as written: the serde shape with every key checked
//! (`deny_unknown_fields`). Quantities with units stay text here; `check`
//! turns them into the model, where it can point at them.

use std::fmt;
use std::path::PathBuf;

use indexmap::IndexMap;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::model::Parameters;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    pub name: String,
    pub timeouts: RawTimeouts,
    pub storage: RawStorage,
    pub secrets: Vec<String>,
    pub targets: IndexMap<String, RawTarget>,
    pub parameters: Parameters,
    pub functions: IndexMap<String, RawFunction>,
    pub dag: RawDag,
    #[serde(default)]
    pub build: Option<RawBuild>,
    #[serde(default)]
    pub experiments: IndexMap<String, RawRegime>,
}

/// One regime of `experiments:`: how requests arrive.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegime {
    pub start: RawStart,
    pub pattern: RawPattern,
    #[serde(default)]
    pub rate: Option<Text>,
    #[serde(default)]
    pub requests: Option<u32>,
    #[serde(default)]
    pub jitter: Option<Text>,
    #[serde(default)]
    pub size: Option<u32>,
    #[serde(default)]
    pub bursts: Option<u32>,
    #[serde(default)]
    pub gap: Option<Text>,
    #[serde(default)]
    pub warmup: Option<u32>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub input: Option<PathBuf>,
    #[serde(default)]
    pub capacity: Option<RawCapacity>,
}

/// A regime's `capacity:`: raise the steady rate step by step until a bound breaks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapacity {
    /// The highest p95 latency a sustained rate may have.
    pub p95: Text,
    /// Failed (or dropped) requests a sustained step may have; 0 when not given.
    #[serde(default)]
    pub failures: Option<u32>,
    /// Each step's rate is the one before times this.
    pub factor: Text,
    /// Steps at most, the first at the regime's `rate`.
    pub steps: u32,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawStart {
    Warm,
    Cold,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawPattern {
    Steady,
    Burst,
}

/// `build:`, what `cargo xtask build` makes the images from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuild {
    pub base: PathBuf,
    pub base_recipe: RawBaseRecipe,
    pub platforms: Vec<String>,
    #[serde(default)]
    pub registry: Option<String>,
    pub profile: String,
    pub parallel: usize,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawBaseRecipe {
    Bootstrap,
    Dockerfile,
}

/// A file copied into a function's image: `from` a path, or the detector
/// model `parameters.detector.model` names (`detector_model: true`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAsset {
    #[serde(default)]
    pub from: Option<PathBuf>,
    #[serde(default)]
    pub detector_model: bool,
    pub to: String,
}

/// `timeouts:`: the model's settings, and the layers someone else operates.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub cold_start: Text,
    pub margin: Text,
    #[serde(default)]
    pub gateway: Option<RawGatewayTimeouts>,
    #[serde(default)]
    pub ack_wait: Option<Text>,
    #[serde(default)]
    pub client: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGatewayTimeouts {
    pub upstream: Text,
    pub read: Text,
    pub write: Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    pub bucket: String,
    pub region: String,
    pub access_key_secret: String,
    pub secret_key_secret: String,
}

/// A target: `kind` says which; the other keys are the kind's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub kind: RawTargetKind,
    // `local` and `docker`: the embedded runtime.
    #[serde(default)]
    pub gateway_port: Option<u16>,
    #[serde(default)]
    pub store_port: Option<u16>,
    #[serde(default)]
    pub idle_timeout: Option<Text>,
    // `openfaas`: a gateway reached through its REST API.
    #[serde(default)]
    pub gateway: Option<Text>,
    #[serde(default)]
    pub store: Option<Text>,
    #[serde(default)]
    pub function_gateway: Option<Text>,
    #[serde(default)]
    pub function_store: Option<Text>,
    #[serde(default)]
    pub bind_addr: Option<Text>,
    #[serde(default)]
    pub secrets_dir: Option<PathBuf>,
    // `kubernetes`: a cluster given rendered manifests.
    #[serde(default)]
    pub namespace: Option<Text>,
    #[serde(default)]
    pub openfaas_namespace: Option<Text>,
    #[serde(default)]
    pub mode: Option<Text>,
    #[serde(default)]
    pub minio: Option<bool>,
}

impl RawTarget {
    /// The keys given, by name, for the checks of what each kind takes.
    pub fn keys(&self) -> Vec<&'static str> {
        let given = [
            ("gateway_port", self.gateway_port.is_some()),
            ("store_port", self.store_port.is_some()),
            ("idle_timeout", self.idle_timeout.is_some()),
            ("gateway", self.gateway.is_some()),
            ("store", self.store.is_some()),
            ("function_gateway", self.function_gateway.is_some()),
            ("function_store", self.function_store.is_some()),
            ("bind_addr", self.bind_addr.is_some()),
            ("secrets_dir", self.secrets_dir.is_some()),
            ("namespace", self.namespace.is_some()),
            ("openfaas_namespace", self.openfaas_namespace.is_some()),
            ("mode", self.mode.is_some()),
            ("minio", self.minio.is_some()),
        ];
        given.into_iter().filter(|(_, given)| *given).map(|(key, _)| key).collect()
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawTargetKind {
    Local,
    Docker,
    Openfaas,
    Kubernetes,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFunction {
    pub source: PathBuf,
    pub memory: Text,
    pub cpu: Text,
    #[serde(default)]
    pub cpu_limit: Option<Text>,
    pub timeout: Text,
    pub max_inflight: usize,
    pub scale: RawScale,
    #[serde(default)]
    pub env: IndexMap<String, Text>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub assets: Vec<RawAsset>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScale {
    pub min: u32,
    pub max: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDag {
    pub entry: String,
    /// What a request brings, by name: `required` or `optional`.
    #[serde(default)]
    pub inputs: IndexMap<String, RawInput>,
    pub steps: Vec<RawStep>,
    pub fan_out: Option<RawFanOut>,
    #[serde(default)]
    pub result: Option<String>,
    pub retry: RawRetry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawInput {
    Required,
    Optional,
}

/// A step: a mapping (`function`, `needs`, `produces`, `when`), or, in files
/// written before the DAG was a dataflow graph, a bare function name, which
/// `check` answers with how to migrate.
#[derive(Debug)]
pub enum RawStep {
    Name(String),
    Step(RawStepFields),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStepFields {
    pub function: String,
    #[serde(default)]
    pub needs: Vec<String>,
    #[serde(default)]
    pub produces: Vec<String>,
    #[serde(default)]
    pub when: Option<String>,
}

impl<'de> Deserialize<'de> for RawStep {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawStep, D::Error> {
        struct StepVisitor;

        impl<'de> Visitor<'de> for StepVisitor {
            type Value = RawStep;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a step: `{ function: NAME, needs: [...], produces: [...] }`")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<RawStep, E> {
                Ok(RawStep::Name(value.to_string()))
            }

            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawStep, A::Error> {
                RawStepFields::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawStep::Step)
            }
        }

        deserializer.deserialize_any(StepVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFanOut {
    pub over: String,
    pub item: String,
    /// The artifact the fan-out produces: every item's artifacts, in order.
    #[serde(default)]
    pub collect: Option<String>,
    pub max_parallel: usize,
    pub max_items: usize,
    pub steps: Vec<RawStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub attempts: u32,
    pub backoff: Text,
}

/// Any scalar (text, number or boolean) as its text: `60s`, `0.5`, `512`, `true`.
#[derive(Debug, Clone)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        struct TextVisitor;

        impl Visitor<'_> for TextVisitor {
            type Value = Text;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("text, a number or true/false")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Text, E> {
                Ok(Text(value.to_string()))
            }

            fn visit_bool<E: de::Error>(self, value: bool) -> Result<Text, E> {
                Ok(Text(value.to_string()))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Text, E> {
                Ok(Text(value.to_string()))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Text, E> {
                Ok(Text(value.to_string()))
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Text, E> {
                Ok(Text(value.to_string()))
            }
        }

        deserializer.deserialize_any(TextVisitor)
    }
}
