//! `up --foreground`: the runtime itself. Object store and gateway on loopback,
//! function processes on demand, until SIGTERM or SIGINT.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};

use super::build::Binaries;
use super::container::{self, Containers};
use super::process::Spawner;
use super::replica::{Launch, Program, Runner};
use super::gateway::Gateway;
use super::scaler::{Function, Functions, Spec};
use super::secrets::Secrets;
use super::state::{RuntimeInfo, StateDir};
use super::store::Store;
use crate::pipeline::contract::{self, Placement};
use crate::openfaas::{FunctionDeployment, Resources};
use crate::pipeline::{self, Pipeline, TargetKind};
use stage_runtime::StageError;

/// `exec_timeout` of a function deployed without one (the watchdog's default is 10s;
/// media work takes longer).
const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(60);

pub const GATEWAY_PORT_VAR: &str = "XTASK_GATEWAY_PORT";
pub const STORE_PORT_VAR: &str = "XTASK_STORE_PORT";

/// What the replicas run: the function binaries (`local`), or their images (`docker`).
pub enum Programs {
    Binaries(Binaries),
    Images,
}

/// Serve until SIGTERM/SIGINT, then stop every replica.
pub fn run(pipeline: &Pipeline, target: &str, state: &StateDir, programs: &Programs) -> anyhow::Result<()> {
    let _lock = state.lock()?;
    init_tracing();
    let (_, target_spec) = pipeline.target(Some(target))?;
    let pipeline::Embedded { gateway_port, store_port, idle_timeout } =
        target_spec.kind.embedded().with_context(|| format!("target `{target}` does not run here"))?.clone();
    let gateway_port = port_override(GATEWAY_PORT_VAR, gateway_port)?;
    let store_port = port_override(STORE_PORT_VAR, store_port)?;
    for dir in [state.logs(), state.store()] {
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let secrets = state.ensure_secrets(&pipeline.secrets)?;
    let secret = |name: &str| {
        secrets
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .with_context(|| format!("secret `{name}` is not declared"))
    };
    let (access_key, secret_key) =
        (secret(&pipeline.storage.access_key_secret)?, secret(&pipeline.storage.secret_key_secret)?);

    let tokio = tokio::runtime::Runtime::new()?;
    tokio.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;

        let store_addr = SocketAddr::from(([127, 0, 0, 1], store_port));
        let store = Store::start(&state.store(), store_addr, &access_key, &secret_key)?;
        store.ensure_bucket(&pipeline.storage.bucket)?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], gateway_port)))
            .await
            .with_context(|| {
                format!(
                    "the gateway cannot listen on 127.0.0.1:{gateway_port}\n\
                     help: set {GATEWAY_PORT_VAR} or `gateway_port` to a free port (0 picks one)"
                )
            })?;
        let gateway_url = format!("http://{}", listener.local_addr()?);
        tracing::info!(gateway = %gateway_url, store = %store.endpoint(), "local runtime starting");

        let (runner, images) = match (&target_spec.kind, programs) {
            (TargetKind::Local(_), Programs::Binaries(_)) => (Runner::Processes(Spawner::start()?), None),
            (TargetKind::Docker(_), Programs::Images) => {
                let engine = xtask::build::engine::Engine::connect().await?;
                let images = container::images(pipeline, &engine).await?;
                (Runner::Containers(Containers::new(engine.docker().clone(), state.root.display().to_string())), Some(images))
            }
            _ => anyhow::bail!("target `{target}` ({}) cannot run what was prepared for it", target_spec.kind.name()),
        };
        let placer = Placer {
            state: state.clone(),
            dir: pipeline.dir.clone(),
            gateway_url: gateway_url.clone(),
            store_url: store.endpoint(),
            timeouts: pipeline.timeouts.settings.clone(),
        };
        let secrets = Secrets::new(state.secrets(), secrets);
        let functions = pipeline
            .functions
            .iter()
            .map(|f| placer.pipeline_function(pipeline, f, programs, images.as_ref(), &secrets))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let functions = Arc::new(Functions::new(functions, runner, idle_timeout)?);
        functions.start_minimum().await;

        // Every call in flight has ended by then, and every replica stopped.
        let stop_timeout = pipeline.timeouts.longest_call() + pipeline.timeouts.settings.margin;
        state.write_info(&RuntimeInfo {
            pid: std::process::id(),
            gateway_url: gateway_url.clone(),
            store_url: store.endpoint(),
            bucket: pipeline.storage.bucket.clone(),
            started_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            stop_timeout_s: stop_timeout.as_secs(),
        })?;
        tracing::info!("ready");

        let (closed, close) = tokio::sync::oneshot::channel::<()>();
        let gateway = Arc::new(Gateway::new(functions.clone(), secrets, placer));
        let server = axum::serve(listener, super::gateway::router(gateway)).with_graceful_shutdown(async {
            let _ = close.await;
        });
        let server = tokio::spawn(async move { server.await });
        let scaler = tokio::spawn({
            let functions = functions.clone();
            async move { functions.scale_idle().await }
        });
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        scaler.abort();
        functions.stop_all().await;
        let _ = closed.send(());
        if tokio::time::timeout(Duration::from_secs(5), server).await.is_err() {
            tracing::warn!("gateway connections still open after 5s; closing them");
        }
        store.shutdown().await?;
        state.remove_info();
        tracing::info!("stopped");
        anyhow::Ok(())
    })?;
    tokio.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// Makes the functions the runtime serves: those of the pipeline file, as
