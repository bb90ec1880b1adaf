//! orchestrator: runs the DAG declared in pipeline.yaml (received as
//! `VS_PLAN`) for one request, a dataflow graph whose steps start as soon as
//! what they need exists, calling each function through the gateway. It
//! knows no stage by name.

mod call;
mod run;
mod state;

use std::process::ExitCode;

use anyhow::Context as _;
use stage_runtime::plan::Plan;
use stage_runtime::{Artifacts, Context, Handler, Invocation, StageError};

struct Orchestrator {
    plan: Plan,
    caller: call::Caller,
}

fn main() -> ExitCode {
    stage_runtime::serve(|_| {
        let plan = stage_runtime::var("VS_PLAN")?.context("VS_PLAN is not set: the orchestrator needs its DAG")?;
        let plan: Plan = serde_json::from_str(&plan).context("VS_PLAN is not a valid plan")?;
        let gateway = stage_runtime::var("GATEWAY_URL")?.context("GATEWAY_URL is not set")?;
        Ok(Orchestrator { plan, caller: call::Caller::new(gateway.trim_end_matches('/'))? })
    })
}

impl Handler for Orchestrator {
    fn handle(&self, cx: &Context, inv: &Invocation) -> Result<Artifacts, StageError> {
        cx.runtime().block_on(run::execute(&self.plan, &self.caller, cx, inv))
    }
}
