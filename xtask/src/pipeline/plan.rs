//! The DAG as the orchestrator executes it: rendered from the model into the
//! wire form `stage_runtime::plan::Plan` (passed as `VS_PLAN`).

use stage_runtime::plan::{FanOut, Plan, PlanInput, PlanStep, Retry};

use super::{Pipeline, Step};

pub fn plan(pipeline: &Pipeline) -> Plan {
    let step = |step: &Step| PlanStep {
        function: step.function.clone(),
        deadline_ms: pipeline.timeouts.call(&step.function).map_or(0, |call| call.attempt.as_millis() as u64),
        needs: step.needs.clone(),
        produces: step.produces.clone(),
        when: step.when.clone(),
    };
    let dag = &pipeline.dag;
    Plan {
        inputs: dag.inputs.iter().map(|input| PlanInput { name: input.name.clone(), required: input.required }).collect(),
        steps: dag.steps.iter().map(step).collect(),
        fan_out: dag.fan_out.as_ref().map(|fan| FanOut {
            over: fan.over.clone(),
            item: fan.item.clone(),
            collect: fan.collect.clone(),
            max_parallel: fan.max_parallel,
            max_items: fan.max_items,
            steps: fan.steps.iter().map(step).collect(),
        }),
        result: dag.result.clone(),
        retry: Retry { attempts: dag.retry.attempts, backoff_ms: dag.retry.backoff.as_millis() as u64 },
    }
}
