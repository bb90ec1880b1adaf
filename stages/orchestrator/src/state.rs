//! The request state document, `requests/<id>/state.json`. The orchestrator
//! invocation serving the request is its only writer; every write is a whole
//! snapshot, taken under the writer lock (so a later write never carries
//! older state) and stored with one verified PUT (so readers never see half
//! a document).
//!
//! One writer per request, across invocations too: the invocation claims
//! the request with a lease that ends when its own exec timeout does (it
//! cannot outlive that), and writes only if the document is still as it
//! last wrote it (If-Match on its ETag; If-None-Match for the first write).
//! A second invocation for the same request is refused with 409 while the
//! lease runs; a state whose lease has ended while it still says `running`
//! was left by an invocation that died, and the next one takes it over.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use stage_runtime::{Artifacts, ErrorKind, StageError, Store};

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
    /// Until when the invocation writing it may run (its exec timeout): a
    /// state still `running` after this was left by an invocation that died.
    pub lease_until_ms: u64,
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
    /// Held while writing; the ETag of the document as this invocation last
    /// wrote it (`None`: it did not exist when claimed).
    writer: tokio::sync::Mutex<Option<String>>,
}

impl StateDoc {
    /// Claim request `request_id` for this invocation until `lease_until`
    /// and write its first state; refused (409 `request_running`) while
    /// another invocation holds it.
    pub async fn claim(store: Store, request_id: &str, inputs: &Artifacts, lease_until: SystemTime) -> Result<StateDoc, StageError> {
        let key = format!("requests/{request_id}/state.json");
        let busy = |until: u64| {
            StageError::new(
                ErrorKind::Conflict,
                "request_running",
                format!(
                    "request `{request_id}` is being served by another orchestrator invocation (its lease ends at {until} ms since the epoch): \
                     wait for its answer, or send the request again once it has ended"
                ),
            )
        };
        let seen = match store.get_versioned(&store.uri(&key)).await? {
            None => None,
            Some((bytes, etag)) => {
                let earlier: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                let lease = earlier["lease_until_ms"].as_u64().unwrap_or(0);
                if earlier["status"] == "running" && lease > now_ms() {
                    return Err(busy(lease));
                }
                // Finished, or left by an invocation that died: taken over.
                Some(etag)
            }
        };
        let now = now_ms();
        let state = State {
            request_id: request_id.to_string(),
            status: "running",
            outcome: None,
            started_at_ms: now,
            updated_at_ms: now,
            lease_until_ms: ms(lease_until),
            inputs: inputs.clone(),
            artifacts: Artifacts::new(),
            fan_out_items: None,
            items: BTreeMap::new(),
            result: None,
            steps: Vec::new(),
            error: None,
            summary: BTreeMap::new(),
        };
        let doc = StateDoc { key, store, state: Mutex::new(state), writer: tokio::sync::Mutex::new(seen) };
        // Another invocation may have claimed it since it was read.
        doc.save().await.map_err(|e| if e.kind == ErrorKind::Conflict { busy(ms(lease_until)) } else { e })?;
        Ok(doc)
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

    /// Store the current state (one PUT of a full snapshot), if the
    /// document is still as this invocation last wrote it.
    pub async fn save(&self) -> Result<(), StageError> {
        let mut seen = self.writer.lock().await;
        let bytes = serde_json::to_vec_pretty(&*self.state.lock().unwrap()).map_err(anyhow::Error::from)?;
        let written = self.store.put_if(&self.key, bytes.into(), seen.as_deref()).await.map_err(|e| {
            if e.kind != ErrorKind::Conflict {
                return e;
            }
            let message = format!("{}: another orchestrator invocation took the request over; this one stops writing", self.uri());
            StageError::new(ErrorKind::Conflict, "request_taken_over", message)
        })?;
        *seen = Some(written);
        Ok(())
    }
}

fn ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub fn now_ms() -> u64 {
    ms(SystemTime::now())
}
