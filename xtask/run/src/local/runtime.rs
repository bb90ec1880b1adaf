//! `up --foreground`: the runtime itself. Object store and gateway on loopback,
//! function processes on demand, until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};

use super::build::Binaries;
use super::container::{self, Containers};
use super::process::Spawner;
use super::replica::{Launch, Program, Runner};
use super::scaler::{Function, Functions, MARGIN};
use super::state::{RuntimeInfo, StateDir};
use super::store::Store;
use crate::pipeline::contract::{self, Placement};
use crate::pipeline::{self, Pipeline, TargetKind};

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
        let context = Env {
            pipeline,
            state,
            programs,
            images: images.as_ref(),
            secrets: &secrets,
            gateway_url: &gateway_url,
            store_url: &store.endpoint(),
        };
        let functions = pipeline.functions.iter().map(|f| context.function(f)).collect::<anyhow::Result<Vec<_>>>()?;
        let functions = Arc::new(Functions::new(functions, runner, idle_timeout)?);
        functions.start_minimum().await;

        let longest = pipeline.functions.iter().map(|f| f.timeout + MARGIN).max().unwrap_or_default();
        let stop_timeout = longest + Duration::from_secs(10);
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
        let server = axum::serve(listener, super::gateway::router(functions.clone())).with_graceful_shutdown(async {
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

/// Where every function's replicas are placed, and what they run.
struct Env<'a> {
    pipeline: &'a Pipeline,
    state: &'a StateDir,
    programs: &'a Programs,
    /// The image of each function (`docker`).
    images: Option<&'a std::collections::BTreeMap<String, String>>,
    /// Every secret's value, by name.
    secrets: &'a [(String, String)],
    gateway_url: &'a str,
    store_url: &'a str,
}

impl Env<'_> {
    fn function(&self, spec: &pipeline::Function) -> anyhow::Result<Function> {
        let pipeline = self.pipeline;
        let (program, env) = match (self.programs, self.images) {
            (Programs::Binaries(binaries), _) => {
                let secrets_dir = self.state.function_secrets(&spec.name);
                link_secrets(&self.state.secrets(), &secrets_dir, &spec.secrets)?;
                let secrets_dir = secrets_dir.display().to_string();
                let model = pipeline.detector_model();
                let placement = Placement {
                    gateway_url: self.gateway_url,
                    store_url: self.store_url,
                    secrets_dir: &secrets_dir,
                    bind_addr: "127.0.0.1",
                    detector_model: &model,
                };
                let mut env = contract::environment(pipeline, spec, &placement);
                // Lets tests find the processes of one runtime.
                env.push(("XTASK_STATE_DIR".into(), self.state.root.display().to_string()));
                let path = binaries.by_function.get(&spec.name).with_context(|| format!("no binary for `{}`", spec.name))?;
                (Program::Binary { path: path.clone(), dir: pipeline.dir.clone() }, env)
            }
            (Programs::Images, Some(images)) => {
                let model = pipeline.detector_model_in_images().with_context(|| {
                    format!("no function's `assets:` carries the detector model {}", pipeline.detector_model().display())
                })?;
                let placement = Placement {
                    gateway_url: self.gateway_url,
                    store_url: self.store_url,
                    secrets_dir: contract::SECRETS_DIR,
                    // The host's network: loopback is shared with the gateway and the store.
                    bind_addr: "127.0.0.1",
                    detector_model: Path::new(model),
                };
                let env = contract::environment(pipeline, spec, &placement);
                let reference = images.get(&spec.name).with_context(|| format!("no image for `{}`", spec.name))?;
                let secrets = self.secrets.iter().filter(|(name, _)| spec.secrets.contains(name)).cloned().collect();
                let program =
                    Program::Image { reference: reference.clone(), memory_mb: spec.memory_mb, cpu: spec.cpu, secrets };
                (program, env)
            }
            (Programs::Images, None) => anyhow::bail!("no images resolved"),
        };
        let launch = Launch { function: spec.name.clone(), program, env, log: self.state.function_log(&spec.name) };
        Ok(Function::new(spec.clone(), launch))
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
