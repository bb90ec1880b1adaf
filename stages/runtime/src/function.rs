//! A function's life: [`Handler`] is its work, [`serve`] runs it until SIGTERM.

use std::process::ExitCode;

use crate::config::{parse_var, Config};
use crate::context::Context;
use crate::store::Store;
use crate::{server, Artifacts, Invocation, StageError};

/// One function's work for one invocation. It runs on a blocking thread, so
/// it may run tools and wait; it reads its inputs and writes its outputs
/// through `cx`, and returns the outputs by name.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, cx: &Context, inv: &Invocation) -> Result<Artifacts, StageError>;
}

/// Run a function: read its configuration from the environment, build the
/// handler with `init` (load models here: a failure stops the process with
/// the reason), then serve until SIGTERM.
pub fn serve<H: Handler>(init: impl FnOnce(&Config) -> anyhow::Result<H>) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .json()
        .init();
    match start(init) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.downcast_ref::<crate::server::PortInUse>().is_some() {
                ExitCode::from(crate::EXIT_PORT_IN_USE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn start<H: Handler>(init: impl FnOnce(&Config) -> anyhow::Result<H>) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let rt = tokio::runtime::Runtime::new()?;
    let store = {
        let _guard = rt.enter();
        Store::new(&config.store)?
    };
    let handler = init(&config).map_err(|e| e.context(format!("{} cannot start", config.function)))?;
    let swept = crate::context::sweep_work_dirs(&config.function);
    if swept > 0 {
        tracing::warn!(function = %config.function, swept, "removed the temp dirs of replicas that died mid-invocation");
    }
    rt.block_on(server::run(handler, config, store))?;
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    Ok(())
}

/// `ffmpeg` as every stage runs it: quiet, no prompts, overwriting its own outputs.
pub fn ffmpeg() -> std::process::Command {
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]);
    cmd
}

/// A stage parameter from the environment (`VS_…`), with its default.
pub fn param<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    parse_var(name, default)
}
