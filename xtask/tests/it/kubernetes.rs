//! `cargo xtask deploy --target kubernetes` against a real kube-apiserver
//! (Debian's kubernetes 1.20.2 source, on etcd; `.ci/kube-apiserver` and
//! `.ci/services`). It has no kubelet and no controller manager, so no pod
//! ever runs: a simulator thread here plays them, setting the Deployments'
//! status (and, in function-crd mode, making the Deployments as OpenFaaS
//! Pro's operator would), or making pods that fail in the ways a cluster
//! reports, so that the rollout wait and its diagnoses are exercised.
//!
//! One at a time (`serial`): the function-crd test installs and removes a
//! cluster-wide CRD.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::support::{repo, repo_pipeline};

const IMAGES: &str = include_str!("render/images.json");
const ACCESS_KEY: &str = "k8s-test-access-7f3a91";
const SECRET_KEY: &str = "k8s-test-secret-c04e2d5b";
const APP: &str = "app.kubernetes.io/managed-by=videosearcher";

fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn kubeconfig() -> PathBuf {
    match std::env::var_os("VS_KUBECONFIG") {
        Some(path) if Path::new(&path).is_file() => PathBuf::from(path),
        _ => panic!(
            "VS_KUBECONFIG does not name a kubeconfig: these tests need a real API server. Start one with \
             `VS_KUBE_APISERVER=$(bash .ci/kube-apiserver) bash .ci/services` and set \
             VS_KUBECONFIG=/tmp/videosearcher-services/kube/kubeconfig (`.ci/run` does both)"
        ),
    }
}

/// What the simulator makes of a function's Deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Ready,
    ImagePull,
    CrashLoop,
    WrongArchitecture,
    MissingSecret,
    OutOfMemory,
    Unschedulable,
}

/// A temp folder with the repository's pipeline, its `kubernetes` target in
/// namespaces of its own, the build manifest fixture and the secret values.
struct Fixture {
    dir: tempfile::TempDir,
    namespace: String,
    openfaas_namespace: String,
    client: Client,
    rt: tokio::runtime::Runtime,
}

