//! Targets: where the pipeline runs. Every command that needs a running
//! pipeline (`deploy`, `teardown`, `status`, `logs`, `verify`, `bench`, the
//! coming experiments) goes through [`Target`], and only through it.
//!
//! The interface is small on purpose: deploy, where it answers, scale, what
//! it runs, logs, tear down. What all OpenFaaS gateways share (listing
//! functions, scaling them and waiting for the replicas) is written once,
//! here, over the gateway's REST API.
//!
//! - `local.rs`: the embedded runtime; for `kind: local` its replicas are
//!   processes, for `kind: docker` containers of the built images
//!   (`docker.rs` checks that they are there).
//! - `openfaas.rs`: any OpenFaaS gateway, through its REST API.
//! - `kubernetes.rs`: a cluster with OpenFaaS, the rendered manifests
//!   applied through the Kubernetes API (`kubernetes/diagnose.rs` says why
//!   a rollout is not ready).

mod docker;
mod kubernetes;
mod local;
mod openfaas;

pub use local::Embedded;

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use stage_runtime::{Store, StoreConfig};

use crate::flags;
use crate::openfaas::FunctionStatus;
use crate::pipeline::{Pipeline, TargetKind};

/// Where a deployed pipeline answers, with what it takes to use it.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// The OpenFaaS gateway (`http://127.0.0.1:8080`).
    pub gateway_url: String,
    /// The S3 endpoint of the object store the functions use.
    pub store_url: String,
    pub bucket: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
}

impl Endpoints {
    /// A client of the object store; call inside the tokio runtime that serves it.
    pub fn store(&self) -> anyhow::Result<Store> {
        Store::new(&StoreConfig {
            endpoint: self.store_url.clone(),
            bucket: self.bucket.clone(),
            region: self.region.clone(),
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
        })
    }
}

/// What a target runs now.
pub struct Status {
    /// Lines about the target itself (`local runtime (pid 4242), up 3m`).
    pub about: Vec<String>,
    pub endpoints: Endpoints,
    pub functions: Vec<FunctionStatus>,
}

/// One place the pipeline runs.
pub trait Target {
    /// Deploy the pipeline and return once the gateway answers and every
    /// function is registered (`scale.min` replicas started).
    fn deploy(&self) -> anyhow::Result<()>;
    /// Where the deployed pipeline answers; an error when it is not deployed,
    /// saying how to deploy it.
    fn endpoints(&self) -> anyhow::Result<Endpoints>;
    /// What it runs; `None` when nothing is deployed.
    fn status(&self) -> anyhow::Result<Option<Status>>;
    /// The last `lines` lines of the log of the target's runtime, or of one function.
    fn logs(&self, function: Option<&str>, lines: usize) -> anyhow::Result<String>;
    /// Remove everything `deploy` made; waits until it is gone.
    fn teardown(&self) -> anyhow::Result<()>;

    /// Set `function`'s replicas and wait until as many are ready (or, for
    /// 0, until none is left), at most `within`.
    fn scale(&self, function: &str, replicas: u64, within: Duration) -> anyhow::Result<()> {
        let gateway = Gateway::new(&self.endpoints()?.gateway_url)?;
        gateway.scale(function, replicas, within)
    }

    /// CPU seconds its functions have used so far, when they run on this
    /// machine where they can be measured; `None` elsewhere.
    fn cpu_seconds(&self) -> anyhow::Result<Option<f64>> {
        Ok(None)
    }
}

/// Every declared secret's value, for a target that takes them from this
/// machine: `VS_SECRET_<NAME>` (upper case, `-` as `_`) when set, else the
/// file `<dir>/<name>`. The values go to the cluster or gateway only, never
/// into a file, a log or an error message.
pub fn secret_values(pipeline: &Pipeline, target: &str, dir: &std::path::Path) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    pipeline
        .secrets
        .iter()
        .map(|name| {
            let variable = format!("VS_SECRET_{}", name.to_ascii_uppercase().replace('-', "_"));
            if let Some(value) = std::env::var_os(&variable) {
                let value = value.into_string().map_err(|_| anyhow::anyhow!("{variable} is not UTF-8"))?;
                return Ok((name.clone(), value.trim().to_string()));
            }
            let path = dir.join(name);
            let value = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "secret `{name}` of target `{target}` has no value: {variable} is not set and {} cannot be read\nhelp: put its value in that file (`targets.{target}.secrets_dir`) or in {variable}",
                    path.display()
                )
            })?;
            Ok((name.clone(), value.trim().to_string()))
        })
        .collect()
}

