//! The DAG as the orchestrator receives it (`VS_PLAN`, JSON), rendered by
//! xtask from pipeline.yaml. Functions are addressed through the gateway by name.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Run in order, once per request.
    pub steps: Vec<PlanStep>,
    /// Then run these steps for every item of one artifact.
    #[serde(default)]
    pub fan_out: Option<FanOut>,
    pub retry: Retry,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanStep {
    pub function: String,
    /// The deadline of one attempt: the function's exec timeout with the
    /// gateway's cold-start allowance and every layer's margin
    /// (`xtask/src/pipeline/timeouts.rs`), so that the gateway has answered
    /// before it ends.
    pub deadline_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FanOut {
    /// Name of the artifact (a list) whose items are fanned out.
    pub over: String,
    /// The name under which each item is passed to the steps.
    pub item: String,
    /// At most this many items in flight.
    pub max_parallel: usize,
    /// At most this many items in all: the request's budget covers no more.
    pub max_items: usize,
    pub steps: Vec<PlanStep>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub backoff_ms: u64,
}
