//! Embedded local runtime: object store, gateway, scaler, and the replicas
//! of the functions (processes for `kind: local`, containers for `kind: docker`).
//!
//! `start` runs `deploy --foreground` in the background; that process owns
//! everything (store, gateway, replicas) and records itself in
//! `<state>/runtime.json`. `stop`, `endpoints`, `about` and `log` only read
//! the state folder and talk to the gateway. Nothing outside this module
//! reads the state folder.
//!
//! Architecture invariant: replicas never outlive the runtime (processes die
//! with it; containers it left are removed when the next one starts);
//! nothing here binds anything but 127.0.0.1.

mod build;
mod container;
pub mod cpu;
mod gateway;
mod metrics;
mod process;
mod replica;
mod runtime;
mod scaler;
mod secrets;
mod state;
pub use embedded_store as store;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};

pub use state::StateDir;

use crate::deploy::{Endpoints, Gateway};
use crate::pipeline::{Pipeline, TargetKind};
use runtime::Programs;

/// How long the background runtime may take to answer `/healthz`: store,
/// gateway and the cold starts of the `scale.min` functions.
const READY_DEADLINE: Duration = Duration::from_secs(90);

/// Serve `target` in this process until SIGTERM or SIGINT.
pub fn serve(pipeline: &Pipeline, target: &str, kind: &TargetKind, state: &StateDir) -> anyhow::Result<()> {
    if let Some(info) = state.running()? {
        bail!(
            "a local runtime already runs for {} (pid {})\nhelp: stop it with `cargo xtask teardown`",
            state.root.display(),
            info.pid
        );
    }
    runtime::run(pipeline, target, state, &programs(pipeline, kind)?)
}

/// What the replicas of `kind` run: the function binaries, built now (or
/// found in `XTASK_BIN_DIR`), or the images of the last build.
fn programs(pipeline: &Pipeline, kind: &TargetKind) -> anyhow::Result<Programs> {
    match kind {
        TargetKind::Local(_) => Ok(Programs::Binaries(build::function_binaries(pipeline)?)),
        TargetKind::Docker(_) => Ok(Programs::Images),
        TargetKind::OpenFaas(_) => bail!("an `openfaas` target is not run by the embedded runtime"),
        TargetKind::Kubernetes(_) => bail!("a `kubernetes` target is not run by the embedded runtime"),
    }
}

/// The images `kind: docker` would run, checked now so that a missing one is
/// reported here rather than in the background runtime's log.
pub fn check_images(pipeline: &Pipeline) -> anyhow::Result<()> {
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    tokio.block_on(async {
        let engine = xtask::build::engine::Engine::connect().await?;
        container::images(pipeline, &engine).await.map(drop)
    })
}

/// Start the runtime of `target` in the background and return once it
/// answers; a runtime already running for `state` is left as it is.
pub fn start(pipeline: &Pipeline, target: &str, kind: &TargetKind, state: &StateDir) -> anyhow::Result<()> {
    if let Some(info) = state.running()? {
        println!("local runtime already running (pid {})", info.pid);
        return Ok(());
    }
    let programs = programs(pipeline, kind)?;
    std::fs::create_dir_all(&state.root).with_context(|| format!("create state folder {}", state.root.display()))?;
    let log_path = state.runtime_log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("open {}", log_path.display()))?;
    let log_start = log.metadata()?.len();
    // This very executable, even if a rebuild has replaced the file meanwhile.
    let mut command = Command::new("/proc/self/exe");
    command
        .arg("--file")
        .arg(&pipeline.source.path)
        .arg("--target")
        .arg(target)
        .arg("--state-dir")
        .arg(&state.root)
        .arg("deploy")
        .arg("--foreground")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe. Its own session: the runtime
    // survives this terminal and its Ctrl-C.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    if let Programs::Binaries(binaries) = &programs {
        command.env(build::BIN_DIR_VAR, &binaries.dir);
    }
    let mut child = command.spawn().context("start the runtime in the background")?;
    let pid = child.id();

    let mut ready = None;
    let answered = state::wait_until(READY_DEADLINE, || {
        if let Ok(Some(status)) = child.try_wait() {
            ready = Some(Err(status));
            return true;
        }
        match state.read_info() {
            Ok(Some(info))
                if info.pid == pid && Gateway::new(&info.gateway_url).is_ok_and(|gateway| gateway.healthy()) =>
            {
                ready = Some(Ok(info));
                true
            }
            _ => false,
        }
    });
    let log_tail = || state::tail(&log_path, log_start, 30).unwrap_or_default();
    let info = match (answered, ready) {
        (true, Some(Ok(info))) => info,
        (_, Some(Err(status))) => {
            bail!("the local runtime exited during start ({status}); its log ends with:\n{}", log_tail())
        }
        _ => {
            state::signal(pid as i32, libc::SIGTERM);
            bail!(
                "the local runtime did not answer within {READY_DEADLINE:?}; stopped it. Its log ends with:\n{}",
                log_tail()
            )
        }
    };
    println!("local runtime up (pid {})", info.pid);
    // Functions kept running by `scale.min` that failed to start.
    for function in Gateway::new(&info.gateway_url)?.functions()? {
        let min: u64 = function.labels.get("com.openfaas.scale.min").and_then(|m| m.parse().ok()).unwrap_or(0);
        if function.available_replicas < min {
            eprintln!(
                "warning: function `{}` (scale.min {min}) is not running; it is retried on its first call\n\
                 help: see why with `cargo xtask logs {}`",
                function.name, function.name
            );
        }
    }
    Ok(())
}