/// the contract says, and those deployed through the gateway's API, as
/// their deployment says.
pub struct Placer {
    state: StateDir,
    /// The pipeline file's folder, where processes run.
    dir: PathBuf,
    gateway_url: String,
    store_url: String,
    /// What functions deployed through the API derive their timeouts with.
    timeouts: pipeline::timeouts::Settings,
}

impl Placer {
    fn pipeline_function(
        &self,
        pipeline: &Pipeline,
        spec: &pipeline::Function,
        programs: &Programs,
        images: Option<&BTreeMap<String, String>>,
        secrets: &Secrets,
    ) -> anyhow::Result<Function> {
        let (program, env) = match (programs, images) {
            (Programs::Binaries(binaries), _) => {
                let secrets_dir = self.link_secrets(&spec.name, &spec.secrets)?;
                let model = pipeline.detector_model();
                let placement = Placement {
                    gateway_url: &self.gateway_url,
                    store_url: &self.store_url,
                    secrets_dir: &secrets_dir,
                    bind_addr: "127.0.0.1",
                    detector_model: &model,
                };
                let mut env = contract::environment(pipeline, spec, &placement);
                // Lets tests find the processes of one runtime.
                env.push(("XTASK_STATE_DIR".into(), self.state.root.display().to_string()));
                let path = binaries.by_function.get(&spec.name).with_context(|| format!("no binary for `{}`", spec.name))?;
                (Program::Binary { path: path.clone(), dir: self.dir.clone() }, env)
            }
            (Programs::Images, Some(images)) => {
                let model = pipeline.detector_model_in_images().with_context(|| {
                    format!("no function's `assets:` carries the detector model {}", pipeline.detector_model().display())
                })?;
                let placement = Placement {
                    gateway_url: &self.gateway_url,
                    store_url: &self.store_url,
                    secrets_dir: contract::SECRETS_DIR,
                    // The host's network: loopback is shared with the gateway and the store.
                    bind_addr: "127.0.0.1",
                    detector_model: Path::new(model),
                };
                let env = contract::environment(pipeline, spec, &placement);
                let reference = images.get(&spec.name).with_context(|| format!("no image for `{}`", spec.name))?;
                let secrets = secrets.get(&spec.secrets).map_err(|name| anyhow::anyhow!("secret `{name}` is not declared"))?;
                let program = Program::Image {
                    reference: reference.clone(),
                    memory_mb: spec.memory_mb,
                    cpu: spec.cpu,
                    cpu_limit: spec.cpu_limit,
                    secrets,
                };
                (program, env)
            }
            (Programs::Images, None) => anyhow::bail!("no images resolved"),
        };
        let launch = Launch { function: spec.name.clone(), program, env, log: self.state.function_log(&spec.name) };
        let call = pipeline.timeouts.call(&spec.name).context("a pipeline function has its timeouts")?;
        Ok(Function::new(Spec::of(spec, call), launch))
    }

