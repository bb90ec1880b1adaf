//! `cargo xtask render`: the Kubernetes manifests of a `kubernetes` target,
//! from the pipeline and the images of the last build.
//!
//! - `mode: deployments`: a Deployment and a Service per function, the shape
//!   faas-netes gives functions (OpenFaaS CE finds them by `faas_function`).
//! - `mode: function-crd`: an `openfaas.com/v1` Function per function, for
//!   OpenFaaS Pro's operator.
//! - Either way: a Secret per secret, without its value; MinIO when
//!   `minio: true`; and `openfaas-values.yaml`, the chart values of the
//!   gateway's and the queue worker's timeouts.
//!
//! Invariants:
//! - No network, no Docker, no cluster, no secret value: the input is the
//!   model and the build manifest; the output is the same bytes every time.
//! - What a function is given (environment, labels, annotations, limits,
//!   port, health path, secrets folder) comes from `pipeline::contract`.
//! - Every timeout comes from [`timeouts()`]; no other file here computes one.
//! - Values reach the files only through the templates, which quote every
//!   string (`templates.rs`): nothing here writes YAML by hand.
//! - A Secret's value exists only in memory: [`render`] renders none, and
//!   [`secrets_with_values`] (for deploy) returns them to the caller only.
//!
//! The templates are compiled into the binary (`include_str!`) rather than
//! read from `templates/` at run time: what render writes then depends on the
//! pipeline and the build manifest alone, whatever folder it runs from, and
//! `xtask-run` renders the very templates the golden tests checked. Editing a
//! template needs no step of its own: `cargo xtask` is `cargo run`, which
//! rebuilds when an included file changes.

mod context;
mod images;
mod templates;
mod timeouts;
mod write;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub use images::BuiltImages;
pub use timeouts::{timeouts, FunctionTimeouts, GatewayTimeouts, Probe, RenderTimeouts};
pub use write::{write, Written};

use crate::pipeline::{Kubernetes, KubernetesMode, Pipeline};
use templates::Templates;

/// The kind of an object, as the file name writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Deployment,
    Service,
    Function,
    Secret,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment",
            Kind::Service => "service",
            Kind::Function => "function",
            Kind::Secret => "secret",
        }
    }
}

/// One rendered file.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `None` for `openfaas-values.yaml`, which is no Kubernetes object.
    pub object: Option<Object>,
    /// The YAML.
    pub text: String,
}

/// What object a manifest declares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Object {
    pub namespace: String,
    pub kind: Kind,
    pub name: String,
}

impl Manifest {
    /// Where it goes in the output folder: `<namespace>/<kind>-<name>.yaml`.
    pub fn path(&self) -> PathBuf {
        match &self.object {
            Some(object) => Path::new(&object.namespace).join(format!("{}-{}.yaml", object.kind.name(), object.name)),
            None => PathBuf::from(VALUES_FILE),
        }
    }
}

/// The text stays out of `{:?}`: a Secret rendered for deploy carries its value.
impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest").field("path", &self.path()).field("bytes", &self.text.len()).finish()
    }
}

/// The OpenFaaS chart values file, at the top of the output folder.
pub const VALUES_FILE: &str = "openfaas-values.yaml";

/// Everything `render` makes for one target.
#[derive(Debug)]
pub struct Rendered {
    pub target: String,
    pub mode: KubernetesMode,
    pub openfaas_namespace: String,
    /// Ordered by path; the Secrets have no value.
    pub manifests: Vec<Manifest>,
    /// For stderr: functions named by tag rather than by digest.
    pub warnings: Vec<String>,
}

impl Rendered {
    /// One line for stderr: what was written where.
    pub fn summary(&self, out: &Path, written: &Written) -> String {
        let mut namespaces: BTreeMap<&str, BTreeMap<Kind, usize>> = BTreeMap::new();
        for object in self.manifests.iter().filter_map(|manifest| manifest.object.as_ref()) {
            *namespaces.entry(&object.namespace).or_default().entry(object.kind).or_default() += 1;
        }
        let objects: Vec<String> = namespaces
            .iter()
            .map(|(namespace, kinds)| {
                let kinds: Vec<String> = kinds.iter().map(|(kind, count)| format!("{count} {}", kind.name())).collect();
                format!("{namespace}: {}", kinds.join(", "))
            })
            .collect();
        let stale = match written.stale.len() {
            0 => String::new(),
            n => format!(" (removed {n} files of the earlier render)"),
        };
        format!(
            "rendered target `{}` (mode `{}`) into {}: {} files{stale}; {}; the Secrets carry no value (deploy fills them)\nhelp: the gateway's timeouts are Helm values: `helm upgrade openfaas openfaas/openfaas -n {} --reuse-values -f {}`",
            self.target,
            self.mode.name(),
            out.display(),
            written.files,
            objects.join("; "),
            self.openfaas_namespace,
            out.join(VALUES_FILE).display()
        )
    }
}