/// Stop the runtime of the state folder and wait until it has exited.
pub fn stop(state: &StateDir) -> anyhow::Result<()> {
    let Some(pid) = state.locked_by()? else {
        state.remove_info();
        println!("no local runtime is running for {}", state.root.display());
        return Ok(());
    };
    let info = state.read_info()?;
    let deadline = Duration::from_secs(info.as_ref().map_or(0, |i| i.stop_timeout_s)).max(Duration::from_secs(30));
    state::signal(pid as i32, libc::SIGTERM);
    println!("stopping local runtime (pid {pid}) and its functions...");
    if !state::wait_until(deadline, || state.locked_by().is_ok_and(|holder| holder.is_none())) {
        bail!(
            "the local runtime (pid {pid}) is still running {deadline:?} after SIGTERM\n\
             help: see `cargo xtask logs`; `kill -9 {pid}` stops it and its functions"
        );
    }
    println!("stopped");
    Ok(())
}

/// Where the running runtime answers, with the store's credentials; `None`
/// when none runs for `state`.
pub fn endpoints(pipeline: &Pipeline, state: &StateDir) -> anyhow::Result<Option<Endpoints>> {
    let Some(info) = state.running()? else { return Ok(None) };
    let secret = |name: &str| -> anyhow::Result<String> {
        let path = state.secrets().join(name);
        Ok(std::fs::read_to_string(&path).with_context(|| format!("read secret {}", path.display()))?.trim().to_string())
    };
    Ok(Some(Endpoints {
        gateway_url: info.gateway_url,
        store_url: info.store_url,
        bucket: info.bucket,
        region: pipeline.storage.region.clone(),
        access_key: secret(&pipeline.storage.access_key_secret)?,
        secret_key: secret(&pipeline.storage.secret_key_secret)?,
    }))
}

/// Lines about the running runtime (pid, uptime, state folder); `None` when none runs.
pub fn about(state: &StateDir) -> anyhow::Result<Option<Vec<String>>> {
    let Some(info) = state.running()? else { return Ok(None) };
    let uptime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.as_secs().saturating_sub(info.started_at));
    Ok(Some(vec![
        format!("local runtime (pid {}), up {}", info.pid, crate::pipeline::format_duration(Duration::from_secs(uptime))),
        format!("  state    {}", state.root.display()),
    ]))
}

/// The process id of the running runtime, whose process tree holds the
/// `local` target's replicas.
pub fn pid(state: &StateDir) -> anyhow::Result<Option<u32>> {
    Ok(state.running()?.map(|info| info.pid))
}

/// CPU seconds the runtime of `state` (pid `pid`) and its replicas have used
/// so far: its process tree (with a `local` target's replica processes) and
/// its containers (a `docker` target's replicas).
pub async fn cpu_seconds(pid: u32, state: &StateDir) -> f64 {
    cpu::tree_seconds(pid) + container::cpu_seconds(&state.root.display().to_string()).await
}

/// The end of the runtime's log, or of one function's.
pub fn log(state: &StateDir, function: Option<&str>, lines: usize) -> anyhow::Result<String> {
    let path = match function {
        None => state.runtime_log(),
        Some(function) => state.function_log(function),
    };
    if !path.is_file() {
        match function {
            None => bail!("no runtime log at {}\nhelp: deploy with `cargo xtask deploy`", path.display()),
            Some(function) => bail!(
                "no log for function `{function}` at {}\nhelp: functions with a log: {}",
                path.display(),
                logged_functions(&state.logs())
            ),
        }
    }
    state::tail(&path, 0, lines)
}

fn logged_functions(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.strip_suffix(".log").map(|n| format!("`{n}`")))
        .collect();
    names.sort();
    if names.is_empty() { "none yet".into() } else { names.join(", ") }
}
