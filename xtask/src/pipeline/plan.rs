//! The DAG as the orchestrator executes it: rendered from the model into the
//! wire form `stage_runtime::plan::Plan` (passed as `VS_PLAN`).

use stage_runtime::plan::{FanOut, Plan, PlanStep, Retry};

use super::Pipeline;

pub fn plan(pipeline: &Pipeline) -> Plan {
    let step = |name: &String| PlanStep {
        function: name.clone(),
        deadline_ms: pipeline.timeouts.call(name).map_or(0, |call| call.attempt.as_millis() as u64),
    };
    let dag = &pipeline.dag;
    Plan {
        steps: dag.steps.iter().map(step).collect(),
        fan_out: dag.fan_out.as_ref().map(|fan| FanOut {
            over: fan.over.clone(),
            item: fan.item.clone(),
            max_parallel: fan.max_parallel,
            max_items: fan.max_items,
            steps: fan.steps.iter().map(step).collect(),
        }),
        retry: Retry { attempts: dag.retry.attempts, backoff_ms: dag.retry.backoff.as_millis() as u64 },
    }
}