impl Fixture {
    fn new(test: &str) -> Fixture {
        let kubeconfig = kubeconfig();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let client = rt.block_on(async {
            let config = kube::Config::from_custom_kubeconfig(
                kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .unwrap();
            Client::try_from(config).unwrap()
        });
        let suffix = &uuid_like()[..6];
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".xtask/build")).unwrap();
        // The fixture, and an image for the `extra` function of `with_extra`.
        let mut images: serde_json::Value = serde_json::from_str(IMAGES).unwrap();
        let mut extra = images["functions"]["orchestrator"].clone();
        extra["repository"] = json!("127.0.0.1:5000/videosearcher/extra");
        images["functions"]["extra"] = extra;
        std::fs::write(dir.path().join(".xtask/build/images.json"), images.to_string()).unwrap();
        let secrets = dir.path().join("secrets");
        std::fs::create_dir_all(&secrets).unwrap();
        std::fs::write(secrets.join("s3-access-key"), ACCESS_KEY).unwrap();
        std::fs::write(secrets.join("s3-secret-key"), SECRET_KEY).unwrap();
        Fixture {
            dir,
            namespace: format!("vs-{test}-{suffix}"),
            openfaas_namespace: format!("vs-{test}-of-{suffix}"),
            client,
            rt,
        }
    }

    /// Write pipeline.yaml: the repository's, with this fixture's target,
    /// a short cold start (the rollout deadline) and `edit`.
    fn pipeline(&self, mode: &str, edit: impl FnOnce(String) -> String) {
        let (namespace, openfaas) = (&self.namespace, &self.openfaas_namespace);
        let yaml = repo_pipeline(|text| {
            let text = text
                .replace("    mode: deployments\n", &format!("    mode: {mode}\n"))
                .replace("    namespace: openfaas-fn\n", &format!("    namespace: {namespace}\n"))
                .replace("    openfaas_namespace: openfaas\n", &format!("    openfaas_namespace: {openfaas}\n"))
                .replace("    secrets_dir: .secrets/kubernetes\n", "    secrets_dir: secrets\n    store: http://127.0.0.1:31900\n")
                .replace("  cold_start: 30s\n", "  cold_start: 4s\n");
            edit(text)
        });
        std::fs::write(self.dir.path().join("pipeline.yaml"), yaml).unwrap();
    }

    fn xtask(&self, args: &[&str]) -> Output {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"));
        command.args(args).current_dir(self.dir.path()).env("KUBECONFIG", kubeconfig());
        command.output().unwrap()
    }

    /// `xtask <args> --target kubernetes`, its exit status, stdout and stderr;
    /// asserting that no secret value appears in either.
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let mut all = args.to_vec();
        all.extend(["--target", "kubernetes"]);
        let output = self.xtask(&all);
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned());
        for value in [ACCESS_KEY, SECRET_KEY] {
            assert!(!stdout.contains(value) && !stderr.contains(value), "a secret value in the output of {args:?}:\n{stdout}\n{stderr}");
        }
        (output.status.success(), stdout, stderr)
    }

    /// Play kubelet and controller manager until the guard drops.
    fn simulate(&self, fates: BTreeMap<&'static str, Fate>, operator: bool) -> Simulator {
        let stop = Arc::new(AtomicBool::new(false));
        let (client, namespaces, stopping) = (self.client.clone(), [self.namespace.clone(), self.openfaas_namespace.clone()], stop.clone());
        let task = self.rt.spawn(async move {
            while !stopping.load(Ordering::SeqCst) {
                for namespace in &namespaces {
                    if operator {
                        make_deployments_of_functions(&client, namespace).await;
                    }
                    play(&client, namespace, &fates).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Simulator { stop, task: Some(task) }
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    /// Every object with the app's labels in this fixture's namespaces:
    /// kind/namespace/name → resourceVersion.
    fn objects(&self) -> BTreeMap<String, String> {
        self.block_on(async {
            let mut found = BTreeMap::new();
            let params = ListParams::default().labels(APP);
            for namespace in [&self.namespace, &self.openfaas_namespace] {
                let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
                for d in deployments.list(&params).await.unwrap() {
                    found.insert(format!("Deployment/{namespace}/{}", d.name_any()), d.resource_version().unwrap());
                }
                let services: Api<Service> = Api::namespaced(self.client.clone(), namespace);
                for s in services.list(&params).await.unwrap() {
                    found.insert(format!("Service/{namespace}/{}", s.name_any()), s.resource_version().unwrap());
                }
                let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
                for s in secrets.list(&params).await.unwrap() {
                    found.insert(format!("Secret/{namespace}/{}", s.name_any()), s.resource_version().unwrap());
                }
            }
            found
        })
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let client = self.client.clone();
        let namespaces = [self.namespace.clone(), self.openfaas_namespace.clone()];
        self.rt.block_on(async move {
            let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
            for namespace in namespaces {
                let _ = api.delete(&namespace, &DeleteParams::background()).await;
            }
        });
    }
}

struct Simulator {
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}", nanos ^ (std::process::id() as u128) << 64)
        .chars()
        .rev()
        .collect()
}

/// One round of the simulator over a namespace's Deployments: a ready
/// status for those that should be, a failing pod for the others.
async fn play(client: &Client, namespace: &str, fates: &BTreeMap<&'static str, Fate>) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let Ok(listed) = deployments.list(&ListParams::default()).await else { return };
    for deployment in listed {
        let name = deployment.name_any();
        let wanted = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let generation = deployment.metadata.generation.unwrap_or(1);
        let fate = fates.get(name.as_str()).copied().unwrap_or(Fate::Ready);
        let status = if fate == Fate::Ready {
            json!({ "status": { "observedGeneration": generation, "replicas": wanted, "updatedReplicas": wanted, "readyReplicas": wanted, "availableReplicas": wanted } })
        } else {
            make_failing_pod(client, namespace, &name, fate).await;
            json!({ "status": { "observedGeneration": generation, "replicas": wanted, "updatedReplicas": wanted, "unavailableReplicas": wanted } })
        };
        let _ = deployments.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
    }
}

/// What OpenFaaS Pro's operator does: a Deployment for every Function.
async fn make_deployments_of_functions(client: &Client, namespace: &str) {
    let resource = kube::core::ApiResource {
        group: "openfaas.com".into(),
        version: "v1".into(),
        api_version: "openfaas.com/v1".into(),
        kind: "Function".into(),
        plural: "functions".into(),
    };
    let functions: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let Ok(listed) = functions.list(&ListParams::default()).await else { return };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    for function in listed {
        let name = function.name_any();
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": { "name": name, "labels": { "faas_function": name } },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": { "faas_function": name } },
                "template": {
                    "metadata": { "labels": { "faas_function": name } },
                    "spec": { "containers": [{ "name": name, "image": function.data["spec"]["image"] }] }
                }
            }
        }))
        .unwrap();
        let _ = deployments.create(&PostParams::default(), &deployment).await;
    }
}

