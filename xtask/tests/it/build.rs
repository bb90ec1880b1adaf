//! `cargo xtask build` against the real Docker Engine and a real registry
//! (`.ci/services` starts both): multi-arch images pushed and read back,
//! amd64 images serving real invocations, an arm64 image under qemu, rebuilds
//! of exactly what changed, and each failure a clear message.
//!
//! The build tests work on a copy of the workspace (sources only), so they
//! can change sources without touching the repository; they share cargo's
//! target folder, so dependencies are compiled once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use serde_json::{json, Value};
use stage_runtime::{Artifact, Artifacts, Invocation};

use crate::support::{self, Runtime};

const REGISTRY: &str = "127.0.0.1:5000";
const SERVICES_HELP: &str = "start the Docker Engine and the registry with `bash .ci/services` (as root; it needs `apt-get install docker.io docker-registry qemu-user-static binfmt-support mmdebstrap`)";

/// The engine and the registry answer, or the test fails saying how to start them.
fn require_services() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let docker = bollard::Docker::connect_with_local_defaults().expect("a Docker client");
        if let Err(err) = docker.ping().await {
            panic!("the Docker Engine is unreachable ({err}): {SERVICES_HELP}");
        }
        if let Err(err) = reqwest::get(format!("http://{REGISTRY}/v2/")).await {
            panic!("the registry at {REGISTRY} is unreachable ({err}): {SERVICES_HELP}");
        }
    });
}

/// A copy of the workspace's sources in a temp folder, with its pipeline's
/// images under a registry path of their own.
struct Workspace {
    dir: tempfile::TempDir,
    prefix: String,
}

impl Workspace {
    fn copy() -> Workspace {
        let repo = support::repo();
        let dir = tempfile::tempdir().unwrap();
        for entry in ["Cargo.toml", "Cargo.lock", ".cargo", "stages", "xtask", "base-image", "templates"] {
            copy_tree(&repo.join(entry), &dir.path().join(entry));
        }
        let model = repo.join(".cache/models/centerface.onnx");
        assert!(model.is_file(), "no detector model at {}: run `cargo xtask model` first", model.display());
        std::fs::create_dir_all(dir.path().join(".cache/models")).unwrap();
        std::fs::copy(&model, dir.path().join(".cache/models/centerface.onnx")).unwrap();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let prefix = format!("{REGISTRY}/it-{}-{}", std::process::id(), nanos % 1_000_000_000);
        let yaml = std::fs::read_to_string(repo.join("pipeline.yaml")).unwrap();
        let declared = format!("registry: {REGISTRY}/videosearcher");
        assert!(yaml.contains(&declared), "pipeline.yaml declares `{declared}`");
        std::fs::write(dir.path().join("pipeline.yaml"), yaml.replace(&declared, &format!("registry: {prefix}"))).unwrap();
        Workspace { dir, prefix }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn xtask(&self, args: &[&str]) -> Output {
        support::xtask_in(self.dir.path(), args)
    }

    /// `xtask build ARGS`, which must succeed; its stdout.
    fn build(&self, args: &[&str]) -> String {
        let out = self.xtask(&[&["build"], args].concat());
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "build {args:?} failed\nstdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    }

    fn append(&self, relative: &str, text: &str) {
        let path = self.path(relative);
        let mut content = std::fs::read_to_string(&path).unwrap();
        content.push_str(text);
        std::fs::write(path, content).unwrap();
    }

    fn images(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.path(".xtask/build/images.json")).unwrap()).unwrap()
    }
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_file() {
        std::fs::copy(from, to).unwrap();
        return;
    }
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == ".xtask" {
            continue;
        }
        copy_tree(&entry.path(), &to.join(name));
    }
}

/// `(built, pushed, up to date)` from the closing line of a build.
fn counts(stdout: &str) -> (usize, usize, usize) {
    let closing = |line: &&str| line.strip_prefix("built ").is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
    let line = stdout.lines().find(closing).unwrap_or_else(|| panic!("no closing line in:\n{stdout}"));
    let numbers: Vec<usize> = line.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
    (numbers[0], numbers[1], numbers[2])
}

/// The `built` lines: `(image, platform)`.
fn built_images(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter(|line| line.starts_with("built  "))
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            (words[1].to_string(), words[2].to_string())
        })
        .collect()
}

