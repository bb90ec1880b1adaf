//! The real orchestrator on the real local runtime, with `fault` functions as
//! its steps: every failure ends the request with its classification (never a
//! hang), transient ones are retried as declared, and the keys a request
//! leaves are exactly the artifacts its state document names.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use stage_runtime::{Artifact, Invocation};

use crate::support::{repo, Runtime};

/// A request must be answered within this, whatever its steps do. A bound
/// against hanging, far above what any of these pipelines needs.
const ANSWER_BOUND: Duration = Duration::from_secs(30);

/// One `fault` function of a test pipeline: its name, its environment
/// (`FAULT` and friends) and its timeout.
struct Step {
    name: &'static str,
    timeout: &'static str,
    env: Vec<(&'static str, String)>,
}

fn step(name: &'static str, fault: &str, timeout: &'static str) -> Step {
    Step { name, timeout, env: vec![("FAULT", fault.to_string())] }
}

impl Step {
    fn env(mut self, key: &'static str, value: impl Into<String>) -> Step {
        self.env.push((key, value.into()));
        self
    }
}

/// A pipeline whose entry is the real orchestrator and whose functions are
/// all built from stages/fault: `steps` in a chain (each needs the one
/// before, the first the request's `video`; each produces the artifact named
/// after it, `fault`'s output), then `fan_out` for every item of the artifact
/// `items` (as `item`), in a chain from the item, two at a time and at most
/// five in all.
fn pipeline(steps: &[Step], fan_out: &[Step], attempts: u32) -> String {
    let mut yaml = functions(&steps.iter().chain(fan_out).collect::<Vec<_>>());
    let chain = |steps: &[Step], from: &str, indent: &str| {
        let mut need = from.to_string();
        let mut out = String::new();
        for step in steps {
            let mut produces = step.name.to_string();
            if step.env.iter().any(|(key, _)| *key == "FAULT_ITEMS") {
                produces += ", items";
            }
            out += &format!("{indent}- {{ function: {}, needs: [{need}], produces: [{produces}] }}\n", step.name);
            need = step.name.to_string();
        }
        out
    };
    yaml += &format!("dag:\n  entry: orchestrator\n  inputs: {{ video: required }}\n  steps:\n{}", chain(steps, "video", "    "));
    if !fan_out.is_empty() {
        yaml += &format!(
            "  fan_out:\n    over: items\n    item: item\n    max_parallel: 2\n    max_items: 5\n    steps:\n{}",
            chain(fan_out, "item", "      ")
        );
    }
    yaml + &format!("  retry:\n    attempts: {attempts}\n    backoff: 100ms\n")
}

/// The start of a test pipeline: the real orchestrator and a `fault`
/// function for each of `steps`; the `dag:` section is the caller's.
fn functions(steps: &[&Step]) -> String {
    let stages = repo().join("stages");
    let mut yaml = format!(
        r#"name: orchestrator-test
{common}functions:
  orchestrator:
    source: {orchestrator}
    memory: 128Mi
    cpu: 0.5
    timeout: 15m
    max_inflight: 8
    scale: {{ min: 0, max: 1 }}
    secrets: [s3-access-key, s3-secret-key]
"#,
        orchestrator = stages.join("orchestrator").display(),
        common = crate::support::common_sections("300s"),
    );
    for step in steps {
        let env: Vec<String> =
            step.env.iter().map(|(key, value)| format!("{key}: {}", Value::from(value.as_str()))).collect();
        yaml += &format!(
            "  {name}:\n    source: {source}\n    memory: 64Mi\n    cpu: 0.5\n    timeout: {timeout}\n    \
             max_inflight: 4\n    scale: {{ min: 0, max: 1 }}\n    env: {{ {env} }}\n    \
             secrets: [s3-access-key, s3-secret-key]\n",
            name = step.name,
            source = stages.join("fault").display(),
            timeout = step.timeout,
            env = env.join(", "),
        );
    }
    yaml
}

/// Upload an input for request `id` and send the request to the
/// orchestrator; returns its status and body once it answered.
fn request(rt: &Runtime, id: &str) -> (u16, Value) {
    request_with(rt, id, &["video"])
}

/// Like [`request`], with one uploaded input under each of `inputs`.
fn request_with(rt: &Runtime, id: &str, inputs: &[&str]) -> (u16, Value) {
    let inputs = inputs
        .iter()
        .map(|name| {
            let uri = rt.put_bytes(&format!("requests/{id}/input/{name}"), b"fault never reads it".to_vec());
            (name.to_string(), Artifact::One(uri))
        })
        .collect();
    let inv = Invocation { request_id: id.to_string(), scope: None, inputs };
    let started = Instant::now();
    let (status, body) = rt.invoke("orchestrator", &inv);
    let took = started.elapsed();
    assert!(took < ANSWER_BOUND, "request `{id}` took {took:?} to answer ({status}): {body}");
    (status, body)
}

/// The invocation lines `function` logged for request `id`, in order.
fn invocations(rt: &Runtime, function: &str, id: &str) -> Vec<Value> {
    // A function that never started logged no invocation.
    let Some(log) = rt.log_if_started(function) else { return Vec::new() };
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["request_id"] == id && line["function"] == function)
        .collect()
}

