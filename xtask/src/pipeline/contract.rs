//! The function contract: what a function is given to run, whatever runs it
//! (a process of the local runtime, a container, an OpenFaaS Deployment).
//! Every target and every template takes it from here, so that a function
//! sees the same environment, secrets, port and health path everywhere.
//!
//! The names follow the OpenFaaS watchdog (`exec_timeout`, `max_inflight`,
//! `/var/openfaas/secrets/<name>`, `/_/health`), which the stages' runtime
//! (`stages/runtime/src/config.rs`) reads.

use std::collections::BTreeMap;
use std::path::Path;

use super::{format_duration, Function, Pipeline};

/// The port a function listens on in an image (processes get a free one).
pub const PORT: u16 = 8080;
/// Answers 200 once the function can serve (its model loaded).
pub const HEALTH_PATH: &str = "/_/health";
/// Where a function finds its secrets in an image, one file per secret.
pub const SECRETS_DIR: &str = "/var/openfaas/secrets";

/// Where one deployment of a function points it.
#[derive(Debug, Clone)]
pub struct Placement<'a> {
    /// The gateway the function calls other functions through.
    pub gateway_url: &'a str,
    /// The object store's endpoint.
    pub store_url: &'a str,
    /// The folder with this function's secrets, one file each.
    pub secrets_dir: &'a str,
    /// The address the function binds (`127.0.0.1` on this machine's
    /// network, `0.0.0.0` in a pod).
    pub bind_addr: &'a str,
    /// Where the detector model is for the function: on this machine, or
    /// inside its image.
    pub detector_model: &'a Path,
}

/// The environment of `function` placed as `placement` says, in a fixed order:
/// the watchdog's settings, the store, the stage parameters, then the
/// function's own `env:` (which may override any of them).
pub fn environment(pipeline: &Pipeline, function: &Function, placement: &Placement) -> Vec<(String, String)> {
    let storage = &pipeline.storage;
    let call = pipeline.timeouts.call(&function.name).unwrap_or_else(|| pipeline.timeouts.settings.call(function.timeout));
    let mut env: Vec<(String, String)> = [
        ("FUNCTION_NAME", function.name.clone()),
        ("BIND_ADDR", placement.bind_addr.to_string()),
        ("max_inflight", function.max_inflight.to_string()),
        ("exec_timeout", format_duration(call.exec)),
        ("read_timeout", format_duration(call.watchdog)),
        ("write_timeout", format_duration(call.watchdog)),
        // The gateway stops routing to a replica before stopping it: no drain delay.
        ("healthcheck_interval", "0s".to_string()),
        ("MEMORY_LIMIT_MB", function.memory_mb.to_string()),
        ("S3_ENDPOINT", placement.store_url.to_string()),
        ("S3_BUCKET", storage.bucket.clone()),
        ("S3_REGION", storage.region.clone()),
        ("SECRETS_DIR", placement.secrets_dir.to_string()),
        ("S3_ACCESS_KEY_SECRET", storage.access_key_secret.clone()),
        ("S3_SECRET_KEY_SECRET", storage.secret_key_secret.clone()),
        ("GATEWAY_URL", placement.gateway_url.to_string()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), value))
    .collect();
    if function.name == pipeline.dag.entry {
        let plan = super::plan::plan(pipeline);
        env.push(("VS_PLAN".into(), serde_json::to_string(&plan).expect("a plan serializes")));
    }
    env.extend(pipeline.parameter_env(placement.detector_model));
    for (name, value) in &function.env {
        env.retain(|(n, _)| n != name);
        env.push((name.clone(), value.clone()));
    }
    env
}

/// The OpenFaaS labels of a function: its name and its scaling bounds.
pub fn labels(function: &Function) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("faas_function".into(), function.name.clone()),
        ("com.openfaas.scale.min".into(), function.scale.min.to_string()),
        ("com.openfaas.scale.max".into(), function.scale.max.to_string()),
    ])
}

/// The OpenFaaS annotations of a function: its timeout.
pub fn annotations(function: &Function) -> BTreeMap<String, String> {
    BTreeMap::from([("com.openfaas.timeout".into(), format_duration(function.timeout))])
}

/// The memory limit as Kubernetes and OpenFaaS write it.
pub fn memory(function: &Function) -> String {
    format!("{}Mi", function.memory_mb)
}

/// The CPU request as Kubernetes and OpenFaaS write it: whole cores, or millicores.
pub fn cpu(function: &Function) -> String {
    cpu_quantity(function.cpu)
}

/// The CPU limit, when one is declared: a replica without one may use idle cores.
pub fn cpu_limit(function: &Function) -> Option<String> {
    function.cpu_limit.map(cpu_quantity)
}

/// `cores` as a Kubernetes quantity: `1`, or `500m`.
pub fn cpu_quantity(cores: f64) -> String {
    if cores.fract() == 0.0 {
        format!("{cores}")
    } else {
        format!("{}m", (cores * 1000.0).round())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_env_overrides_and_the_entry_gets_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let yaml = std::fs::read_to_string(format!("{repo}/pipeline.yaml")).unwrap();
        let yaml = yaml
            .replace("      RUST_LOG: info\n", "      RUST_LOG: info\n      S3_REGION: eu-west-3\n")
            .replace("source: stages/", &format!("source: {repo}/stages/"))
            .replace("base: base-image", &format!("base: {repo}/base-image"));
        std::fs::write(dir.path().join("pipeline.yaml"), yaml).unwrap();
        let pipeline = crate::pipeline::load(&dir.path().join("pipeline.yaml")).unwrap();
        let placement = Placement {
            gateway_url: "http://127.0.0.1:8080",
            store_url: "http://127.0.0.1:9000",
            secrets_dir: SECRETS_DIR,
            bind_addr: "127.0.0.1",
            detector_model: Path::new("/opt/model.onnx"),
        };
        let env = |name: &str| environment(&pipeline, pipeline.function(name).unwrap(), &placement);
        let value = |env: &[(String, String)], name: &str| {
            let values: Vec<&str> = env.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect();
            values.join("|")
        };
        let detector = env("detect-objects");
        assert_eq!(value(&detector, "S3_REGION"), "eu-west-3", "one value, the function's own");
        assert_eq!(value(&detector, "VS_DETECTOR_MODEL"), "/opt/model.onnx");
        assert_eq!(value(&detector, "exec_timeout"), "90s");
        assert_eq!(value(&detector, "write_timeout"), "91s", "exec + margin, from the timeout model");
        assert_eq!(value(&detector, "VS_PLAN"), "");
        assert!(value(&env("orchestrator"), "VS_PLAN").starts_with('{'));
        assert_eq!(cpu(pipeline.function("orchestrator").unwrap()), "500m");
        assert_eq!(cpu(pipeline.function("extract-audio").unwrap()), "1");
    }
}
