//! The local gateway against OpenFaaS's own API: schemathesis runs every
//! operation of the reference spec (`../shared/reference/openfaas/`, used in
//! place) on a running runtime; an async call POSTs its answer to its
//! callback; `/metrics` counts calls under OpenFaaS's metric names.

use std::io::{BufRead as _, Read as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use stage_runtime::{Artifact, Artifacts, Invocation};

use crate::support::{self, Runtime};

/// The schemathesis release the tests are written against.
const SCHEMATHESIS: &str = "4.32.5";

fn spec() -> PathBuf {
    let dir = std::env::var_os("VS_OPENFAAS_SPEC_DIR").map(PathBuf::from).unwrap_or_else(|| support::repo().join("../shared/reference/openfaas"));
    let spec = dir.join("gateway.spec.openapi.yml");
    assert!(spec.is_file(), "the OpenFaaS gateway spec is not at {}: set VS_OPENFAAS_SPEC_DIR to the folder with gateway.spec.openapi.yml", spec.display());
    spec
}

/// The schemathesis executable: `$VS_CACHE_DIR/schemathesis-<version>`, where `.ci/run` installs it.
fn schemathesis() -> PathBuf {
    let cache = std::env::var_os("VS_CACHE_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/videosearcher")
    });
    let venv = cache.join(format!("schemathesis-{SCHEMATHESIS}"));
    let bin = venv.join("bin/schemathesis");
    assert!(
        bin.is_file(),
        "schemathesis is not installed at {}: run `python3 -m venv {venv} && {venv}/bin/pip install schemathesis=={SCHEMATHESIS}` (`.ci/run` does)",
        bin.display(),
        venv = venv.display()
    );
    bin
}

#[test]
fn the_gateway_passes_the_openfaas_spec() {
    let schemathesis = schemathesis();
    let rt = Runtime::up(&support::repo_pipeline(|yaml| yaml));
    let config = support::repo().join("xtask/tests/it/schemathesis.toml");
    // Its cache (`.schemathesis/`) goes to a folder of its own, not the clone.
    let scratch = tempfile::tempdir().unwrap();
    let out = Command::new(&schemathesis)
        .current_dir(scratch.path())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(spec())
        .args(["--url", &rt.gateway, "--max-examples", "30", "--seed", "1", "--no-color"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "schemathesis found failures:\n{stdout}\n{stderr}");
    // It ran every operation of the spec, not none.
    assert!(stdout.contains("Selected: 20/20") && stdout.contains("Tested: 20"), "{stdout}");
    assert!(!stdout.contains("errored"), "{stdout}");
}

#[test]
fn an_async_call_posts_its_answer_to_the_callback_and_metrics_count_it() {
    let _heavy = support::heavy();
    let rt = Runtime::up(&support::repo_pipeline(|yaml| yaml));
    let media = support::media();
    let video = rt.upload(Path::new(media["video"].as_str().unwrap()), "requests/async-1/input/video.mp4");
    let inv = Invocation {
        request_id: "async-1".into(),
        scope: None,
        inputs: Artifacts::from([("video".to_string(), Artifact::One(video))]),
    };

    // One request, read whole: what the callback receives.
    let callback = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let callback_url = format!("http://{}/done", callback.local_addr().unwrap());
    let received = std::thread::spawn(move || {
        let (stream, _) = callback.accept().unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let mut reader = std::io::BufReader::new(stream);
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push(line.trim_end().to_string());
        }
        let length: usize = head
            .iter()
            .find_map(|h| h.to_ascii_lowercase().strip_prefix("content-length: ").map(|n| n.parse().unwrap()))
            .expect("the callback carries a Content-Length");
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = reader.into_inner();
        std::io::Write::write_all(&mut stream, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").unwrap();
        (head, body)
    });

    let answer = rt.rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/async-function/extract-audio", rt.gateway))
            .header("x-callback-url", &callback_url)
            .json(&inv)
            .send()
            .await
            .unwrap()
    });
    assert_eq!(answer.status(), 202, "accepted at once");
    let call_id = answer.headers()["x-call-id"].to_str().unwrap().to_string();

    let (head, body) = received.join().unwrap();
    let header = |name: &str| {
        let prefix = format!("{name}: ");
        head.iter().find_map(|h| h.to_ascii_lowercase().starts_with(&prefix).then(|| h[prefix.len()..].to_string()))
    };
    assert!(head[0].starts_with("POST /done "), "{head:?}");
    assert_eq!(header("x-call-id").as_deref(), Some(call_id.as_str()), "{head:?}");
    assert_eq!(header("x-function-status").as_deref(), Some("200"), "{head:?}");
    assert_eq!(header("x-function-name").as_deref(), Some("extract-audio"), "{head:?}");
    let seconds: f64 = header("x-duration-seconds").unwrap().parse().unwrap();
    assert!(seconds > 0.0, "{head:?}");
    let response: Value = serde_json::from_slice(&body).unwrap();
    let audio = response["outputs"]["audio"].as_str().unwrap_or_else(|| panic!("the function's answer: {response}"));
    assert!(audio.ends_with("requests/async-1/extract-audio/audio.wav"), "{audio}");

    // A call with an unknown function is refused at once, not queued.
    let unknown = rt.rt.block_on(async {
        reqwest::Client::new().post(format!("{}/async-function/no-such-function", rt.gateway)).send().await.unwrap().status()
    });
    assert_eq!(unknown, 404);

    let metrics = rt.rt.block_on(async {
        reqwest::get(format!("{}/metrics", rt.gateway)).await.unwrap().text().await.unwrap()
    });
    for line in [
        r#"gateway_function_invocation_started{function_name="extract-audio.openfaas-fn"} 1"#,
        r#"gateway_function_invocation_total{code="200",function_name="extract-audio.openfaas-fn"} 1"#,
        r#"gateway_functions_seconds_count{code="200",function_name="extract-audio.openfaas-fn"} 1"#,
        r#"gateway_service_count{function_name="extract-audio.openfaas-fn"} 1"#,
    ] {
        assert!(metrics.lines().any(|l| l == line), "no `{line}` in:\n{metrics}");
    }
}
