//! Embedded local runtime: object store, gateway, scaler.
//!
//! `up` builds the function binaries and starts `up --foreground` in the
//! background; that process owns everything (store, gateway, function
//! processes) and records itself in `<state>/runtime.json`. `down`, `status`
//! and `logs` only read the state folder and talk to the gateway.
//!
//! Architecture invariant: function processes are children of the runtime
//! and never outlive it; nothing here binds anything but 127.0.0.1.

mod build;
mod gateway;
mod process;
mod runtime;
mod scaler;
mod state;
pub mod store;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};

pub use gateway::FunctionStatus;
pub use state::{RuntimeInfo, StateDir};

use crate::flags;
use crate::pipeline::Pipeline;

/// How long the background runtime may take to answer `/healthz`: store,
/// gateway and the cold starts of the `scale.min` functions.
const READY_DEADLINE: Duration = Duration::from_secs(90);

/// Start the local runtime for `target`: in the background (printing its
/// URLs once it answers), or in this process with `--foreground`.
pub fn up(pipeline: &Pipeline, target: &str, flags: &flags::Up) -> anyhow::Result<()> {
    let state = StateDir::new(&flags.state_dir)?;
    if let Some(info) = state.running()? {
        if flags.foreground {
            bail!(
                "a local runtime already runs for {} (pid {})\nhelp: stop it with `cargo xtask down`",
                state.root.display(),
                info.pid
            );
        }
        println!("local runtime already running (pid {})", info.pid);
        print_urls(&info, &state);
        return Ok(());
    }
    let binaries = build::function_binaries(pipeline)?;
    if flags.foreground {
        return runtime::run(pipeline, target, &state, &binaries);
    }

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
        .arg("up")
        .arg("--foreground")
        .arg("--state-dir")
        .arg(&state.root)
        .env(build::BIN_DIR_VAR, &binaries.dir)
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
    let mut child = command.spawn().context("start the runtime in the background")?;
    let pid = child.id();

    let client = Client::new()?;
    let mut ready = None;
    let answered = state::wait_until(READY_DEADLINE, || {
        if let Ok(Some(status)) = child.try_wait() {
            ready = Some(Err(status));
            return true;
        }
        match state.read_info() {
            Ok(Some(info)) if info.pid == pid && client.get(&format!("{}/healthz", info.gateway_url)).is_ok() => {
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
    print_urls(&info, &state);
    // Functions kept running by `scale.min` that failed to start.
    for function in client.functions(&info)? {
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

fn print_urls(info: &RuntimeInfo, state: &StateDir) {
    println!("  gateway  {}", info.gateway_url);
    println!("  store    {}  (bucket `{}`)", info.store_url, info.bucket);
    println!("  state    {}", state.root.display());
}

/// Stop the runtime of the state folder and wait until it has exited.
pub fn down(flags: &flags::Down) -> anyhow::Result<()> {
    let state = StateDir::new(&flags.state_dir)?;
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

/// Print the runtime's URLs and a table of its functions.
pub fn status(flags: &flags::Status) -> anyhow::Result<()> {
    let state = StateDir::new(&flags.state_dir)?;
    let Some(info) = state.running()? else {
        println!("no local runtime is running for {}", state.root.display());
        println!("help: start it with `cargo xtask up`");
        return Ok(());
    };
    let functions = Client::new()?.functions(&info)?;
    let uptime = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |now| now.as_secs().saturating_sub(info.started_at));
    println!("local runtime (pid {}), up {}", info.pid, crate::pipeline::format_duration(Duration::from_secs(uptime)));
    print_urls(&info, &state);
    println!();
    let rows: Vec<[String; 5]> = functions
        .iter()
        .map(|f| {
            [
                f.name.clone(),
                format!("{}/{}", f.available_replicas, f.replicas),
                f.invocation_count.to_string(),
                f.limits.memory.clone(),
                f.annotations.get("com.openfaas.timeout").cloned().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(["FUNCTION", "REPLICAS", "INVOCATIONS", "MEMORY", "TIMEOUT"], &rows);
    Ok(())
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

/// Print the end of the runtime's log, or of one function's.
pub fn logs(flags: &flags::Logs) -> anyhow::Result<()> {
    let state = StateDir::new(&flags.state_dir)?;
    let path = match &flags.function {
        None => state.runtime_log(),
        Some(function) => state.function_log(function),
    };
    if !path.is_file() {
        match &flags.function {
            None => bail!("no runtime log at {}\nhelp: start the runtime with `cargo xtask up`", path.display()),
            Some(function) => bail!(
                "no log for function `{function}` at {}\nhelp: functions with a log: {}",
                path.display(),
                logged_functions(&state.logs())
            ),
        }
    }
    print!("{}", state::tail(&path, 0, flags.lines)?);
    Ok(())
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

/// A small blocking HTTP client for the commands that talk to the gateway.
struct Client {
    tokio: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Client {
    fn new() -> anyhow::Result<Client> {
        let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        Ok(Client { tokio, http })
    }

    /// GET `url`, requiring a 2xx answer.
    fn get(&self, url: &str) -> anyhow::Result<bytes::Bytes> {
        self.tokio.block_on(async {
            let answer = self.http.get(url).send().await?.error_for_status()?;
            Ok(answer.bytes().await?)
        })
    }

    fn functions(&self, info: &RuntimeInfo) -> anyhow::Result<Vec<FunctionStatus>> {
        let url = format!("{}/system/functions", info.gateway_url);
        let body = self.get(&url).with_context(|| format!("ask the gateway for its functions ({url})"))?;
        serde_json::from_slice(&body).with_context(|| format!("read the answer of {url}"))
    }
}
