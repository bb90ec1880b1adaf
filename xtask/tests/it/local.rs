//! `cargo xtask up/status/down/logs` against the real local runtime: real
//! function binaries built from stages/, a real gateway and object store, on
//! free ports in a temp state folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A temp folder with a small pipeline.yaml (orchestrator + extract-audio)
/// whose sources point into this workspace, and a state folder.
struct Local {
    dir: tempfile::TempDir,
}

impl Local {
    fn new(idle_timeout: &str, orchestrator_min: u32, extract_audio_secrets: &str) -> Local {
        let dir = tempfile::tempdir().unwrap();
        let stages = Path::new(env!("CARGO_MANIFEST_DIR")).join("../stages").canonicalize().unwrap();
        let yaml = format!(
            r#"name: video-searcher-test
{common}functions:
  orchestrator:
    source: {stages}/orchestrator
    memory: 128Mi
    cpu: 0.5
    timeout: 5m
    max_inflight: 8
    scale: {{ min: {orchestrator_min}, max: 2 }}
    secrets: [s3-access-key, s3-secret-key]
  extract-audio:
    source: {stages}/extract-audio
    memory: 256Mi
    cpu: 1
    timeout: 60s
    max_inflight: 4
    scale: {{ min: 0, max: 4 }}
    secrets: {extract_audio_secrets}
dag:
  entry: orchestrator
  inputs: {{ video: required }}
  steps:
    - {{ function: extract-audio, needs: [video], produces: [audio] }}
  retry:
    attempts: 2
    backoff: 100ms
"#,
            stages = stages.display(),
            common = crate::support::common_sections(idle_timeout),
        );
        std::fs::write(dir.path().join("pipeline.yaml"), yaml).unwrap();
        Local { dir }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Run `xtask <args>` in the temp folder; ports 0 pick free ones.
    fn xtask(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(args)
            .current_dir(self.dir.path())
            .env("XTASK_STATE_DIR", self.state())
            .env("XTASK_GATEWAY_PORT", "0")
            .env("XTASK_STORE_PORT", "0")
            .env_remove("XTASK_BIN_DIR")
            .output()
            .unwrap()
    }

    fn xtask_ok(&self, args: &[&str]) -> String {
        let out = self.xtask(args);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "xtask {args:?} failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
        stdout.into_owned()
    }

    fn up(&self) -> Gateway {
        let stdout = self.xtask_ok(&["up"]);
        assert!(stdout.contains("gateway  http://127.0.0.1:"), "{stdout}");
        let info: Value = serde_json::from_slice(&std::fs::read(self.state().join("runtime.json")).unwrap()).unwrap();
        Gateway { url: info["gateway_url"].as_str().unwrap().to_string(), pid: info["pid"].as_u64().unwrap() as u32 }
    }

    /// Live processes started for this state folder: the runtime and its functions.
    fn processes(&self) -> Vec<u32> {
        let marker = format!("XTASK_STATE_DIR={}", self.state().display());
        let marker_abs = format!("XTASK_STATE_DIR={}", std::path::absolute(self.state()).unwrap().display());
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
            let found = environ.split(|b| *b == 0).any(|var| var == marker.as_bytes() || var == marker_abs.as_bytes());
            if found && alive(pid) {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for Local {
    /// Never leave a runtime behind, even when a test fails.
    fn drop(&mut self) {
        let _ = self.xtask(&["down"]);
        for pid in self.processes() {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

struct Gateway {
    url: String,
    pid: u32,
}

impl Gateway {
    fn call(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let client = reqwest::Client::new();
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let answer = client
                .request(method, format!("{}{path}", self.url))
                .header("content-type", "application/json")
                .body(body.to_string())
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            let text = answer.text().await.unwrap();
            (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
        })
    }

    fn functions(&self) -> Value {
        let (status, body) = self.call("GET", "/system/functions", "");
        assert_eq!(status, 200, "{body}");
        body
    }

    fn function(&self, name: &str) -> Value {
        let (status, body) = self.call("GET", &format!("/system/function/{name}"), "");
        assert_eq!(status, 200, "{body}");
        body
    }
}

fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < end, "{what}: not within {deadline:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn up_cold_starts_functions_and_down_stops_them() {
    let local = Local::new("300s", 1, "[s3-access-key, s3-secret-key]");
    let gateway = local.up();
    assert_eq!(gateway.call("GET", "/healthz", "").0, 200);

    let functions = gateway.functions();
    let names: Vec<&str> = functions.as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["extract-audio", "orchestrator"]);
    let orchestrator = gateway.function("orchestrator");
    assert_eq!(
        (orchestrator["replicas"].as_u64(), orchestrator["availableReplicas"].as_u64()),
        (Some(1), Some(1)),
        "scale.min 1 starts at up: {orchestrator}"
    );
    let extract = gateway.function("extract-audio");
    assert_eq!(extract["replicas"], 0, "{extract}");
    assert_eq!(extract["invocationCount"], 0);
    assert_eq!(extract["limits"], json!({"memory": "256Mi"}), "no cpu_limit: no cpu limit");
    assert_eq!(extract["requests"], json!({"memory": "256Mi", "cpu": "1"}));
    assert_eq!(extract["envVars"]["exec_timeout"], "60s");

    // A cold call: the process starts, and the function itself rejects the body.
    let (status, body) = gateway.call("POST", "/function/extract-audio", "this is not an invocation");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["function"], "extract-audio", "{body}");
    assert_eq!(body["error"]["code"], "bad_json", "{body}");
    let extract = gateway.function("extract-audio");
    assert_eq!((extract["replicas"].as_u64(), extract["availableReplicas"].as_u64()), (Some(1), Some(1)), "{extract}");
    assert_eq!(extract["invocationCount"], 1);
    let log = std::fs::read_to_string(local.state().join("logs/extract-audio.log")).unwrap();
    assert!(log.contains("listening"), "{log}");

    // Scale to zero on request.
    let (status, body) = gateway.call(
        "POST",
        "/system/scale-function/extract-audio",
        r#"{"serviceName": "extract-audio", "replicas": 0}"#,
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(gateway.function("extract-audio")["replicas"], 0);

    let (status, body) = gateway.call("POST", "/function/no-such-function", "{}");
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "unknown_function", "{body}");

    let status = local.xtask_ok(&["status"]);
    assert!(status.contains("FUNCTION       REPLICAS  INVOCATIONS  MEMORY  TIMEOUT"), "{status}");
    assert!(status.contains("extract-audio  0/0       1            256Mi   60s"), "{status}");
    assert!(status.contains("orchestrator   1/1       0            128Mi   300s"), "{status}");

    let again = local.xtask_ok(&["up"]);
    assert!(again.contains(&format!("already running (pid {})", gateway.pid)), "{again}");

    let logs = local.xtask_ok(&["logs", "extract-audio", "-n", "1"]);
    assert_eq!(logs.lines().count(), 1, "{logs}");

    let running = local.processes();
    assert!(running.contains(&gateway.pid), "runtime {} not among {running:?}", gateway.pid);
    assert!(running.len() >= 2, "the orchestrator process should run: {running:?}");
    let down = local.xtask_ok(&["down"]);
    assert!(down.contains("stopped"), "{down}");
    let left: Vec<u32> = running.into_iter().filter(|pid| alive(*pid)).collect();
    assert!(left.is_empty(), "processes left after down: {left:?}");
    assert!(!local.state().join("runtime.json").exists());

    // Nothing runs: status says so and exits 3, so that scripts can test it.
    let status = local.xtask(&["status"]);
    assert_eq!(status.status.code(), Some(3), "{status:?}");
    assert!(String::from_utf8_lossy(&status.stdout).contains("nothing is deployed"), "{status:?}");
    assert!(local.xtask_ok(&["down"]).contains("no local runtime is running"));
}

#[test]
fn idle_function_scales_to_zero_and_starts_again() {
    let local = Local::new("1s", 0, "[s3-access-key, s3-secret-key]");
    let gateway = local.up();
    assert_eq!(gateway.function("orchestrator")["replicas"], 0);

    assert_eq!(gateway.call("POST", "/function/extract-audio", "{").0, 400);
    assert_eq!(gateway.function("extract-audio")["replicas"], 1);
    wait_for("extract-audio scaled to zero", Duration::from_secs(15), || {
        gateway.function("extract-audio")["replicas"] == 0
    });
    wait_for("only the runtime left", Duration::from_secs(15), || local.processes() == [gateway.pid]);

    let (status, body) = gateway.call("POST", "/function/extract-audio/any/path?x=1", "[]");
    assert_eq!(status, 400, "a second cold start: {body}");
    assert_eq!(gateway.function("extract-audio")["invocationCount"], 2);
}

#[test]
fn function_that_exits_at_start_answers_502_with_its_log() {
    // Without its S3 secrets the function cannot start.
    let local = Local::new("300s", 0, "[]");
    let gateway = local.up();
    let (status, body) = gateway.call("POST", "/function/extract-audio", "{}");
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["error"]["code"], "function_exited", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("exited during start"), "{message}");
    assert!(message.contains("cannot read secret `s3-access-key`"), "the log tail: {message}");
    assert_eq!(gateway.function("extract-audio")["replicas"], 0);
}

#[test]
fn scale_to_zero_then_a_call_is_a_cold_start() {
    let local = Local::new("300s", 0, "[s3-access-key, s3-secret-key]");
    let gateway = local.up();
    let scaled = local.xtask_ok(&["scale", "extract-audio", "--replicas", "1"]);
    assert!(scaled.contains("extract-audio: 1 replica(s) ready"), "{scaled}");
    assert_eq!(gateway.function("extract-audio")["availableReplicas"], 1);
    let before = local.processes();

    local.xtask_ok(&["scale", "extract-audio", "--replicas", "0"]);
    assert_eq!(gateway.function("extract-audio")["replicas"], 0);
    wait_for("its process gone", Duration::from_secs(15), || local.processes().len() == before.len() - 1);

    // The call starts a new process: a cold start, as the function reports.
    let (status, body) = gateway.call("POST", "/function/extract-audio", r#"{"request_id": "scale-1", "inputs": {}}"#);
    assert_eq!(status, 400, "no video: {body}");
    assert_eq!(body["metrics"]["cold_start"], true, "{body}");
    assert_eq!(local.processes().len(), before.len(), "one process again");

    let unknown = local.xtask(&["scale", "no-such-function", "--replicas", "0"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no function `no-such-function`"));
}