async fn make_failing_pod(client: &Client, namespace: &str, function: &str, fate: Fate) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let name = format!("{function}-sim");
    if pods.get_opt(&name).await.ok().flatten().is_none() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": name, "labels": { "faas_function": function } },
            "spec": { "containers": [{ "name": function, "image": "127.0.0.1:5000/videosearcher/x@sha256:0" }] }
        }))
        .unwrap();
        if pods.create(&PostParams::default(), &pod).await.is_err() {
            return;
        }
    }
    let container = |state: serde_json::Value, last: serde_json::Value| {
        json!({ "status": { "phase": "Pending", "containerStatuses": [{
            "name": function, "image": format!("127.0.0.1:5000/videosearcher/{function}@sha256:0"), "imageID": "",
            "ready": false, "restartCount": 5, "state": state, "lastState": last
        }] } })
    };
    let status = match fate {
        Fate::Ready => return,
        Fate::ImagePull => container(
            json!({ "waiting": { "reason": "ImagePullBackOff", "message": "Back-off pulling image: unauthorized" } }),
            json!({}),
        ),
        Fate::CrashLoop => container(
            json!({ "waiting": { "reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container" } }),
            json!({ "terminated": { "exitCode": 2, "reason": "Error" } }),
        ),
        Fate::WrongArchitecture => container(
            json!({ "waiting": { "reason": "CrashLoopBackOff" } }),
            json!({ "terminated": { "exitCode": 128, "reason": "StartError", "message": "exec /usr/local/bin/function: exec format error" } }),
        ),
        Fate::MissingSecret => container(
            json!({ "waiting": { "reason": "CreateContainerConfigError", "message": "secret \"s3-access-key\" not found" } }),
            json!({}),
        ),
        Fate::OutOfMemory => container(
            json!({ "waiting": { "reason": "CrashLoopBackOff" } }),
            json!({ "terminated": { "exitCode": 137, "reason": "OOMKilled" } }),
        ),
        Fate::Unschedulable => json!({ "status": { "phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient memory."
        }] } }),
    };
    let _ = pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
}

/// The repository's pipeline with one more fanned-out function, `extra`.
fn with_extra(text: String) -> String {
    let fault = repo().join("stages/fault");
    text.replace(
        "      - { function: detect-objects, needs: [frames], produces: [detections] }\n",
        "      - { function: detect-objects, needs: [frames], produces: [detections] }\n      - { function: extra, needs: [clip], produces: [extra] }\n",
    )
    .replace(
        "\n# The DAG the orchestrator executes",
        &format!(
            "  extra:\n    source: {}\n    memory: 64Mi\n    cpu: 0.1\n    timeout: 10s\n    max_inflight: 1\n    scale: {{ min: 0, max: 1 }}\n\n# The DAG the orchestrator executes",
            fault.display()
        ),
    )
}