/// The attempts of the one step record of `function` (in `scope`) in `state`.
fn attempts<'a>(state: &'a Value, function: &str, scope: Option<&str>) -> &'a [Value] {
    let records: Vec<&Value> = state["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["function"] == function && r["scope"].as_str() == scope)
        .collect();
    assert_eq!(records.len(), 1, "one record of `{function}` {scope:?} expected: {state:#}");
    records[0]["attempts"].as_array().unwrap()
}

fn statuses(attempts: &[Value]) -> Vec<u64> {
    attempts.iter().map(|a| a["status"].as_u64().unwrap()).collect()
}

fn state(rt: &Runtime, id: &str) -> Value {
    rt.state(id).unwrap_or_else(|| panic!("no state document for request `{id}`"))
}

/// Every key under `requests/<id>/`, as URIs, checked to be listed once each.
fn stored(rt: &Runtime, id: &str) -> BTreeSet<String> {
    let keys = rt.keys(&format!("requests/{id}"));
    let uris: BTreeSet<String> = keys.iter().map(|key| rt.store.uri(key)).collect();
    assert_eq!(uris.len(), keys.len(), "a key listed twice: {keys:?}");
    uris
}

/// The state document itself and every artifact URI it names: inputs,
/// request artifacts, fan-out items, the published result and each step's outputs.
fn named(rt: &Runtime, id: &str, state: &Value) -> BTreeSet<String> {
    fn collect(value: &Value, into: &mut BTreeSet<String>) {
        match value {
            Value::String(uri) => {
                into.insert(uri.clone());
            }
            Value::Array(values) => values.iter().for_each(|v| collect(v, into)),
            Value::Object(map) => map.values().for_each(|v| collect(v, into)),
            _ => {}
        }
    }
    let mut uris = BTreeSet::from([rt.store.uri(&format!("requests/{id}/state.json"))]);
    for part in [&state["inputs"], &state["artifacts"], &state["items"], &state["result"]] {
        collect(part, &mut uris);
    }
    for record in state["steps"].as_array().unwrap() {
        collect(&record["outputs"], &mut uris);
    }
    uris
}

fn uri(rt: &Runtime, key: &str) -> String {
    rt.store.uri(key)
}

#[test]
fn failing_step_ends_the_request_with_500_and_no_retry() {
    let yaml = pipeline(&[step("first", "ok", "5s"), step("second", "fail", "5s"), step("third", "ok", "5s")], &[], 3);
    let rt = Runtime::up(&yaml);
    let (status, body) = request(&rt, "fail-1");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["kind"], "internal", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("second: "), "{body}");

    let state = state(&rt, "fail-1");
    assert_eq!((state["status"].as_str(), state["outcome"].as_str()), (Some("failed"), Some("failed")), "{state:#}");
    assert_eq!(state["error"]["function"], "second", "{state:#}");
    assert_eq!(state["error"]["kind"], "internal", "{state:#}");
    assert_eq!(statuses(attempts(&state, "first", None)), [200]);
    assert_eq!(statuses(attempts(&state, "second", None)), [500], "a 500 is not retried");
    assert_eq!(invocations(&rt, "second", "fail-1").len(), 1);
    assert!(invocations(&rt, "third", "fail-1").is_empty(), "a step after the failure ran");
    assert_eq!(
        stored(&rt, "fail-1"),
        BTreeSet::from([
            uri(&rt, "requests/fail-1/input/video"),
            uri(&rt, "requests/fail-1/first/first.json"),
            uri(&rt, "requests/fail-1/state.json"),
        ])
    );
}

