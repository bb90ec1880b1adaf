//! `kind: kubernetes`: the manifests of `cargo xtask render`, applied to a
//! cluster with OpenFaaS through the Kubernetes API (kube), the way kapp
//! treats an app:
//!
//! - one field manager (`videosearcher`), server-side apply, forced: what
//!   pipeline.yaml says wins over hand edits of the same fields, and an
//!   apply of unchanged manifests changes nothing (no new resourceVersion);
//! - every object carries the app's labels, and what carries them but was
//!   not rendered this time (a function removed from pipeline.yaml) is
//!   deleted (prune);
//! - deploy then waits for every Deployment's rollout, at most the cold
//!   start the pipeline allows (`timeouts.cold_start`) plus a margin, and
//!   when one is not ready says why in plain words (`kubernetes/diagnose.rs`);
//! - Secret values are read at deploy time (a file in `secrets_dir` or
//!   `VS_SECRET_<NAME>`), rendered in memory and applied; they are never
//!   written, printed or logged.
//!
//! `mode: function-crd` applies `openfaas.com/v1` Functions instead of
//! Deployments; OpenFaaS Pro's operator makes the Deployments, which are
//! waited on the same way. Scaling goes through the Deployment's scale
//! subresource: to 0 it waits until the pods are gone (cold), else until
//! the replicas are ready (warm); OpenFaaS CE's gateway scales a function up
//! from 0 by itself on its next call.

mod diagnose;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod, Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};

use super::{Endpoints, Status, Target};
use crate::openfaas::{FunctionStatus, Resources};
use crate::pipeline::{Kubernetes, KubernetesMode, Pipeline};

/// The one field manager of every apply.
const FIELD_MANAGER: &str = "videosearcher";
/// The CRD OpenFaaS Pro's operator reconciles.
const FUNCTION_CRD: &str = "functions.openfaas.com";

pub struct KubernetesTarget<'a> {
    pipeline: &'a Pipeline,
    name: String,
    config: Kubernetes,
    tokio: tokio::runtime::Runtime,
}

/// What one apply did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    Created,
    Configured,
    Unchanged,
}

impl<'a> KubernetesTarget<'a> {
    pub fn new(pipeline: &'a Pipeline, name: &str, config: Kubernetes) -> anyhow::Result<KubernetesTarget<'a>> {
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(KubernetesTarget { pipeline, name: name.to_string(), config, tokio })
    }

    /// The label selector of everything this target applied.
    fn selector(&self) -> String {
        xtask::render::app_labels(self.pipeline, &self.name)
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    async fn client(&self) -> anyhow::Result<Client> {
        let config = kube::Config::infer().await.with_context(|| {
            format!(
                "no Kubernetes cluster for target `{}`\nhelp: set KUBECONFIG to its kubeconfig (kind: `kind get kubeconfig`, k3d: `k3d kubeconfig write`)",
                self.name
            )
        })?;
        let server = config.cluster_url.to_string();
        let client = Client::try_from(config)?;
        client.apiserver_version().await.with_context(|| format!("the Kubernetes API server at {server} does not answer"))?;
        Ok(client)
    }

    /// Every rendered object with the Secrets' values, as JSON.
    fn objects(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let values = super::secret_values(self.pipeline, &self.name, &self.config.secrets_dir)?;
        let manifest_path = xtask::build::manifest_path(self.pipeline);
        let images = xtask::build::manifest::Images::read(&manifest_path);
        let built = xtask::render::BuiltImages { images: &images, manifest: &manifest_path };
        let rendered = xtask::render::render(self.pipeline, &self.name, &built)?;
        for warning in &rendered.warnings {
            eprintln!("warning: {warning}");
        }
        let secrets = xtask::render::secrets_with_values(self.pipeline, &self.name, &values)?;
        let mut objects = Vec::new();
        for manifest in rendered.manifests.iter().filter(|m| m.object.as_ref().is_some_and(|o| o.kind != xtask::render::Kind::Secret)) {
            objects.push(xtask::pipeline::parse_manifest(&manifest.text).with_context(|| format!("rendered {}", manifest.path().display()))?);
        }
        for manifest in &secrets {
            // Never in an error message: the text carries the value.
            objects.push(xtask::pipeline::parse_manifest(&manifest.text).map_err(|_| anyhow::anyhow!("a rendered Secret is not a YAML object"))?);
        }
        Ok(objects)
    }

    async fn api_resource(client: &Client, object: &serde_json::Value) -> anyhow::Result<ApiResource> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, _) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .with_context(|| format!("the cluster does not serve {api_version} {kind}"))?;
        Ok(resource)
    }

