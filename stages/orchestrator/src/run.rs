//! Executing the plan for one request: linear steps over the request's
//! artifacts, then every item of the fan-out artifact through the fan-out
//! steps, at most `max_parallel` items at a time.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use stage_runtime::plan::{Plan, PlanStep};
use stage_runtime::{Artifact, Artifacts, Context, ErrorKind, Invocation, StageError};

use crate::call::Caller;
use crate::state::{Failure, StateDoc, StepRecord};

/// Run the request; the state document records every step and the end.
/// Returns the state document's URI, or the classified first failure.
pub async fn execute(plan: &Plan, caller: &Caller, cx: &Context, inv: &Invocation) -> Result<String, StageError> {
    let doc = StateDoc::new(cx.store().clone(), &inv.request_id, &inv.inputs);
    doc.save().await?;
    let cancelled = async {
        while !cx.cancelled() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        StageError::new(ErrorKind::Timeout, "timeout", "the orchestrator's own timeout passed")
    };
    let result = tokio::select! {
        result = steps(plan, caller, &doc, inv) => result,
        error = cancelled => Err((String::from("orchestrator"), None, error)),
    };
    match result {
        Ok(outcome) => {
            doc.update(|s| (s.status, s.outcome) = ("succeeded", Some(outcome)));
            doc.save().await?;
            Ok(doc.uri())
        }
        Err((function, scope, error)) => {
            doc.update(|s| {
                (s.status, s.outcome) = ("failed", Some("failed"));
                s.error = Some(Failure { function: function.clone(), scope: scope.clone(), error: error.clone() });
            });
            doc.save().await?;
            let place = scope.map_or(function.clone(), |scope| format!("{function} [{scope}]"));
            Err(StageError { message: format!("{place}: {}", error.message), ..error })
        }
    }
}

type StepFailure = (String, Option<String>, StageError);

async fn steps(plan: &Plan, caller: &Caller, doc: &StateDoc, inv: &Invocation) -> Result<&'static str, StepFailure> {
    // Refuse inputs outside the bucket or with `..` before any function sees them.
    for uri in inv.inputs.values().flat_map(Artifact::uris) {
        doc.store().key_of(uri).map_err(|e| ("orchestrator".to_string(), None, e))?;
    }
    let mut artifacts = inv.inputs.clone();
    for step in &plan.steps {
        let outputs = call(plan, caller, doc, step, &inv.request_id, None, &artifacts).await?;
        artifacts.extend(outputs);
    }
    doc.update(|s| s.artifacts = artifacts.clone());
    let Some(fan) = &plan.fan_out else { return Ok("completed") };
    let items = match artifacts.get(&fan.over) {
        Some(artifact) => artifact.uris().to_vec(),
        None => {
            let msg = format!("no step produced `{}`, the artifact the fan-out runs over", fan.over);
            return Err(("orchestrator".into(), None, StageError::internal("missing_artifact", msg)));
        }
    };
    if items.is_empty() {
        return Ok("no_items");
    }
    if items.len() > fan.max_items {
        let msg = format!(
            "`{}` has {} items, more than the {} the pipeline's budget covers (dag.fan_out.max_items)",
            fan.over,
            items.len(),
            fan.max_items
        );
        let error = StageError::new(ErrorKind::Unprocessable, "too_many_items", msg);
        return Err(("orchestrator".into(), None, error));
    }
    let scoped = items.into_iter().enumerate().map(|(index, item)| {
        let scope = format!("{}-{index:04}", fan.over);
        let mut scoped = artifacts.clone();
        scoped.remove(&fan.over);
        scoped.insert(fan.item.clone(), Artifact::One(item));
        (scope, scoped)
    });
    futures::stream::iter(scoped)
        .map(|(scope, mut scoped)| async move {
            for step in &fan.steps {
                let outputs = call(plan, caller, doc, step, &inv.request_id, Some(&scope), &scoped).await?;
                scoped.extend(outputs);
            }
            doc.update(|s| {
                s.items.insert(scope.clone(), scoped);
            });
            doc.save().await.map_err(|e| ("orchestrator".to_string(), Some(scope), e))
        })
        .buffer_unordered(fan.max_parallel.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok("completed")
}

async fn call(
    plan: &Plan,
    caller: &Caller,
    doc: &StateDoc,
    step: &PlanStep,
    request_id: &str,
    scope: Option<&str>,
    inputs: &Artifacts,
) -> Result<Artifacts, StepFailure> {
    let inv = Invocation { request_id: request_id.to_string(), scope: scope.map(str::to_string), inputs: inputs.clone() };
    let mut attempts = Vec::new();
    let result = caller.call(step, &plan.retry, &inv, &mut attempts).await;
    let record = |status, outputs| StepRecord {
        function: step.function.clone(),
        scope: inv.scope.clone(),
        status,
        attempts: attempts.clone(),
        outputs,
    };
    let failure = |error| (step.function.clone(), inv.scope.clone(), error);
    match result {
        Ok(response) => {
            doc.record(record("succeeded", Some(response.outputs.clone())));
            doc.save().await.map_err(failure)?;
            Ok(response.outputs)
        }
        Err(error) => {
            doc.record(record("failed", None));
            Err(failure(error))
        }
    }
}