/// The labels every object of target `target` carries, as kapp marks an
/// app: deploy prunes what carries them but was not rendered, and teardown
/// removes what carries them.
pub fn app_labels(pipeline: &Pipeline, target: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/managed-by".to_string(), "videosearcher".to_string()),
        ("app.kubernetes.io/part-of".to_string(), pipeline.name.clone()),
        ("videosearcher.dev/target".to_string(), target.to_string()),
    ])
}

/// The `kubernetes` target `name` (`--target`), or an error pointing at why
/// it cannot be rendered.
pub fn cluster_target<'p>(pipeline: &'p Pipeline, name: Option<&str>) -> anyhow::Result<(&'p str, &'p Kubernetes)> {
    let clusters: Vec<String> = pipeline
        .targets
        .iter()
        .filter(|(_, target)| target.kind.kubernetes().is_some())
        .map(|(name, _)| format!("`{name}`"))
        .collect();
    let clusters = if clusters.is_empty() {
        "the pipeline has none: add a target of `kind: kubernetes`".to_string()
    } else {
        format!("the pipeline's are {}", clusters.join(", "))
    };
    let Some(name) = name else {
        anyhow::bail!("render needs `--target`, a target of kind `kubernetes`\nhelp: {clusters}");
    };
    let (name, target) = pipeline.target(Some(name))?;
    match target.kind.kubernetes() {
        Some(kubernetes) => Ok((name, kubernetes)),
        None => Err(pipeline
            .error_at(
                &format!("targets.{name}.kind"),
                format!(
                    "target `{name}` is of kind `{}`: render writes manifests for `kubernetes` targets only",
                    target.kind.name()
                ),
                Some(format!("render a `kubernetes` target; {clusters}")),
            )
            .into()),
    }
}

/// Every manifest of the `kubernetes` target `target`, the Secrets without
/// their values, ordered by path. Needs no cluster, no Docker, no secret.
pub fn render(pipeline: &Pipeline, target: &str, images: &BuiltImages) -> anyhow::Result<Rendered> {
    let (target, kubernetes) = cluster_target(pipeline, Some(target))?;
    let templates = Templates::new()?;
    let timeouts = timeouts(pipeline);
    let detector_model = pipeline.detector_model_in_images().ok_or_else(|| {
        pipeline.error_at(
            "parameters.detector.model",
            "no function's `assets:` carries the detector model, so no image has it",
            Some("add `{ detector_model: true, to: <its path in the image> }` to the `assets:` of the function that runs the detector".into()),
        )
    })?;
    let detector_model = Path::new(detector_model);
    let placement = context::placement(kubernetes, detector_model);
    let (references, warnings) = images::references(pipeline, images)?;

    let app = app_labels(pipeline, target);
    let mut manifests = Vec::new();
    for (function, image) in pipeline.functions.iter().zip(references) {
        let context = context::function(&app, pipeline, kubernetes, function, image, &placement, &timeouts);
        let object = |kind| Object { namespace: kubernetes.namespace.clone(), kind, name: function.name.clone() };
        match kubernetes.mode {
            KubernetesMode::Deployments => {
                manifests.push(Manifest {
                    object: Some(object(Kind::Deployment)),
                    text: templates.render("deployment.yaml.j2", &context)?,
                });
                manifests.push(Manifest {
                    object: Some(object(Kind::Service)),
                    text: templates.render("service.yaml.j2", &context)?,
                });
            }
            KubernetesMode::FunctionCrd => manifests.push(Manifest {
                object: Some(object(Kind::Function)),
                text: templates.render("function.yaml.j2", &context)?,
            }),
        }
    }
    manifests.extend(secret_manifests(&templates, pipeline, target, kubernetes, None)?);
    if kubernetes.minio {
        let context = context::minio(&app, pipeline, kubernetes, &timeouts);
        let object = |kind| Object { namespace: kubernetes.openfaas_namespace.clone(), kind, name: "minio".into() };
        manifests.push(Manifest {
            object: Some(object(Kind::Deployment)),
            text: templates.render("minio-deployment.yaml.j2", &context)?,
        });
        manifests.push(Manifest {
            object: Some(object(Kind::Service)),
            text: templates.render("minio-service.yaml.j2", &context)?,
        });
    }
    let values = context::values(kubernetes, &timeouts);
    manifests.push(Manifest { object: None, text: templates.render("openfaas-values.yaml.j2", &values)? });
    manifests.sort_by_key(Manifest::path);
    Ok(Rendered {
        target: target.to_string(),
        mode: kubernetes.mode,
        openfaas_namespace: kubernetes.openfaas_namespace.clone(),
        manifests,
        warnings,
    })
}

