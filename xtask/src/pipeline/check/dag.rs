//! `dag:`: the dataflow graph the entry runs. Every step names what it needs
//! and produces; this checks, pointing at the name to change, that
//!
//! - every need (and `when` flag) is produced by a step that can run before
//!   it, or is a request input, or (inside the fan-out) the item;
//! - no artifact has two producers (a request input, the item and the
//!   fan-out's `collect` count as producers);
//! - the steps form no cycle, counting the fan-out as one node of the
//!   request's graph that needs `over` and whatever its steps take from the
//!   request;
//! - a function is one step, and the entry is none;
//!
//! and warns about artifacts nothing uses. A fanned-out step's outputs count
//! as used when the fan-out collects them (`collect`) and something needs the
//! collection.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{Checked, Checker};
use crate::pipeline::diagnostic::{Diagnostic, Warning};
use crate::pipeline::model::{Dag, FanOut, Function, Input, Retry, Step};
use crate::pipeline::raw::{RawDag, RawInput, RawStep};
use crate::pipeline::suggest;

/// Where an artifact comes from, for messages and the graph.
#[derive(Debug, Clone)]
struct Producer {
    /// The step's index in its scope, or `None` for a request input, the
    /// item, or the fan-out (at the request's scope: `FAN_OUT`).
    node: Option<usize>,
    /// What produces it, in words: "`cut-clips`", "the request".
    what: String,
    /// The value (or key) to point at.
    path: String,
    /// The scope it exists in.
    scope: Scope,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The request's: an input, a request step's output, the collection.
    Request,
    /// The fan-out's item itself.
    Item,
    /// A fanned-out step's output, one per item.
    Fanned,
}

/// Index of the fan-out among the request scope's nodes: after its steps.
const FAN_OUT: usize = usize::MAX;