#[test]
fn hanging_step_times_out_each_attempt_then_the_request_answers_504() {
    let yaml = pipeline(&[step("first", "hang", "1s"), step("second", "ok", "5s")], &[], 2);
    let rt = Runtime::up(&yaml);
    let (status, body) = request(&rt, "hang-1");
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["kind"], "timeout", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("first: "), "{body}");

    let state = state(&rt, "hang-1");
    assert_eq!(state["status"], "failed", "{state:#}");
    assert_eq!(state["error"]["function"], "first", "not the orchestrator's own timeout: {state:#}");
    let tries = attempts(&state, "first", None);
    assert_eq!(statuses(tries), [504, 504], "{state:#}");
    for attempt in tries {
        // `timeout` is the function's exec_timeout; the orchestrator's own deadline says `deadline`.
        assert_eq!(
            (attempt["error"]["kind"].as_str(), attempt["error"]["code"].as_str()),
            (Some("timeout"), Some("timeout"))
        );
    }
    assert_eq!(statuses(&invocations(&rt, "first", "hang-1")), [504, 504], "as the function saw it");
    assert!(invocations(&rt, "second", "hang-1").is_empty(), "a step after the timeout ran");
    assert_eq!(stored(&rt, "hang-1"), named(&rt, "hang-1", &state), "only the input and the state");
    assert_eq!(stored(&rt, "hang-1").len(), 2);
}

#[test]
fn step_killed_mid_request_is_restarted_and_retried() {
    let crashes = tempfile::tempdir().unwrap();
    let first = step("first", "crash:1", "5s").env("FAULT_STATE_DIR", crashes.path().display().to_string());
    let rt = Runtime::up(&pipeline(&[first, step("second", "ok", "5s")], &[], 3));
    let (status, body) = request(&rt, "crash-1");
    assert_eq!(status, 200, "{body}");

    assert_eq!(std::fs::read_to_string(crashes.path().join("first.crashes")).unwrap(), "1");
    let state = state(&rt, "crash-1");
    assert_eq!(state["status"], "succeeded", "{state:#}");
    let tries = attempts(&state, "first", None);
    assert_eq!(statuses(tries), [502, 200], "{state:#}");
    assert_eq!(tries[0]["error"]["kind"], "bad_gateway", "the connection broke: {state:#}");
    assert_eq!(tries[1]["metrics"]["cold_start"], true, "a new process answers: {state:#}");
    let started = rt.log("first").lines().filter(|line| line.contains("\"listening\"")).count();
    assert_eq!(started, 2, "the gateway starts the function again:\n{}", rt.log("first"));
    assert_eq!(statuses(attempts(&state, "second", None)), [200]);
}

#[test]
fn flaky_step_succeeds_on_its_third_attempt() {
    let rt = Runtime::up(&pipeline(&[step("first", "unavailable:2", "5s"), step("second", "ok", "5s")], &[], 3));
    let (status, body) = request(&rt, "flaky-1");
    assert_eq!(status, 200, "{body}");
    let state = state(&rt, "flaky-1");
    assert_eq!(state["status"], "succeeded", "{state:#}");
    let tries = attempts(&state, "first", None);
    assert_eq!(statuses(tries), [503, 503, 200], "{state:#}");
    assert_eq!(tries[0]["error"]["kind"], "unavailable");
    assert_eq!(statuses(attempts(&state, "second", None)), [200]);
    assert_eq!(stored(&rt, "flaky-1"), named(&rt, "flaky-1", &state));
}

#[test]
fn flaky_step_out_of_attempts_ends_the_request_with_503() {
    let rt = Runtime::up(&pipeline(&[step("first", "unavailable:2", "5s"), step("second", "ok", "5s")], &[], 2));
    let (status, body) = request(&rt, "flaky-2");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["kind"], "unavailable", "{body}");
    let state = state(&rt, "flaky-2");
    assert_eq!(state["status"], "failed", "{state:#}");
    assert_eq!(state["error"]["function"], "first", "{state:#}");
    assert_eq!(statuses(attempts(&state, "first", None)), [503, 503], "{state:#}");
    assert!(invocations(&rt, "second", "flaky-2").is_empty(), "a step after the failure ran");
    assert_eq!(stored(&rt, "flaky-2"), named(&rt, "flaky-2", &state), "only the input and the state");
    assert_eq!(stored(&rt, "flaky-2").len(), 2);
}