/// Scale every function of the pipeline to zero through `target` and wait
/// until its replicas are gone: what a cold request needs first (bench,
/// cold experiment regimes).
pub fn scale_all_to_zero(pipeline: &Pipeline, target: &dyn Target) -> anyhow::Result<()> {
    let within = pipeline.timeouts.settings.cold_start * 2;
    for function in &pipeline.functions {
        target.scale(&function.name, 0, within).with_context(|| format!("scale `{}` to zero for a cold start", function.name))?;
    }
    Ok(())
}

/// The endpoints of a target elsewhere: its gateway and store, and the
/// store's credentials among the secret values.
fn endpoints_with(pipeline: &Pipeline, gateway_url: String, store_url: String, values: &std::collections::BTreeMap<String, String>) -> Endpoints {
    let storage = &pipeline.storage;
    Endpoints {
        gateway_url,
        store_url,
        bucket: storage.bucket.clone(),
        region: storage.region.clone(),
        access_key: values[&storage.access_key_secret].clone(),
        secret_key: values[&storage.secret_key_secret].clone(),
    }
}

/// The function `logs` names, for a target that keeps logs per function
/// only (`per`: what it keeps them by).
fn function_to_log<'f>(pipeline: &Pipeline, target: &str, function: Option<&'f str>, per: &str) -> anyhow::Result<&'f str> {
    let Some(function) = function else {
        bail!("target `{target}` keeps logs per {per}\nhelp: name a function: `cargo xtask logs --target {target} <function>`");
    };
    if pipeline.function(function).is_none() {
        bail!("no function `{function}` in the pipeline");
    }
    Ok(function)
}

/// The target `--target` names (or the first `local` one), with its state folder.
pub fn open<'a>(pipeline: &'a Pipeline, global: &flags::Global) -> anyhow::Result<Box<dyn Target + 'a>> {
    let (name, target) = pipeline.target(global.target.as_deref())?;
    let state_dir = global.state_dir(name);
    open_at(pipeline, name, &target.kind, &state_dir)
}

/// The target `name` with its state in `state_dir`.
pub fn open_at<'a>(
    pipeline: &'a Pipeline,
    name: &str,
    kind: &TargetKind,
    state_dir: &std::path::Path,
) -> anyhow::Result<Box<dyn Target + 'a>> {
    match kind {
        TargetKind::Local(_) | TargetKind::Docker(_) => {
            Ok(Box::new(local::Embedded::new(pipeline, name, kind.clone(), state_dir)?))
        }
        TargetKind::OpenFaas(config) => Ok(Box::new(openfaas::OpenFaasTarget::new(pipeline, name, config.clone()))),
        TargetKind::Kubernetes(config) => {
            Ok(Box::new(kubernetes::KubernetesTarget::new(pipeline, name, config.clone())?))
        }
    }
}

/// `cargo xtask deploy`: deploy (or, with `--foreground`, serve here).
pub fn deploy(pipeline: &Pipeline, global: &flags::Global, flags: &flags::Deploy) -> anyhow::Result<()> {
    let (name, target) = pipeline.target(global.target.as_deref())?;
    if flags.foreground {
        return match &target.kind {
            TargetKind::Local(_) | TargetKind::Docker(_) => {
                local::Embedded::new(pipeline, name, target.kind.clone(), &global.state_dir(name))?.serve()
            }
            TargetKind::OpenFaas(_) => {
                bail!("`--foreground` runs the embedded runtime: target `{name}` is an OpenFaaS gateway elsewhere")
            }
            TargetKind::Kubernetes(_) => {
                bail!("`--foreground` runs the embedded runtime: target `{name}` is a Kubernetes cluster")
            }
        };
    }
    open(pipeline, global)?.deploy()
}

