//! `cargo xtask render` on the repository's pipeline.yaml in a temp folder,
//! with the build manifest fixture `render/images.json` (stable digests):
//! golden files for both modes, every object checked against its Kubernetes
//! type or the Function CRD's schema, byte-stable output, no secret value
//! anywhere, and bad input refused with the output folder left as it was.
//! After an intended change, refresh the goldens with
//! `UPDATE_EXPECT=1 cargo test -p xtask --test it render`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use expect_test::{expect, expect_file};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use serde_json::Value;

use crate::support::{repo, repo_pipeline};

const IMAGES: &str = include_str!("render/images.json");

/// A temp folder with the repository's pipeline (edited) and the build
/// manifest fixture where build writes it.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(edit: impl FnOnce(String) -> String) -> Fixture {
        Fixture::with_images(edit, IMAGES)
    }

    fn with_images(edit: impl FnOnce(String) -> String, images: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pipeline.yaml"), repo_pipeline(edit)).unwrap();
        std::fs::create_dir_all(dir.path().join(".xtask/build")).unwrap();
        std::fs::write(dir.path().join(".xtask/build/images.json"), images).unwrap();
        Fixture { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn xtask(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_xtask")).args(args).current_dir(self.dir.path()).output().unwrap()
    }

    /// `xtask render --target <target> --out out`, which must succeed.
    fn render(&self, target: &str) -> Output {
        let output = self.xtask(&["render", "--target", target, "--out", "out"]);
        assert!(output.status.success(), "render failed:\n{}", String::from_utf8_lossy(&output.stderr));
        output
    }

    /// The stderr with the temp folder written as `$DIR`.
    fn stderr(&self, output: &Output) -> String {
        let dir = self.dir.path().canonicalize().unwrap();
        String::from_utf8(output.stderr.clone()).unwrap().replace(&dir.display().to_string(), "$DIR")
    }
}

/// Every file under `dir` (relative path → bytes).
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(path.strip_prefix(root).unwrap().to_path_buf(), std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The rendered YAML files (not the marker), by path.
fn manifests(out: &Path) -> BTreeMap<String, String> {
    let files = files(out);
    assert!(files.len() > 1, "render wrote nothing into {}", out.display());
    files
        .into_iter()
        .filter(|(path, _)| path.extension().is_some_and(|ext| ext == "yaml"))
        .map(|(path, bytes)| (path.display().to_string(), String::from_utf8(bytes).unwrap()))
        .collect()
}

/// All manifests in one text, each after a `# file:` line, for the goldens.
fn joined(manifests: &BTreeMap<String, String>) -> String {
    manifests.iter().map(|(path, text)| format!("---\n# file: {path}\n{text}")).collect()
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap()
}

/// `text` as a `T`, and back: every field must survive, so that no field is
/// unknown to the Kubernetes type (its deserializer ignores unknown ones).
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(path: &str, text: &str) -> T {
    let value = yaml(text);
    let object: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{path}: {e}"));
    let back = serde_json::to_value(&object).unwrap();
    assert_eq!(back, value, "{path}: fields lost or changed through {}", std::any::type_name::<T>());
    object
}

fn mode_crd(yaml: String) -> String {
    yaml.replace("mode: deployments", "mode: function-crd")
}

#[test]
fn render_deployments_matches_the_golden_files() {
    let fixture = Fixture::new(|yaml| yaml);
    let output = fixture.render("kubernetes");
    expect_file!["render/golden-deployments.yaml"].assert_eq(&joined(&manifests(&fixture.path("out"))));
    expect![[r#"
        rendered target `kubernetes` (mode `deployments`) into out: 29 files; openfaas: 1 deployment, 1 service, 2 secret; openfaas-fn: 11 deployment, 11 service, 2 secret; the Secrets carry no value (deploy fills them)
        help: the gateway's timeouts are Helm values: `helm upgrade openfaas openfaas/openfaas -n openfaas --reuse-values -f out/openfaas-values.yaml`
    "#]]
    .assert_eq(&fixture.stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
}

#[test]
fn render_function_crd_matches_the_golden_files() {
    let fixture = Fixture::new(mode_crd);
    fixture.render("kubernetes");
    expect_file!["render/golden-function-crd.yaml"].assert_eq(&joined(&manifests(&fixture.path("out"))));
}

#[test]
fn rendered_objects_are_valid_kubernetes_objects() {
    let fixture = Fixture::new(|yaml| yaml);
    fixture.render("kubernetes");
    let pipeline = yaml(&repo_pipeline(|yaml| yaml));
    let mut checked = BTreeMap::<&str, usize>::new();
    for (path, text) in manifests(&fixture.path("out")) {
        if path == "openfaas-values.yaml" {
            continue;
        }
        match yaml(&text)["kind"].as_str().unwrap() {
            "Deployment" => {
                let deployment: Deployment = typed(&path, &text);
                let name = deployment.metadata.name.clone().unwrap();
                let spec = deployment.spec.unwrap();
                let pod = spec.template.spec.unwrap();
                let container = &pod.containers[0];
                assert!(spec.replicas.unwrap() >= 1, "{path}: OpenFaaS CE refuses 0 replicas");
                let selector = spec.selector.match_labels.unwrap();
                assert_eq!(spec.template.metadata.unwrap().labels.unwrap()[selector.keys().next().unwrap()], selector.values().next().unwrap().as_str());
                let path_ = path.as_str();
                if name == "minio" {
                    assert_eq!(deployment.metadata.namespace.as_deref(), Some("openfaas"), "{path_}");
                    let env = container.env.as_ref().unwrap();
                    assert!(!env.is_empty(), "{path_}: minio has no env (its credentials expected)");
                    assert!(env.iter().all(|var| var.value.is_none() && var.value_from.is_some()), "{path_}: credentials by secretKeyRef");
                } else {
                    assert_eq!(deployment.metadata.namespace.as_deref(), Some("openfaas-fn"), "{path_}");
                    assert_eq!(selector.get("faas_function"), Some(&name), "{path_}");
                    let port = &container.ports.as_ref().unwrap()[0];
                    assert_eq!((port.name.as_deref(), port.container_port), (Some("http"), 8080), "{path_}");
                    for probe in [&container.readiness_probe, &container.liveness_probe] {
                        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
                        assert_eq!(get.path.as_deref(), Some("/_/health"), "{path_}");
                    }
                    let security = container.security_context.as_ref().unwrap();
                    assert_eq!(security.read_only_root_filesystem, Some(true), "{path_}");
                    let mounts = container.volume_mounts.as_ref().unwrap();
                    let mount = |at: &str| mounts.iter().find(|m| m.mount_path == at).unwrap_or_else(|| panic!("{path_}: no mount at {at}"));
                    assert_eq!(mount("/var/openfaas/secrets").read_only, Some(true), "{path_}");
                    let volumes = pod.volumes.as_ref().unwrap();
                    let volume = |name: &str| volumes.iter().find(|v| v.name == name).unwrap();
                    assert!(volume(&mount("/tmp").name).empty_dir.is_some(), "{path_}: /tmp is an emptyDir");
                    let sources = volume(&mount("/var/openfaas/secrets").name).projected.as_ref().unwrap().sources.as_ref().unwrap();
                    let declared = pipeline["functions"][&name]["secrets"].as_array().unwrap();
                    assert_eq!(sources.len(), declared.len(), "{path_}: one source per secret");
                    for (source, secret) in sources.iter().zip(declared) {
                        let secret_source = source.secret.as_ref().unwrap();
                        let item = &secret_source.items.as_ref().unwrap()[0];
                        assert_eq!((secret_source.name.as_str(), item.key.as_str(), item.path.as_str()), (secret.as_str().unwrap(), secret.as_str().unwrap(), secret.as_str().unwrap()));
                    }
                    let declared = &pipeline["functions"][&name];
                    let resources = container.resources.as_ref().unwrap();
                    for quantities in [resources.limits.as_ref().unwrap(), resources.requests.as_ref().unwrap()] {
                        assert_eq!(quantities["memory"].0, declared["memory"].as_str().unwrap(), "{path_}");
                    }
                    // cpu is the request; only a declared cpu_limit caps.
                    let cores = |q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| match q.0.strip_suffix('m') {
                        Some(milli) => milli.parse::<f64>().unwrap() / 1000.0,
                        None => q.0.parse::<f64>().unwrap(),
                    };
                    assert_eq!(Some(cores(&resources.requests.as_ref().unwrap()["cpu"])), declared["cpu"].as_f64(), "{path_}");
                    assert_eq!(resources.limits.as_ref().unwrap().get("cpu").map(cores), declared["cpu_limit"].as_f64(), "{path_}");
                    let timeout = humantime::parse_duration(declared["timeout"].as_str().unwrap()).unwrap().as_secs();
                    assert!(pod.termination_grace_period_seconds.unwrap() > timeout as i64, "{path_}: grace above the exec timeout");
                    assert!(container.image.as_ref().unwrap().contains("@sha256:"), "{path_}: the image by digest");
                }
                *checked.entry("Deployment").or_default() += 1;
            }
            "Service" => {
                let service: Service = typed(&path, &text);
                let port = &service.spec.unwrap().ports.unwrap()[0];
                assert!(matches!(&port.target_port, Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name)) if name == port.name.as_deref().unwrap()), "{path}");
                *checked.entry("Service").or_default() += 1;
            }
            "Secret" => {
                let secret: Secret = typed(&path, &text);
                assert!(secret.data.is_none() && secret.string_data.is_none(), "{path}: render writes no secret value");
                *checked.entry("Secret").or_default() += 1;
            }
            kind => panic!("{path}: unexpected kind {kind}"),
        }
    }
    assert_eq!(checked, BTreeMap::from([("Deployment", 12), ("Service", 12), ("Secret", 4)]));
}

/// The Function CRD of OpenFaaS, from `VS_OPENFAAS_SPEC_DIR` or
/// `<repo>/../shared/reference/openfaas` (reference data, never copied here).
fn function_crd_schema() -> Value {
    let dir = std::env::var_os("VS_OPENFAAS_SPEC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/reference/openfaas"));
    let file = dir.join("openfaas.com_functions.crd.yaml");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "cannot read the OpenFaaS Function CRD at {} ({e}): set VS_OPENFAAS_SPEC_DIR to the folder holding \
             openfaas.com_functions.crd.yaml (faas-netes `artifacts/crds/openfaas.com_functions.yaml`)",
            file.display()
        )
    });
    let crd: Value = serde_yaml::from_str(&text).unwrap();
    let version = crd["spec"]["versions"].as_array().unwrap().iter().find(|v| v["name"] == "v1").unwrap();
    let mut schema = version["schema"]["openAPIV3Schema"].clone();
    strict(&mut schema);
    schema
}