#[test]
fn fan_out_runs_every_item_through_every_step_and_stores_each_key_once() {
    let yaml = pipeline(
        &[step("first", "ok", "5s").env("FAULT_ITEMS", "5")],
        &[step("second", "ok", "5s"), step("third", "ok", "5s")],
        3,
    );
    let rt = Runtime::up(&yaml);
    let (status, body) = request(&rt, "fan-1");
    assert_eq!(status, 200, "{body}");
    let state = state(&rt, "fan-1");
    assert_eq!((state["status"].as_str(), state["outcome"].as_str()), (Some("succeeded"), Some("completed")));

    let scopes: Vec<String> = (0..5).map(|i| format!("items-{i:04}")).collect();
    let items = state["items"].as_object().unwrap();
    assert_eq!(items.keys().collect::<Vec<_>>(), scopes.iter().collect::<Vec<_>>(), "{state:#}");
    let first = uri(&rt, "requests/fan-1/first/first.json");
    for scope in &scopes {
        let item = &items[scope];
        assert_eq!(item["item"], first.as_str(), "{scope}: {item}");
        assert!(item.get("items").is_none(), "{scope} carries the whole list: {item}");
        for function in ["second", "third"] {
            assert_eq!(item[function], uri(&rt, &format!("requests/fan-1/{function}/{scope}/{function}.json")));
            assert_eq!(statuses(attempts(&state, function, Some(scope))), [200]);
        }
    }
    for function in ["second", "third"] {
        let logged: BTreeSet<String> =
            invocations(&rt, function, "fan-1").iter().map(|l| l["scope"].as_str().unwrap().to_string()).collect();
        assert_eq!(logged, scopes.iter().cloned().collect(), "{function} ran each item once");
        assert_eq!(invocations(&rt, function, "fan-1").len(), 5);
    }
    let keys = stored(&rt, "fan-1");
    assert_eq!(keys, named(&rt, "fan-1", &state));
    assert_eq!(keys.len(), 1 + 1 + 5 * 2 + 1, "input, first, two per item, state: {keys:#?}");
}

#[test]
fn more_items_than_the_budget_covers_are_refused_before_any_runs() {
    let yaml = pipeline(&[step("first", "ok", "5s").env("FAULT_ITEMS", "6")], &[step("second", "ok", "5s")], 3);
    let rt = Runtime::up(&yaml);
    let (status, body) = request(&rt, "many-1");
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "too_many_items", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("6 items, more than the 5"), "{message}");
    let state = state(&rt, "many-1");
    assert_eq!(state["status"], "failed", "{state:#}");
    assert!(invocations(&rt, "second", "many-1").is_empty(), "an item ran");
}

#[test]
fn same_request_again_after_retries_overwrites_its_keys() {
    let yaml = pipeline(
        &[step("first", "ok", "5s").env("FAULT_ITEMS", "3")],
        &[step("second", "unavailable:1", "5s"), step("third", "ok", "5s")],
        3,
    );
    let rt = Runtime::up(&yaml);
    let (status, body) = request(&rt, "again-1");
    assert_eq!(status, 200, "{body}");
    let before = state(&rt, "again-1");
    let retried: Vec<u64> =
        (0..3).map(|i| attempts(&before, "second", Some(&format!("items-{i:04}"))).len() as u64).collect();
    assert_eq!(retried.iter().sum::<u64>(), 4, "one item of `second` retried once: {retried:?}");
    let keys = stored(&rt, "again-1");
    assert_eq!(keys, named(&rt, "again-1", &before));

    let (status, body) = request(&rt, "again-1");
    assert_eq!(status, 200, "{body}");
    let after = state(&rt, "again-1");
    for i in 0..3 {
        assert_eq!(statuses(attempts(&after, "second", Some(&format!("items-{i:04}")))), [200], "{after:#}");
    }
    assert_eq!(stored(&rt, "again-1"), keys, "the second run left other keys");
    assert_eq!(after["items"], before["items"]);
}

