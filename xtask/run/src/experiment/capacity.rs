//! A capacity search (a regime with `capacity:`): its steady schedule again
//! and again, each step's rate the one before times `factor`, until a step
//! is no longer sustained (its p95 latency above the bound, or more failed
//! or dropped requests than allowed). The highest sustained rate is set
//! against what the machine's CPU allows: its cores ÷ the CPU seconds a
//! request cost, measured over the same requests.

use serde::Serialize;

use super::Schedule;
use crate::pipeline::{Capacity, Pattern, Regime};
use xtask::report::records::{InvocationRecord, RequestRecord, Summary};

/// One rate of the search.
#[derive(Debug, Serialize)]
pub struct Step {
    /// Requests per second.
    pub rate: f64,
    pub requests: usize,
    pub succeeded: usize,
    /// Failed or dropped.
    pub failed: usize,
    pub p95_ms: f64,
    pub sustained: bool,
}

/// The search's outcome (`capacity.json`).
#[derive(Debug, Serialize)]
pub struct Search {
    pub p95_bound_ms: f64,
    pub failures_bound: u32,
    pub factor: f64,
    pub steps: Vec<Step>,
    /// The highest rate of a sustained step; `None` when not even the first was.
    pub highest_sustained_rate: Option<f64>,
    pub cores: usize,
    /// CPU seconds of the target's functions (and its runtime) per request
    /// sent during the search; `None` on a target elsewhere.
    pub cpu_s_per_request: Option<f64>,
    /// `cores ÷ cpu_s_per_request`: the rate at which the CPU is all used.
    pub cpu_bound_rate: Option<f64>,
    /// `highest_sustained_rate ÷ cpu_bound_rate`.
    pub ratio: Option<f64>,
}

/// Run the steps of `regime` (steady, checked so) into `requests` and
/// `invocations`, ending at the first step not sustained.
pub fn search(
    schedule: &Schedule<'_>,
    regime: &Regime,
    capacity: &Capacity,
    requests: &mut Vec<RequestRecord>,
    invocations: &mut Vec<InvocationRecord>,
) -> anyhow::Result<Vec<Step>> {
    let Pattern::Steady { rate, requests: per_step, jitter } = regime.pattern else {
        anyhow::bail!("a capacity search needs a steady pattern (the pipeline check refuses others)");
    };
    let mut steps = Vec::new();
    for k in 0..capacity.steps {
        let rate = rate * capacity.factor.powi(k as i32);
        let stepped = Regime { pattern: Pattern::Steady { rate, requests: per_step, jitter }, ..regime.clone() };
        let offsets = super::load::offsets(&stepped.pattern, regime.seed);
        if k > 0 {
            schedule.progress.inc_length(offsets.len() as u64);
        }
        schedule.progress.suspend(|| println!("capacity step {}: {rate:.4} requests/s", k + 1));
        let (measured, calls) = schedule.run(&stepped, &offsets, k as usize)?;
        let figures = Summary::new("", "", &measured, &calls);
        let p95_ms = figures.latency_ms.p95;
        let failed = figures.failed;
        let sustained = failed as u32 <= capacity.failures && figures.succeeded > 0 && p95_ms <= capacity.p95.as_secs_f64() * 1000.0;
        steps.push(Step { rate, requests: measured.len(), succeeded: figures.succeeded, failed, p95_ms, sustained });
        requests.extend(measured);
        invocations.extend(calls);
        if !sustained {
            break;
        }
    }
    Ok(steps)
}

impl Search {
    /// The outcome of `steps`, with the CPU the search's requests cost (`summary`).
    pub fn new(capacity: &Capacity, steps: Vec<Step>, summary: &Summary) -> Search {
        let (cores, cpu_s_per_request) = (summary.cores, summary.cpu_s_per_request);
        let highest_sustained_rate = steps.iter().filter(|s| s.sustained).map(|s| s.rate).reduce(f64::max);
        let cpu_bound_rate = cpu_s_per_request.filter(|cpu| *cpu > 0.0).map(|cpu| cores as f64 / cpu);
        let ratio = highest_sustained_rate.zip(cpu_bound_rate).map(|(rate, bound)| rate / bound);
        Search {
            p95_bound_ms: capacity.p95.as_secs_f64() * 1000.0,
            failures_bound: capacity.failures,
            factor: capacity.factor,
            steps,
            highest_sustained_rate,
            cores,
            cpu_s_per_request,
            cpu_bound_rate,
            ratio,
        }
    }

    pub fn print(&self) {
        println!("capacity search (sustained: p95 ≤ {:.2} s and at most {} failed):", self.p95_bound_ms / 1000.0, self.failures_bound);
        for step in &self.steps {
            println!(
                "  {:>9.4}/s  {}/{} succeeded  p95 {:>7.2} s  {}",
                step.rate,
                step.succeeded,
                step.requests,
                step.p95_ms / 1000.0,
                if step.sustained { "sustained" } else { "NOT sustained" }
            );
        }
        let rate = self.highest_sustained_rate.map_or("none".into(), |r| format!("{r:.4}/s"));
        match (self.cpu_s_per_request, self.cpu_bound_rate, self.ratio) {
            (Some(cpu), Some(bound), ratio) => {
                println!("highest sustained rate {rate}; CPU-bound limit {bound:.4}/s ({} cores ÷ {cpu:.2} CPU-s per request)", self.cores);
                match ratio {
                    Some(ratio) => println!("sustained ÷ CPU-bound limit: {ratio:.2} (goal ≥ 0.9 with zero failures)"),
                    None => println!("sustained ÷ CPU-bound limit: none (no step was sustained)"),
                }
            }
            _ => println!("highest sustained rate {rate}; the CPU-bound limit is not measured on a target elsewhere"),
        }
    }
}
