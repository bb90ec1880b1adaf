//! The embedded runtime as a target: `kind: local` (replicas are processes
//! of the function binaries) and `kind: docker` (containers of the built
//! images). Both put the same gateway and object store in front of them.

use std::path::Path;

use anyhow::bail;

use super::{Endpoints, Gateway, Status, Target};
use crate::local::{self, StateDir};
use crate::pipeline::{Pipeline, TargetKind};

pub struct Embedded<'a> {
    pipeline: &'a Pipeline,
    name: String,
    kind: TargetKind,
    state: StateDir,
}

impl<'a> Embedded<'a> {
    pub fn new(pipeline: &'a Pipeline, name: &str, kind: TargetKind, state_dir: &Path) -> anyhow::Result<Embedded<'a>> {
        Ok(Embedded { pipeline, name: name.to_string(), kind, state: StateDir::new(state_dir)? })
    }

    /// `deploy --foreground`: be the runtime. For `docker` the runtime
    /// resolves the images itself as it starts (a missing one is its
    /// error), so only processes need the detector model prepared here.
    pub fn serve(&self) -> anyhow::Result<()> {
        if let TargetKind::Local(_) = self.kind {
            self.prepare()?;
        }
        local::serve(self.pipeline, &self.name, &self.kind, &self.state)
    }

    /// What must exist before the runtime starts: the detector model
    /// (`local`), the images and the engine (`docker`).
    fn prepare(&self) -> anyhow::Result<()> {
        match self.kind {
            TargetKind::Local(_) => {
                let pipeline = self.pipeline;
                xtask::model::ensure(&pipeline.detector_model()).map_err(|e| {
                    let help = "fetch it with `cargo xtask model`".to_string();
                    pipeline.error_at("parameters.detector.model", format!("{e:#}"), Some(help))
                })?;
                Ok(())
            }
            TargetKind::Docker(_) => super::docker::prepare(self.pipeline),
            TargetKind::OpenFaas(_) | TargetKind::Kubernetes(_) => {
                bail!("target `{}` is not run by the embedded runtime", self.name)
            }
        }
    }

    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// The pid of the runtime, whose process tree is the `local` target's replicas.
    pub fn runtime_pid(&self) -> anyhow::Result<Option<u32>> {
        local::pid(&self.state)
    }
}

impl Target for Embedded<'_> {
    fn deploy(&self) -> anyhow::Result<()> {
        self.prepare()?;
        local::start(self.pipeline, &self.name, &self.kind, &self.state)?;
        let endpoints = self.endpoints()?;
        super::print_endpoints(&endpoints);
        println!("  state    {}", self.state.root.display());
        Ok(())
    }

    fn endpoints(&self) -> anyhow::Result<Endpoints> {
        match local::endpoints(self.pipeline, &self.state)? {
            Some(endpoints) => Ok(endpoints),
            None => bail!(
                "target `{}` is not deployed: no runtime runs for {}\nhelp: deploy it with `cargo xtask deploy --target {}`",
                self.name,
                self.state.root.display(),
                self.name
            ),
        }
    }

    fn status(&self) -> anyhow::Result<Option<Status>> {
        let (Some(about), Some(endpoints)) = (local::about(&self.state)?, local::endpoints(self.pipeline, &self.state)?)
        else {
            return Ok(None);
        };
        let functions = Gateway::new(&endpoints.gateway_url)?.functions()?;
        let mut about = about;
        about[0] = format!("target `{}` ({}): {}", self.name, self.kind.name(), about[0]);
        Ok(Some(Status { about, endpoints, functions }))
    }

    fn logs(&self, function: Option<&str>, lines: usize) -> anyhow::Result<String> {
        if let Some(function) = function {
            if self.pipeline.function(function).is_none() {
                let known: Vec<&str> = self.pipeline.functions.iter().map(|f| f.name.as_str()).collect();
                bail!("no function `{function}` in the pipeline (known: {})", known.join(", "));
            }
        }
        local::log(&self.state, function, lines)
    }

    fn teardown(&self) -> anyhow::Result<()> {
        local::stop(&self.state)
    }

    fn cpu_seconds(&self) -> anyhow::Result<Option<f64>> {
        let Some(pid) = self.runtime_pid()? else { return Ok(None) };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(Some(rt.block_on(local::cpu_seconds(pid, &self.state))))
    }
}
