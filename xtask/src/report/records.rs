//! What an experiment records, one line per request and one per function
//! invocation (JSONL and CSV with the same columns, readable by pandas as
//! they are), and the summary made of them. The experiment writes them;
//! the report reads them back.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// One request as the client saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestRecord {
    pub request_id: String,
    /// Sent to warm the functions up; not in the figures.
    pub warmup: bool,
    /// The group it ran in (a cold regime scales to zero before each).
    pub group: usize,
    /// Seconds from the experiment's start: when the schedule said, when it started.
    pub scheduled_s: f64,
    pub started_s: f64,
    pub late_ms: f64,
    /// Dropped: the schedule's start came with `--concurrency` requests running.
    pub dropped: bool,
    /// From the last attempt's call to its whole answer.
    pub latency_ms: f64,
    /// From the scheduled start to the answer: upload, retries, latency.
    pub total_ms: f64,
    pub attempts: u32,
    /// The last answer's HTTP status; 0 without one.
    pub status: u16,
    /// `succeeded`, `failed` (an answer that is not 200), `error` (no answer or no state), `dropped`.
    pub outcome: String,
    pub error: String,
    pub clips: usize,
    /// Σ cost_unit of its invocations (seconds × declared GB).
    pub cost_unit: f64,
}

/// One attempt of one step, from the request's state document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvocationRecord {
    pub request_id: String,
    pub warmup: bool,
    pub function: String,
    pub scope: String,
    pub attempt: u32,
    pub status: u16,
    /// When the attempt was first sent, in ms from the request's start at the orchestrator.
    #[serde(default)]
    pub started_ms: f64,
    /// Turned away with 429 and pausing before its last try (back-pressure).
    #[serde(default)]
    pub paused_ms: f64,
    /// Held by the gateway before a replica took its last try (a cold
    /// start, or a place on a busy function); empty when the gateway does
    /// not say (OpenFaaS's).
    #[serde(default)]
    pub queued_ms: Option<f64>,
    /// The last try as the orchestrator saw it (client side).
    pub elapsed_ms: f64,
    /// The invocation as the function measured it (server side).
    pub duration_ms: f64,
    /// Outside the function: gateway, queueing, cold start, transfer.
    pub outside_ms: f64,
    pub tool_ms: f64,
    /// Waiting on the object store (inside `duration_ms`).
    #[serde(default)]
    pub store_ms: f64,
    pub cold_start: bool,
    /// The regime expected the opposite (`cold_start` false in a cold
    /// regime, true in a warm one after warm-up): left out of the figures.
    pub mismatch: bool,
    pub memory_limit_mb: u64,
    pub peak_rss_mb: f64,
    pub cost_unit: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Every attempt with metrics in `state`, marked against `cold` (what the regime expects).
pub fn invocations(request_id: &str, warmup: bool, state: &serde_json::Value, cold: bool) -> Vec<InvocationRecord> {
    let mut found = Vec::new();
    let request_start = state["started_at_ms"].as_f64().unwrap_or(0.0);
    for step in state["steps"].as_array().into_iter().flatten() {
        for attempt in step["attempts"].as_array().into_iter().flatten() {
            let metrics = &attempt["metrics"];
            if !metrics.is_object() {
                continue;
            }
            let number = |key: &str| metrics[key].as_f64().unwrap_or(0.0);
            let elapsed_ms = attempt["elapsed_ms"].as_f64().unwrap_or(0.0);
            let cold_start = metrics["cold_start"].as_bool().unwrap_or(false);
            found.push(InvocationRecord {
                request_id: request_id.to_string(),
                warmup,
                function: step["function"].as_str().unwrap_or_default().to_string(),
                scope: step["scope"].as_str().unwrap_or_default().to_string(),
                attempt: attempt["attempt"].as_u64().unwrap_or(0) as u32,
                status: attempt["status"].as_u64().unwrap_or(0) as u16,
                started_ms: attempt["started_at_ms"].as_f64().map_or(0.0, |at| (at - request_start).max(0.0)),
                paused_ms: attempt["paused_ms"].as_f64().unwrap_or(0.0),
                queued_ms: attempt["queued_ms"].as_f64(),
                elapsed_ms,
                duration_ms: number("duration_ms"),
                outside_ms: (elapsed_ms - number("duration_ms")).max(0.0),
                tool_ms: number("tool_ms"),
                store_ms: number("store_ms"),
                cold_start,
                mismatch: !warmup && cold_start != cold,
                memory_limit_mb: metrics["memory_limit_mb"].as_u64().unwrap_or(0),
                peak_rss_mb: number("peak_rss_mb"),
                cost_unit: number("cost_unit"),
                bytes_in: metrics["bytes_in"].as_u64().unwrap_or(0),
                bytes_out: metrics["bytes_out"].as_u64().unwrap_or(0),
            });
        }
    }
    found
}

