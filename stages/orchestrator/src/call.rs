//! One function call through the gateway: a deadline per attempt, retries
//! with exponential backoff on 502/503/504 and connection failures, and
//! every failure classified.
//!
//! A 429 is back-pressure, not failure: the function is busy with other
//! work. It is retried after a short, growing, jittered pause without using
//! up an attempt; only the request's own deadline bounds those waits.

use std::time::{Duration, Instant};

use serde::Serialize;
use stage_runtime::plan::{PlanStep, Retry};
use stage_runtime::{ErrorKind, ErrorResponse, Invocation, Metrics, Response, StageError};

/// Pauses after a 429, doubling from the first to the second.
const BUSY_PAUSE_MIN: Duration = Duration::from_millis(50);
const BUSY_PAUSE_MAX: Duration = Duration::from_secs(2);

pub struct Caller {
    client: reqwest::Client,
    gateway: String,
}

/// What one attempt of a step did, for the request state.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub attempt: u32,
    pub status: u16,
    /// When it was first sent (ms since the epoch), 429 answers included.
    pub started_at_ms: u64,
    /// Time spent turned away with 429 and pausing before trying again.
    pub paused_ms: f64,
    /// How long the gateway held its last try before a replica took it (a
    /// cold start, or a place on a busy function), when the gateway says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued_ms: Option<f64>,
    /// Its last try, sent to answered.
    pub elapsed_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StageError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
}

impl Caller {
    pub fn new(gateway: &str) -> anyhow::Result<Caller> {
        Ok(Caller { client: reqwest::Client::builder().build()?, gateway: gateway.to_string() })
    }

    /// Call `step` until it succeeds, fails for good, or runs out of attempts.
    pub async fn call(
        &self,
        step: &PlanStep,
        retry: &Retry,
        inv: &Invocation,
        attempts: &mut Vec<Attempt>,
    ) -> Result<Response, StageError> {
        let mut backoff = Duration::from_millis(retry.backoff_ms);
        let mut busy_pause = BUSY_PAUSE_MIN;
        let mut attempt = 1;
        // When this attempt was first sent: 429 answers do not end it.
        let mut first_sent: Option<(Instant, u64)> = None;
        loop {
            let started = Instant::now();
            let (first, started_at_ms) = *first_sent.get_or_insert_with(|| (started, crate::state::now_ms()));
            let (result, queued_ms) = self.once(step, inv).await;
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            if let Err((error, _)) = &result {
                if error.kind == ErrorKind::Overloaded {
                    tokio::time::sleep(jitter(busy_pause)).await;
                    busy_pause = (busy_pause * 2).min(BUSY_PAUSE_MAX);
                    continue;
                }
            }
            // From the first try to the last one: the 429 answers and the pauses after them.
            let paused_ms = started.duration_since(first).as_secs_f64() * 1000.0;
            let record = |status: u16, error: Option<StageError>, metrics: Option<Metrics>| Attempt {
                attempt,
                status,
                started_at_ms,
                paused_ms,
                queued_ms,
                elapsed_ms,
                error,
                metrics,
            };
            first_sent = None;
            match result {
                Ok(response) => {
                    attempts.push(record(200, None, Some(response.metrics.clone())));
                    return Ok(response);
                }
                Err((error, metrics)) => {
                    let last = attempt == retry.attempts.max(1);
                    let transient = error.kind.is_transient();
                    let status = error.kind.status();
                    attempts.push(record(status, Some(error.clone()), metrics));
                    if last || !transient {
                        return Err(error);
                    }
                    tracing::warn!(function = %step.function, attempt, code = %error.code, "retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
            }
        }
    }

    /// One try, and how long the gateway says it queued it.
    async fn once(&self, step: &PlanStep, inv: &Invocation) -> (Result<Response, (StageError, Option<Metrics>)>, Option<f64>) {
        let url = format!("{}/function/{}", self.gateway, step.function);
        // Past the gateway's own deadline for the call: its answer (the
        // function's 504 with metrics) arrives first, and no retry starts
        // while this attempt can still write.
        let deadline = Duration::from_millis(step.deadline_ms);
        let sent = self.client.post(&url).json(inv).timeout(deadline).send().await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return (Err((transport_error(&step.function, e, deadline), None)), None),
        };
        let queued_ms = response
            .headers()
            .get(stage_runtime::QUEUE_WAIT_HEADER)
            .and_then(|value| value.to_str().ok()?.parse::<f64>().ok())
            .map(|seconds| seconds * 1000.0);
        (self.answer(step, response, deadline).await, queued_ms)
    }

    async fn answer(&self, step: &PlanStep, response: reqwest::Response, deadline: Duration) -> Result<Response, (StageError, Option<Metrics>)> {
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| (transport_error(&step.function, e, deadline), None))?;
        if status == 200 {
            return serde_json::from_slice::<Response>(&body).map_err(|e| {
                let msg = format!("{} answered 200 with a body that is not a response: {e}", step.function);
                (StageError::new(ErrorKind::BadGateway, "bad_response", msg), None)
            });
        }
        // A function's own error body carries its classification; anything
        // else (the gateway's, a proxy's) is classified by status alone.
        match serde_json::from_slice::<ErrorResponse>(&body) {
            Ok(err) => Err((err.error, err.metrics)),
            Err(_) => {
                let text = String::from_utf8_lossy(&body);
                let msg = format!("{} answered {status}: {}", step.function, text.trim());
                Err((StageError::new(ErrorKind::from_status(status), "http_status", msg), None))
            }
        }
    }
}

fn transport_error(function: &str, err: reqwest::Error, deadline: Duration) -> StageError {
    if err.is_timeout() {
        StageError::new(ErrorKind::Timeout, "deadline", format!("{function} gave no answer within {deadline:?}"))
    } else {
        StageError::new(ErrorKind::BadGateway, "connection", format!("{function}: {err}"))
    }
}

/// `pause` scaled by a factor in [0.5, 1.5), so that callers turned away
/// together don't all come back together.
fn jitter(pause: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    pause.mul_f64(0.5 + f64::from(nanos % 1000) / 1000.0)
}
