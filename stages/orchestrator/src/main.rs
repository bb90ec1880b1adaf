//! orchestrator: runs the DAG declared in pipeline.yaml (received as
//! `VS_PLAN`) for one request: the linear steps, then the fan-out, calling
//! each function through the gateway. It knows no stage by name.

mod call;
mod run;
mod state;

use std::process::ExitCode;

use anyhow::Context as _;
use stage_runtime::plan::Plan;
use stage_runtime::{Artifact, Artifacts, Context, Handler, Invocation, StageError};

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
        let state_uri = cx.runtime().block_on(run::execute(&self.plan, &self.caller, cx, inv))?;
        Ok(Artifacts::from([("state".to_string(), Artifact::One(state_uri))]))
    }
}
