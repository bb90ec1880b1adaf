//! A real local runtime for a test: the repository's pipeline.yaml (or an
//! edited copy) in a temp folder, `xtask up` on free ports, a store client
//! with the runtime's credentials, and `xtask down` on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use stage_runtime::{Invocation, Store, StoreConfig};

/// What test pipelines written from scratch share: storage, secrets, the
/// local target (with `idle_timeout`) and the repository's parameters.
pub fn common_sections(idle_timeout: &str) -> String {
    format!(
        "timeouts:
  cold_start: 10s
  margin: 1s
storage:
  bucket: videosearcher
  region: us-east-1
  access_key_secret: s3-access-key
  secret_key_secret: s3-secret-key
secrets: [s3-access-key, s3-secret-key]
targets:
  local:
    kind: local
    gateway_port: 8080
    store_port: 9000
    idle_timeout: {idle_timeout}
{PARAMETERS}"
    )
}

const PARAMETERS: &str = "parameters:
  speech:
    sample_rate: 22050
    top_db: { min: 24, max: 49 }
    sentence_seconds: { min: 6, max: 30 }
  compress:
    crf: 30
    audio_sample_rate: 16000
  frames:
    per_minute: 12
  detector:
    model: centerface
    model_dir: .cache/models
    score_threshold: 0.5
    nms_iou: 0.3
    input_size: 640
";

/// The functions of the repository's pipeline.yaml, in its order.
pub const FUNCTIONS: [&str; 11] = [
    "orchestrator",
    "extract-audio",
    "detect-speech",
    "cut-clips",
    "clip-audio",
    "compress-clip",
    "transcribe",
    "sample-frames",
    "detect-objects",
    "match-transcript",
    "answer",
];

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The repository's pipeline.yaml with its relative paths (function
/// sources, the detector model) made absolute, then `edit`ed.
pub fn repo_pipeline(edit: impl FnOnce(String) -> String) -> String {
    let repo = repo();
    let yaml = std::fs::read_to_string(repo.join("pipeline.yaml")).unwrap();
    let yaml = yaml
        .replace("source: stages/", &format!("source: {}/stages/", repo.display()))
        .replace("model_dir: .cache/", &format!("model_dir: {}/.cache/", repo.display()))
        .replace("base: base-image", &format!("base: {}/base-image", repo.display()));
    edit(yaml)
}

pub struct Runtime {
    pub dir: tempfile::TempDir,
    pub gateway: String,
    pub store: Store,
    pub rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Runtime {
    /// Write `yaml` as pipeline.yaml in a new temp folder and start its runtime.
    pub fn up(yaml: &str) -> Runtime {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pipeline.yaml"), yaml).unwrap();
        let out = xtask_in(dir.path(), &["up"]);
        assert!(out.status.success(), "xtask up failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let state = dir.path().join("state");
        let info: Value = serde_json::from_slice(&std::fs::read(state.join("runtime.json")).unwrap()).unwrap();
        let secret = |name: &str| std::fs::read_to_string(state.join("secrets").join(name)).unwrap().trim().to_string();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let store = {
            let _guard = rt.enter();
            Store::new(&StoreConfig {
                endpoint: info["store_url"].as_str().unwrap().to_string(),
                bucket: info["bucket"].as_str().unwrap().to_string(),
                region: "us-east-1".into(),
                access_key: secret("s3-access-key"),
                secret_key: secret("s3-secret-key"),
            })
            .unwrap()
        };
        let gateway = info["gateway_url"].as_str().unwrap().to_string();
        Runtime { dir, gateway, store, rt, http: reqwest::Client::new() }
    }

    pub fn xtask(&self, args: &[&str]) -> Output {
        xtask_in(self.dir.path(), args)
    }

    /// The log of one function (its JSON lines and its stderr). Panics when
    /// there is none, so that a check over its lines cannot pass on nothing.
    pub fn log(&self, function: &str) -> String {
        let path = self.log_path(function);
        self.log_if_started(function).unwrap_or_else(|| panic!("no log of `{function}` at {}: it never started", path.display()))
    }

    /// The log of one function, or `None` when none of its replicas ever
    /// started (a replica starts on its function's first call).
    pub fn log_if_started(&self, function: &str) -> Option<String> {
        std::fs::read_to_string(self.log_path(function)).ok()
    }

    fn log_path(&self, function: &str) -> PathBuf {
        self.dir.path().join("state/logs").join(format!("{function}.log"))
    }

    pub fn upload(&self, file: &Path, key: &str) -> String {
        self.rt.block_on(self.store.upload(file, key)).unwrap().0
    }

    pub fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> String {
        self.rt.block_on(self.store.put_bytes(key, bytes.into())).unwrap()
    }

    pub fn get_json(&self, uri: &str) -> Value {
        let bytes = self.rt.block_on(self.store.get_bytes(uri)).unwrap_or_else(|e| panic!("{uri}: {e}"));
        serde_json::from_slice(&bytes).unwrap()
    }

    pub fn state(&self, request_id: &str) -> Option<Value> {
        let uri = self.store.uri(&format!("requests/{request_id}/state.json"));
        let bytes = self.rt.block_on(self.store.get_bytes(&uri)).ok()?;
        Some(serde_json::from_slice(&bytes).unwrap())
    }

    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.rt.block_on(self.store.list(prefix)).unwrap()
    }

    /// POST an invocation to `/function/<name>` through the gateway.
    pub fn invoke(&self, function: &str, inv: &Invocation) -> (u16, Value) {
        self.rt.block_on(self.invoke_async(function, inv))
    }

    pub async fn invoke_async(&self, function: &str, inv: &Invocation) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/function/{function}", self.gateway))
            .json(inv)
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let _ = xtask_in(self.dir.path(), &["down"]);
    }
}

/// `xtask <args>` in `dir`, with the state in `dir/state` and free ports.
pub fn xtask_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(dir)
        .env("XTASK_STATE_DIR", dir.join("state"))
        .env("XTASK_GATEWAY_PORT", "0")
        .env("XTASK_STORE_PORT", "0")
        .output()
        .unwrap()
}

/// Tests that push real media through a runtime take both cores: one at a time.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The synthesized test media (made once, cached in the repository's `.cache/media`).
pub fn media() -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["media", "--out"])
        .arg(repo().join(".cache/media"))
        .output()
        .unwrap();
    assert!(out.status.success(), "xtask media failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Stream facts of a media file, from ffprobe.
pub fn probe(file: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-show_format", "-of", "json"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