const FUNCTIONS: [&str; 8] =
    ["orchestrator", "extract-audio", "detect-speech", "cut-clips", "compress-clip", "transcribe", "sample-frames", "detect-objects"];

#[test]
fn build_pushes_multi_arch_images_that_run_then_rebuilds_only_what_changed() {
    require_services();
    let _heavy = support::heavy();
    let ws = Workspace::copy();

    // 1. Everything, pushed: the base and eight functions, two platforms each.
    let stdout = ws.build(&["--push"]);
    assert_eq!(counts(&stdout), (18, 18, 0), "{stdout}");
    let images = ws.images();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    let base_layers: BTreeMap<String, Vec<String>> = ["amd64", "arm64"]
        .iter()
        .map(|arch| {
            let tag = images["base"]["platforms"][format!("linux/{arch}")]["tag"].as_str().unwrap();
            let manifest = rt.block_on(get_json(&http, &manifest_url(&ws.prefix, "base", tag)));
            (arch.to_string(), layers(&manifest))
        })
        .collect();
    assert!(base_layers.values().all(|layers| !layers.is_empty()), "{base_layers:?}");
    for function in FUNCTIONS {
        let set = &images["functions"][function];
        let index_tag = set["index"]["tag"].as_str().unwrap_or_else(|| panic!("{function} has no index: {set}"));
        let index = rt.block_on(get_json(&http, &manifest_url(&ws.prefix, function, index_tag)));
        let entries = index["manifests"].as_array().unwrap();
        let mut platforms: Vec<String> =
            entries.iter().map(|entry| format!("{}/{}", entry["platform"]["os"].as_str().unwrap(), entry["platform"]["architecture"].as_str().unwrap())).collect();
        platforms.sort();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{function}: {index}");
        for entry in entries {
            let arch = entry["platform"]["architecture"].as_str().unwrap();
            let manifest = rt.block_on(get_json(&http, &manifest_url(&ws.prefix, function, entry["digest"].as_str().unwrap())));
            let config_digest = manifest["config"]["digest"].as_str().unwrap();
            let config = rt.block_on(get_json(&http, &format!("http://{}/v2/{}/{function}/blobs/{config_digest}", REGISTRY, repo_path(&ws.prefix))));
            assert_eq!((config["architecture"].as_str(), config["os"].as_str()), (Some(arch), Some("linux")), "{function} {arch}");
            let own = layers(&manifest);
            let base = &base_layers[arch];
            assert!(own.starts_with(base), "{function} {arch}: its layers do not start with the base's");
            assert!((1..=2).contains(&(own.len() - base.len())), "{function} {arch}: {} layers above the base", own.len() - base.len());
            assert_eq!(config["config"]["User"], "10001:10001", "{function} {arch}");
            assert_eq!(config["config"]["Labels"]["dev.videosearcher.content-hash"], set["platforms"][format!("linux/{arch}")]["tag"], "{function} {arch}");
        }
    }

    // 2. The amd64 images serve real invocations; one arm64 image starts under qemu.
    serve_invocations(&images);

    // 3. Nothing changed: nothing built.
    assert_eq!(counts(&ws.build(&[])), (0, 0, 18));

    // 4. One function's source: that function, both platforms, naming the file.
    ws.append("stages/cut-clips/src/main.rs", "\n// a change\n");
    let stdout = ws.build(&[]);
    assert_eq!(built_images(&stdout), [("cut-clips".into(), "linux/amd64".into()), ("cut-clips".into(), "linux/arm64".into())], "{stdout}");
    assert!(stdout.contains("changed source stages/cut-clips/src/main.rs"), "{stdout}");

    // 5. The shared runtime crate: every function that uses it (all eight).
    ws.append("stages/runtime/src/lib.rs", "\n// a change\n");
    let stdout = ws.build(&[]);
    assert_eq!(counts(&stdout).0, 16, "{stdout}");
    assert!(stdout.contains("changed source stages/runtime/src/lib.rs"), "{stdout}");

    // 6. A Cargo.lock change outside every function's closure: nothing.
    let lock_before = std::fs::read_to_string(ws.path("Cargo.lock")).unwrap();
    ws.append("xtask/Cargo.toml", "");
    let manifest = std::fs::read_to_string(ws.path("xtask/Cargo.toml")).unwrap();
    std::fs::write(ws.path("xtask/Cargo.toml"), manifest.replacen("[dependencies]\n", "[dependencies]\nitoa = \"1\"\n", 1)).unwrap();
    let stdout = ws.build(&[]);
    assert_ne!(std::fs::read_to_string(ws.path("Cargo.lock")).unwrap(), lock_before, "the lock file changed");
    assert_eq!(counts(&stdout), (0, 0, 18), "{stdout}");

    // 7. The base recipe: the base and every function, both platforms.
    ws.append("base-image/Dockerfile", "LABEL dev.videosearcher.note=\"a change\"\n");
    let stdout = ws.build(&[]);
    assert_eq!(counts(&stdout).0, 18, "{stdout}");
    assert!(stdout.contains("changed base-image/Dockerfile"), "{stdout}");
    assert!(stdout.contains("changed base image"), "{stdout}");
}

