//! Executing the plan for one request, as a dataflow graph: a step starts as
//! soon as every artifact it needs is *settled* (produced, or known never to
//! exist), so steps that do not need each other run at the same time. The
//! fan-out is one node of the request's graph: it waits for `over` and for
//! what its steps take from the request, runs every item's own graph, at most
//! `max_parallel` items at a time, and produces its `collect` document.
//!
//! A step whose need will never exist (an optional input the request lacks,
//! or the output of a skipped step) is skipped, and so, in turn, are the
//! steps that need its outputs; a step whose `when` flag is false is skipped.
//! Skipped steps are recorded with their reason; their outputs are absent,
//! never empty objects.
//!
//! The first failure ends the request: no other step starts, and the steps
//! already running are let finish and recorded, so that none writes an
//! object after the state has said its last word (every object a request
//! leaves is named by its state).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use stage_runtime::plan::{FanOut, Item, Items, Plan, PlanStep, Skipped};
use stage_runtime::{Artifact, Artifacts, Context, ErrorKind, Invocation, StageError};

use crate::call::Caller;
use crate::state::{now_ms, Failure, StateDoc, StepRecord};

/// Run the request; the state document records every step and the end.
/// Returns the state document's URI and, when the plan has one, the
/// published result's.
pub async fn execute(plan: &Plan, caller: &Caller, cx: &Context, inv: &Invocation) -> Result<Artifacts, StageError> {
    let doc = StateDoc::claim(cx.store().clone(), &inv.request_id, &inv.inputs, cx.deadline).await?;
    let cancelled = async {
        while !cx.cancelled() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        StageError::new(ErrorKind::Timeout, "timeout", "the orchestrator's own timeout passed")
    };
    let run = Run { plan, caller, doc: &doc, request_id: &inv.request_id };
    let result = tokio::select! {
        result = run.request(inv) => result,
        error = cancelled => Err(StepFailure { function: "orchestrator".into(), scope: None, error }),
    };
    match result {
        Ok(outcome) => {
            let mut outputs = Artifacts::from([("state".to_string(), Artifact::One(doc.uri()))]);
            if let Some(uri) = outcome.result {
                outputs.insert("result".into(), Artifact::One(uri));
            }
            doc.update(|s| (s.status, s.outcome) = ("succeeded", Some(outcome.name)));
            doc.save().await?;
            Ok(outputs)
        }
        Err(StepFailure { function, scope, error }) => {
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

/// Where and how a request failed.
struct StepFailure {
    function: String,
    scope: Option<String>,
    error: StageError,
}

impl StepFailure {
    fn orchestrator(scope: Option<&str>, error: StageError) -> StepFailure {
        StepFailure { function: "orchestrator".into(), scope: scope.map(str::to_string), error }
    }
}

struct Outcome {
    /// `completed`, or `no_items` when the fan-out had nothing to do (no speech).
    name: &'static str,
    result: Option<String>,
}

struct Run<'a> {
    plan: &'a Plan,
    caller: &'a Caller,
    doc: &'a StateDoc,
    request_id: &'a str,
}

/// A node of a graph: a step, or (in the request's graph) the fan-out.
#[derive(Clone, Copy)]
enum Node<'p> {
    Step(&'p PlanStep),
    FanOut(&'p FanOut),
}

impl<'p> Node<'p> {
    fn name(&self) -> &'p str {
        match self {
            Node::Step(step) => &step.function,
            Node::FanOut(_) => "the fan-out",
        }
    }

    /// What it waits for: its needs, then its `when` flag.
    fn waits_for(&self) -> Vec<&'p str> {
        match self {
            Node::Step(step) => step.needs.iter().chain(&step.when).map(String::as_str).collect(),
            Node::FanOut(fan) => {
                let inside: BTreeSet<&str> =
                    fan.steps.iter().flat_map(|s| &s.produces).chain([&fan.item]).map(String::as_str).collect();
                let outer = fan.steps.iter().flat_map(|s| s.needs.iter().chain(&s.when)).map(String::as_str);
                let mut names: Vec<&str> = std::iter::once(fan.over.as_str()).chain(outer.filter(|n| !inside.contains(n))).collect();
                names.sort_unstable();
                names.dedup();
                names
            }
        }
    }

    fn produces(&self) -> Vec<&'p str> {
        match self {
            Node::Step(step) => step.produces.iter().map(String::as_str).collect(),
            Node::FanOut(fan) => fan.collect.iter().map(String::as_str).collect(),
        }
    }
}

/// The artifacts of one scope (the request, or one item): those that exist,
/// and those that never will, with the reason.
#[derive(Default, Clone)]
struct Scope {
    name: Option<String>,
    artifacts: Artifacts,
    absent: BTreeMap<String, String>,
    skipped: Vec<Skipped>,
}