    /// A function deployed through `POST`/`PUT /system/functions`: its
    /// image (containers) or `envProcess` (processes), its `envVars` as its
    /// environment, its limits, labels and secrets.
    pub fn deployed(&self, d: &FunctionDeployment, runs_images: bool, secrets: &Secrets) -> Result<Function, StageError> {
        let bad = |message: String| StageError::bad_input("bad_deployment", message);
        let name = &d.service;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(bad(format!("function name `{name}` is not allowed: use lowercase letters, digits and `-`")));
        }
        let limits = d.limits.clone().unwrap_or_default();
        let memory_mb = match &limits.memory {
            Some(memory) => pipeline::parse_memory(memory).map_err(|e| bad(format!("limits.memory: {e}")))? / (1024 * 1024),
            None => 0,
        };
        let cpu_of = |resources: &Option<Resources>, field: &str| match resources.as_ref().and_then(|r| r.cpu.as_ref()) {
            Some(cpu) => pipeline::parse_cpu(cpu).map(Some).map_err(|e| bad(format!("{field}.cpu: {e}"))),
            None => Ok(None),
        };
        let cpu_limit = cpu_of(&d.limits, "limits")?;
        // As Kubernetes: a limit without a request is also the request.
        let cpu = cpu_of(&d.requests, "requests")?.or(cpu_limit).unwrap_or(0.0);
        let timeout = match d.env_vars.get("exec_timeout") {
            Some(text) => stage_runtime::parse_duration(text).map_err(|e| bad(format!("envVars.exec_timeout: {e:#}")))?,
            None => DEFAULT_EXEC_TIMEOUT,
        };
        let labels = d.labels.clone().unwrap_or_default();
        let label = |key: &str, default: u32| -> Result<u32, StageError> {
            labels.get(key).map_or(Ok(default), |v| v.parse().map_err(|_| bad(format!("label {key}={v:?} is not a number"))))
        };
        let scale = pipeline::Scale { min: label("com.openfaas.scale.min", 1)?, max: label("com.openfaas.scale.max", 20)? };
        let max_inflight = match d.env_vars.get("max_inflight") {
            Some(v) => v.parse().map_err(|_| bad(format!("envVars.max_inflight={v:?} is not a number")))?,
            None => 0,
        };
        let values = secrets.get(&d.secrets).map_err(|missing| bad(format!("secret `{missing}` does not exist; create it first (POST /system/secrets)")))?;
        let mut env: Vec<(String, String)> = d.env_vars.clone().into_iter().collect();
        let program = if runs_images {
            Program::Image { reference: d.image.clone(), memory_mb, cpu, cpu_limit, secrets: values }
        } else {
            let path = d.env_process.as_deref().map(PathBuf::from).filter(|path| path.is_absolute() && path.is_file());
            let Some(path) = path else {
                return Err(bad(format!(
                    "this runtime runs processes, not images: `envProcess` must be the absolute path of an executable here (image `{}` runs on a `docker` target)",
                    d.image
                )));
            };
            let secrets_dir = self.link_secrets(name, &d.secrets).map_err(|e| StageError::internal("io", format!("{e:#}")))?;
            env.retain(|(key, _)| key != "SECRETS_DIR");
            env.push(("SECRETS_DIR".into(), secrets_dir));
            Program::Binary { path, dir: self.dir.clone() }
        };
        let spec = Spec {
            name: name.clone(),
            call: self.timeouts.call(timeout),
            memory_mb,
            cpu,
            cpu_limit,
            scale,
            max_inflight,
            secrets: d.secrets.clone(),
            labels,
            annotations: d.annotations.clone().unwrap_or_default(),
            env_vars: d.env_vars.clone(),
        };
        let launch = Launch { function: name.clone(), program, env, log: self.state.function_log(name) };
        Ok(Function::new(spec, launch))
    }

    /// The log file of function `name`.
    pub fn log(&self, name: &str) -> PathBuf {
        self.state.function_log(name)
    }

    /// A secrets folder for `function` with links to only the secrets it declares.
    fn link_secrets(&self, function: &str, names: &[String]) -> anyhow::Result<String> {
        let dir = self.state.function_secrets(function);
        link_secrets(&self.state.secrets(), &dir, names)?;
        Ok(dir.display().to_string())
    }
}

/// Give a function a secrets folder with links to only the secrets it declares.
fn link_secrets(all: &Path, dir: &Path, names: &[String]) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    for name in names {
        std::os::unix::fs::symlink(all.join(name), dir.join(name))
            .with_context(|| format!("link secret `{name}` into {}", dir.display()))?;
    }
    Ok(())
}

fn port_override(var: &str, declared: u16) -> anyhow::Result<u16> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => {
            value.parse().with_context(|| format!("{var}={value:?} is not a port number"))
        }
        _ => Ok(declared),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
