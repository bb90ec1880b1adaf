//! The watchdog contract every function keeps, tested on the real `fault`
//! binary: health and readiness, max_inflight → 429, exec_timeout → 504,
//! SIGTERM → health fails, in-flight work drains, then exit; one JSON log
//! line per invocation; a function that can't start says why.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Function {
    child: Child,
    url: String,
    _secrets: tempfile::TempDir,
}

impl Function {
    fn start(env: &[(&str, &str)]) -> Function {
        let secrets = tempfile::tempdir().unwrap();
        std::fs::write(secrets.path().join("s3-access-key"), "test").unwrap();
        std::fs::write(secrets.path().join("s3-secret-key"), "test-secret").unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fault"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("FUNCTION_NAME", "fault")
            .env("SECRETS_DIR", secrets.path())
            .env("MEMORY_LIMIT_MB", "128")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let f = Function { child, url: format!("http://127.0.0.1:{port}"), _secrets: secrets };
        f.wait_for(|| get(&format!("{}/_/health", f.url)) == Some(200), "health 200");
        f
    }

    fn wait_for(&self, mut cond: impl FnMut() -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn invoke(&self, body: &Value) -> (u16, Value) {
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}/", self.url))
            .json(body)
            .timeout(Duration::from_secs(30))
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    fn terminate(&self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(url: &str) -> Option<u16> {
    reqwest::blocking::get(url).ok().map(|r| r.status().as_u16())
}

fn request(id: &str) -> Value {
    json!({ "request_id": id, "inputs": {} })
}

#[test]
fn max_inflight_answers_429_while_busy() {
    let f = Function::start(&[("FAULT", "sleep:1500"), ("max_inflight", "1")]);
    std::thread::scope(|s| {
        let first = s.spawn(|| f.invoke(&request("first")));
        f.wait_for(|| get(&format!("{}/_/ready", f.url)) == Some(429), "ready to report busy");
        let (status, body) = f.invoke(&request("second"));
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"]["kind"], "overloaded");
        assert_eq!(first.join().unwrap().0, 200);
    });
    assert_eq!(f.invoke(&request("third")).0, 200, "the slot is free again");
}

#[test]
fn exec_timeout_answers_504_and_frees_the_slot() {
    let f = Function::start(&[("FAULT", "hang"), ("exec_timeout", "400ms"), ("max_inflight", "1")]);
    let started = Instant::now();
    let (status, body) = f.invoke(&request("slow"));
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The cancelled handler gives its slot back: the next call times out too, not 429.
    f.wait_for(|| get(&format!("{}/_/ready", f.url)) == Some(200), "the slot to free");
    assert_eq!(f.invoke(&request("again")).0, 504);
}

#[test]
fn sigterm_fails_health_drains_in_flight_work_then_exits() {
    let mut f = Function::start(&[("FAULT", "sleep:1200"), ("healthcheck_interval", "300ms")]);
    let url = f.url.clone();
    std::thread::scope(|s| {
        let in_flight = s.spawn(|| f.invoke(&request("draining")));
        std::thread::sleep(Duration::from_millis(200));
        f.terminate();
        f.wait_for(|| get(&format!("{url}/_/health")) == Some(503), "health to fail");
        let (status, body) = in_flight.join().unwrap();
        assert_eq!(status, 200, "in-flight work completes: {body}");
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = f.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "the function did not exit after draining");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_requests_are_4xx_with_a_classified_error() {
    let f = Function::start(&[]);
    let resp = reqwest::blocking::Client::new().post(format!("{}/", f.url)).body("not json").send().unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(resp.json::<Value>().unwrap()["error"]["code"], "bad_json");
    let (status, body) = f.invoke(&request("../escape"));
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_name");
}

#[test]
fn failures_are_never_200() {
    let f = Function::start(&[("FAULT", "fail")]);
    let (status, body) = f.invoke(&request("r1"));
    assert_eq!(status, 500);
    assert_eq!(body["error"]["kind"], "internal");
    assert_eq!(body["metrics"]["memory_limit_mb"], 128);
}

#[test]
fn one_json_log_line_per_invocation_with_cold_start_first() {
    let mut f = Function::start(&[("FAULT", "sleep:50")]);
    assert_eq!(f.invoke(&request("a")).0, 200);
    assert_eq!(f.invoke(&request("b")).0, 200);
    f.terminate();
    let stdout = f.child.stdout.take().unwrap();
    let lines: Vec<Value> = BufReader::new(stdout)
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).expect("each stdout line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["request_id"], "a");
    assert_eq!(lines[0]["cold_start"], true);
    assert_eq!(lines[1]["cold_start"], false);
    for line in &lines {
        assert_eq!(line["function"], "fault");
        assert_eq!(line["memory_limit_mb"], 128);
        let duration = line["duration_ms"].as_f64().unwrap();
        assert!(duration >= 50.0, "{line}");
        assert!(line["peak_rss_mb"].as_f64().unwrap() > 0.0, "{line}");
        let cost = line["cost_unit"].as_f64().unwrap();
        assert!((cost - duration / 1000.0 * 0.125).abs() < 1e-6, "{line}");
    }
}

#[test]
fn a_function_that_cannot_start_exits_with_the_reason() {
    let secrets = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fault"))
        .env("SECRETS_DIR", secrets.path())
        .env("FAULT", "ok")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot read secret `s3-access-key`"), "{stderr}");
}

#[test]
fn a_function_whose_port_is_taken_exits_with_the_port_in_use_status() {
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("s3-access-key"), "test").unwrap();
    std::fs::write(secrets.path().join("s3-secret-key"), "test-secret").unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_fault"))
        .env("SECRETS_DIR", secrets.path())
        .env("PORT", port.to_string())
        .env("FAULT", "ok")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(i32::from(stage_runtime::EXIT_PORT_IN_USE)), "{stderr}");
    assert!(stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{stderr}");
    // Any other reason to fail at start is a plain failure.
    drop(taken);
    let out = Command::new(env!("CARGO_BIN_EXE_fault")).env("SECRETS_DIR", secrets.path()).env("FAULT", "nonsense").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_starting_function_sweeps_the_temp_dirs_of_dead_replicas_only() {
    let tmp = tempfile::tempdir().unwrap();
    // pid_max is at most 2^22: this pid cannot be alive.
    let dead = tmp.path().join("fault-4194305-abc123");
    let live = tmp.path().join(format!("fault-{}-def456", std::process::id()));
    let other = tmp.path().join("detect-objects-4194305-abc123");
    for dir in [&dead, &live, &other] {
        std::fs::create_dir_all(dir.join("inside")).unwrap();
    }
    let f = Function::start(&[("FAULT", "ok"), ("TMPDIR", tmp.path().to_str().unwrap())]);
    assert!(!dead.exists(), "a dead replica's temp dir goes");
    assert!(live.exists(), "a live process's stays");
    assert!(other.exists(), "another function's is not this one's to judge");
    drop(f);
}
