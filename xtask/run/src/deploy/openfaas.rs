//! `kind: openfaas`: a client of an OpenFaaS gateway's REST API, for
//! OpenFaaS CE without access to its cluster and for faasd; the embedded
//! runtime serves the same API, which is how the tests exercise it.
//!
//! Deploy writes the pipeline's secrets (`POST`, or `PUT` when they exist),
//! then one `FunctionDeployment` per function (`POST`, or `PUT`), each the
//! pushed multi-arch image of the last build with the contract's
//! environment, labels, annotations and limits; then waits until every
//! function is registered and those with `scale.min` have a ready replica.
//! Teardown removes the functions (not the secrets, which other
//! deployments may share, as `faas-cli remove` leaves them).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::{Endpoints, Gateway, Status, Target};
use crate::openfaas::{DeleteFunctionRequest, FunctionDeployment, FunctionStatus, LogEntry, Resources, Secret};
use crate::pipeline::contract::{self, Placement};
use crate::pipeline::{OpenFaas, Pipeline};

/// How long deploy waits for every function to be ready.
const READY_WITHIN: Duration = Duration::from_secs(180);

pub struct OpenFaasTarget<'a> {
    pipeline: &'a Pipeline,
    name: String,
    config: OpenFaas,
}

impl<'a> OpenFaasTarget<'a> {
    pub fn new(pipeline: &'a Pipeline, name: &str, config: OpenFaas) -> OpenFaasTarget<'a> {
        OpenFaasTarget { pipeline, name: name.to_string(), config }
    }

    fn gateway(&self) -> anyhow::Result<Gateway> {
        let gateway = Gateway::new(&self.config.gateway)?;
        if !gateway.healthy() {
            bail!(
                "the OpenFaaS gateway of target `{}` at {} does not answer /healthz\nhelp: check `targets.{}.gateway` in {}",
                self.name,
                self.config.gateway,
                self.name,
                self.pipeline.source.path.display()
            );
        }
        Ok(gateway)
    }

    /// Every declared secret's value (`deploy::secret_values`).
    fn secrets(&self) -> anyhow::Result<BTreeMap<String, String>> {
        super::secret_values(self.pipeline, &self.name, &self.config.secrets_dir)
    }

    /// The pushed multi-arch image of every function, from the last build.
    fn images(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let manifest_path = xtask::build::manifest_path(self.pipeline);
        let manifest = xtask::build::manifest::Images::read(&manifest_path);
        self.pipeline
            .functions
            .iter()
            .map(|function| {
                let set = manifest.functions.get(&function.name);
                match set.and_then(|set| Some((set, set.index.as_ref()?))) {
                    Some((set, index)) => Ok((function.name.clone(), format!("{}:{}", set.repository, index.tag))),
                    None => bail!(
                        "no pushed image of `{}` in {}: an OpenFaaS gateway pulls its images from a registry\nhelp: run `cargo xtask build --push`",
                        function.name,
                        manifest_path.display()
                    ),
                }
            })
            .collect()
    }

    fn deployment(&self, function: &crate::pipeline::Function, image: &str) -> anyhow::Result<FunctionDeployment> {
        let pipeline = self.pipeline;
        let model = pipeline
            .detector_model_in_images()
            .context("no function's `assets:` carries the detector model, so no image has it")?;
        let placement = Placement {
            gateway_url: &self.config.function_gateway,
            store_url: &self.config.function_store,
            secrets_dir: contract::SECRETS_DIR,
            bind_addr: &self.config.bind_addr,
            detector_model: Path::new(model),
        };
        let memory = Some(contract::memory(function));
        Ok(FunctionDeployment {
            service: function.name.clone(),
            image: image.to_string(),
            env_vars: contract::environment(pipeline, function, &placement).into_iter().collect(),
            secrets: function.secrets.clone(),
            labels: Some(contract::labels(function)),
            annotations: Some(contract::annotations(function)),
            limits: Some(Resources { memory: memory.clone(), cpu: contract::cpu_limit(function) }),
            requests: Some(Resources { memory, cpu: Some(contract::cpu(function)) }),
            ..FunctionDeployment::default()
        })
    }

    /// The pipeline's functions among those the gateway lists.
    fn ours(&self, listed: Vec<FunctionStatus>) -> Vec<FunctionStatus> {
        listed.into_iter().filter(|f| self.pipeline.function(&f.name).is_some()).collect()
    }
}

impl Target for OpenFaasTarget<'_> {
    fn deploy(&self) -> anyhow::Result<()> {
        let images = self.images()?;
        let secrets = self.secrets()?;
        let gateway = self.gateway()?;

        let existing: Vec<String> = gateway.get_json::<Vec<Secret>>("/system/secrets")?.into_iter().map(|s| s.name).collect();
        for (name, value) in &secrets {
            let secret = Secret { name: name.clone(), namespace: None, value: Some(value.clone()), raw_value: None };
            if existing.contains(name) {
                gateway.send("PUT", "/system/secrets", &secret)?;
            } else {
                gateway.send("POST", "/system/secrets", &secret)?;
            }
        }

        let deployed: Vec<String> = gateway.functions()?.into_iter().map(|f| f.name).collect();
        for function in &self.pipeline.functions {
            let deployment = self.deployment(function, &images[&function.name])?;
            let method = if deployed.contains(&function.name) { "PUT" } else { "POST" };
            gateway.send(method, "/system/functions", &deployment).with_context(|| format!("deploy `{}`", function.name))?;
            println!("{:<6} {:<16} {}", if method == "PUT" { "update" } else { "deploy" }, function.name, deployment.image);
        }

        // Registered, and the `scale.min` replicas ready.
        let started = Instant::now();
        for function in &self.pipeline.functions {
            loop {
                let ready = match gateway.function(&function.name) {
                    Ok(status) => function.scale.min == 0 || status.available_replicas >= 1,
                    Err(_) => false,
                };
                if ready {
                    break;
                }
                if started.elapsed() > READY_WITHIN {
                    bail!(
                        "`{}` is not ready {READY_WITHIN:?} after deploying\nhelp: see why with `cargo xtask logs --target {} {}`",
                        function.name,
                        self.name,
                        function.name
                    );
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        println!("target `{}` deployed: {} functions", self.name, self.pipeline.functions.len());
        super::print_endpoints(&self.endpoints()?);
        Ok(())
    }

    fn endpoints(&self) -> anyhow::Result<Endpoints> {
        let values = self.secrets()?;
        Ok(super::endpoints_with(self.pipeline, self.config.gateway.clone(), self.config.store.clone(), &values))
    }

    fn status(&self) -> anyhow::Result<Option<Status>> {
        let functions = self.ours(self.gateway()?.functions()?);
        if functions.is_empty() {
            return Ok(None);
        }
        let about = vec![format!("target `{}` (openfaas): {} of {} functions deployed", self.name, functions.len(), self.pipeline.functions.len())];
        Ok(Some(Status { about, endpoints: self.endpoints()?, functions }))
    }

    fn logs(&self, function: Option<&str>, lines: usize) -> anyhow::Result<String> {
        let function = super::function_to_log(self.pipeline, &self.name, function, "function")?;
        let text = self.gateway()?.get_text(&format!("/system/logs?name={function}&tail={lines}"))?;
        let mut out = String::new();
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let entry: LogEntry = serde_json::from_str(line).with_context(|| format!("a log line of `{function}` is not a LogEntry: {line}"))?;
            out.push_str(&entry.text);
            out.push('\n');
        }
        Ok(out)
    }

    fn teardown(&self) -> anyhow::Result<()> {
        let gateway = self.gateway()?;
        let deployed = self.ours(gateway.functions()?);
        for function in &deployed {
            gateway.send("DELETE", "/system/functions", &DeleteFunctionRequest { function_name: function.name.clone() })?;
            println!("removed {}", function.name);
        }
        println!("target `{}`: {} functions removed (secrets are kept)", self.name, deployed.len());
        Ok(())
    }
}
