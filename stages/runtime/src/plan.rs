//! The DAG as the orchestrator receives it (`VS_PLAN`, JSON), rendered by
//! xtask from pipeline.yaml: a dataflow graph. Each step names the artifacts
//! it needs and produces; the orchestrator runs a step once its needs exist,
//! so steps that do not depend on each other run at the same time. Functions
//! are addressed through the gateway by name.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// What a request brings; any other input is refused.
    pub inputs: Vec<PlanInput>,
    /// The steps over the whole request; the fan-out is one more node among
    /// them, which needs `over` and produces `collect`.
    pub steps: Vec<PlanStep>,
    /// Steps run for every item of one artifact.
    #[serde(default)]
    pub fan_out: Option<FanOut>,
    /// The artifact (one JSON object) published as `requests/<id>/result.json`.
    #[serde(default)]
    pub result: Option<String>,
    pub retry: Retry,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanInput {
    pub name: String,
    /// Refused without it; an optional input that is absent makes the steps
    /// that need it skip.
    pub required: bool,
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
    /// The artifacts it is given, and waits for. One that will never exist
    /// (its producer was skipped, an optional input is absent) skips it.
    pub needs: Vec<String>,
    /// The artifacts its answer must carry.
    pub produces: Vec<String>,
    /// A flag artifact: false skips the step; a flag nobody produced does not.
    #[serde(default)]
    pub when: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FanOut {
    /// Name of the artifact (a list) whose items are fanned out.
    pub over: String,
    /// The name under which each item is passed to the steps.
    pub item: String,
    /// The artifact produced once every item is done: the URI of a document
    /// of every item's artifacts and skipped steps ([`Items`]).
    #[serde(default)]
    pub collect: Option<String>,
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

/// The fan-out's `collect` document: every item, in the order of `over`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Items {
    pub over: String,
    pub item: String,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// `<over>-<index>`, e.g. `clips-0003`: the scope its artifacts are stored under.
    pub scope: String,
    /// Position in `over`.
    pub index: usize,
    /// What exists for the item: the item itself and its steps' outputs.
    pub artifacts: crate::Artifacts,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
}

/// A step that did not run, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub function: String,
    pub reason: String,
}
