//! One function process: spawned on a free port with the contract's
//! environment, waited on until its health path answers, stopped with SIGTERM and,
//! past its grace time, SIGKILL to its whole process group.
//!
//! Every process gets `PR_SET_PDEATHSIG`, so none outlives a crashed runtime.
//! The kernel sends that signal when the *thread* that forked exits, so all
//! spawns happen on one thread that lives as long as the runtime.

use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

use super::replica::{free_port, healthy, Exit, Launch, StartError};
use super::state::{signal, tail};

/// A running function process.
pub struct Process {
    child: Child,
    pub pid: u32,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

/// Spawns processes on its own long-lived thread (see the module doc).
#[derive(Clone)]
pub struct Spawner {
    jobs: mpsc::UnboundedSender<(Command, oneshot::Sender<io::Result<Child>>)>,
}

impl Spawner {
    /// Start the spawning thread; call inside the tokio runtime.
    pub fn start() -> anyhow::Result<Spawner> {
        let runtime = tokio::runtime::Handle::current();
        let (jobs, mut rx) = mpsc::unbounded_channel::<(Command, oneshot::Sender<io::Result<Child>>)>();
        std::thread::Builder::new()
            .name("spawner".into())
            .spawn(move || {
                let _enter = runtime.enter();
                while let Some((mut command, reply)) = rx.blocking_recv() {
                    let _ = reply.send(command.spawn());
                }
            })
            .context("start the process spawner thread")?;
        Ok(Spawner { jobs })
    }

    async fn spawn(&self, command: Command) -> io::Result<Child> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send((command, reply)).map_err(|_| io::Error::other("the spawner thread is gone"))?;
        answer.await.map_err(|_| io::Error::other("the spawner thread is gone"))?
    }

    /// Spawn `binary` of `launch` in `dir` on a free port and wait until it
    /// answers the health path with 200, at most `deadline`.
    pub async fn start_process(
        &self,
        launch: &Launch,
        binary: &Path,
        dir: &Path,
        client: &reqwest::Client,
        deadline: Duration,
    ) -> Result<Process, StartError> {
        let log_start = std::fs::metadata(&launch.log).map_or(0, |m| m.len());
        let port = free_port().map_err(StartError::Spawn)?;
        let command = command(launch, binary, dir, port).map_err(StartError::Spawn)?;
        let child = self
            .spawn(command)
            .await
            .with_context(|| format!("spawn {}", binary.display()))
            .map_err(StartError::Spawn)?;
        let pid = child.id().unwrap_or(0);
        tracing::info!(function = %launch.function, pid, port, "started process");
        let mut process = Process { child, pid, url: format!("http://127.0.0.1:{port}") };

        let log = || tail(&launch.log, log_start, 40).unwrap_or_default();
        let url = process.url.clone();
        tokio::select! {
            status = process.child.wait() => {
                let status = status.map_err(|e| StartError::Spawn(e.into()))?;
                kill_group(pid);
                Err(StartError::Exited { exit: exit(status), log: log() })
            }
            timed_out = tokio::time::timeout(deadline, healthy(client, &url)) => match timed_out {
                Ok(()) => Ok(process),
                Err(_) => {
                    process.kill().await;
                    Err(StartError::Timeout { after: deadline, log: log() })
                }
            },
        }
    }
}

/// A process has no memory limit of its own here: it never ends for memory.
fn exit(status: ExitStatus) -> Exit {
    Exit { status: status.to_string(), out_of_memory: false, code: status.code().map(i64::from) }
}

impl Process {
    /// The exit status if it has exited (and was reaped now).
    pub fn exited(&mut self) -> Option<Exit> {
        self.child.try_wait().ok().flatten().map(exit)
    }

    /// SIGTERM, let it drain for up to `grace`, then SIGKILL its process group.
    pub async fn stop(mut self, grace: Duration) -> Option<Exit> {
        signal(self.pid as i32, libc::SIGTERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => {
                // Tools it started and left behind go with it.
                kill_group(self.pid);
                status.ok().map(exit)
            }
            Err(_) => {
                tracing::warn!(pid = self.pid, "still running {grace:?} after SIGTERM; killing it");
                self.kill().await
            }
        }
    }

    async fn kill(&mut self) -> Option<Exit> {
        kill_group(self.pid);
        let _ = self.child.start_kill();
        self.child.wait().await.ok().map(exit)
    }
}

/// SIGKILL every process of the group led by `pid`.
fn kill_group(pid: u32) {
    if pid > 1 {
        signal(-(pid as i32), libc::SIGKILL);
    }
}

/// The function's command: its own process group, killed with the runtime,
/// output appended to its log.
fn command(launch: &Launch, binary: &Path, dir: &Path, port: u16) -> anyhow::Result<Command> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log)
        .with_context(|| format!("open {}", launch.log.display()))?;
    let mut command = Command::new(binary);
    command
        .current_dir(dir)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The runtime died before prctl took effect: don't run orphaned.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    Ok(command)
}
