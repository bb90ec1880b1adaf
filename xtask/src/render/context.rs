//! What each template sees: typed structs filled from the pipeline, the
//! function contract (`pipeline::contract`), the images and the timeouts.
//! Values are ready to print (quantities, whole seconds, Go durations); the
//! templates compute nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::timeouts::{Probe, RenderTimeouts};
use crate::pipeline::contract::{self, Placement};
use crate::pipeline::{format_duration, Function, Kubernetes, KubernetesMode, Pipeline};


/// The MinIO image `minio: true` renders (Apache-2.0 server releases).
pub const MINIO_IMAGE: &str = "quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z";
/// The port MinIO's S3 API listens on.
pub const MINIO_PORT: u16 = 9000;

/// A function: its Deployment and Service, or its Function resource.
#[derive(Debug, Serialize)]
pub struct FunctionContext {
    pub name: String,
    /// The app's labels (`render::app_labels`), on every object's metadata:
    /// what deploy prunes and tears down by.
    pub app: BTreeMap<String, String>,
    pub namespace: String,
    /// `<registry>/<name>@sha256:...`, or `<registry>/<name>:<tag>`.
    pub image: String,
    /// Deployment replicas: `scale.min`, at least 1 (OpenFaaS CE refuses 0).
    pub replicas: u32,
    /// The declared `scale.min`, for the comment when `replicas` differs.
    pub scale_min: u32,
    /// The contract's labels (`faas_function` among them).
    pub labels: BTreeMap<String, String>,
    /// The contract's annotations.
    pub annotations: BTreeMap<String, String>,
    /// The contract's environment, in its order.
    pub environment: Vec<EnvVar>,
    /// The function's secrets: one Kubernetes Secret each, with one key of its name.
    pub secrets: Vec<String>,
    /// `contract::memory`, for both limits and requests.
    pub memory: String,
    /// `contract::cpu`: the request.
    pub cpu: String,
    /// `contract::cpu_limit`: the limit, when declared.
    pub cpu_limit: Option<String>,
    pub port: u16,
    pub health_path: &'static str,
    pub secrets_dir: &'static str,
    /// Whole seconds, above the function's drain time.
    pub termination_grace_seconds: u64,
    pub readiness: ProbeContext,
    pub liveness: ProbeContext,
}

#[derive(Debug, Serialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Serialize)]
pub struct ProbeContext {
    pub period_seconds: u64,
    pub timeout_seconds: u64,
    pub failure_threshold: u32,
}

/// One Secret. Render leaves `value` `None`: no file it writes holds a
/// secret value. Deploy renders the same template with the value, in memory.
#[derive(Serialize)]
pub struct SecretContext {
    pub name: String,
    pub app: BTreeMap<String, String>,
    pub namespace: String,
    /// The one key, named after the secret, as OpenFaaS expects.
    pub key: String,
    /// The value, base64-encoded for `data`.
    pub value: Option<String>,
    /// Who reads it, for the comment.
    pub used_by: Vec<String>,
}

impl std::fmt::Debug for SecretContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretContext")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("value", &self.value.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// MinIO for clusters without object storage.
#[derive(Debug, Serialize)]
pub struct MinioContext {
    pub name: &'static str,
    pub app: BTreeMap<String, String>,
    pub namespace: String,
    pub image: &'static str,
    pub port: u16,
    /// Secrets (in `namespace`) whose key of the same name holds the root user and password.
    /// `:9000`.
    pub address: String,
    pub access_key_secret: String,
    pub secret_key_secret: String,
    pub readiness: ProbeContext,
    pub liveness: ProbeContext,
}

/// `openfaas-values.yaml`: the OpenFaaS chart's settings this pipeline needs.
#[derive(Debug, Serialize)]
pub struct ValuesContext {
    pub function_namespace: String,
    pub openfaas_namespace: String,
    /// Go durations (`605s`).
    pub upstream_timeout: String,
    pub read_timeout: String,
    pub write_timeout: String,
    pub faasnetes_read_timeout: String,
    pub faasnetes_write_timeout: String,
    pub ack_wait: String,
    /// The longest function timeout, for the comment.
    pub longest_function: String,
}