/// The one step record of `function` (in `scope`).
fn record<'a>(state: &'a Value, function: &str, scope: Option<&str>) -> &'a Value {
    let records: Vec<&Value> =
        state["steps"].as_array().unwrap().iter().filter(|r| r["function"] == function && r["scope"].as_str() == scope).collect();
    assert_eq!(records.len(), 1, "one record of `{function}` {scope:?} expected: {state:#}");
    records[0]
}

fn span(record: &Value) -> (u64, u64) {
    (record["started_at_ms"].as_u64().unwrap(), record["ended_at_ms"].as_u64().unwrap())
}

#[test]
fn steps_that_need_the_same_artifact_run_at_the_same_time() {
    let steps = [step("left", "sleep:1500", "10s"), step("right", "sleep:1500", "10s"), step("join", "ok", "5s")];
    let mut yaml = functions(&steps.iter().collect::<Vec<_>>());
    yaml += "dag:\n  entry: orchestrator\n  inputs: { video: required }\n  steps:\n    \
             - { function: join, needs: [left, right], produces: [join] }\n    \
             - { function: left, needs: [video], produces: [left] }\n    \
             - { function: right, needs: [video], produces: [right] }\n  \
             retry:\n    attempts: 1\n    backoff: 100ms\n";
    let rt = Runtime::up(&yaml);
    let (status, body) = request(&rt, "flow-1");
    assert_eq!(status, 200, "{body}");
    let state = state(&rt, "flow-1");
    let (left, right, join) = (span(record(&state, "left", None)), span(record(&state, "right", None)), span(record(&state, "join", None)));
    assert!(left.0 < right.1 && right.0 < left.1, "left {left:?} and right {right:?} did not overlap: {state:#}");
    assert!(join.0 >= left.1.max(right.1), "join {join:?} started before both its needs were done: {state:#}");
    // Each step was given exactly what it needs.
    let seen = rt.get_json(&uri(&rt, "requests/flow-1/join/join.json"));
    assert_eq!(seen["inputs"], serde_json::json!(["left", "right"]), "{seen}");
}

