//! Scale-out on the local runtime: a function whose replicas are full gets
//! another one, up to `scale.max`; past that, calls wait at the gateway for
//! a place (the wait is measured and told) instead of being turned away;
//! idle replicas go; one that drains its last call holds up no other.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, Runtime};

/// How long `slow` works on each call.
const WORK: Duration = Duration::from_millis(1500);

/// The orchestrator and `slow` (fault, sleeping `WORK`), one call at a
/// time per replica, at most three replicas, each declaring 0.25 CPU
/// (three fit a machine of one core).
fn pipeline(idle_timeout: &str) -> String {
    pipeline_with(idle_timeout, 0.25, WORK)
}

fn pipeline_with(idle_timeout: &str, cpu: f64, work: Duration) -> String {
    let stages = support::repo().join("stages");
    format!(
        r#"name: scaling-test
{common}functions:
  orchestrator:
    source: {orchestrator}
    memory: 128Mi
    cpu: 0.5
    timeout: 1m
    max_inflight: 8
    scale: {{ min: 0, max: 1 }}
    secrets: [s3-access-key, s3-secret-key]
  slow:
    source: {fault}
    memory: 64Mi
    cpu: {cpu}
    timeout: 10s
    max_inflight: 1
    scale: {{ min: 0, max: 3 }}
    env: {{ FAULT: "sleep:{work}" }}
    secrets: [s3-access-key, s3-secret-key]
dag:
  entry: orchestrator
  inputs: {{ video: required }}
  steps:
    - {{ function: slow, needs: [video], produces: [slow] }}
  retry:
    attempts: 1
    backoff: 100ms
"#,
        common = support::common_sections(idle_timeout),
        orchestrator = stages.join("orchestrator").display(),
        fault = stages.join("fault").display(),
        work = work.as_millis(),
    )
}

/// One answer of `slow`: its status, whether the function called it a cold
/// start, and the gateway's queue wait.
#[derive(Debug)]
struct Answer {
    status: u16,
    cold_start: bool,
    queued: Duration,
}

/// One call of `slow` with request id `id`.
async fn call(client: reqwest::Client, gateway: String, id: String) -> Answer {
    let body = serde_json::json!({ "request_id": id, "inputs": {} });
    let answer = client.post(format!("{gateway}/function/slow")).json(&body).timeout(Duration::from_secs(60)).send().await.unwrap();
    let status = answer.status().as_u16();
    let header = answer.headers().get(stage_runtime::QUEUE_WAIT_HEADER).map(|v| v.to_str().unwrap().to_string());
    let body: Value = answer.json().await.unwrap();
    let queued = header.unwrap_or_else(|| panic!("no {} header: {body}", stage_runtime::QUEUE_WAIT_HEADER));
    Answer {
        status,
        cold_start: body["metrics"]["cold_start"].as_bool().unwrap_or_else(|| panic!("no metrics: {body}")),
        queued: Duration::from_secs_f64(queued.parse().unwrap()),
    }
}

/// `n` calls of `slow` at once, with request ids `<prefix>-<i>`.
fn at_once(rt: &Runtime, prefix: &str, n: usize) -> Vec<Answer> {
    let client = reqwest::Client::new();
    let calls = (0..n).map(|i| call(client.clone(), rt.gateway.clone(), format!("{prefix}-{i}")));
    rt.rt.block_on(futures::future::join_all(calls))
}

fn function(rt: &Runtime) -> Value {
    let get = async { reqwest::get(format!("{}/system/function/slow", rt.gateway)).await.unwrap().json::<Value>().await.unwrap() };
    rt.rt.block_on(get)
}