/// Where a function of a `kubernetes` target points: the contract's placement.
pub fn placement<'a>(kubernetes: &'a Kubernetes, detector_model: &'a Path) -> Placement<'a> {
    Placement {
        gateway_url: &kubernetes.function_gateway,
        store_url: &kubernetes.function_store,
        secrets_dir: contract::SECRETS_DIR,
        bind_addr: &kubernetes.bind_addr,
        detector_model,
    }
}

pub fn function(
    app: &BTreeMap<String, String>,
    pipeline: &Pipeline,
    kubernetes: &Kubernetes,
    function: &Function,
    image: String,
    placement: &Placement,
    timeouts: &RenderTimeouts,
) -> FunctionContext {
    let times = &timeouts.functions[&function.name];
    let replicas = match kubernetes.mode {
        KubernetesMode::Deployments => function.scale.min.max(1),
        KubernetesMode::FunctionCrd => function.scale.min,
    };
    FunctionContext {
        name: function.name.clone(),
        app: app.clone(),
        namespace: kubernetes.namespace.clone(),
        image,
        replicas,
        scale_min: function.scale.min,
        labels: contract::labels(function),
        annotations: contract::annotations(function),
        environment: contract::environment(pipeline, function, placement)
            .into_iter()
            .map(|(name, value)| EnvVar { name, value })
            .collect(),
        secrets: function.secrets.clone(),
        memory: contract::memory(function),
        cpu: contract::cpu(function),
        cpu_limit: contract::cpu_limit(function),
        port: contract::PORT,
        health_path: contract::HEALTH_PATH,
        secrets_dir: contract::SECRETS_DIR,
        termination_grace_seconds: whole_seconds(times.termination_grace),
        readiness: probe(timeouts.readiness),
        liveness: probe(timeouts.liveness),
    }
}

pub fn values(kubernetes: &Kubernetes, timeouts: &RenderTimeouts) -> ValuesContext {
    let gateway = &timeouts.gateway;
    let longest = timeouts
        .functions
        .iter()
        .max_by_key(|(name, times)| (times.exec, std::cmp::Reverse(*name)))
        .map(|(name, times)| format!("{name} {}", format_duration(times.exec)))
        .unwrap_or_default();
    ValuesContext {
        function_namespace: kubernetes.namespace.clone(),
        openfaas_namespace: kubernetes.openfaas_namespace.clone(),
        upstream_timeout: format_duration(gateway.upstream),
        read_timeout: format_duration(gateway.read),
        write_timeout: format_duration(gateway.write),
        faasnetes_read_timeout: format_duration(gateway.faasnetes_read),
        faasnetes_write_timeout: format_duration(gateway.faasnetes_write),
        ack_wait: format_duration(gateway.ack_wait),
        longest_function: longest,
    }
}

pub fn minio(app: &BTreeMap<String, String>, pipeline: &Pipeline, kubernetes: &Kubernetes, timeouts: &RenderTimeouts) -> MinioContext {
    MinioContext {
        name: "minio",
        app: app.clone(),
        namespace: kubernetes.openfaas_namespace.clone(),
        image: MINIO_IMAGE,
        port: MINIO_PORT,
        address: format!(":{MINIO_PORT}"),
        access_key_secret: pipeline.storage.access_key_secret.clone(),
        secret_key_secret: pipeline.storage.secret_key_secret.clone(),
        readiness: probe(timeouts.readiness),
        liveness: probe(timeouts.liveness),
    }
}

fn probe(probe: Probe) -> ProbeContext {
    ProbeContext {
        period_seconds: whole_seconds(probe.period),
        timeout_seconds: whole_seconds(probe.timeout),
        failure_threshold: probe.failure_threshold,
    }
}

/// Kubernetes counts in whole seconds: rounded up, at least 1.
fn whole_seconds(duration: Duration) -> u64 {
    duration.as_millis().div_ceil(1000).max(1) as u64
}