#[test]
fn a_false_flag_skips_its_step_and_what_needs_it_and_a_missing_optional_input_skips_its_step() {
    let steps = [
        step("first", "ok", "5s").env("FAULT_ITEMS", "3"),
        step("judge", "ok", "5s").env("FAULT_FLAG", "keep:items-0001"),
        step("look", "ok", "5s"),
        step("describe", "ok", "5s"),
        step("hint", "ok", "5s"),
        step("collect", "ok", "5s"),
    ];
    let mut yaml = functions(&steps.iter().collect::<Vec<_>>());
    yaml += "dag:\n  entry: orchestrator\n  inputs: { video: required, query: optional }\n  steps:\n    \
             - { function: first, needs: [video], produces: [first, items] }\n    \
             - { function: collect, needs: [found], produces: [collect] }\n  \
             fan_out:\n    over: items\n    item: item\n    collect: found\n    max_parallel: 2\n    max_items: 5\n    steps:\n      \
             - { function: judge, needs: [item], produces: [judge, keep] }\n      \
             - { function: look, needs: [judge], when: keep, produces: [look] }\n      \
             - { function: describe, needs: [look], produces: [describe] }\n      \
             - { function: hint, needs: [item, query], produces: [hint] }\n  \
             result: collect\n  retry:\n    attempts: 1\n    backoff: 100ms\n";
    let rt = Runtime::up(&yaml);
    let (status, body) = request(&rt, "skip-1");
    assert_eq!(status, 200, "{body}");
    let state = state(&rt, "skip-1");
    assert_eq!(state["status"], "succeeded", "{state:#}");
    for item in ["items-0000", "items-0002"] {
        let look = record(&state, "look", Some(item));
        assert_eq!((look["status"].as_str(), look["reason"].as_str()), (Some("skipped"), Some("`keep` is false")), "{state:#}");
        let describe = record(&state, "describe", Some(item));
        assert_eq!(describe["status"], "skipped");
        assert_eq!(describe["reason"], "`look` is absent: look was skipped");
        assert_eq!(state["items"][item]["keep"], false, "{state:#}");
        assert!(state["items"][item].get("look").is_none() && state["items"][item].get("describe").is_none(), "{state:#}");
    }
    assert_eq!(record(&state, "look", Some("items-0001"))["status"], "succeeded");
    assert_eq!(record(&state, "describe", Some("items-0001"))["status"], "succeeded");
    for item in ["items-0000", "items-0001", "items-0002"] {
        let hint = record(&state, "hint", Some(item));
        assert_eq!(hint["reason"], "`query` is absent: the request has none", "{state:#}");
    }
    // Skipped steps were never called, cost nothing, and left no object.
    assert_eq!(invocations(&rt, "look", "skip-1").len(), 1);
    assert_eq!(invocations(&rt, "describe", "skip-1").len(), 1);
    assert!(invocations(&rt, "hint", "skip-1").is_empty());
    let summary = &state["summary"];
    assert_eq!((summary["look"]["invocations"].as_u64(), summary["look"]["skipped"].as_u64()), (Some(1), Some(2)), "{summary:#}");
    assert_eq!((summary["hint"]["invocations"].as_u64(), summary["hint"]["skipped"].as_u64(), summary["hint"]["cost_units"].as_f64()), (Some(0), Some(3), Some(0.0)));
    // The collect document lists every item, in order, with its skipped steps.
    let found = rt.get_json(state["artifacts"]["found"].as_str().unwrap());
    let items = found["items"].as_array().unwrap();
    assert_eq!(items.iter().map(|i| i["index"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2], "{found:#}");
    let skipped: Vec<Vec<&str>> = items
        .iter()
        .map(|i| i["skipped"].as_array().map_or(vec![], |s| s.iter().map(|s| s["function"].as_str().unwrap()).collect()))
        .collect();
    assert_eq!(skipped, [vec!["hint", "look", "describe"], vec!["hint"], vec!["hint", "look", "describe"]], "{found:#}");
    // The result is published, and every stored object is named by the state.
    assert_eq!(state["result"], uri(&rt, "requests/skip-1/result.json"));
    assert_eq!(stored(&rt, "skip-1"), named(&rt, "skip-1", &state));
}

#[test]
fn inputs_the_dag_does_not_take_or_lacks_are_refused() {
    let yaml = pipeline(&[step("first", "ok", "5s")], &[], 1);
    let rt = Runtime::up(&yaml);
    let (status, body) = request_with(&rt, "inputs-1", &["video", "subtitles"]);
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("unknown_input")), "{body}");
    let (status, body) = request_with(&rt, "inputs-2", &[]);
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("missing_input")), "{body}");
    assert!(invocations(&rt, "first", "inputs-1").is_empty() && invocations(&rt, "first", "inputs-2").is_empty());
}

#[test]
fn a_step_answering_without_a_declared_output_fails_the_request() {
    let steps = [step("first", "ok", "5s")];
    let mut yaml = functions(&steps.iter().collect::<Vec<_>>());
    yaml += "dag:\n  entry: orchestrator\n  inputs: { video: required }\n  steps:\n    \
             - { function: first, needs: [video], produces: [first, summary] }\n  \
             retry:\n    attempts: 3\n    backoff: 100ms\n";
    let rt = Runtime::up(&yaml);
    let (status, body) = request(&rt, "output-1");
    assert_eq!((status, body["error"]["code"].as_str()), (502, Some("missing_output")), "{body}");
    let state = state(&rt, "output-1");
    assert_eq!(state["error"]["function"], "first", "{state:#}");
    assert_eq!(invocations(&rt, "first", "output-1").len(), 1, "a wrong answer is not retried");
}