/// The API server prunes fields a structural schema does not list; a
/// validator would let them pass. Every object schema with `properties`
/// then refuses any other key, so that a misspelt field fails here.
fn strict(schema: &mut Value) {
    if let Value::Object(map) = schema {
        if map.contains_key("properties") && !map.contains_key("additionalProperties") {
            map.insert("additionalProperties".into(), Value::Bool(false));
        }
        for value in map.values_mut() {
            strict(value);
        }
    } else if let Value::Array(items) = schema {
        items.iter_mut().for_each(strict);
    }
}

#[test]
fn function_objects_validate_against_the_function_crd() {
    let validator = jsonschema::validator_for(&function_crd_schema()).unwrap();
    let wrong = serde_json::json!({"apiVersion": "openfaas.com/v1", "kind": "Function", "metadata": {}, "spec": {"name": "f", "image": "i", "replicas": 1}});
    assert!(!validator.is_valid(&wrong), "the strict schema refuses a field the CRD does not have");

    let fixture = Fixture::new(mode_crd);
    fixture.render("kubernetes");
    let mut functions = 0;
    for (path, text) in manifests(&fixture.path("out")) {
        let object = yaml(&text);
        if object["kind"] != "Function" {
            continue;
        }
        let errors: Vec<String> = validator.iter_errors(&object).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{path}:\n{}", errors.join("\n"));
        assert_eq!(object["apiVersion"], "openfaas.com/v1", "{path}");
        assert_eq!(object["metadata"]["name"], object["spec"]["name"], "{path}");
        assert_eq!(object["metadata"]["namespace"], "openfaas-fn", "{path}");
        functions += 1;
    }
    assert_eq!(functions, 11, "one Function per function");
}