fn repo_path(prefix: &str) -> &str {
    prefix.split_once('/').unwrap().1
}

fn manifest_url(prefix: &str, name: &str, reference: &str) -> String {
    format!("http://{REGISTRY}/v2/{}/{name}/manifests/{reference}", repo_path(prefix))
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let accept = "application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";
    let answer = http.get(url).header("accept", accept).send().await.unwrap();
    assert!(answer.status().is_success(), "GET {url}: {}", answer.status());
    serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap()
}

fn layers(manifest: &Value) -> Vec<String> {
    manifest["layers"].as_array().unwrap().iter().map(|layer| layer["digest"].as_str().unwrap().to_string()).collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A function container on the host's network, removed on drop.
struct Container {
    docker: bollard::Docker,
    id: String,
    url: String,
    handle: tokio::runtime::Handle,
}

impl Container {
    async fn start(docker: &bollard::Docker, image: &str, platform: &str, env: Vec<String>, secrets: &Path) -> Container {
        let port = free_port();
        let mut env = env;
        env.extend([format!("PORT={port}"), "BIND_ADDR=127.0.0.1".into(), "exec_timeout=120s".into(), "max_inflight=4".into()]);
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            env: Some(env),
            host_config: Some(HostConfig {
                network_mode: Some("host".into()),
                binds: Some(vec![format!("{}:/var/openfaas/secrets:ro", secrets.display())]),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let options = CreateContainerOptionsBuilder::new().platform(platform).build();
        let id = docker.create_container(Some(options), body).await.unwrap_or_else(|e| panic!("create {image}: {e}")).id;
        docker.start_container(&id, None::<bollard::query_parameters::StartContainerOptions>).await.unwrap();
        Container { docker: docker.clone(), id, url: format!("http://127.0.0.1:{port}"), handle: tokio::runtime::Handle::current() }
    }

    /// Wait until `/_/health` answers 200, or fail with the container's log.
    async fn healthy(&self, within: Duration) {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(answer) = http.get(format!("{}/_/health", self.url)).send().await {
                if answer.status() == 200 {
                    return;
                }
            }
            if tokio::time::Instant::now() > deadline {
                panic!("container {} did not answer /_/health within {within:?}; its log:\n{}", self.id, self.logs().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn logs(&self) -> String {
        use futures::StreamExt as _;
        let options = bollard::query_parameters::LogsOptionsBuilder::new().stdout(true).stderr(true).build();
        let mut stream = self.docker.logs(&self.id, Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&chunk.to_string());
        }
        text
    }

    async fn invoke(&self, inv: &Invocation) -> Value {
        let answer = reqwest::Client::new().post(format!("{}/", self.url)).json(inv).timeout(Duration::from_secs(300)).send().await.unwrap();
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "{}: {body}\nits log:\n{}", self.id, self.logs().await);
        body
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let docker = self.docker.clone();
        let id = self.id.clone();
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
        let _ = std::thread::spawn({
            let handle = self.handle.clone();
            move || handle.block_on(docker.remove_container(&id, Some(options)))
        })
        .join();
    }
}

/// Each amd64 function image answers `/_/health` and serves one real
/// invocation against a local object store, chained as the DAG chains them;
/// the orchestrator's image runs a one-step plan through the local gateway.
fn serve_invocations(images: &Value) {
    let media = support::media();
    let rt_local = Runtime::up(&support::repo_pipeline(|yaml| yaml));
    std::os::unix::fs::symlink(support::repo().join(".cache"), rt_local.dir.path().join(".cache")).unwrap();
    let info: Value = serde_json::from_slice(&std::fs::read(rt_local.dir.path().join("state/runtime.json")).unwrap()).unwrap();
    let store_url = info["store_url"].as_str().unwrap().to_string();
    let gateway_url = rt_local.gateway.clone();
    // The secrets, readable by the image's user.
    let secrets = tempfile::tempdir().unwrap();
    for name in ["s3-access-key", "s3-secret-key"] {
        std::fs::copy(rt_local.dir.path().join("state/secrets").join(name), secrets.path().join(name)).unwrap();
        std::fs::set_permissions(secrets.path().join(name), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(secrets.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let reference = |function: &str, arch: &str| {
        let set = &images["functions"][function];
        format!("{}:{}", set["repository"].as_str().unwrap(), set["platforms"][format!("linux/{arch}")]["tag"].as_str().unwrap())
    };
    let env = vec![
        format!("S3_ENDPOINT={store_url}"),
        format!("S3_BUCKET={}", info["bucket"].as_str().unwrap()),
        "S3_REGION=us-east-1".to_string(),
        "VS_DETECTOR_MODEL=/opt/videosearcher/models/centerface.onnx".to_string(),
        format!("GATEWAY_URL={gateway_url}"),
        format!(
            "VS_PLAN={}",
            json!({"steps": [{"function": "extract-audio", "timeout_ms": 60000}], "retry": {"attempts": 1, "backoff_ms": 100}})
        ),
    ];
    let request_id = "images-1";
    let video = rt_local.upload(Path::new(media["video"].as_str().unwrap()), &format!("requests/{request_id}/input/video.mp4"));

    let rt = &rt_local.rt;
    rt.block_on(async {
        let docker = bollard::Docker::connect_with_local_defaults().unwrap().negotiate_version().await.unwrap();
        let one = |name: &str, artifact: &Value| (name.to_string(), serde_json::from_value::<Artifact>(artifact.clone()).unwrap());
        let mut artifacts: Artifacts = Artifacts::from([("video".to_string(), Artifact::One(video.clone()))]);
        let mut calls = 0;
        for (function, scope) in [
            ("extract-audio", None),
            ("detect-speech", None),
            ("cut-clips", None),
            ("compress-clip", Some("clip-0000")),
            ("transcribe", Some("clip-0000")),
            ("sample-frames", Some("clip-0000")),
            ("detect-objects", Some("clip-0000")),
        ] {
            if function == "compress-clip" {
                let Artifact::Many(clips) = &artifacts["clips"] else { panic!("clips is a list: {artifacts:?}") };
                let first = clips.first().cloned().expect("at least one clip");
                artifacts.insert("clip".into(), Artifact::One(first));
            }
            let container = Container::start(&docker, &reference(function, "amd64"), "linux/amd64", env.clone(), secrets.path()).await;
            container.healthy(Duration::from_secs(30)).await;
            let inv = Invocation { request_id: request_id.into(), scope: scope.map(String::from), inputs: artifacts.clone() };
            let answer = container.invoke(&inv).await;
            let outputs = answer["outputs"].as_object().unwrap_or_else(|| panic!("{function}: no outputs in {answer}"));
            assert!(!outputs.is_empty(), "{function} produced nothing: {answer}");
            for (name, value) in outputs {
                let (name, artifact) = one(name, value);
                artifacts.insert(name, artifact);
            }
            calls += 1;
        }
        assert_eq!(calls, 7);
        assert!(artifacts.contains_key("detections"), "{artifacts:?}");

        // The orchestrator's image drives a one-step plan through the local gateway.
        let container = Container::start(&docker, &reference("orchestrator", "amd64"), "linux/amd64", env.clone(), secrets.path()).await;
        container.healthy(Duration::from_secs(30)).await;
        let inv = Invocation {
            request_id: "images-2".into(),
            scope: None,
            inputs: Artifacts::from([("video".to_string(), Artifact::One(video.clone()))]),
        };
        let answer = container.invoke(&inv).await;
        assert!(answer["outputs"]["state"].is_string(), "{answer}");

        // An arm64 image, under qemu.
        let container = Container::start(&docker, &reference("cut-clips", "arm64"), "linux/arm64", env.clone(), secrets.path()).await;
        container.healthy(Duration::from_secs(60)).await;
    });
}

/// `xtask build ARGS` in `ws` with extra environment; must fail with exit 2.
fn build_fails(ws: &Workspace, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.arg("build").args(args).current_dir(ws.dir.path());
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "build {args:?} did not fail with 2\nstdout:\n{}\nstderr:\n{stderr}", String::from_utf8_lossy(&out.stdout));
    stderr
}

#[test]
fn build_without_an_engine_says_how_to_start_one() {
    let ws = Workspace::copy();
    let stderr = build_fails(&ws, &["--platform", "linux/amd64"], &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
    let first = stderr.lines().next().unwrap();
    assert!(first.starts_with("error: the Docker Engine at unix:///nonexistent/docker.sock is unreachable: "), "{stderr}");
    assert!(stderr.contains("help: start the Docker Engine: `sudo systemctl start docker`"), "{stderr}");
    assert!(!ws.path(".xtask/build/images.json").exists(), "a failed build writes no manifest");
}

#[test]
fn build_with_an_unreachable_registry_fails_before_building() {
    let ws = Workspace::copy();
    let yaml = std::fs::read_to_string(ws.path("pipeline.yaml")).unwrap();
    std::fs::write(ws.path("pipeline.yaml"), yaml.replace(&format!("registry: {}", ws.prefix), "registry: 127.0.0.1:9/videosearcher")).unwrap();
    let stderr = build_fails(&ws, &["--push"], &[]);
    assert!(stderr.starts_with("error: the registry 127.0.0.1:9 is unreachable: "), "{stderr}");
    assert!(stderr.contains("help: start one (Debian's `docker-registry`: `.ci/services` starts it on 127.0.0.1:5000)"), "{stderr}");
    assert!(!ws.path(".xtask/build/logs").exists(), "nothing started");
}

#[test]
fn build_without_the_cross_target_names_the_rustup_command() {
    let ws = Workspace::copy();
    // A rustc whose sysroot has no standard library for any target.
    let rustc = ws.path("rustc-without-targets");
    std::fs::write(&rustc, "#!/bin/sh\nif [ \"$1 $2\" = \"--print sysroot\" ]; then echo /nonexistent/sysroot; exit 0; fi\nexec rustc \"$@\"\n").unwrap();
    std::fs::set_permissions(&rustc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let stderr = build_fails(&ws, &[], &[("RUSTC", rustc.to_str().unwrap())]);
    assert_eq!(
        stderr,
        "error: the Rust target `x86_64-unknown-linux-gnu` (for linux/amd64) is not installed in /nonexistent/sysroot\n\
help: run `rustup target add x86_64-unknown-linux-gnu`, or build only the other platforms with `--platform`\n"
    );
    // The linker for arm64, missing.
    let stderr = build_fails(
        &ws,
        &["--platform", "linux/arm64"],
        &[("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", "/nonexistent/aarch64-linux-gnu-gcc")],
    );
    assert_eq!(
        stderr,
        "error: the linker `/nonexistent/aarch64-linux-gnu-gcc` for `aarch64-unknown-linux-gnu` (for linux/arm64) is not found\n\
help: run `apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross`, or set CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER to a linker for that target\n"
    );
}

#[test]
fn broken_dockerfile_fails_at_its_step_and_tags_nothing() {
    require_services();
    let ws = Workspace::copy();
    let yaml = std::fs::read_to_string(ws.path("pipeline.yaml")).unwrap();
    std::fs::write(ws.path("pipeline.yaml"), yaml.replace("base_recipe: bootstrap", "base_recipe: dockerfile")).unwrap();
    // The users' path, with a file the context does not have.
    std::fs::write(ws.path("base-image/Dockerfile"), "FROM scratch\nCOPY packages /etc/packages\nCOPY no-such-file /opt/\n").unwrap();
    let stderr = build_fails(&ws, &["--platform", "linux/amd64"], &[]);
    assert!(stderr.starts_with("error: building the base image for linux/amd64 failed: "), "{stderr}");
    assert!(stderr.contains("  | Step 3/4 : COPY no-such-file /opt/"), "the failing step is shown:\n{stderr}");
    let log = ws.path(".xtask/build/logs/base-amd64.log");
    assert!(stderr.contains(&format!("help: the whole log is {}", log.canonicalize().unwrap().display())), "{stderr}");
    // No tag names the failed build: a dry run still has the base to build.
    let stdout = ws.build(&["--dry-run", "--platform", "linux/amd64", "--function", "cut-clips"]);
    let base = stdout.lines().find(|line| line.starts_with("base ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(base.ends_with("would build: new"), "{stdout}");
}