impl Scope {
    fn settled(&self, name: &str) -> bool {
        self.artifacts.contains_key(name) || self.absent.contains_key(name)
    }
}

/// What a finished node gives its scope.
type Produced = Result<Artifacts, StepFailure>;

impl<'a> Run<'a> {
    async fn request(&self, inv: &Invocation) -> Result<Outcome, StepFailure> {
        let mut scope = Scope { name: None, ..Scope::default() };
        self.inputs(inv, &mut scope).map_err(|error| StepFailure::orchestrator(None, error))?;
        let mut nodes: Vec<Node> = self.plan.steps.iter().map(Node::Step).collect();
        nodes.extend(self.plan.fan_out.as_ref().map(Node::FanOut));
        self.graph(&nodes, &mut scope).await?;
        self.doc.update(|s| s.artifacts = scope.artifacts.clone());
        let no_items = self.doc.read(|s| s.fan_out_items == Some(0));
        let result = match &self.plan.result {
            Some(name) => self.publish(name, &scope).await.map_err(|error| StepFailure::orchestrator(None, error))?,
            None => None,
        };
        Ok(Outcome { name: if no_items { "no_items" } else { "completed" }, result })
    }

    /// The request's inputs: only those the plan takes, the required ones
    /// present, every URI inside the bucket. Optional ones it lacks are absent.
    fn inputs(&self, inv: &Invocation, scope: &mut Scope) -> Result<(), StageError> {
        let takes: Vec<&str> = self.plan.inputs.iter().map(|input| input.name.as_str()).collect();
        for (name, artifact) in &inv.inputs {
            if !takes.contains(&name.as_str()) {
                let msg = format!("input `{name}` is not one this pipeline takes ({})", takes.join(", "));
                return Err(StageError::bad_input("unknown_input", msg));
            }
            // Refuse inputs outside the bucket or with `..` before any function sees them.
            for uri in artifact.uris() {
                self.doc.store().key_of(uri)?;
            }
        }
        for input in &self.plan.inputs {
            match inv.inputs.get(&input.name) {
                Some(artifact) => {
                    scope.artifacts.insert(input.name.clone(), artifact.clone());
                }
                None if input.required => {
                    return Err(StageError::bad_input("missing_input", format!("the request has no `{}`, which it needs", input.name)));
                }
                None => {
                    scope.absent.insert(input.name.clone(), "is absent: the request has none".into());
                }
            }
        }
        Ok(())
    }