/// The Secret objects of target `target` with their values, for deploy to
/// apply: the same files as [`render`]'s Secrets, with `data` (base64). They
/// exist only in the returned memory; write none of them to disk.
/// `values` holds every secret of `secrets:` by name.
pub fn secrets_with_values(
    pipeline: &Pipeline,
    target: &str,
    values: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<Manifest>> {
    let (target, kubernetes) = cluster_target(pipeline, Some(target))?;
    let templates = Templates::new()?;
    secret_manifests(&templates, pipeline, target, kubernetes, Some(values))
}

/// One Secret per secret in the functions' namespace, and, for MinIO, the
/// storage credentials again in OpenFaaS's namespace (a pod reads Secrets of
/// its own namespace only).
fn secret_manifests(
    templates: &Templates,
    pipeline: &Pipeline,
    target: &str,
    kubernetes: &Kubernetes,
    values: Option<&BTreeMap<String, String>>,
) -> anyhow::Result<Vec<Manifest>> {
    let storage = [&pipeline.storage.access_key_secret, &pipeline.storage.secret_key_secret];
    let mut wanted: Vec<(&str, &String, Vec<String>)> = Vec::new();
    for secret in &pipeline.secrets {
        let used_by =
            pipeline.functions.iter().filter(|f| f.secrets.contains(secret)).map(|f| f.name.clone()).collect();
        wanted.push((&kubernetes.namespace, secret, used_by));
    }
    if kubernetes.minio {
        for secret in storage {
            match wanted.iter_mut().find(|(namespace, name, _)| *namespace == kubernetes.openfaas_namespace && *name == secret) {
                Some((_, _, used_by)) => used_by.push("minio".to_string()),
                None => wanted.push((&kubernetes.openfaas_namespace, secret, vec!["minio".to_string()])),
            }
        }
    }
    wanted
        .into_iter()
        .map(|(namespace, secret, used_by)| {
            let value = match values {
                None => None,
                Some(values) => {
                    use base64::Engine as _;
                    let value = values.get(secret).with_context(|| format!("no value for secret `{secret}` of target `{target}`"))?;
                    Some(base64::engine::general_purpose::STANDARD.encode(value))
                }
            };
            let context = context::SecretContext {
                app: app_labels(pipeline, target),
                name: secret.clone(),
                namespace: namespace.to_string(),
                key: secret.clone(),
                value,
                used_by,
            };
            Ok(Manifest {
                object: Some(Object { namespace: namespace.to_string(), kind: Kind::Secret, name: secret.clone() }),
                text: templates.render("secret.yaml.j2", &context)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::build::Images;

    /// The repository's pipeline (absolute sources) and the build manifest fixture.
    fn repository() -> (tempfile::TempDir, Pipeline, Images) {
        let dir = tempfile::tempdir().unwrap();
        let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let yaml = std::fs::read_to_string(format!("{repo}/pipeline.yaml"))
            .unwrap()
            .replace("source: stages/", &format!("source: {repo}/stages/"))
            .replace("base: base-image", &format!("base: {repo}/base-image"));
        std::fs::write(dir.path().join("pipeline.yaml"), yaml).unwrap();
        let pipeline = crate::pipeline::load(&dir.path().join("pipeline.yaml")).unwrap();
        let images = serde_json::from_str(include_str!("../../tests/it/render/images.json")).unwrap();
        (dir, pipeline, images)
    }

    #[test]
    fn secrets_with_values_carry_them_in_memory_only() {
        let (_dir, pipeline, _) = repository();
        let values = BTreeMap::from([
            ("s3-access-key".to_string(), "access \"quoted\"\nvalue".to_string()),
            ("s3-secret-key".to_string(), "secret-value".to_string()),
        ]);
        let secrets = secrets_with_values(&pipeline, "kubernetes", &values).unwrap();
        let paths: Vec<String> = secrets.iter().map(|s| s.path().display().to_string()).collect();
        assert_eq!(
            paths,
            [
                "openfaas-fn/secret-s3-access-key.yaml",
                "openfaas-fn/secret-s3-secret-key.yaml",
                "openfaas/secret-s3-access-key.yaml",
                "openfaas/secret-s3-secret-key.yaml"
            ]
        );
        for manifest in &secrets {
            let secret: k8s_openapi::api::core::v1::Secret = serde_yaml::from_str(&manifest.text).unwrap();
            let name = secret.metadata.name.unwrap();
            assert_eq!(secret.data.unwrap()[&name].0, values[&name].as_bytes(), "{manifest:?}");
            assert!(!format!("{manifest:?}").contains("value"), "Debug shows no text: {manifest:?}");
        }
        let err = secrets_with_values(&pipeline, "kubernetes", &BTreeMap::new()).unwrap_err();
        assert_eq!(err.to_string(), "no value for secret `s3-access-key` of target `kubernetes`");
    }

    #[test]
    fn render_leaves_every_secret_without_a_value() {
        let (dir, pipeline, images) = repository();
        let manifest = dir.path().join("images.json");
        let rendered = render(&pipeline, "kubernetes", &BuiltImages { images: &images, manifest: &manifest }).unwrap();
        let secrets: Vec<&Manifest> =
            rendered.manifests.iter().filter(|m| m.object.as_ref().is_some_and(|o| o.kind == Kind::Secret)).collect();
        assert_eq!(secrets.len(), 4);
        assert!(secrets.iter().all(|m| !m.text.contains("stringData") && !m.text.contains("\ndata")), "{secrets:?}");
        assert!(rendered.warnings.is_empty(), "{:?}", rendered.warnings);
    }

    #[test]
    fn timeouts_give_the_grace_above_exec_and_the_upstream_below_read_and_write() {
        let (_dir, pipeline, _) = repository();
        let timeouts = timeouts(&pipeline);
        assert_eq!(timeouts.functions.len(), pipeline.functions.len());
        for function in &pipeline.functions {
            let times = timeouts.functions[&function.name];
            assert_eq!(times.exec, function.timeout);
            assert!(times.termination_grace > times.exec, "{}", function.name);
        }
        let gateway = timeouts.gateway;
        assert_eq!(gateway.upstream, pipeline.timeouts.gateway.upstream, "the model's, not a render's own");
        assert_eq!(timeouts.functions["transcribe"].termination_grace, pipeline.timeouts.call("transcribe").unwrap().stop_grace());
        assert!(gateway.read > gateway.upstream && gateway.write > gateway.upstream);
        assert!(gateway.faasnetes_read >= gateway.read && gateway.ack_wait >= gateway.upstream);
    }

    #[test]
    fn an_earlier_render_with_a_file_of_someone_else_is_refused_and_kept() {
        let (dir, pipeline, images) = repository();
        let manifest = dir.path().join("images.json");
        let rendered = render(&pipeline, "kubernetes", &BuiltImages { images: &images, manifest: &manifest }).unwrap();
        let out = dir.path().join("out");
        write(&out, &rendered).unwrap();
        std::fs::write(out.join("openfaas-fn/extra.yaml"), "mine").unwrap();
        let err = write(&out, &rendered).unwrap_err();
        assert!(err.to_string().contains("holds openfaas-fn/extra.yaml, which the earlier render there did not write"), "{err}");
        assert_eq!(std::fs::read_to_string(out.join("openfaas-fn/extra.yaml")).unwrap(), "mine");
        assert!(out.join("openfaas-values.yaml").is_file());
        let err = write(&out.join("openfaas-values.yaml"), &rendered).unwrap_err();
        assert!(err.to_string().contains("is not a folder"), "{err}");
    }
}