/// The records of `<dir>/<name>.jsonl`.
pub fn read<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> anyhow::Result<Vec<T>> {
    let path = dir.join(format!("{name}.jsonl"));
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| serde_json::from_str(line).with_context(|| format!("{}:{}: not a record", path.display(), n + 1)))
        .collect()
}

/// `<dir>/<name>.jsonl` and `<dir>/<name>.csv` of `records`.
pub fn write<T: Serialize>(dir: &Path, name: &str, records: &[T]) -> anyhow::Result<()> {
    let mut jsonl = String::new();
    for record in records {
        jsonl.push_str(&serde_json::to_string(record)?);
        jsonl.push('\n');
    }
    let path = dir.join(format!("{name}.jsonl"));
    std::fs::write(&path, jsonl).with_context(|| format!("write {}", path.display()))?;
    let path = dir.join(format!("{name}.csv"));
    let mut csv = csv::Writer::from_path(&path).with_context(|| format!("write {}", path.display()))?;
    for record in records {
        csv.serialize(record)?;
    }
    csv.flush()?;
    Ok(())
}

/// The figures of a run (`summary.json`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Summary {
    pub regime: String,
    pub target: String,
    /// Measured requests scheduled (warm-up not counted).
    pub scheduled: usize,
    pub dropped: usize,
    /// Starts more than 10 ms after their scheduled time.
    pub late: usize,
    pub succeeded: usize,
    pub failed: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub success_rate: f64,
    pub latency_ms: Percentiles,
    /// 95 % confidence interval of the median latency (order statistics).
    #[serde(deserialize_with = "nan_pair_if_null")]
    pub median_ci_ms: [f64; 2],
    #[serde(deserialize_with = "nan_if_null")]
    pub cost_unit_per_request: f64,
    pub invocations: usize,
    pub cold_starts: usize,
    /// Invocations whose cold start was not what the regime expects: left out.
    pub mismatches: usize,
    /// Per function: the highest peak against the declared limit.
    pub memory: BTreeMap<String, Memory>,
    /// CPU seconds the target's functions used per measured request sent,
    /// when the target runs on this machine (local, docker).
    #[serde(default)]
    pub cpu_s_per_request: Option<f64>,
    /// The machine's cores.
    #[serde(default)]
    pub cores: usize,
    /// Bursts: the mean time from a burst's first start to its last answer
    /// ÷ the least the CPU allows for it (its requests × CPU per request ÷
    /// cores); 1 is a machine kept busy, nothing waiting on anything else.
    #[serde(default)]
    pub burst_time_over_cpu_bound: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    #[serde(deserialize_with = "nan_if_null")]
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Memory {
    pub peak_rss_mb: f64,
    pub limit_mb: u64,
    /// Above 80 % of the limit.
    pub flagged: bool,
}