impl Checker<'_> {
    pub(super) fn dag(&self, raw: RawDag, functions: &[Function]) -> Checked<(Dag, Vec<Warning>)> {
        self.known_function("dag.entry", &raw.entry, functions)?;
        let mut used_functions: HashMap<String, String> = HashMap::from([(raw.entry.clone(), "dag.entry".to_string())]);
        let mut producers: BTreeMap<String, Producer> = BTreeMap::new();

        let mut inputs = Vec::new();
        for (name, kind) in &raw.inputs {
            let path = format!("dag.inputs.{name}");
            self.artifact_name(&path, name)?;
            let producer = Producer { node: None, what: "the request".into(), path: path.clone(), scope: Scope::Request };
            self.produce(&mut producers, name, producer)?;
            inputs.push(Input { name: name.clone(), required: *kind == RawInput::Required });
        }

        let steps = self.steps("dag.steps", raw.steps, &raw.entry, functions, &mut used_functions)?;
        for (index, step) in steps.iter().enumerate() {
            for (k, name) in step.produces.iter().enumerate() {
                let what = format!("`{}`", step.function);
                self.produce(&mut producers, name, Producer { node: Some(index), what, path: format!("dag.steps[{index}].produces[{k}]"), scope: Scope::Request })?;
            }
        }

        let fan_out = match raw.fan_out {
            None => None,
            Some(raw_fan) => {
                let fan_steps = self.steps("dag.fan_out.steps", raw_fan.steps, &raw.entry, functions, &mut used_functions)?;
                self.artifact_name("dag.fan_out.item", &raw_fan.item)?;
                if let Some(collect) = &raw_fan.collect {
                    self.artifact_name("dag.fan_out.collect", collect)?;
                    let producer = Producer { node: Some(FAN_OUT), what: "the fan-out".into(), path: "dag.fan_out.collect".into(), scope: Scope::Request };
                    self.produce(&mut producers, collect, producer)?;
                }
                if raw_fan.max_parallel == 0 {
                    return Err(self.error("dag.fan_out.max_parallel", "`dag.fan_out.max_parallel` is 0: no item would run", "use 1 or more"));
                }
                if raw_fan.max_items == 0 {
                    return Err(self.error(
                        "dag.fan_out.max_items",
                        "`dag.fan_out.max_items` is 0: every request with an item would be refused",
                        "give the most items a request may have, like `10`: the request's budget covers that many",
                    ));
                }
                if fan_steps.is_empty() {
                    return Err(self.error(
                        "dag.fan_out.steps",
                        "`dag.fan_out` has no steps",
                        "list the steps to run for each item, or remove `fan_out`",
                    ));
                }
                Some(FanOut {
                    over: raw_fan.over,
                    item: raw_fan.item,
                    collect: raw_fan.collect,
                    max_parallel: raw_fan.max_parallel,
                    max_items: raw_fan.max_items,
                    steps: fan_steps,
                })
            }
        };
        if steps.is_empty() && fan_out.is_none() {
            return Err(self.error("dag.steps", "the DAG has no steps", "list the functions the entry runs in `dag.steps`"));
        }

        // The item's scope sees the request's artifacts and its own.
        let mut item_producers = producers.clone();
        if let Some(fan) = &fan_out {
            if fan.over.trim().is_empty() {
                return Err(self.error("dag.fan_out.over", "`dag.fan_out.over` is empty", "name the artifact whose items fan out, like `clips`"));
            }
            self.need(&producers, "dag.fan_out.over", &fan.over, "the fan-out")?;
            let item = Producer { node: None, what: format!("the fan-out (one item of `{}`)", fan.over), path: "dag.fan_out.item".into(), scope: Scope::Item };
            self.produce(&mut item_producers, &fan.item, item)?;
            // Unique across the whole DAG: an item's artifact never shadows the request's.
            producers.insert(fan.item.clone(), item_producers[&fan.item].clone());
            for (index, step) in fan.steps.iter().enumerate() {
                for (k, name) in step.produces.iter().enumerate() {
                    let producer = Producer {
                        node: Some(index),
                        what: format!("`{}`", step.function),
                        path: format!("dag.fan_out.steps[{index}].produces[{k}]"),
                        scope: Scope::Fanned,
                    };
                    self.produce(&mut item_producers, name, producer.clone())?;
                    producers.insert(name.clone(), producer);
                }
            }
        }

        // Needs, item scope first: its needs taken from the request are the fan-out's.
        let mut fan_needs: Vec<(String, String)> = Vec::new();
        let mut item_edges = vec![BTreeSet::new(); fan_out.as_ref().map_or(0, |fan| fan.steps.len())];
        if let Some(fan) = &fan_out {
            for (index, step) in fan.steps.iter().enumerate() {
                for (path, name) in step_needs("dag.fan_out.steps", index, step) {
                    let producer = self.need(&item_producers, &path, name, &step.function)?;
                    match producer.node {
                        Some(node) if producer.scope == Scope::Fanned => {
                            item_edges[index].insert(node);
                        }
                        _ if producer.scope == Scope::Item => {}
                        _ => fan_needs.push((path, name.clone())),
                    }
                }
            }
            self.acyclic("dag.fan_out.steps", &fan.steps, &item_edges)?;
        }
        let request_producers: BTreeMap<&String, &Producer> = producers.iter().filter(|(_, p)| p.scope == Scope::Request).collect();
        let mut edges = vec![BTreeSet::new(); steps.len()];
        let mut fan_edges = BTreeSet::new();
        for (index, step) in steps.iter().enumerate() {
            for (path, name) in step_needs("dag.steps", index, step) {
                let producer = self.need_in(&request_producers, &producers, &path, name, &step.function)?;
                if let Some(node) = producer.node {
                    edges[index].insert(node);
                }
            }
        }
        if let Some(fan) = &fan_out {
            let over = std::iter::once(("dag.fan_out.over".to_string(), fan.over.clone()));
            for (path, name) in over.chain(fan_needs) {
                let producer = self.need_in(&request_producers, &producers, &path, &name, "the fan-out")?;
                // The fan-out needing its own `collect` is a cycle too.
                if let Some(node) = producer.node {
                    fan_edges.insert(node);
                }
            }
        }
        self.request_acyclic(&steps, &edges, fan_out.as_ref().map(|_| &fan_edges))?;

        let result = match raw.result {
            None => None,
            Some(result) => {
                self.need_in(&request_producers, &producers, "dag.result", &result, "the request's answer")?;
                Some(result)
            }
        };

        let warnings = self.unused(&producers, &steps, fan_out.as_ref(), result.as_deref());

        if raw.retry.attempts == 0 {
            return Err(self.error("dag.retry.attempts", "`dag.retry.attempts` is 0: no step would ever run", "use 1 for no retries, or more"));
        }
        let retry = Retry { attempts: raw.retry.attempts, backoff: self.duration("dag.retry.backoff", &raw.retry.backoff)? };
        Ok((Dag { entry: raw.entry, inputs, steps, fan_out, result, retry }, warnings))
    }

    /// The steps of one list (`dag.steps` or `dag.fan_out.steps`), each function used once.
    fn steps(
        &self,
        list: &str,
        raw: Vec<RawStep>,
        entry: &str,
        functions: &[Function],
        used: &mut HashMap<String, String>,
    ) -> Checked<Vec<Step>> {
        let mut steps = Vec::new();
        for (index, raw) in raw.into_iter().enumerate() {
            let at = format!("{list}[{index}]");
            let fields = match raw {
                RawStep::Step(fields) => fields,
                RawStep::Name(name) => {
                    return Err(self.error(
                        &at,
                        format!("step `{name}` names only its function: a step now says which artifacts it needs and produces"),
                        format!("write it as `{{ function: {name}, needs: [...], produces: [...] }}` with the names of the artifacts it reads and writes (pipeline.yaml's `dag:` shows every step of VideoSearcher)"),
                    ))
                }
            };
            let path = format!("{at}.function");
            let function = fields.function;
            self.known_function(&path, &function, functions)?;
            if function == entry {
                return Err(self.error(
                    &path,
                    format!("the entry `{function}` is also a step: the DAG would call itself (a cycle)"),
                    "remove this step: the entry runs the steps and is not one of them",
                ));
            }
            if let Some(first) = used.insert(function.clone(), path.clone()) {
                return Err(self.error(
                    &path,
                    format!("function `{function}` is two steps of the DAG"),
                    format!("a function is one step: remove this one, or declare another function (the first is `{first}`{})", self.line_of(&first)),
                ));
            }
            for (k, name) in fields.needs.iter().enumerate() {
                self.artifact_name(&format!("{at}.needs[{k}]"), name)?;
            }
            for (k, name) in fields.produces.iter().enumerate() {
                self.artifact_name(&format!("{at}.produces[{k}]"), name)?;
            }
            if fields.produces.is_empty() {
                return Err(self.error(
                    &at,
                    format!("step `{function}` produces nothing"),
                    "list the artifacts its answer carries in `produces`: a step without outputs does nothing the DAG can see",
                ));
            }
            if let Some(when) = &fields.when {
                self.artifact_name(&format!("{at}.when"), when)?;
            }
            steps.push(Step { function, needs: fields.needs, produces: fields.produces, when: fields.when });
        }
        Ok(steps)
    }

    fn artifact_name(&self, path: &str, name: &str) -> Checked<()> {
        let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if valid {
            return Ok(());
        }
        let message = format!("`{name}` is not a usable artifact name");
        let help = "an artifact name starts with a lowercase letter and holds lowercase letters, digits, `_` and `-`, like `audio_16k`";
        Err(self.point(path, message, help))
    }

    fn produce(&self, producers: &mut BTreeMap<String, Producer>, name: &str, producer: Producer) -> Checked<()> {
        if let Some(first) = producers.get(name) {
            return Err(self.point(
                &producer.path,
                format!("artifact `{name}` has two producers: {} and {}", first.what, producer.what),
                format!(
                    "an artifact has one producer, so that every step knows what it gets: rename one of them (the first is `{}`{})",
                    first.path,
                    self.line_of(&first.path)
                ),
            ));
        }
        producers.insert(name.to_string(), producer);
        Ok(())
    }

    fn need<'p>(&self, producers: &'p BTreeMap<String, Producer>, path: &str, name: &str, user: &str) -> Checked<&'p Producer> {
        let visible: BTreeMap<&String, &Producer> = producers.iter().collect();
        self.need_in(&visible, producers, path, name, user)
    }

    /// The producer of `name` among `visible`; an error that says why when
    /// there is none (produced where `user` cannot see it, or nowhere).
    fn need_in<'p>(
        &self,
        visible: &BTreeMap<&String, &'p Producer>,
        all: &BTreeMap<String, Producer>,
        path: &str,
        name: &str,
        user: &str,
    ) -> Checked<&'p Producer> {
        if let Some(producer) = visible.get(&name.to_string()) {
            return Ok(producer);
        }
        if let Some(hidden) = all.get(name) {
            return Err(self.error(
                path,
                format!("{user} needs `{name}`, which exists only inside each item of the fan-out ({})", hidden.what),
                "the request's steps see an item's artifacts through the fan-out's `collect` document: need that instead",
            ));
        }
        let names = visible.keys().map(|name| name.as_str());
        let hint = suggest::closest(name, names.clone()).map(|close| format!("did you mean `{close}`? ")).unwrap_or_default();
        let known: Vec<String> = names.map(|name| format!("`{name}`")).collect();
        Err(self.error(
            path,
            format!("{user} needs `{name}`, which no step produces and the request does not bring"),
            format!("{hint}artifacts it can need: {}; or add `{name}` to a step's `produces` or to `dag.inputs`", known.join(", ")),
        ))
    }

    /// A cycle among one scope's steps, reported at the step that closes it.
    fn acyclic(&self, list: &str, steps: &[Step], edges: &[BTreeSet<usize>]) -> Checked<()> {
        match find_cycle(edges) {
            None => Ok(()),
            Some(cycle) => {
                let names: Vec<&str> = cycle.iter().map(|&node| steps[node].function.as_str()).collect();
                Err(self.cycle_error(&format!("{list}[{}]", cycle[0]), &names))
            }
        }
    }

    /// The request's graph: its steps and the fan-out (`fan_edges`: the steps
    /// the fan-out needs) as one more node.
    fn request_acyclic(&self, steps: &[Step], edges: &[BTreeSet<usize>], fan_edges: Option<&BTreeSet<usize>>) -> Checked<()> {
        let fan = steps.len();
        let index = |node: &usize| if *node == FAN_OUT { fan } else { *node };
        let mut graph: Vec<BTreeSet<usize>> = edges.iter().map(|needs| needs.iter().map(index).collect()).collect();
        graph.push(fan_edges.map(|needs| needs.iter().map(index).collect()).unwrap_or_default());
        match find_cycle(&graph) {
            None => Ok(()),
            Some(cycle) => {
                let names: Vec<&str> = cycle.iter().map(|&node| steps.get(node).map_or("the fan-out", |step| step.function.as_str())).collect();
                let at = if cycle[0] == fan { "dag.fan_out.over".to_string() } else { format!("dag.steps[{}]", cycle[0]) };
                Err(self.cycle_error(&at, &names))
            }
        }
    }

    fn cycle_error(&self, at: &str, names: &[&str]) -> Diagnostic {
        let mut chain = names.join(" needs ");
        chain.push_str(&format!(" needs {}", names[0]));
        self.error(
            at,
            format!("the steps form a cycle: {chain}"),
            "a step runs once what it needs exists, so none of these can start: remove one of the needs",
        )
    }

    /// Warnings for artifacts nothing needs.
    fn unused(&self, producers: &BTreeMap<String, Producer>, steps: &[Step], fan_out: Option<&FanOut>, result: Option<&str>) -> Vec<Warning> {
        let fanned_steps = fan_out.iter().flat_map(|fan| fan.steps.iter());
        let mut used: BTreeSet<&str> = steps.iter().chain(fanned_steps).flat_map(|step| step.needs.iter().chain(&step.when)).map(String::as_str).collect();
        used.extend(result);
        if let Some(fan) = fan_out {
            used.insert(&fan.over);
            let collected = fan.collect.as_deref().is_some_and(|collect| used.contains(collect));
            if collected {
                used.extend(fan.steps.iter().flat_map(|step| &step.produces).map(String::as_str));
                used.insert(&fan.item);
            }
        }
        producers
            .iter()
            .filter(|(name, _)| !used.contains(name.as_str()))
            .map(|(name, producer)| {
                let (message, help) = if producer.path.starts_with("dag.inputs.") {
                    (format!("request input `{name}` is needed by no step"), "need it in a step, or remove it from `dag.inputs`")
                } else {
                    (
                        format!("`{name}` is produced by {} but nothing needs it", producer.what),
                        "need it in a step, or remove it (a step's unused output still costs its upload)",
                    )
                };
                self.point(&producer.path, message, help).into_warning()
            })
            .collect()
    }

    /// A diagnostic at the name declared at `path`: a request input's key, or the value.
    fn point(&self, path: &str, message: impl Into<String>, help: impl Into<String>) -> Diagnostic {
        if path.starts_with("dag.inputs.") {
            self.source.error_at_key(path, message, Some(help.into()))
        } else {
            self.error(path, message, help)
        }
    }

    fn line_of(&self, path: &str) -> String {
        let span = self.source.spans.value(path).or_else(|| self.source.spans.key(path));
        span.map(|span| format!(", line {}", span.line)).unwrap_or_default()
    }
}