#[test]
fn a_full_function_gets_replicas_up_to_its_max_then_calls_wait_for_a_place_and_idle_replicas_go() {
    let rt = Runtime::up(&pipeline("3s"));

    // Three at once, each replica taking one: three cold starts.
    let cold = at_once(&rt, "first", 3);
    assert!(cold.iter().all(|a| a.status == 200 && a.cold_start), "three new replicas: {cold:?}");
    let slow = function(&rt);
    assert_eq!((slow["replicas"].as_u64(), slow["availableReplicas"].as_u64()), (Some(3), Some(3)), "{slow}");

    // Five at once on three warm replicas: three run now, two wait for a
    // place (about one call's work) and none is turned away or starts a fourth.
    let started = Instant::now();
    let mut warm = at_once(&rt, "second", 5);
    let took = started.elapsed();
    assert!(warm.iter().all(|a| a.status == 200 && !a.cold_start), "the warm replicas served all: {warm:?}");
    warm.sort_by_key(|a| a.queued);
    let quick: Vec<Duration> = warm[..3].iter().map(|a| a.queued).collect();
    let waited: Vec<Duration> = warm[3..].iter().map(|a| a.queued).collect();
    assert!(quick.iter().all(|q| *q < WORK / 3), "three went straight to a replica: {warm:?}");
    assert!(waited.iter().all(|q| *q >= WORK * 2 / 3), "two waited for a place: {warm:?}");
    assert!(took >= WORK * 2, "two rounds of work on three replicas: {took:?}");
    assert_eq!(function(&rt)["replicas"], 3, "never more than scale.max");

    // Idle for idle_timeout: every replica goes (scale.min is 0).
    let deadline = Instant::now() + Duration::from_secs(30);
    while function(&rt)["replicas"] != 0 {
        assert!(Instant::now() < deadline, "still running after 30 s idle: {}", function(&rt));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One machine schedules replicas as a one-node cluster does by CPU
/// requests: `slow` declaring every core, a second replica does not fit, and
/// the calls wait for the first instead.
#[test]
fn a_replica_beyond_the_first_starts_only_while_the_declared_cpu_fits_the_machine() {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let rt = Runtime::up(&pipeline_with("300s", cores as f64, WORK));
    let mut answers = at_once(&rt, "fits", 2);
    assert!(answers.iter().all(|a| a.status == 200), "{answers:?}");
    assert_eq!(answers.iter().filter(|a| a.cold_start).count(), 1, "one replica served both: {answers:?}");
    answers.sort_by_key(|a| a.queued);
    assert!(answers[1].queued >= WORK * 2 / 3, "the second waited for the first's place: {answers:?}");
    assert_eq!(function(&rt)["replicas"], 1);
}

/// Stopping a replica waits for its last call (up to the grace period); the
/// function's other calls do not wait with it. Here `slow` works 6 s a call,
/// is scaled to zero while one runs, and a call sent meanwhile goes to a
/// fresh replica at once, while the old one drains and answers its own.
#[test]
fn a_replica_draining_its_last_call_holds_up_no_other_call() {
    let work = Duration::from_secs(6);
    let rt = Runtime::up(&pipeline_with("1h", 0.25, work));
    let client = reqwest::Client::new();
    let gateway = rt.gateway.clone();
    let first = rt.rt.spawn(call(client.clone(), gateway.clone(), "draining".to_string()));
    // Until its replica is up (the gateway hands it the call at once), and
    // a moment more: the call then has most of its work ahead.
    let deadline = Instant::now() + Duration::from_secs(30);
    while function(&rt)["availableReplicas"] != 1 {
        assert!(Instant::now() < deadline, "no replica came up for the first call: {}", function(&rt));
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let scale = client.post(format!("{gateway}/system/scale-function/slow")).json(&serde_json::json!({ "serviceName": "slow", "replicas": 0 }));
    let scaled = rt.rt.spawn(async move { scale.send().await.unwrap().status().as_u16() });
    std::thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    let meanwhile = rt.rt.block_on(call(client, gateway, "meanwhile".to_string()));
    let took = sent.elapsed();
    let (draining, scaled) = rt.rt.block_on(async { (first.await.unwrap(), scaled.await.unwrap()) });
    assert_eq!(draining.status, 200, "the draining replica finished its call: {draining:?}");
    assert!(meanwhile.status == 200 && meanwhile.cold_start, "a fresh replica served the call sent meanwhile: {meanwhile:?}");
    // Its own work and a cold start; waiting for the drain too would add
    // the first call's remaining ~5 s.
    assert!(took < work * 3 / 2, "the call sent meanwhile took {took:?} for {work:?} of work: it waited for the draining replica ({meanwhile:?})");
    assert!((200..300).contains(&scaled), "scale-function answered {scaled}");
    let log = rt.log("slow");
    assert!(log.contains("draining in-flight work") && log.contains("drained; exiting"), "the first replica drained its call: {log}");
}

/// The runtime picks a replica's port and the replica binds it: another
/// process can take it in between. A replica that exits for that reason
/// ([`stage_runtime::EXIT_PORT_IN_USE`]) is started again on another port.
#[test]
fn a_replica_whose_port_was_taken_is_started_again_on_another() {
    let rt = Runtime::up(&pipeline("300s"));
    let fault = function(&rt)["envProcess"].as_str().unwrap().to_string();
    let marker = rt.dir.path().join("first-start");
    let script = rt.dir.path().join("port-taken-once.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n# The first start finds its port taken; the next ones are the function.\n\
             if [ ! -e '{marker}' ]; then touch '{marker}'; echo 'error: cannot listen: in use' >&2; exit {code}; fi\nexec '{fault}' \"$@\"\n",
            marker = marker.display(),
            code = stage_runtime::EXIT_PORT_IN_USE,
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let deployment = serde_json::json!({
        "service": "port-taken",
        "image": "local",
        "envProcess": script.display().to_string(),
        "envVars": { "FAULT": "ok" },
        "secrets": ["s3-access-key", "s3-secret-key"],
    });
    let client = reqwest::Client::new();
    let deployed = rt.rt.block_on(client.post(format!("{}/system/functions", rt.gateway)).json(&deployment).send()).unwrap();
    assert_eq!(deployed.status().as_u16(), 202, "{:?}", rt.rt.block_on(deployed.text()));
    let body = serde_json::json!({ "request_id": "port-1", "inputs": {} });
    let answer = rt.rt.block_on(client.post(format!("{}/function/port-taken", rt.gateway)).json(&body).send()).unwrap();
    let status = answer.status().as_u16();
    let answer: Value = rt.rt.block_on(answer.json()).unwrap();
    assert_eq!(status, 200, "started again and answered: {answer}");
    assert_eq!(answer["metrics"]["cold_start"], true, "{answer}");
    assert!(marker.exists(), "the first start did exit");
    let log = rt.log("port-taken");
    assert!(log.contains("error: cannot listen: in use"), "the first start's own words: {log}");
}