impl Summary {
    pub fn new(regime: &str, target: &str, requests: &[RequestRecord], invocations: &[InvocationRecord]) -> Summary {
        let measured: Vec<&RequestRecord> = requests.iter().filter(|r| !r.warmup).collect();
        let succeeded: Vec<&RequestRecord> = measured.iter().copied().filter(|r| r.outcome == "succeeded").collect();
        let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        for request in &succeeded {
            histogram.saturating_record((request.latency_ms * 1000.0).max(1.0) as u64);
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        let latency_ms = Percentiles {
            count: histogram.len(),
            mean: if histogram.is_empty() { f64::NAN } else { histogram.mean() / 1000.0 },
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p95: ms(histogram.value_at_quantile(0.95)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        };
        let mut sorted: Vec<f64> = succeeded.iter().map(|r| r.latency_ms).collect();
        sorted.sort_by(f64::total_cmp);
        let counted: Vec<&InvocationRecord> = invocations.iter().filter(|i| !i.warmup && !i.mismatch).collect();
        let mut memory: BTreeMap<String, Memory> = BTreeMap::new();
        for invocation in invocations.iter().filter(|i| !i.warmup) {
            let entry = memory.entry(invocation.function.clone()).or_insert(Memory { peak_rss_mb: 0.0, limit_mb: invocation.memory_limit_mb, flagged: false });
            entry.peak_rss_mb = entry.peak_rss_mb.max(invocation.peak_rss_mb);
            entry.flagged = entry.limit_mb > 0 && entry.peak_rss_mb > 0.8 * entry.limit_mb as f64;
        }
        Summary {
            regime: regime.to_string(),
            target: target.to_string(),
            scheduled: measured.len(),
            dropped: measured.iter().filter(|r| r.dropped).count(),
            late: measured.iter().filter(|r| r.late_ms > 10.0).count(),
            succeeded: succeeded.len(),
            failed: measured.len() - succeeded.len(),
            success_rate: if measured.is_empty() { f64::NAN } else { succeeded.len() as f64 / measured.len() as f64 },
            latency_ms,
            median_ci_ms: median_ci(&sorted),
            cost_unit_per_request: if succeeded.is_empty() { f64::NAN } else { succeeded.iter().map(|r| r.cost_unit).sum::<f64>() / succeeded.len() as f64 },
            invocations: counted.len(),
            cold_starts: counted.iter().filter(|i| i.cold_start).count(),
            mismatches: invocations.iter().filter(|i| i.mismatch).count(),
            memory,
            cpu_s_per_request: None,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            burst_time_over_cpu_bound: None,
        }
    }

    /// Add the CPU figures: `cpu_used` seconds over `requests` (those
    /// dropped sent nothing), and for `bursts` how close each burst came to
    /// the CPU-bound time.
    pub fn with_cpu(mut self, cpu_used: Option<f64>, requests: &[RequestRecord], bursts: bool) -> Summary {
        let measured: Vec<&RequestRecord> = requests.iter().filter(|r| !r.warmup && !r.dropped).collect();
        self.cpu_s_per_request = cpu_used.filter(|_| !measured.is_empty()).map(|cpu| cpu / measured.len() as f64);
        let Some(cpu) = self.cpu_s_per_request.filter(|cpu| bursts && *cpu > 0.0) else { return self };
        let mut groups: BTreeMap<usize, Vec<&RequestRecord>> = BTreeMap::new();
        for request in &measured {
            groups.entry(request.group).or_default().push(request);
        }
        let ratios: Vec<f64> = groups
            .values()
            .map(|group| {
                let first = group.iter().map(|r| r.started_s).fold(f64::INFINITY, f64::min);
                let last = group.iter().map(|r| r.scheduled_s + r.total_ms / 1000.0).fold(0.0, f64::max);
                (last - first) / (group.len() as f64 * cpu / self.cores as f64)
            })
            .collect();
        self.burst_time_over_cpu_bound = Some(ratios.iter().sum::<f64>() / ratios.len() as f64);
        self
    }
}

/// JSON has no NaN: serde_json writes it as `null`, read back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

fn nan_pair_if_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<[f64; 2], D::Error> {
    let [a, b] = <[Option<f64>; 2]>::deserialize(deserializer)?;
    Ok([a.unwrap_or(f64::NAN), b.unwrap_or(f64::NAN)])
}

/// The distribution-free 95 % confidence interval of the median of
/// `sorted`: the order statistics of ranks n/2 − 1.96·√n/2 and
/// 1 + n/2 + 1.96·√n/2 (NaN below 6 values,
/// where no such interval reaches 95 %).
pub fn median_ci(sorted: &[f64]) -> [f64; 2] {
    let n = sorted.len();
    if n < 6 {
        return [f64::NAN, f64::NAN];
    }
    let half = 1.96 * (n as f64).sqrt() / 2.0;
    let lower = ((n as f64 / 2.0 - half).floor() as usize).clamp(1, n) - 1;
    let upper = ((1.0 + n as f64 / 2.0 + half).ceil() as usize).clamp(1, n) - 1;
    [sorted[lower], sorted[upper]]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(group: usize, started_s: f64, total_s: f64) -> RequestRecord {
        RequestRecord {
            request_id: format!("r-{group}-{started_s}"),
            warmup: false,
            group,
            scheduled_s: started_s,
            started_s,
            late_ms: 0.0,
            dropped: false,
            latency_ms: total_s * 1000.0,
            total_ms: total_s * 1000.0,
            attempts: 1,
            status: 200,
            outcome: "succeeded".into(),
            error: String::new(),
            clips: 1,
            cost_unit: 0.0,
        }
    }

    #[test]
    fn a_burst_is_set_against_the_time_its_cpu_allows() {
        // Two bursts of two requests; 8 CPU seconds each, so on `cores`
        // cores a burst needs 16 ÷ cores seconds at least.
        let requests = [request(0, 0.0, 10.0), request(0, 0.0, 12.0), request(1, 100.0, 16.0), request(1, 101.0, 14.0)];
        let summary = Summary::new("b", "local", &requests, &[]).with_cpu(Some(32.0), &requests, true);
        assert_eq!(summary.cpu_s_per_request, Some(8.0));
        let least = 16.0 / summary.cores as f64;
        let expected = (12.0 / least + 16.0 / least) / 2.0;
        assert!((summary.burst_time_over_cpu_bound.unwrap() - expected).abs() < 1e-9, "{summary:?}");
        let steady = Summary::new("s", "local", &requests, &[]).with_cpu(Some(32.0), &requests, false);
        assert_eq!(steady.burst_time_over_cpu_bound, None, "only bursts");
        let elsewhere = Summary::new("s", "openfaas", &requests, &[]).with_cpu(None, &requests, true);
        assert_eq!((elsewhere.cpu_s_per_request, elsewhere.burst_time_over_cpu_bound), (None, None));
    }

    #[test]
    fn the_median_interval_widens_with_fewer_values() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let [low, high] = median_ci(&values);
        assert!(low < 50.5 && high > 50.5, "{low}..{high}");
        assert_eq!([low, high], [40.0, 61.0]);
        assert!(median_ci(&[1.0, 2.0, 3.0]).iter().all(|v| v.is_nan()));
    }
}
