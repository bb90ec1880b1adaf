//! The small JSON documents that travel between functions (claim-check: they
//! carry object URIs, never media bytes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A named artifact: one object or a list of objects, as `s3://bucket/key`
/// URIs, or a flag: a yes-or-no verdict small enough to travel in the answer
/// itself, which a step of the DAG can be conditional on (`when:`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Artifact {
    One(String),
    Many(Vec<String>),
    Flag(bool),
}

impl Artifact {
    /// The objects it names: none for a flag.
    pub fn uris(&self) -> &[String] {
        match self {
            Artifact::One(uri) => std::slice::from_ref(uri),
            Artifact::Many(uris) => uris,
            Artifact::Flag(_) => &[],
        }
    }
}

pub type Artifacts = BTreeMap<String, Artifact>;

/// The response header in which a gateway that can tell (the local
/// runtime's) says how long the call waited for its replica, in seconds: a
/// cold start, or a place on a busy function. OpenFaaS's gateways do not
/// send it; the caller's elapsed time less the function's duration bounds it.
pub const QUEUE_WAIT_HEADER: &str = "x-queue-wait-seconds";

/// The request body every function accepts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invocation {
    /// Names the request; all its artifacts live under `requests/<request_id>/`.
    pub request_id: String,
    /// Sub-scope of the request, e.g. `clip-0003` inside a fan-out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The artifacts known so far in this scope, by name.
    #[serde(default)]
    pub inputs: Artifacts,
}

/// What one invocation cost, measured by the runtime.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub duration_ms: f64,
    /// Time spent in tool calls (child processes, model inference).
    pub tool_ms: f64,
    /// Time spent waiting on the object store: inputs downloaded, outputs uploaded.
    #[serde(default)]
    pub store_ms: f64,
    /// First request served by this process.
    pub cold_start: bool,
    /// The declared memory limit.
    pub memory_limit_mb: u64,
    /// Peak resident memory of this process during the invocation plus the
    /// largest peak of the child processes it ran.
    pub peak_rss_mb: f64,
    /// Seconds × declared GB: the cost proxy.
    pub cost_unit: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Body of a successful (HTTP 200) answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub request_id: String,
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub outputs: Artifacts,
    pub metrics: Metrics,
}

/// Body of a failed (4xx/5xx) answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: crate::StageError,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
}