    async fn apply(&self, client: &Client, object: &serde_json::Value) -> anyhow::Result<Applied> {
        let resource = Self::api_resource(client, object).await?;
        let name = object["metadata"]["name"].as_str().context("a rendered object has no name")?;
        let namespace = object["metadata"]["namespace"].as_str();
        let api: Api<DynamicObject> = match namespace {
            Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let before = api.get_opt(name).await?.and_then(|o| o.resource_version());
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let after = api
            .patch(name, &params, &Patch::Apply(object))
            .await
            .with_context(|| format!("apply {} {}/{name}", resource.kind, namespace.unwrap_or("")))?;
        Ok(match before {
            None => Applied::Created,
            Some(before) if Some(before.as_str()) == after.resource_version().as_deref() => Applied::Unchanged,
            Some(_) => Applied::Configured,
        })
    }

    async fn ensure_namespace(client: &Client, namespace: &str) -> anyhow::Result<()> {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        if api.get_opt(namespace).await?.is_none() {
            let object = serde_json::json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": namespace } });
            api.patch(namespace, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&object))
                .await
                .with_context(|| format!("create namespace {namespace}"))?;
            eprintln!("created namespace {namespace}");
        }
        Ok(())
    }

    async fn crd_installed(client: &Client) -> anyhow::Result<bool> {
        let api: Api<CustomResourceDefinition> = Api::all(client.clone());
        Ok(api.get_opt(FUNCTION_CRD).await?.is_some())
    }

    /// The namespaces this target puts objects in.
    fn namespaces(&self) -> Vec<String> {
        let mut namespaces = vec![self.config.namespace.clone()];
        if self.config.minio && self.config.openfaas_namespace != self.config.namespace {
            namespaces.push(self.config.openfaas_namespace.clone());
        }
        namespaces
    }