/// The needs of step `index` of `list`, with their paths; the `when` flag last.
fn step_needs<'s>(list: &str, index: usize, step: &'s Step) -> Vec<(String, &'s String)> {
    let needs = step.needs.iter().enumerate().map(|(k, name)| (format!("{list}[{index}].needs[{k}]"), name));
    needs.chain(step.when.iter().map(|when| (format!("{list}[{index}].when"), when))).collect()
}

/// A cycle in the graph whose node `n` needs the nodes `edges[n]`, as the
/// list of its nodes from the lowest-numbered one, or `None`.
fn find_cycle(edges: &[BTreeSet<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(node: usize, edges: &[BTreeSet<usize>], marks: &mut [Mark], path: &mut Vec<usize>) -> Option<Vec<usize>> {
        marks[node] = Mark::Open;
        path.push(node);
        for &next in &edges[node] {
            match marks[next] {
                Mark::Open => {
                    let start = path.iter().position(|&n| n == next).expect("an open node is on the path");
                    return Some(path[start..].to_vec());
                }
                Mark::New => {
                    if let Some(cycle) = visit(next, edges, marks, path) {
                        return Some(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[node] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; edges.len()];
    for node in 0..edges.len() {
        if marks[node] == Mark::New {
            if let Some(mut cycle) = visit(node, edges, &mut marks, &mut Vec::new()) {
                let lowest = cycle.iter().enumerate().min_by_key(|(_, &n)| n).map_or(0, |(i, _)| i);
                cycle.rotate_left(lowest);
                return Some(cycle);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[&[usize]]) -> Vec<BTreeSet<usize>> {
        edges.iter().map(|needs| needs.iter().copied().collect()).collect()
    }

    #[test]
    fn finds_cycles_and_only_cycles() {
        assert_eq!(find_cycle(&graph(&[&[], &[0], &[0, 1]])), None);
        assert_eq!(find_cycle(&graph(&[&[2], &[0], &[1]])), Some(vec![0, 2, 1]));
        assert_eq!(find_cycle(&graph(&[&[], &[2], &[1]])), Some(vec![1, 2]));
        assert_eq!(find_cycle(&graph(&[&[0]])), Some(vec![0]));
    }
}
