//! `cargo xtask build` against the real Docker Engine and a real registry
//! (`.ci/services` starts both): multi-arch images pushed and read back,
//! amd64 images serving real invocations, an arm64 image under qemu, rebuilds
//! of exactly what changed, and each failure a clear message.
//!
//! The build tests work on a copy of the workspace (sources only), so they
//! can change sources without touching the repository; they share cargo's
//! target folder, so dependencies are compiled once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use serde_json::Value;

use crate::support::{self, FUNCTIONS};

/// The one step verify's and bench's requests skip: they carry no query.
const NEEDS_A_QUERY: &str = "match-transcript";

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


#[test]
fn build_pushes_multi_arch_images_that_run_then_rebuilds_only_what_changed() {
    require_services();
    let _heavy = support::heavy();
    let ws = Workspace::copy();

    // 1. Everything, pushed: the base and eleven functions, two platforms each.
    let stdout = ws.build(&["--push"]);
    assert_eq!(counts(&stdout), (24, 24, 0), "{stdout}");
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

    // 2. The amd64 images run the pipeline as the `docker` target; one arm64 image starts under qemu.
    docker_target(&ws, &images);

    // 3. Nothing changed: nothing built.
    assert_eq!(counts(&ws.build(&[])), (0, 0, 24));

    // 4. One function's source: that function, both platforms, naming the file.
    ws.append("stages/cut-clips/src/main.rs", "\n// a change\n");
    let stdout = ws.build(&[]);
    assert_eq!(built_images(&stdout), [("cut-clips".into(), "linux/amd64".into()), ("cut-clips".into(), "linux/arm64".into())], "{stdout}");
    assert!(stdout.contains("changed source stages/cut-clips/src/main.rs"), "{stdout}");

    // 5. The shared runtime crate: every function that uses it (all eleven).
    ws.append("stages/runtime/src/lib.rs", "\n// a change\n");
    let stdout = ws.build(&[]);
    assert_eq!(counts(&stdout).0, 22, "{stdout}");
    assert!(stdout.contains("changed source stages/runtime/src/lib.rs"), "{stdout}");

    // 6. A Cargo.lock change outside every function's closure: nothing.
    let lock_before = std::fs::read_to_string(ws.path("Cargo.lock")).unwrap();
    ws.append("xtask/Cargo.toml", "");
    let manifest = std::fs::read_to_string(ws.path("xtask/Cargo.toml")).unwrap();
    std::fs::write(ws.path("xtask/Cargo.toml"), manifest.replacen("[dependencies]\n", "[dependencies]\nitoa = \"1\"\n", 1)).unwrap();
    let stdout = ws.build(&[]);
    assert_ne!(std::fs::read_to_string(ws.path("Cargo.lock")).unwrap(), lock_before, "the lock file changed");
    assert_eq!(counts(&stdout), (0, 0, 24), "{stdout}");

    // 7. The base recipe: the base and every function, both platforms.
    ws.append("base-image/Dockerfile", "LABEL dev.videosearcher.note=\"a change\"\n");
    let stdout = ws.build(&[]);
    assert_eq!(counts(&stdout).0, 24, "{stdout}");
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

/// The amd64 images as the `docker` target: deployed, verified end to end,
/// limits on every container, scaled to zero and started again by a call;
/// then a detector declared with too little memory fails, classified as
/// out of memory in the answer and in the request state. One arm64 image
/// starts under qemu.
fn docker_target(ws: &Workspace, images: &Value) {
    let xtask = |args: &[&str]| {
        let out = ws.xtask(&[&["--target", "docker"], args].concat());
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        (out.status.code(), stdout, stderr)
    };
    let ok = |args: &[&str]| {
        let (code, stdout, stderr) = xtask(args);
        assert_eq!(code, Some(0), "xtask {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
        stdout
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let docker = rt.block_on(async { bollard::Docker::connect_with_local_defaults().unwrap().negotiate_version().await.unwrap() });
    let state = ws.path("state");
    let containers = |function: &str| -> Vec<bollard::models::ContainerInspectResponse> {
        rt.block_on(async {
            let labels = vec![format!("dev.videosearcher.runtime={}", state.display()), format!("dev.videosearcher.function={function}")];
            let filters = std::collections::HashMap::from([("label", labels)]);
            // Exited ones too: a replica that died must not be left behind.
            let options = bollard::query_parameters::ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
            let mut found = Vec::new();
            for summary in docker.list_containers(Some(options)).await.unwrap() {
                let id = summary.id.unwrap();
                found.push(docker.inspect_container(&id, None::<bollard::query_parameters::InspectContainerOptions>).await.unwrap());
            }
            found
        })
    };

    // Whatever happens below, the runtime and its containers go.
    struct Teardown<'a>(&'a Workspace);
    impl Drop for Teardown<'_> {
        fn drop(&mut self) {
            let _ = self.0.xtask(&["--target", "docker", "teardown"]);
        }
    }
    let _teardown = Teardown(ws);
    let deployed = ok(&["deploy"]);
    assert!(deployed.contains("gateway  http://127.0.0.1:"), "{deployed}");
    let verified = ok(&["verify", "--json", ws.path("verify.json").to_str().unwrap()]);
    assert!(verified.contains("verify: ok"), "{verified}");

    // Every replica ran the built image, with its limits, on the host's network.
    let summary: Value = serde_json::from_slice(&std::fs::read(ws.path("verify.json")).unwrap()).unwrap();
    let info: Value = serde_json::from_slice(&std::fs::read(state.join("runtime.json")).unwrap()).unwrap();
    let gateway = info["gateway_url"].as_str().unwrap().to_string();
    let get = |path: &str| -> Value { rt.block_on(async { reqwest::get(format!("{gateway}{path}")).await.unwrap().json().await.unwrap() }) };
    for function in FUNCTIONS {
        let running = containers(function);
        if function == NEEDS_A_QUERY {
            assert!(running.is_empty(), "{function} ran for a request without a query");
            assert_eq!(summary["summary"][function]["invocations"], 0, "{function}");
            continue;
        }
        // At least one (idle_timeout is 300s), more when its calls filled one.
        let status = get(&format!("/system/function/{function}"));
        let most: usize = status["labels"]["com.openfaas.scale.max"].as_str().unwrap().parse().unwrap();
        assert!((1..=most).contains(&running.len()), "{function}: {} containers, scale.max {most}", running.len());
        let declared = status["limits"]["memory"].as_str().unwrap().to_string();
        let declared_mb: i64 = declared.strip_suffix("Mi").unwrap().parse().unwrap();
        if function != "orchestrator" {
            assert_eq!(summary["summary"][function]["memory_limit_mb"], declared_mb, "{function} reports the limit it was given");
        }
        let platform = images["functions"][function]["platforms"]["linux/amd64"].clone();
        for container in &running {
            let host = container.host_config.as_ref().unwrap();
            assert_eq!(host.memory, Some(declared_mb * 1024 * 1024), "{function}: {declared}");
            assert_eq!(host.memory_swap, host.memory, "{function}: no swap above the limit");
            assert_eq!(host.network_mode.as_deref(), Some("host"), "{function}");
            assert_eq!(container.image.as_deref(), platform["image_id"].as_str(), "{function} runs the image the build made");
        }
    }
    // cpu is a share of a busy machine (1024 a core); only cpu_limit caps.
    let host = |function: &str| containers(function)[0].host_config.clone().unwrap();
    assert_eq!((host("orchestrator").cpu_shares, host("orchestrator").nano_cpus), (Some(512), Some(1_000_000_000)), "cpu: 0.5, cpu_limit: 1");
    // The engine reports an unset NanoCpus as 0.
    assert_eq!((host("extract-audio").cpu_shares, host("extract-audio").nano_cpus.unwrap_or(0)), (Some(1024), 0), "cpu: 1, no limit");

    // Scaled to zero: no container; a call starts a new one.
    let before = containers("detect-objects")[0].id.clone();
    ok(&["scale", "detect-objects", "--replicas", "0"]);
    assert!(containers("detect-objects").is_empty(), "scaled to zero");
    let health = rt.block_on(async { reqwest::get(format!("{gateway}/function/detect-objects/_/health")).await.unwrap().status() });
    assert_eq!(health, 200);
    let after = containers("detect-objects");
    assert_eq!(after.len(), 1);
    assert_ne!(after[0].id, before, "a cold start is a new container");

    // An arm64 image, under qemu, answers its health path.
    arm64_starts(&docker, &rt, images, &state, &info);

    // The same gateway as an OpenFaaS one: the `openfaas` target removes the
    // functions through its API, deploys them again from the pushed images
    // (which the runtime pulls), and the pipeline verifies through it.
    let secrets_dir = ws.path("openfaas-secrets");
    std::fs::create_dir_all(&secrets_dir).unwrap();
    for name in ["s3-access-key", "s3-secret-key"] {
        std::fs::copy(state.join("secrets").join(name), secrets_dir.join(name)).unwrap();
    }
    let store = info["store_url"].as_str().unwrap();
    let declared_yaml = std::fs::read_to_string(ws.path("pipeline.yaml")).unwrap();
    let mut yaml = declared_yaml.clone();
    for (from, to) in [
        ("    gateway: http://127.0.0.1:31112\n", format!("    gateway: {gateway}\n    bind_addr: 127.0.0.1\n")),
        ("    store: http://127.0.0.1:31900\n", format!("    store: {store}\n")),
        ("    function_gateway: http://gateway.openfaas:8080\n", format!("    function_gateway: {gateway}\n")),
        ("    function_store: http://minio.openfaas:9000\n", format!("    function_store: {store}\n")),
        ("    secrets_dir: .secrets/openfaas\n", "    secrets_dir: openfaas-secrets\n".to_string()),
    ] {
        assert!(yaml.contains(from), "pipeline.yaml's openfaas target has `{}`", from.trim());
        yaml = yaml.replace(from, &to);
    }
    std::fs::write(ws.path("pipeline.yaml"), &yaml).unwrap();
    let openfaas = |args: &[&str]| {
        let out = ws.xtask(&[&["--target", "openfaas"], args].concat());
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(out.status.success(), "xtask --target openfaas {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
        stdout
    };
    let removed = openfaas(&["teardown"]);
    assert!(removed.contains("11 functions removed"), "{removed}");
    assert_eq!(get("/system/functions"), serde_json::json!([]), "no function left in the gateway");
    assert!(FUNCTIONS.iter().all(|f| containers(f).is_empty()), "their containers are gone");
    let deployed = openfaas(&["deploy"]);
    for function in FUNCTIONS {
        assert!(deployed.lines().any(|l| l.starts_with("deploy ") && l.contains(function)), "POST {function}: {deployed}");
    }
    let verified = openfaas(&["verify"]);
    assert!(verified.contains("verify: ok"), "{verified}");
    for function in FUNCTIONS {
        let running = containers(function);
        if function == NEEDS_A_QUERY {
            assert!(running.is_empty(), "{function} ran for a request without a query");
            continue;
        }
        assert!(!running.is_empty(), "{function}");
        let built = images["functions"][function]["platforms"]["linux/amd64"]["image_id"].as_str();
        for container in &running {
            assert_eq!(container.image.as_deref(), built, "{function}: the pulled index gives the amd64 image the build made");
        }
    }
    let again = openfaas(&["deploy"]);
    assert!(again.lines().any(|l| l.starts_with("update ") && l.contains("detect-objects")), "PUT the second time: {again}");
    let status = openfaas(&["status"]);
    assert!(status.contains("target `openfaas` (openfaas): 11 of 11 functions deployed"), "{status}");
    assert!(!openfaas(&["logs", "extract-audio"]).trim().is_empty(), "the gateway serves the function's log");
    // Through this target too: scaled to zero, then called, a new container.
    // (The update above replaced the replica; a call starts one.)
    let health = || rt.block_on(async { reqwest::get(format!("{gateway}/function/sample-frames/_/health")).await.unwrap().status() });
    assert_eq!(health(), 200);
    let before = containers("sample-frames")[0].id.clone();
    openfaas(&["scale", "sample-frames", "--replicas", "0"]);
    assert!(containers("sample-frames").is_empty(), "scaled to zero through the API");
    assert_eq!(health(), 200);
    let after = containers("sample-frames");
    assert_eq!(after.len(), 1);
    assert_ne!(after[0].id, before, "a cold start is a new container");
    // bench through the same target: every function scaled to zero first,
    // so the cold request's every invocation is a cold start.
    let bench = openfaas(&["bench", "--runs", "1"]);
    let figures_path = bench.lines().find_map(|l| l.strip_prefix("figures: ")).unwrap_or_else(|| panic!("no figures path: {bench}"));
    let figures: Value = serde_json::from_slice(&std::fs::read(ws.path(figures_path)).unwrap()).unwrap();
    // Each function's first invocation starts its replica; the clips after
    // it in the same request find that replica running.
    let cold = figures["cold"]["invocations"].as_array().unwrap();
    let invoked: BTreeSet<&str> = cold.iter().map(|i| i["function"].as_str().unwrap()).collect();
    let started: BTreeSet<&str> = cold.iter().filter(|i| i["cold_start"] == true).map(|i| i["function"].as_str().unwrap()).collect();
    let steps: BTreeSet<&str> = FUNCTIONS.into_iter().filter(|f| *f != "orchestrator" && *f != NEEDS_A_QUERY).collect();
    assert_eq!(invoked, steps, "bench's requests have no query: {:#}", figures["cold"]);
    assert_eq!(started, invoked, "every function started cold: {:#}", figures["cold"]);
    assert!(bench.contains("its CPU time is not measured here"), "{bench}");
    // Recorded as an experiment records its runs: the report reads them.
    let results = ws.path(figures_path).parent().unwrap().to_path_buf();
    let recorded = std::fs::read_to_string(results.join("cold/invocations.jsonl")).unwrap();
    assert_eq!(recorded.lines().count(), cold.len(), "every invocation of the cold request: {recorded}");
    let report = std::fs::read_to_string(results.join("warm/report.md")).unwrap();
    assert!(report.contains("# `bench-warm` on `openfaas`") && report.contains("![waterfall.svg](waterfall.svg)"), "{report}");
    std::fs::write(ws.path("pipeline.yaml"), &declared_yaml).unwrap();

    // A detector that cannot fit its memory: a classified failure, not a hang.
    ok(&["teardown"]);
    assert!(FUNCTIONS.iter().all(|f| containers(f).is_empty()), "teardown removes every container");
    let yaml = std::fs::read_to_string(ws.path("pipeline.yaml")).unwrap();
    let declared = "    memory: 768Mi\n";
    assert_eq!(yaml.matches(declared).count(), 1, "pipeline.yaml declares only detect-objects with 768Mi");
    std::fs::write(ws.path("pipeline.yaml"), yaml.replace(declared, &declared.replace("768Mi", "40Mi"))).unwrap();
    ok(&["deploy"]);
    let (code, stdout, stderr) = xtask(&["verify", "--json", ws.path("oom.json").to_str().unwrap()]);
    assert_eq!(code, Some(1), "verify fails\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("\"code\":\"out_of_memory\""), "the answer names the failure: {stderr}");
    let state_doc: Value = serde_json::from_slice(&std::fs::read(ws.path("oom.json")).unwrap()).unwrap();
    assert_eq!(state_doc["status"], "failed", "{state_doc}");
    assert_eq!(state_doc["error"]["function"], "detect-objects", "{state_doc}");
    assert_eq!(state_doc["error"]["code"], "out_of_memory", "{state_doc}");
    let message = state_doc["error"]["message"].as_str().unwrap();
    assert!(message.contains("memory limit of 40Mi") && message.contains("functions.detect-objects.memory"), "{message}");
    let attempts: Vec<&Value> = state_doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|step| step["function"] == "detect-objects")
        .flat_map(|step| step["attempts"].as_array().unwrap())
        .collect();
    assert!(!attempts.is_empty(), "detect-objects was called: {state_doc}");
    assert!(attempts.iter().all(|a| a["error"]["code"] == "out_of_memory"), "{attempts:?}");
    ok(&["teardown"]);
    assert!(FUNCTIONS.iter().all(|f| containers(f).is_empty()), "no killed replica is left behind");
    std::fs::write(ws.path("pipeline.yaml"), yaml).unwrap();
}

/// One arm64 function image starts under qemu and answers its health path,
/// against the docker target's store.
fn arm64_starts(docker: &bollard::Docker, rt: &tokio::runtime::Runtime, images: &Value, state: &Path, info: &Value) {
    // The secrets, readable by the image's user.
    let secrets = tempfile::tempdir().unwrap();
    for name in ["s3-access-key", "s3-secret-key"] {
        std::fs::copy(state.join("secrets").join(name), secrets.path().join(name)).unwrap();
        std::fs::set_permissions(secrets.path().join(name), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(secrets.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let set = &images["functions"]["cut-clips"];
    let reference = format!("{}:{}", set["repository"].as_str().unwrap(), set["platforms"]["linux/arm64"]["tag"].as_str().unwrap());
    let env = vec![
        format!("S3_ENDPOINT={}", info["store_url"].as_str().unwrap()),
        format!("S3_BUCKET={}", info["bucket"].as_str().unwrap()),
        "S3_REGION=us-east-1".to_string(),
    ];
    rt.block_on(async {
        let container = Container::start(docker, &reference, "linux/arm64", env, secrets.path()).await;
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