#[test]
fn deploy_applies_every_object_changes_nothing_again_and_prunes_a_removed_function() {
    let _serial = serial();
    let fixture = Fixture::new("apply");
    fixture.pipeline("deployments", with_extra);
    let _simulator = fixture.simulate(BTreeMap::new(), false);

    let (ok, stdout, stderr) = fixture.run(&["deploy"]);
    assert!(ok, "{stdout}\n{stderr}");
    let first = fixture.objects();
    let (ns, of) = (&fixture.namespace, &fixture.openfaas_namespace);
    let expected: BTreeSet<String> = crate::support::FUNCTIONS
        .into_iter()
        .chain(["extra"])
        .flat_map(|f| [format!("Deployment/{ns}/{f}"), format!("Service/{ns}/{f}")])
        .chain([format!("Deployment/{of}/minio"), format!("Service/{of}/minio")])
        .chain(["s3-access-key", "s3-secret-key"].into_iter().flat_map(|s| [format!("Secret/{ns}/{s}"), format!("Secret/{of}/{s}")]))
        .collect();
    assert_eq!(first.keys().cloned().collect::<BTreeSet<_>>(), expected, "{stderr}");
    assert!(stdout.contains("30 objects (30 created), 0 pruned; 13 rollouts complete"), "{stdout}");

    // The secrets hold their values under one key of their own name.
    let secret = fixture.block_on(Api::<Secret>::namespaced(fixture.client.clone(), ns).get("s3-secret-key")).unwrap();
    assert_eq!(secret.data.unwrap()["s3-secret-key"].0, SECRET_KEY.as_bytes());

    // Nothing changed: no object gets a new resourceVersion.
    let (ok, stdout, stderr) = fixture.run(&["deploy"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(fixture.objects(), first, "a second deploy changed objects:\n{stderr}");
    assert!(stdout.contains("30 objects (30 unchanged), 0 pruned"), "{stdout}");

    // `extra` removed from pipeline.yaml: its Deployment and Service go.
    fixture.pipeline("deployments", |text| text);
    let (ok, stdout, stderr) = fixture.run(&["deploy"]);
    assert!(ok, "{stdout}\n{stderr}");
    let after = fixture.objects();
    let gone: BTreeSet<String> = first.keys().filter(|k| !after.contains_key(*k)).cloned().collect();
    assert_eq!(gone, BTreeSet::from([format!("Deployment/{ns}/extra"), format!("Service/{ns}/extra")]), "{stderr}");
    assert!(stderr.contains(&format!("pruned     Deployment {ns}/extra (not in pipeline.yaml any more)")), "{stderr}");

    // Status finds the gateway by OpenFaaS's NodePort Service.
    let node_port = fixture.block_on(async {
        let service: Service = serde_json::from_value(json!({
            "metadata": { "name": "gateway-external" },
            "spec": { "type": "NodePort", "selector": { "app": "gateway" }, "ports": [{ "port": 8080 }] }
        }))
        .unwrap();
        let made = Api::<Service>::namespaced(fixture.client.clone(), of).create(&PostParams::default(), &service).await.unwrap();
        made.spec.unwrap().ports.unwrap()[0].node_port.unwrap()
    });
    let (ok, stdout, stderr) = fixture.run(&["status"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("gateway  http://127.0.0.1:{node_port}")), "{stdout}");
    assert!(stdout.contains("orchestrator"), "{stdout}");

    // Cold: scaled to 0 through the cluster, waited on until it has no replica.
    let (ok, stdout, stderr) = fixture.run(&["scale", "transcribe", "--replicas", "0", "--wait", "20s"]);
    assert!(ok, "{stdout}\n{stderr}");
    let transcribe = fixture.block_on(Api::<Deployment>::namespaced(fixture.client.clone(), ns).get("transcribe")).unwrap();
    assert_eq!(transcribe.spec.unwrap().replicas, Some(0));
    let (ok, stdout, stderr) = fixture.run(&["scale", "transcribe", "--replicas", "1", "--wait", "20s"]);
    assert!(ok, "{stdout}\n{stderr}");

    let (ok, stdout, stderr) = fixture.run(&["teardown"]);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(fixture.objects().is_empty(), "objects left after teardown");
}

#[test]
fn a_rollout_that_never_gets_ready_ends_at_its_deadline_with_each_diagnosis() {
    let _serial = serial();
    let fixture = Fixture::new("fail");
    fixture.pipeline("deployments", |text| text);
    let fates = BTreeMap::from([
        ("extract-audio", Fate::ImagePull),
        ("detect-speech", Fate::CrashLoop),
        ("cut-clips", Fate::WrongArchitecture),
        ("compress-clip", Fate::MissingSecret),
        ("transcribe", Fate::OutOfMemory),
        ("sample-frames", Fate::Unschedulable),
    ]);
    let _simulator = fixture.simulate(fates, false);
    let started = Instant::now();
    let (ok, stdout, stderr) = fixture.run(&["deploy"]);
    let took = started.elapsed();
    assert!(!ok, "deploy succeeded:\n{stdout}\n{stderr}");
    assert!(took < Duration::from_secs(60), "deploy took {took:?}: the deadline is cold_start + margin (5s)");
    let error = &stderr[stderr.find("error:").expect("an error") ..];
    let ns = &fixture.namespace;
    let error = error.replace(ns.as_str(), "$NS");
    expect_test::expect![[r#"
        error: 6 of 12 functions not ready 5s after applying (timeouts.cold_start + margin):
          compress-clip: a secret is missing: secret "s3-access-key" not found
            help: give every secret a value (a file in the target's `secrets_dir`, or VS_SECRET_<NAME>) and deploy again
          cut-clips: its binary is for another CPU (exec format error: exec /usr/local/bin/function: exec format error)
            help: build for the nodes' platform: add it to `build.platforms` and run `cargo xtask build --push`
          detect-speech: keeps crashing (5 restarts): back-off 5m0s restarting failed container; last exit code 2 (Error)
            help: see why with `cargo xtask logs --target kubernetes detect-speech`
          extract-audio: cannot pull its image 127.0.0.1:5000/videosearcher/extract-audio@sha256:0: Back-off pulling image: unauthorized
            help: push it where the cluster pulls from (`cargo xtask build --push`); OpenFaaS CE pulls only images anyone may pull
          sample-frames: no node can take its pod: 0/3 nodes are available: 3 Insufficient memory.
            help: lower `functions.sample-frames.memory`/`cpu`, or add nodes
          transcribe: killed for memory (limit 576Mi)
            help: raise `functions.transcribe.memory` in pipeline.yaml
    "#]]
    .assert_eq(&error);
}

#[test]
fn function_crd_mode_is_refused_without_the_crd_and_applied_with_it() {
    let _serial = serial();
    let fixture = Fixture::new("crd");
    fixture.pipeline("function-crd", |text| text);
    let crds: Api<CustomResourceDefinition> = Api::all(fixture.client.clone());
    let wait_gone = || {
        fixture.block_on(async {
            let _ = crds.delete("functions.openfaas.com", &DeleteParams::background()).await;
            let started = Instant::now();
            while crds.get_opt("functions.openfaas.com").await.unwrap().is_some() {
                assert!(started.elapsed() < Duration::from_secs(30), "the CRD is not going away");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    wait_gone();

    let (ok, stdout, stderr) = fixture.run(&["deploy"]);
    assert!(!ok, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("has `mode: function-crd`, but the cluster has no `functions.openfaas.com` CustomResourceDefinition"),
        "{stderr}"
    );
    assert!(stderr.contains("set `targets.kubernetes.mode: deployments`"), "{stderr}");

    // The CRD as OpenFaaS publishes it (read in place, see its README).
    let spec_dir = std::env::var_os("VS_OPENFAAS_SPEC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/reference/openfaas"));
    let path = spec_dir.join("openfaas.com_functions.crd.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read the OpenFaaS CRD at {}: {e}; set VS_OPENFAAS_SPEC_DIR to its folder", path.display()));
    let crd: CustomResourceDefinition = serde_yaml::from_str(&text).unwrap();
    fixture.block_on(async {
        crds.create(&PostParams::default(), &crd).await.unwrap();
        let started = Instant::now();
        loop {
            let established = crds.get("functions.openfaas.com").await.unwrap().status.and_then(|s| s.conditions).into_iter().flatten()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the CRD is not established");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let simulator = fixture.simulate(BTreeMap::new(), true);
    let (ok, stdout, stderr) = fixture.run(&["deploy"]);
    drop(simulator);
    wait_gone();
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stderr.contains(&format!("created    Function {}/orchestrator", fixture.namespace)), "{stderr}");
    assert!(stdout.contains("rollouts complete"), "{stdout}");
}