/// `cargo xtask status`: the target's endpoints and a table of its
/// functions; `false` when nothing is deployed.
pub fn print_status(target: &dyn Target) -> anyhow::Result<bool> {
    let Some(status) = target.status()? else {
        println!("nothing is deployed");
        println!("help: deploy it with `cargo xtask deploy`");
        return Ok(false);
    };
    for line in &status.about {
        println!("{line}");
    }
    print_endpoints(&status.endpoints);
    println!();
    let rows: Vec<[String; 5]> = status
        .functions
        .iter()
        .map(|f| {
            [
                f.name.clone(),
                format!("{}/{}", f.available_replicas, f.replicas),
                f.invocation_count.to_string(),
                f.limits.as_ref().and_then(|l| l.memory.clone()).unwrap_or_default(),
                f.annotations.get("com.openfaas.timeout").cloned().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(["FUNCTION", "REPLICAS", "INVOCATIONS", "MEMORY", "TIMEOUT"], &rows);
    Ok(true)
}

pub fn print_endpoints(endpoints: &Endpoints) {
    println!("  gateway  {}", endpoints.gateway_url);
    println!("  store    {}  (bucket `{}`)", endpoints.store_url, endpoints.bucket);
}

fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A blocking client of an OpenFaaS gateway's REST API.
pub struct Gateway {
    tokio: tokio::runtime::Runtime,
    http: reqwest::Client,
    url: String,
}

impl Gateway {
    pub fn new(url: &str) -> anyhow::Result<Gateway> {
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        Ok(Gateway { tokio, http, url: url.trim_end_matches('/').to_string() })
    }

    /// GET `/healthz` answers 2xx.
    pub fn healthy(&self) -> bool {
        self.tokio.block_on(async {
            let answer = self.http.get(format!("{}/healthz", self.url)).send().await;
            answer.is_ok_and(|answer| answer.status().is_success())
        })
    }

    /// GET `path`, requiring 2xx, as JSON.
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.url);
        self.tokio.block_on(async {
            let answer = self.http.get(&url).send().await.with_context(|| format!("GET {url}"))?;
            let answer = answer.error_for_status().with_context(|| format!("GET {url}"))?;
            answer.json().await.with_context(|| format!("read the answer of {url}"))
        })
    }

    /// GET `path`, requiring 2xx, as text.
    pub fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.url);
        self.tokio.block_on(async {
            let answer = self.http.get(&url).send().await.with_context(|| format!("GET {url}"))?;
            let status = answer.status();
            let text = answer.text().await.with_context(|| format!("read the answer of {url}"))?;
            if !status.is_success() {
                bail!("GET {url} answered {status}: {}", text.trim());
            }
            Ok(text)
        })
    }

    /// `method path` with a JSON body, requiring 2xx; the gateway's answer
    /// is in the error otherwise.
    pub fn send(&self, method: &str, path: &str, body: &impl serde::Serialize) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.url);
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        self.tokio.block_on(async {
            let answer = self.http.request(method.clone(), &url).json(body).send().await.with_context(|| format!("{method} {url}"))?;
            let status = answer.status();
            if !status.is_success() {
                let text = answer.text().await.unwrap_or_default();
                bail!("{method} {url} answered {status}: {}", text.trim());
            }
            Ok(())
        })
    }

    /// `GET /system/functions`.
    pub fn functions(&self) -> anyhow::Result<Vec<FunctionStatus>> {
        self.get_json("/system/functions").context("ask the gateway for its functions")
    }

    /// `GET /system/function/<name>`.
    pub fn function(&self, name: &str) -> anyhow::Result<FunctionStatus> {
        self.get_json(&format!("/system/function/{name}")).map_err(|e| {
            let status = e.chain().find_map(|cause| cause.downcast_ref::<reqwest::Error>()?.status());
            match status {
                Some(reqwest::StatusCode::NOT_FOUND) => anyhow::anyhow!("the gateway at {} has no function `{name}`", self.url),
                _ => e,
            }
        })
    }

    /// `POST /system/scale-function/<name>`, then wait until `replicas` are
    /// available (for 0: until none is left), at most `within`.
    pub fn scale(&self, name: &str, replicas: u64, within: Duration) -> anyhow::Result<()> {
        let url = format!("{}/system/scale-function/{name}", self.url);
        self.tokio.block_on(async {
            let body = serde_json::json!({ "serviceName": name, "replicas": replicas });
            let answer = self.http.post(&url).json(&body).timeout(within).send().await.with_context(|| format!("POST {url}"))?;
            let status = answer.status();
            if !status.is_success() {
                let text = answer.text().await.unwrap_or_default();
                bail!("the gateway refused to scale `{name}` to {replicas}: {status} {}", text.trim());
            }
            anyhow::Ok(())
        })?;
        let started = Instant::now();
        loop {
            let function = self.function(name)?;
            // The gateway's own count of wanted replicas: a runtime may run fewer than asked.
            let done = if replicas == 0 {
                function.replicas == 0 && function.available_replicas == 0
            } else {
                function.replicas > 0 && function.available_replicas >= function.replicas
            };
            if done {
                return Ok(());
            }
            if started.elapsed() > within {
                bail!(
                    "`{name}` has {} of {replicas} replicas ready {within:?} after scaling\nhelp: see why with `cargo xtask logs {name}`",
                    function.available_replicas
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