/// One writer per request: while an invocation serves a request, a second
/// one for the same id is refused with 409 and writes nothing; the first
/// finishes with its state whole.
#[test]
fn a_second_invocation_for_a_running_request_is_refused_and_the_first_finishes() {
    let yaml = pipeline(&[step("first", "sleep:1500", "5s"), step("second", "ok", "5s")], &[], 1);
    let rt = Runtime::up(&yaml);
    let video = rt.put_bytes("requests/twice-1/input/video", b"fault never reads it".to_vec());
    let inv = Invocation { request_id: "twice-1".into(), scope: None, inputs: [("video".to_string(), Artifact::One(video))].into() };
    let ((first, first_body), (second, second_body)) = rt.rt.block_on(async {
        let later = async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            rt.invoke_async("orchestrator", &inv).await
        };
        futures::join!(rt.invoke_async("orchestrator", &inv), later)
    });
    assert_eq!(second, 409, "{second_body}");
    assert_eq!(second_body["error"]["code"], "request_running", "{second_body}");
    assert_eq!(first, 200, "{first_body}");
    let state = state(&rt, "twice-1");
    assert_eq!(state["status"], "succeeded", "{state:#}");
    assert_eq!(statuses(attempts(&state, "first", None)), [200]);
    assert_eq!(statuses(attempts(&state, "second", None)), [200]);
    assert_eq!(state["steps"].as_array().unwrap().len(), 2, "one invocation's steps only: {state:#}");
}

/// A state still `running` after its lease was left by an invocation that
/// died: the next invocation takes the request over. Within its lease, it
/// is refused.
#[test]
fn a_state_left_running_is_taken_over_once_its_lease_ends() {
    let yaml = pipeline(&[step("first", "ok", "5s")], &[], 1);
    let rt = Runtime::up(&yaml);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let left = |id: &str, lease_until_ms: u64| {
        let state = serde_json::json!({ "request_id": id, "status": "running", "lease_until_ms": lease_until_ms, "steps": [] });
        rt.put_bytes(&format!("requests/{id}/state.json"), serde_json::to_vec(&state).unwrap());
    };
    left("dead-1", now_ms - 1000);
    let (status, body) = request(&rt, "dead-1");
    assert_eq!(status, 200, "taken over: {body}");
    let taken = state(&rt, "dead-1");
    assert_eq!(taken["status"], "succeeded", "{taken:#}");
    assert!(taken["lease_until_ms"].as_u64().unwrap() > now_ms, "its own lease: {taken:#}");

    left("alive-1", now_ms + 600_000);
    let (status, body) = request(&rt, "alive-1");
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "request_running", "{body}");
    assert_eq!(state(&rt, "alive-1")["status"], "running", "left as it was");
}

/// One item fails while three others (and a sibling step of its own) are
/// running: they are let finish and recorded, so that every object the
/// request leaves is named by its state, even after the answer.
#[test]
fn a_failing_item_lets_its_running_siblings_finish_and_every_object_is_named() {
    let steps = [
        step("first", "ok", "5s").env("FAULT_ITEMS", "4"),
        step("mark", "ok", "5s").env("FAULT_FLAG", "broken:items-0001"),
        step("boom", "fail", "5s"),
        step("slow", "sleep:1500", "5s"),
    ];
    let mut yaml = functions(&steps.iter().collect::<Vec<_>>());
    yaml += "dag:\n  entry: orchestrator\n  inputs: { video: required }\n  steps:\n    - { function: first, needs: [video], produces: [first, items] }\n  \
             fan_out:\n    over: items\n    item: item\n    max_parallel: 4\n    max_items: 5\n    steps:\n      \
             - { function: mark, needs: [item], produces: [mark, broken] }\n      \
             - { function: boom, needs: [mark], when: broken, produces: [boom] }\n      \
             - { function: slow, needs: [item], produces: [slow] }\n  retry:\n    attempts: 1\n    backoff: 100ms\n";
    let rt = Runtime::up(&yaml);
    let (status, body) = request(&rt, "siblings-1");
    assert_eq!(status, 500, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("boom [items-0001]: "), "{body}");
    let state = state(&rt, "siblings-1");
    for i in 0..4 {
        assert_eq!(statuses(attempts(&state, "slow", Some(&format!("items-{i:04}")))), [200], "let finish: {state:#}");
    }
    // Well past any call still under way: nothing appears that the state does not name.
    std::thread::sleep(Duration::from_millis(2000));
    let stored = stored(&rt, "siblings-1");
    let named = named(&rt, "siblings-1", &state);
    let unnamed: Vec<&String> = stored.difference(&named).collect();
    assert!(unnamed.is_empty(), "objects the state does not name: {unnamed:#?}");
    assert!(stored.iter().filter(|uri| uri.ends_with("/slow.json")).count() == 4, "{stored:#?}");
}