#[test]
fn rendering_twice_gives_the_same_bytes() {
    let fixture = Fixture::new(|yaml| yaml);
    fixture.render("kubernetes");
    let first = files(&fixture.path("out"));
    fixture.render("kubernetes");
    let again = files(&fixture.path("out"));
    let output = fixture.xtask(&["render", "--target", "kubernetes", "--out", "elsewhere/out"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let elsewhere = files(&fixture.path("elsewhere/out"));
    assert!(first.len() > 20, "{} files", first.len());
    assert_eq!(first, again, "a render over an earlier one");
    assert_eq!(first, elsewhere, "a render into another folder");
    let leftovers: Vec<_> = std::fs::read_dir(fixture.dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".render-") || name.contains(".old-"))
        .collect();
    assert!(leftovers.is_empty(), "staging folders left: {leftovers:?}");
}

#[test]
fn a_render_replaces_the_files_of_the_earlier_one() {
    let fixture = Fixture::new(|yaml| yaml);
    fixture.render("kubernetes");
    std::fs::write(fixture.path("pipeline.yaml"), mode_crd(std::fs::read_to_string(fixture.path("pipeline.yaml")).unwrap())).unwrap();
    let output = fixture.render("kubernetes");
    let names: Vec<String> = files(&fixture.path("out")).keys().map(|path| path.display().to_string()).collect();
    assert!(names.iter().all(|name| !name.contains("deployment-") || name.contains("minio")), "{names:?}");
    assert_eq!(names.iter().filter(|name| name.contains("/function-")).count(), 11, "{names:?}");
    assert!(fixture.stderr(&output).contains("(removed 22 files of the earlier render)"), "{}", fixture.stderr(&output));
}

/// Distinctive values in every place deploy will read secrets from.
const LEAKS: [(&str, &str); 2] = [("s3-access-key", "LeakedAccess7f3c9a1e"), ("s3-secret-key", "LeakedSecret0b5d2e8c")];

#[test]
fn no_secret_value_reaches_any_file_or_output() {
    let fixture = Fixture::new(|yaml| yaml);
    let secrets = fixture.path(".secrets/kubernetes");
    std::fs::create_dir_all(&secrets).unwrap();
    for (name, value) in LEAKS {
        std::fs::write(secrets.join(name), value).unwrap();
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.args(["render", "--target", "kubernetes", "--out", "out"]).current_dir(fixture.dir.path());
    for (name, value) in LEAKS {
        let upper = name.to_uppercase().replace('-', "_");
        for var in [name.to_string(), upper.clone(), format!("XTASK_SECRET_{upper}"), format!("VS_SECRET_{upper}")] {
            command.env(var, value);
        }
    }
    for var in ["AWS_ACCESS_KEY_ID", "MINIO_ROOT_USER"] {
        command.env(var, LEAKS[0].1);
    }
    for var in ["AWS_SECRET_ACCESS_KEY", "MINIO_ROOT_PASSWORD"] {
        command.env(var, LEAKS[1].1);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let mut scanned = 0;
    let mut texts: Vec<(String, Vec<u8>)> = vec![("stdout".into(), output.stdout), ("stderr".into(), output.stderr)];
    for (path, bytes) in files(fixture.dir.path()) {
        if !path.starts_with(".secrets") {
            texts.push((path.display().to_string(), bytes));
            scanned += 1;
        }
    }
    for (place, bytes) in &texts {
        let text = String::from_utf8_lossy(bytes);
        for (name, value) in LEAKS {
            assert!(!text.contains(value), "the value of `{name}` is in {place}");
        }
    }
    assert!(scanned > 20, "scanned {scanned} files");
    assert!(files(&fixture.path("out")).keys().any(|path| path.display().to_string().contains("secret-s3-access-key")));
}

/// `out` holding a file of the user's, which a refused render leaves as it was.
fn occupied(fixture: &Fixture) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::create_dir_all(fixture.path("out/openfaas-fn")).unwrap();
    std::fs::write(fixture.path("out/notes.txt"), "mine").unwrap();
    std::fs::write(fixture.path("out/openfaas-fn/deployment-orchestrator.yaml"), "mine too").unwrap();
    files(&fixture.path("out"))
}

fn refused(fixture: &Fixture, args: &[&str], expected: expect_test::Expect) {
    let before = occupied(fixture);
    let output = fixture.xtask(args);
    expected.assert_eq(&fixture.stderr(&output));
    assert_eq!(output.status.code(), Some(2), "exit code");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    assert_eq!(files(&fixture.path("out")), before, "out is untouched");
    let names: Vec<_> = std::fs::read_dir(fixture.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(names.iter().all(|name| !name.to_string_lossy().starts_with(".out.")), "{names:?}");
}

#[test]
fn unknown_target_is_refused() {
    refused(
        &Fixture::new(|yaml| yaml),
        &["render", "--target", "kube", "--out", "out"],
        expect![[r#"
            error: unknown target `kube` (known: `local`, `docker`, `openfaas`, `kubernetes`)
        "#]],
    );
}

#[test]
fn a_target_that_is_no_cluster_is_refused() {
    refused(
        &Fixture::new(|yaml| yaml),
        &["render", "--target", "openfaas", "--out", "out"],
        expect![[r#"
            error: target `openfaas` is of kind `openfaas`: render writes manifests for `kubernetes` targets only
              --> pipeline.yaml:54:11
            54 |     kind: openfaas
               |           ^^^^^^^^
            help: render a `kubernetes` target; the pipeline's are `kubernetes`
        "#]],
    );
}

#[test]
fn render_without_target_names_the_cluster_targets() {
    refused(
        &Fixture::new(|yaml| yaml),
        &["render", "--out", "out"],
        expect![[r#"
            error: render needs `--target`, a target of kind `kubernetes`
            help: the pipeline's are `kubernetes`
        "#]],
    );
}

#[test]
fn a_folder_render_did_not_write_is_refused() {
    refused(
        &Fixture::new(|yaml| yaml),
        &["render", "--target", "kubernetes", "--out", "out"],
        expect![[r#"
            error: out is not empty and no render wrote it (it has no .xtask-render): render replaces the whole folder
            help: choose a new or empty folder for `--out`
        "#]],
    );
}

#[test]
fn a_function_missing_from_the_build_manifest_is_an_error() {
    let mut images: Value = serde_json::from_str(IMAGES).unwrap();
    images["functions"].as_object_mut().unwrap().remove("transcribe");
    refused(
        &Fixture::with_images(|yaml| yaml, &images.to_string()),
        &["render", "--target", "kubernetes", "--out", "out"],
        expect![[r#"
            error: no image of `transcribe` in the build manifest $DIR/.xtask/build/images.json: the manifests name each function's image as the last build recorded it, and an image's tag cannot be known without the engine that built its base
            help: run `cargo xtask build --push` (the cluster pulls the images from `build.registry`)
        "#]],
    );
}

#[test]
fn a_function_without_a_pushed_index_is_named_by_tag_with_a_warning() {
    let mut images: Value = serde_json::from_str(IMAGES).unwrap();
    images["functions"]["cut-clips"]["index"] = Value::Null;
    let fixture = Fixture::with_images(|yaml| yaml, &images.to_string());
    let output = fixture.render("kubernetes");
    let stderr = fixture.stderr(&output);
    expect![[r#"
        warning: no pushed multi-arch index in $DIR/.xtask/build/images.json for 1 of 11 functions, so their manifests name one platform's image by tag, which a cluster pulls only if it can reach that image and runs that platform:
          cut-clips: 127.0.0.1:5000/videosearcher/cut-clips:aca87a69ee577f83 (linux/amd64)
        help: run `cargo xtask build --push` to push the images and record their index digests
    "#]]
    .assert_eq(stderr.split("rendered target").next().unwrap());
    let tag = images["functions"]["cut-clips"]["platforms"]["linux/amd64"]["tag"].as_str().unwrap();
    let deployment = std::fs::read_to_string(fixture.path("out/openfaas-fn/deployment-cut-clips.yaml")).unwrap();
    assert!(deployment.contains(&format!("image: \"127.0.0.1:5000/videosearcher/cut-clips:{tag}\"")), "{deployment}");
}

#[test]
fn explain_timeouts_prints_the_models_table() {
    let fixture = Fixture::new(|text| text);
    let output = fixture.xtask(&["render", "--explain-timeouts"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let table = String::from_utf8(output.stdout).unwrap();
    assert_eq!(table, include_str!("../../src/pipeline/timeouts.table"), "the table the model's own test checks");
    assert!(table.contains("orchestrator deadlines <= its exec timeout"), "{table}");
}
