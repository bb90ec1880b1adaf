//! A replica of a function: a process of its binary (the `local` target) or
//! a container of its image (the `docker` target). The scaler and the gateway
//! only see this: start one, ask whether it has exited and why, stop it.

use std::path::PathBuf;
use std::time::Duration;

use super::container::{Container, Containers};
use super::process::{Process, Spawner};

/// What it takes to start a replica of one function.
#[derive(Debug, Clone)]
pub struct Launch {
    pub function: String,
    pub program: Program,
    /// The contract's environment (without `PORT`, which each replica gets).
    pub env: Vec<(String, String)>,
    /// stdout and stderr are appended here.
    pub log: PathBuf,
}

#[derive(Debug, Clone)]
pub enum Program {
    /// A binary run in `dir` (the pipeline file's folder), finding its
    /// secrets in the folder its environment names.
    Binary { path: PathBuf, dir: PathBuf },
    /// An image run with the function's memory and CPU enforced, its
    /// secrets copied into it at the contract's path.
    Image { reference: String, memory_mb: u64, cpu: f64, cpu_limit: Option<f64>, secrets: Vec<(String, String)> },
}

impl Program {
    /// What `/system/functions` shows as the function's image.
    pub fn describe(&self) -> String {
        match self {
            Program::Binary { path, .. } => path.display().to_string(),
            Program::Image { reference, .. } => reference.clone(),
        }
    }
}

/// How a replica ended.
#[derive(Debug, Clone)]
pub struct Exit {
    /// `exit status: 1`, `signal: 9 (SIGKILL)`, ...
    pub status: String,
    /// The kernel killed it for using more memory than its limit.
    pub out_of_memory: bool,
    /// Its exit code, when it exited on its own.
    pub code: Option<i64>,
}

/// Why a replica did not become healthy.
#[derive(Debug)]
pub enum StartError {
    /// It could not be started at all.
    Spawn(anyhow::Error),
    /// It exited before answering the health path; `log` is what it wrote.
    Exited { exit: Exit, log: String },
    /// It did not answer the health path with 200 in time (it was stopped).
    Timeout { after: Duration, log: String },
}

/// Starts replicas of one kind.
pub enum Runner {
    Processes(Spawner),
    Containers(Containers),
}

impl Runner {
    /// Start a replica of `launch` and wait until it is healthy, at most
    /// `deadline`. Its port is chosen free here but bound by the replica, so
    /// another process can take it in between: a replica that exits because
    /// its port is in use ([`stage_runtime::EXIT_PORT_IN_USE`]) is started
    /// again on another port, a few times.
    pub async fn start(&self, launch: &Launch, client: &reqwest::Client, deadline: Duration) -> Result<Replica, StartError> {
        const TRIES: u32 = 3;
        let mut tried = 1;
        loop {
            match self.start_once(launch, client, deadline).await {
                Err(StartError::Exited { exit, .. }) if exit.code == Some(stage_runtime::EXIT_PORT_IN_USE.into()) && tried < TRIES => {
                    tracing::warn!(function = %launch.function, "its port was taken before it listened; starting it on another");
                    tried += 1;
                }
                started => return started,
            }
        }
    }

    async fn start_once(&self, launch: &Launch, client: &reqwest::Client, deadline: Duration) -> Result<Replica, StartError> {
        match (self, &launch.program) {
            (Runner::Processes(spawner), Program::Binary { path, dir }) => {
                spawner.start_process(launch, path, dir, client, deadline).await.map(Replica::Process)
            }
            (Runner::Containers(containers), Program::Image { .. }) => {
                containers.start(launch, client, deadline).await.map(Replica::Container)
            }
            _ => Err(StartError::Spawn(anyhow::anyhow!(
                "function `{}`: this runtime cannot run {}",
                launch.function,
                launch.program.describe()
            ))),
        }
    }

    /// Remove what is left of this runtime's replicas: at start, what a
    /// runtime of this state folder left when it died; at the end, any
    /// replica that exited and was not removed yet.
    pub async fn clean_up(&self) {
        if let Runner::Containers(containers) = self {
            containers.remove_leftovers().await;
        }
    }
}

/// A running replica.
pub enum Replica {
    Process(Process),
    Container(Container),
}

impl Replica {
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        match self {
            Replica::Process(process) => &process.url,
            Replica::Container(container) => &container.url,
        }
    }

    /// For the log: a pid, or a container's short id.
    pub fn id(&self) -> String {
        match self {
            Replica::Process(process) => format!("pid {}", process.pid),
            Replica::Container(container) => format!("container {}", container.short_id()),
        }
    }

    /// How it ended, if it has.
    pub fn exited(&mut self) -> Option<Exit> {
        match self {
            Replica::Process(process) => process.exited(),
            Replica::Container(container) => container.exited(),
        }
    }

    /// Let go of a replica that has exited: a container is removed (a
    /// process was reaped when it was seen to exit).
    pub async fn discard(self) {
        if let Replica::Container(container) = self {
            container.remove().await;
        }
    }

    /// Ask it to stop (SIGTERM), let it drain for up to `grace`, then kill it.
    pub async fn stop(self, grace: Duration) -> Option<Exit> {
        match self {
            Replica::Process(process) => process.stop(grace).await,
            Replica::Container(container) => container.stop(grace).await,
        }
    }
}

/// Ask `url`'s health path until it answers 200; runs until cancelled.
pub async fn healthy(client: &reqwest::Client, url: &str) {
    let health = format!("{url}{}", xtask::pipeline::contract::HEALTH_PATH);
    loop {
        let answer = client.get(&health).timeout(Duration::from_secs(2)).send().await;
        if answer.is_ok_and(|r| r.status() == reqwest::StatusCode::OK) {
            return;
        }
        // The port opens once the function has loaded; ask again shortly.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A port on 127.0.0.1 that is free now.
pub fn free_port() -> anyhow::Result<u16> {
    use anyhow::Context as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(listener.local_addr()?.port())
}
