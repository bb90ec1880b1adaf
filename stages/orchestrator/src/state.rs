//! The request state document, `requests/<id>/state.json`. The orchestrator
//! serving the request is its only writer; every write is a whole snapshot,
//! taken under the writer lock (so a later write never carries older state)
//! and stored with one verified PUT (so readers never see half a document).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use stage_runtime::{Artifacts, StageError, Store};

use crate::call::Attempt;

#[derive(Debug, Clone, Serialize)]
pub struct State {
    pub request_id: String,
    /// `running`, `succeeded` or `failed`.
    pub status: &'static str,
    /// `completed`, `no_items` (the fan-out had nothing to do: no speech) or `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    pub started_at_ms: u64,
    pub updated_at_ms: u64,
    pub inputs: Artifacts,
    /// The request's artifacts, once its graph is done.
    pub artifacts: Artifacts,
    /// How many items the fan-out ran over, once it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fan_out_items: Option<usize>,
    /// Fan-out items: scope → its own artifacts, as each finishes.
    pub items: BTreeMap<String, Artifacts>,
    /// The request's answer, `requests/<id>/result.json`, once published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    pub steps: Vec<StepRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    /// Per function, over every attempt of this request.
    pub summary: BTreeMap<String, StageSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub function: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `succeeded`, `failed` or `skipped`.
    pub status: &'static str,
    /// Why it was skipped (or why a successful answer was refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub started_at_ms: u64,
    pub ended_at_ms: u64,
    pub attempts: Vec<Attempt>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Artifacts>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub function: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(flatten)]
    pub error: StageError,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StageSummary {
    pub invocations: u32,
    /// Steps of this function that did not run (zero calls, zero cost).
    pub skipped: u32,
    pub cold_starts: u32,
    pub duration_ms_total: f64,
    pub duration_ms_max: f64,
    pub tool_ms_total: f64,
    pub peak_rss_mb_max: f64,
    pub memory_limit_mb: u64,
    pub cost_units: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

pub struct StateDoc {
    key: String,
    store: Store,
    state: Mutex<State>,
    writer: tokio::sync::Mutex<()>,
}

impl StateDoc {
    pub fn new(store: Store, request_id: &str, inputs: &Artifacts) -> StateDoc {
        let now = now_ms();
        let state = State {
            request_id: request_id.to_string(),
            status: "running",
            outcome: None,
            started_at_ms: now,
            updated_at_ms: now,
            inputs: inputs.clone(),
            artifacts: Artifacts::new(),
            fan_out_items: None,
            items: BTreeMap::new(),
            result: None,
            steps: Vec::new(),
            error: None,
            summary: BTreeMap::new(),
        };
        StateDoc { key: format!("requests/{request_id}/state.json"), store, state: Mutex::new(state), writer: Default::default() }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn uri(&self) -> String {
        self.store.uri(&self.key)
    }

    pub fn update(&self, change: impl FnOnce(&mut State)) {
        let mut state = self.state.lock().unwrap();
        change(&mut state);
        state.updated_at_ms = now_ms();
    }

    pub fn read<T>(&self, look: impl FnOnce(&State) -> T) -> T {
        look(&self.state.lock().unwrap())
    }

    /// Record a finished or skipped step and fold its attempts into the summary.
    pub fn record(&self, record: StepRecord) {
        self.update(|state| {
            let summary = state.summary.entry(record.function.clone()).or_default();
            summary.skipped += (record.status == "skipped") as u32;
            for metrics in record.attempts.iter().filter_map(|a| a.metrics.as_ref()) {
                summary.invocations += 1;
                summary.cold_starts += metrics.cold_start as u32;
                summary.duration_ms_total += metrics.duration_ms;
                summary.duration_ms_max = summary.duration_ms_max.max(metrics.duration_ms);
                summary.tool_ms_total += metrics.tool_ms;
                summary.peak_rss_mb_max = summary.peak_rss_mb_max.max(metrics.peak_rss_mb);
                summary.memory_limit_mb = metrics.memory_limit_mb;
                summary.cost_units += metrics.cost_unit;
                summary.bytes_in += metrics.bytes_in;
                summary.bytes_out += metrics.bytes_out;
            }
            state.steps.push(record);
        });
    }

    /// Store the current state (one PUT of a full snapshot).
    pub async fn save(&self) -> Result<(), StageError> {
        let _writer = self.writer.lock().await;
        let bytes = serde_json::to_vec_pretty(&*self.state.lock().unwrap()).map_err(anyhow::Error::from)?;
        self.store.put_bytes(&self.key, bytes.into()).await?;
        Ok(())
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