    /// Run `nodes` over `scope` until every one has run or been skipped.
    fn graph<'s>(&'s self, nodes: &'s [Node<'a>], scope: &'s mut Scope) -> BoxFuture<'s, Result<(), StepFailure>> {
        async move {
            let mut pending: Vec<usize> = (0..nodes.len()).collect();
            let mut running: FuturesUnordered<BoxFuture<'s, Produced>> = FuturesUnordered::new();
            loop {
                let mut waiting = Vec::new();
                let mut skipped_any = false;
                for index in std::mem::take(&mut pending) {
                    let node = nodes[index];
                    let ready = node.waits_for().iter().all(|name| scope.settled(name));
                    match self.decide(node, scope).map_err(|error| StepFailure::orchestrator(scope.name.as_deref(), error))? {
                        // Skipped as soon as that is known, without waiting for its other needs.
                        Some(reason) => {
                            self.skip(node, reason, scope).await?;
                            skipped_any = true;
                        }
                        None if ready => running.push(self.start(node, scope)),
                        None => waiting.push(index),
                    }
                }
                pending = waiting;
                // A skip can settle what a waiting node needs: look again first.
                if skipped_any && !pending.is_empty() {
                    continue;
                }
                let Some(done) = running.next().await else {
                    if pending.is_empty() {
                        return Ok(());
                    }
                    let stuck: Vec<&str> = pending.iter().map(|&i| nodes[i].name()).collect();
                    let msg = format!("{} can never run: what they need is produced by no step", stuck.join(", "));
                    return Err(StepFailure::orchestrator(scope.name.as_deref(), StageError::internal("stuck", msg)));
                };
                match done {
                    Ok(produced) => scope.artifacts.extend(produced),
                    Err(failure) => {
                        // The steps already running are let finish (each is
                        // recorded), so that none writes an object after the
                        // state has said its last word; no other starts.
                        while running.next().await.is_some() {}
                        return Err(failure);
                    }
                }
            }
        }
        .boxed()
    }

    /// Whether `node` is skipped, and why; `None` runs it once it is ready.
    /// A need known to be absent, or a `when` flag that is false, skips it
    /// whatever else it waits for.
    fn decide(&self, node: Node, scope: &Scope) -> Result<Option<String>, StageError> {
        let (needs, when) = match node {
            Node::Step(step) => (step.needs.iter().map(String::as_str).collect::<Vec<_>>(), step.when.as_deref()),
            Node::FanOut(fan) => (vec![fan.over.as_str()], None),
        };
        if let Some(name) = needs.iter().find(|name| scope.absent.contains_key(**name)) {
            return Ok(Some(format!("`{name}` {}", scope.absent[*name])));
        }
        let Some(flag) = when else { return Ok(None) };
        // Not produced yet, or never will be (its producer was skipped): no verdict.
        match scope.artifacts.get(flag) {
            None => Ok(None),
            Some(Artifact::Flag(true)) => Ok(None),
            Some(Artifact::Flag(false)) => Ok(Some(format!("`{flag}` is false"))),
            Some(_) => Err(StageError::internal(
                "bad_condition",
                format!("`{flag}`, the condition of {}, is not a flag but a list of objects", node.name()),
            )),
        }
    }

    async fn skip(&self, node: Node<'_>, reason: String, scope: &mut Scope) -> Result<(), StepFailure> {
        let name = node.name().to_string();
        for produced in node.produces() {
            scope.absent.insert(produced.to_string(), format!("is absent: {name} was skipped"));
        }
        tracing::info!(function = %name, scope = ?scope.name, %reason, "skipped");
        scope.skipped.push(Skipped { function: name.clone(), reason: reason.clone() });
        if let Node::Step(_) = node {
            let now = now_ms();
            self.doc.record(StepRecord {
                function: name,
                scope: scope.name.clone(),
                status: "skipped",
                reason: Some(reason),
                started_at_ms: now,
                ended_at_ms: now,
                attempts: Vec::new(),
                outputs: None,
            });
            self.doc.save().await.map_err(|error| StepFailure::orchestrator(scope.name.as_deref(), error))?;
        }
        Ok(())
    }

    /// Start `node` with the artifacts it needs from `scope` (a step: its
    /// needs, not its flag; the fan-out: everything its items take).
    fn start<'s>(&'s self, node: Node<'a>, scope: &Scope) -> BoxFuture<'s, Produced> {
        let names = match node {
            Node::Step(step) => step.needs.iter().map(String::as_str).collect(),
            Node::FanOut(_) => node.waits_for(),
        };
        let inputs: Artifacts = names
            .into_iter()
            .filter_map(|name| scope.artifacts.get(name).map(|artifact| (name.to_string(), artifact.clone())))
            .collect();
        let scope_name = scope.name.clone();
        match node {
            Node::Step(step) => self.call(step, scope_name, inputs).boxed(),
            Node::FanOut(fan) => self.fan_out(fan, inputs, scope.absent.clone()).boxed(),
        }
    }

    async fn call(&self, step: &PlanStep, scope: Option<String>, inputs: Artifacts) -> Result<Artifacts, StepFailure> {
        let inv = Invocation { request_id: self.request_id.to_string(), scope: scope.clone(), inputs };
        let mut attempts = Vec::new();
        let started_at_ms = now_ms();
        let result = self.caller.call(step, &self.plan.retry, &inv, &mut attempts).await;
        let record = |status, reason, outputs| StepRecord {
            function: step.function.clone(),
            scope: scope.clone(),
            status,
            reason,
            started_at_ms,
            ended_at_ms: now_ms(),
            attempts: attempts.clone(),
            outputs,
        };
        let failure = |error| StepFailure { function: step.function.clone(), scope: scope.clone(), error };
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                self.doc.record(record("failed", None, None));
                return Err(failure(error));
            }
        };
        let missing: Vec<&str> = step.produces.iter().filter(|name| !response.outputs.contains_key(*name)).map(String::as_str).collect();
        if !missing.is_empty() {
            let msg = format!("{} answered without {}, which the DAG says it produces", step.function, quoted(&missing));
            let error = StageError::new(ErrorKind::BadGateway, "missing_output", msg);
            self.doc.record(record("failed", Some(error.message.clone()), Some(response.outputs)));
            return Err(failure(error));
        }
        self.doc.record(record("succeeded", None, Some(response.outputs.clone())));
        self.doc.save().await.map_err(failure)?;
        Ok(response.outputs.into_iter().filter(|(name, _)| step.produces.contains(name)).collect())
    }

    /// Every item of `over` through the fan-out's graph; the `collect`
    /// document (when the plan names one) is the output.
    async fn fan_out(&self, fan: &'a FanOut, inputs: Artifacts, absent: BTreeMap<String, String>) -> Result<Artifacts, StepFailure> {
        let failed = |error| StepFailure::orchestrator(None, error);
        let items = match inputs.get(&fan.over) {
            Some(Artifact::Many(uris)) => uris.clone(),
            Some(Artifact::One(uri)) => vec![uri.clone()],
            Some(Artifact::Flag(_)) | None => {
                let msg = format!("`{}`, the artifact the fan-out runs over, is not a list of objects", fan.over);
                return Err(failed(StageError::internal("bad_fan_out", msg)));
            }
        };
        if items.len() > fan.max_items {
            let msg = format!(
                "`{}` has {} items, more than the {} the pipeline's budget covers (dag.fan_out.max_items)",
                fan.over,
                items.len(),
                fan.max_items
            );
            return Err(failed(StageError::new(ErrorKind::Unprocessable, "too_many_items", msg)));
        }
        self.doc.update(|s| s.fan_out_items = Some(items.len()));
        let nodes: Vec<Node> = fan.steps.iter().map(Node::Step).collect();
        let nodes = &nodes;
        let scopes = items.into_iter().enumerate().map(|(index, item)| {
            let mut artifacts = inputs.clone();
            artifacts.remove(&fan.over);
            artifacts.insert(fan.item.clone(), Artifact::One(item));
            let scope = Scope { name: Some(format!("{}-{index:04}", fan.over)), artifacts, absent: absent.clone(), skipped: Vec::new() };
            (index, scope)
        });
        // After an item fails no other starts, and those running are let
        // finish (see `graph`): `None` is an item never started.
        let failed_once = std::sync::atomic::AtomicBool::new(false);
        let failed_once = &failed_once;
        let outcomes: Vec<Option<Result<Item, StepFailure>>> = futures::stream::iter(scopes)
            .map(|(index, mut scope)| async move {
                if failed_once.load(std::sync::atomic::Ordering::SeqCst) {
                    return None;
                }
                let item = async {
                    self.graph(nodes, &mut scope).await?;
                    let name = scope.name.clone().unwrap_or_default();
                    // The item's own artifacts: the request's are not repeated.
                    let own: Artifacts = scope.artifacts.clone().into_iter().filter(|(artifact, _)| *artifact == fan.item || fan.steps.iter().any(|s| s.produces.contains(artifact))).collect();
                    self.doc.update(|s| {
                        s.items.insert(name.clone(), own.clone());
                    });
                    self.doc.save().await.map_err(|e| StepFailure::orchestrator(Some(&name), e))?;
                    Ok::<_, StepFailure>(Item { scope: name, index, artifacts: own, skipped: scope.skipped.clone() })
                }
                .await;
                if item.is_err() {
                    failed_once.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                Some(item)
            })
            .buffer_unordered(fan.max_parallel.max(1))
            .collect()
            .await;
        let mut done = Vec::new();
        for outcome in outcomes.into_iter().flatten() {
            done.push(outcome?);
        }
        done.sort_by_key(|item| item.index);
        let Some(collect) = &fan.collect else { return Ok(Artifacts::new()) };
        let document = Items { over: fan.over.clone(), item: fan.item.clone(), items: done };
        let key = format!("requests/{}/{collect}.json", self.request_id);
        let bytes = serde_json::to_vec_pretty(&document).map_err(|e| failed(anyhow::Error::from(e).into()))?;
        self.doc.store().put_bytes(&key, bytes.into()).await.map_err(failed)?;
        Ok(Artifacts::from([(collect.clone(), Artifact::One(self.doc.store().uri(&key)))]))
    }

    /// Publish the artifact `name` (one JSON object) as `requests/<id>/result.json`.
    async fn publish(&self, name: &str, scope: &Scope) -> Result<Option<String>, StageError> {
        let uri = match scope.artifacts.get(name) {
            Some(Artifact::One(uri)) => uri,
            Some(_) => return Err(StageError::internal("bad_result", format!("the result `{name}` is not one object"))),
            None => return Ok(None),
        };
        let bytes = self.doc.store().get_bytes(uri).await?;
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .map_err(|e| StageError::internal("bad_result", format!("the result `{name}` ({uri}) is not JSON: {e}")))?;
        let key = format!("requests/{}/result.json", self.request_id);
        self.doc.store().put_bytes(&key, bytes).await?;
        let published = self.doc.store().uri(&key);
        self.doc.update(|s| s.result = Some(published.clone()));
        Ok(Some(published))
    }
}

fn quoted(names: &[&str]) -> String {
    names.iter().map(|name| format!("`{name}`")).collect::<Vec<_>>().join(", ")
}