    /// Every object with the app's labels, as (api resource, namespace, name).
    async fn labelled(&self, client: &Client) -> anyhow::Result<Vec<(ApiResource, String, String)>> {
        let mut kinds = vec![
            ApiResource::erase::<Deployment>(&()),
            ApiResource::erase::<Service>(&()),
            ApiResource::erase::<Secret>(&()),
        ];
        if Self::crd_installed(client).await? {
            kinds.push(Self::api_resource(client, &serde_json::json!({ "apiVersion": "openfaas.com/v1", "kind": "Function" })).await?);
        }
        let params = ListParams::default().labels(&self.selector());
        let mut found = Vec::new();
        for namespace in self.namespaces() {
            for kind in &kinds {
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, kind);
                for object in api.list_metadata(&params).await?.items {
                    found.push((kind.clone(), namespace.clone(), object.name_any()));
                }
            }
        }
        Ok(found)
    }

    async fn deploy_async(&self) -> anyhow::Result<()> {
        let objects = self.objects()?;
        let client = self.client().await?;
        if self.config.mode == KubernetesMode::FunctionCrd && !Self::crd_installed(&client).await? {
            bail!(
                "target `{}` has `mode: function-crd`, but the cluster has no `{FUNCTION_CRD}` CustomResourceDefinition: only OpenFaaS Pro installs it (its operator turns Functions into Deployments)\nhelp: install OpenFaaS Pro, or set `targets.{}.mode: deployments` (works with OpenFaaS CE)",
                self.name,
                self.name
            );
        }
        for namespace in self.namespaces() {
            Self::ensure_namespace(&client, &namespace).await?;
        }

        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        let mut applied = BTreeSet::new();
        for object in &objects {
            let outcome = self.apply(&client, object).await?;
            let kind = object["kind"].as_str().unwrap_or_default();
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
            applied.insert((kind.to_string(), namespace.to_string(), name.to_string()));
            let word = match outcome {
                Applied::Created => "created",
                Applied::Configured => "configured",
                Applied::Unchanged => "unchanged",
            };
            *counts.entry(word).or_default() += 1;
            if outcome != Applied::Unchanged {
                eprintln!("{word:<10} {kind} {namespace}/{name}");
            }
        }

        let mut pruned = 0;
        for (resource, namespace, name) in self.labelled(&client).await? {
            if applied.contains(&(resource.kind.clone(), namespace.clone(), name.clone())) {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource);
            api.delete(&name, &DeleteParams::background()).await.with_context(|| format!("prune {} {namespace}/{name}", resource.kind))?;
            eprintln!("{:<10} {} {namespace}/{name} (not in pipeline.yaml any more)", "pruned", resource.kind);
            pruned += 1;
        }

        let deployments: Vec<(String, String)> = objects
            .iter()
            .filter(|o| o["kind"] == "Deployment" || o["kind"] == "Function")
            .map(|o| {
                let namespace = o["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
                (namespace, o["metadata"]["name"].as_str().unwrap_or_default().to_string())
            })
            .collect();
        let settings = &self.pipeline.timeouts.settings;
        self.wait_for_rollout(&client, &deployments, settings.cold_start + settings.margin).await?;
        let summary: Vec<String> = counts.iter().map(|(word, n)| format!("{n} {word}")).collect();
        println!(
            "target `{}` deployed: {} objects ({}), {pruned} pruned; {} rollouts complete",
            self.name,
            objects.len(),
            summary.join(", "),
            deployments.len()
        );
        Ok(())
    }

    /// Wait until every Deployment has rolled out, at most `within`; then
    /// name what is wrong with each that has not.
    async fn wait_for_rollout(&self, client: &Client, deployments: &[(String, String)], within: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let mut pending = Vec::new();
            for (namespace, name) in deployments {
                let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
                match api.get_opt(name).await? {
                    Some(deployment) if diagnose::rolled_out(&deployment) => {}
                    found => pending.push((namespace, name, found)),
                }
            }
            if pending.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= within {
                let mut lines = Vec::new();
                for (namespace, name, found) in pending {
                    let problem = match found {
                        None => diagnose::Problem::NoPods {
                            message: format!("its Deployment {namespace}/{name} does not exist (OpenFaaS Pro's operator makes it from the Function)"),
                        },
                        Some(deployment) => {
                            let (pods, events) = self.pods_and_events(client, namespace, name).await?;
                            diagnose::diagnose(&deployment, &pods, &events)
                        }
                    };
                    lines.push(format!("  {name}: {}", problem.explain(name, &self.name, namespace)));
                }
                bail!(
                    "{} of {} functions not ready {} after applying (timeouts.cold_start + margin):\n{}",
                    lines.len(),
                    deployments.len(),
                    humantime::format_duration(within),
                    lines.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn pods_and_events(&self, client: &Client, namespace: &str, function: &str) -> anyhow::Result<(Vec<Pod>, Vec<Event>)> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let pods = pods.list(&ListParams::default().labels(&format!("faas_function={function}"))).await?.items;
        let names: BTreeSet<String> = pods.iter().map(|pod| pod.name_any()).collect();
        let events: Api<Event> = Api::namespaced(client.clone(), namespace);
        let events = events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|event| event.involved_object.kind.as_deref() == Some("Pod") && event.involved_object.name.as_ref().is_some_and(|n| names.contains(n)))
            .collect();
        Ok((pods, events))
    }

    /// The gateway as this tool reaches it: from the target, or the
    /// `gateway-external` Service of OpenFaaS's namespace.
    async fn gateway_url(&self, client: &Client) -> anyhow::Result<String> {
        if let Some(gateway) = &self.config.gateway {
            return Ok(gateway.clone());
        }
        self.service_url(client, &["gateway-external", "gateway"], 8080, "gateway").await
    }

    async fn store_url(&self, client: &Client) -> anyhow::Result<String> {
        if let Some(store) = &self.config.store {
            return Ok(store.clone());
        }
        self.service_url(client, &["minio"], 9000, "store").await
    }

    /// A NodePort Service answers on the node's port (kind and k3d map it to
    /// 127.0.0.1); a LoadBalancer on its ingress address.
    async fn service_url(&self, client: &Client, names: &[&str], port: i32, key: &str) -> anyhow::Result<String> {
        let namespace = &self.config.openfaas_namespace;
        let api: Api<Service> = Api::namespaced(client.clone(), namespace);
        for name in names {
            let Some(service) = api.get_opt(name).await? else { continue };
            let spec = service.spec.unwrap_or_default();
            let ports = spec.ports.unwrap_or_default();
            let ingress = service.status.and_then(|s| s.load_balancer).and_then(|lb| lb.ingress).and_then(|i| i.into_iter().next());
            if let Some(ingress) = ingress.and_then(|i| i.ip.or(i.hostname)) {
                let port = ports.first().map_or(port, |p| p.port);
                return Ok(format!("http://{ingress}:{port}"));
            }
            if let Some(node_port) = ports.iter().find_map(|p| p.node_port) {
                return Ok(format!("http://127.0.0.1:{node_port}"));
            }
        }
        bail!(
            "target `{}` names no `{key}`, and {namespace} has no NodePort or LoadBalancer Service {} to reach it by\nhelp: set `targets.{}.{key}` (e.g. http://127.0.0.1:{port} after `kubectl port-forward -n {namespace} svc/{} {port}:{port}`)",
            self.name,
            names.join(" or "),
            self.name,
            names[0]
        )
    }

    async fn scale_async(&self, function: &str, replicas: u64, within: Duration) -> anyhow::Result<()> {
        if self.pipeline.function(function).is_none() {
            bail!("no function `{function}` in the pipeline");
        }
        let client = self.client().await?;
        let api: Api<Deployment> = Api::namespaced(client.clone(), &self.config.namespace);
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        api.patch_scale(function, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .with_context(|| format!("scale Deployment {}/{function}", self.config.namespace))?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), &self.config.namespace);
        let started = Instant::now();
        loop {
            let deployment = api.get(function).await?;
            let done = if replicas == 0 {
                let left = pods.list(&ListParams::default().labels(&format!("faas_function={function}"))).await?.items.len();
                let status = deployment.status.clone().unwrap_or_default();
                left == 0 && status.replicas.unwrap_or(0) == 0
            } else {
                diagnose::rolled_out(&deployment)
            };
            if done {
                return Ok(());
            }
            if started.elapsed() > within {
                let (pods, events) = self.pods_and_events(&client, &self.config.namespace, function).await?;
                let why = if replicas == 0 {
                    format!("{} pods left", pods.len())
                } else {
                    diagnose::diagnose(&deployment, &pods, &events).explain(function, &self.name, &self.config.namespace)
                };
                bail!("`{function}` did not reach {replicas} replicas within {}: {why}", humantime::format_duration(within));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Target for KubernetesTarget<'_> {
    fn deploy(&self) -> anyhow::Result<()> {
        self.tokio.block_on(self.deploy_async())
    }

    fn endpoints(&self) -> anyhow::Result<Endpoints> {
        let values = super::secret_values(self.pipeline, &self.name, &self.config.secrets_dir)?;
        let (gateway_url, store_url) = self.tokio.block_on(async {
            let client = self.client().await?;
            anyhow::Ok((self.gateway_url(&client).await?, self.store_url(&client).await?))
        })?;
        Ok(super::endpoints_with(self.pipeline, gateway_url, store_url, &values))
    }

    fn status(&self) -> anyhow::Result<Option<Status>> {
        let functions = self.tokio.block_on(async {
            let client = self.client().await?;
            let api: Api<Deployment> = Api::namespaced(client, &self.config.namespace);
            let listed = api.list(&ListParams::default().labels(&self.selector())).await?.items;
            anyhow::Ok(listed.into_iter().filter_map(|d| function_status(&d, &self.config.namespace)).collect::<Vec<_>>())
        })?;
        if functions.is_empty() {
            return Ok(None);
        }
        let about = vec![format!(
            "target `{}` (kubernetes, namespace {}, mode {}): {} of {} functions deployed",
            self.name,
            self.config.namespace,
            self.config.mode.name(),
            functions.len(),
            self.pipeline.functions.len()
        )];
        Ok(Some(Status { about, endpoints: self.endpoints()?, functions }))
    }

    fn logs(&self, function: Option<&str>, lines: usize) -> anyhow::Result<String> {
        let function = super::function_to_log(self.pipeline, &self.name, function, "function's pods")?;
        self.tokio.block_on(async {
            let client = self.client().await?;
            let pods: Api<Pod> = Api::namespaced(client, &self.config.namespace);
            let listed = pods.list(&ListParams::default().labels(&format!("faas_function={function}"))).await?.items;
            if listed.is_empty() {
                bail!("`{function}` has no pod in {} (scaled to 0?)", self.config.namespace);
            }
            let mut out = String::new();
            for pod in listed {
                let params = LogParams { tail_lines: Some(lines as i64), ..LogParams::default() };
                let text = pods.logs(&pod.name_any(), &params).await.with_context(|| format!("logs of pod {}", pod.name_any()))?;
                out.push_str(&text);
            }
            Ok(out)
        })
    }

    fn teardown(&self) -> anyhow::Result<()> {
        self.tokio.block_on(async {
            let client = self.client().await?;
            let objects = self.labelled(&client).await?;
            for (resource, namespace, name) in &objects {
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
                api.delete(name, &DeleteParams::background()).await.with_context(|| format!("delete {} {namespace}/{name}", resource.kind))?;
            }
            let started = Instant::now();
            while !self.labelled(&client).await?.is_empty() {
                if started.elapsed() > Duration::from_secs(60) {
                    bail!("objects of target `{}` are still there a minute after deleting them", self.name);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            println!("target `{}`: {} objects removed", self.name, objects.len());
            Ok(())
        })
    }

    fn scale(&self, function: &str, replicas: u64, within: Duration) -> anyhow::Result<()> {
        self.tokio.block_on(self.scale_async(function, replicas, within))
    }
}

/// A Deployment as the gateway API would list its function.
fn function_status(deployment: &Deployment, namespace: &str) -> Option<FunctionStatus> {
    let spec = deployment.spec.as_ref()?;
    let container = spec.template.spec.as_ref()?.containers.first()?;
    let status = deployment.status.clone().unwrap_or_default();
    let resources = |of: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| Resources {
        memory: of.and_then(|l| l.get("memory")).map(|q| q.0.clone()),
        cpu: of.and_then(|l| l.get("cpu")).map(|q| q.0.clone()),
    };
    let declared = container.resources.as_ref();
    Some(FunctionStatus {
        name: deployment.name_any(),
        image: container.image.clone().unwrap_or_default(),
        namespace: namespace.to_string(),
        labels: deployment.labels().clone(),
        annotations: deployment.annotations().clone(),
        limits: Some(resources(declared.and_then(|r| r.limits.as_ref()))),
        requests: Some(resources(declared.and_then(|r| r.requests.as_ref()))),
        replicas: spec.replicas.unwrap_or(0) as u64,
        available_replicas: status.available_replicas.unwrap_or(0) as u64,
        ..FunctionStatus::default()
    })
}
