//! One function container of the `docker` target: the image `cargo xtask
//! build` made, run through the Docker Engine API on the host's network (so
//! that it reaches the gateway and the store on 127.0.0.1, and they reach it),
//! with the function's memory and CPU as the container's cgroup limits.
//!
//! Memory is enforced without swap (`memory_swap` = `memory`): a function
//! over its limit is killed by the kernel, as a pod would be, and the engine
//! records `OOMKilled`, which the gateway turns into a classified error.
//!
//! Secrets are copied into the created container before it starts, at the
//! contract's path, owned by the image's user and readable only by it: no
//! secret is written to the host with looser permissions.
//!
//! Containers are labelled with the state folder of their runtime; a runtime
//! that starts removes what a killed one left behind (containers cannot get
//! `PR_SET_PDEATHSIG`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
    WaitContainerOptions,
};
use bollard::Docker;
use futures::StreamExt as _;
use tokio::io::AsyncWriteExt as _;

use super::replica::{free_port, healthy, Exit, Launch, Program, StartError};
use super::state::tail;
use xtask::build::{self, engine::Engine};
use xtask::pipeline::{contract, Pipeline, Platform};

/// The label naming the state folder of the runtime a container belongs to.
const RUNTIME_LABEL: &str = "dev.videosearcher.runtime";
const FUNCTION_LABEL: &str = "dev.videosearcher.function";

/// Starts the containers of one runtime.
pub struct Containers {
    docker: Docker,
    /// The runtime's state folder, as the containers' label.
    runtime: String,
}

/// A running function container.
pub struct Container {
    docker: Docker,
    id: String,
    /// The runtime's state folder, where the CPU of removed containers adds up.
    runtime: String,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// Set once the container has exited.
    exit: Arc<OnceLock<Exit>>,
}

impl Containers {
    pub fn new(docker: Docker, runtime: String) -> Containers {
        Containers { docker, runtime }
    }

    /// Create, fill with secrets, start, and wait until healthy.
    pub async fn start(
        &self,
        launch: &Launch,
        client: &reqwest::Client,
        deadline: Duration,
    ) -> Result<Container, StartError> {
        let Program::Image { reference, memory_mb, cpu, cpu_limit, secrets } = &launch.program else {
            return Err(StartError::Spawn(anyhow::anyhow!("`{}` has no image", launch.function)));
        };
        let port = free_port().map_err(StartError::Spawn)?;
        let mut env: Vec<String> = launch.env.iter().map(|(name, value)| format!("{name}={value}")).collect();
        env.push(format!("PORT={port}"));
        // 0: none declared (a function deployed through the API without limits).
        let memory = (*memory_mb > 0).then(|| (*memory_mb as i64) * 1024 * 1024);
        // The request is a share of a busy machine (cgroup weight, 1024 a
        // core, as the kubelet sets it); only a declared limit caps.
        let cpu_shares = (*cpu > 0.0).then(|| ((cpu * 1024.0).round() as i64).max(2));
        let nano_cpus = cpu_limit.map(|cores| (cores * 1e9).round() as i64);
        let body = ContainerCreateBody {
            image: Some(reference.clone()),
            env: Some(env),
            labels: Some(
                [(RUNTIME_LABEL.to_string(), self.runtime.clone()), (FUNCTION_LABEL.to_string(), launch.function.clone())]
                    .into(),
            ),
            host_config: Some(HostConfig {
                network_mode: Some("host".into()),
                memory,
                memory_swap: memory,
                cpu_shares,
                nano_cpus,
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let name = format!("vs-{}-{}", launch.function, &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = match self.docker.create_container(Some(options.clone()), body.clone()).await {
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                // Not in the engine: pull it, as a node would.
                self.pull(reference).await.map_err(StartError::Spawn)?;
                self.docker.create_container(Some(options), body).await
            }
            created => created,
        };
        let created = created.with_context(|| format!("create a container of {reference}")).map_err(StartError::Spawn)?;
        let container = Container {
            docker: self.docker.clone(),
            id: created.id,
            runtime: self.runtime.clone(),
            url: format!("http://127.0.0.1:{port}"),
            exit: Arc::new(OnceLock::new()),
        };
        match self.run(&container, launch, secrets, client, deadline).await {
            Ok(()) => Ok(container),
            Err(err) => {
                container.remove().await;
                Err(err)
            }
        }
    }

    async fn run(
        &self,
        container: &Container,
        launch: &Launch,
        secrets: &[(String, String)],
        client: &reqwest::Client,
        deadline: Duration,
    ) -> Result<(), StartError> {
        let docker = &self.docker;
        let id = &container.id;
        let user = image_user(docker, id).await.map_err(StartError::Spawn)?;
        let archive = secrets_tar(secrets, user).map_err(StartError::Spawn)?;
        let options = UploadToContainerOptionsBuilder::new().path("/").build();
        docker
            .upload_to_container(id, Some(options), bollard::body_full(archive.into()))
            .await
            .context("copy the secrets into the container")
            .map_err(StartError::Spawn)?;
        let log_start = std::fs::metadata(&launch.log).map_or(0, |m| m.len());
        docker
            .start_container(id, None::<StartContainerOptions>)
            .await
            .context("start the container")
            .map_err(StartError::Spawn)?;
        tracing::info!(function = %launch.function, container = %container.short_id(), url = %container.url, "started container");
        tokio::spawn(follow_logs(docker.clone(), id.clone(), launch.log.clone()));
        tokio::spawn(watch_exit(docker.clone(), id.clone(), container.exit.clone()));

        let log = || tail(&launch.log, log_start, 40).unwrap_or_default();
        let exited = async {
            loop {
                if let Some(exit) = container.exit.get() {
                    return exit.clone();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            exit = exited => {
                // The last lines of its log may still be on their way.
                tokio::time::sleep(Duration::from_millis(200)).await;
                Err(StartError::Exited { exit, log: log() })
            }
            timed_out = tokio::time::timeout(deadline, healthy(client, &container.url)) => match timed_out {
                Ok(()) => Ok(()),
                Err(_) => Err(StartError::Timeout { after: deadline, log: log() }),
            },
        }
    }

    /// Pull `reference` into the engine (from a registry it can reach).
    async fn pull(&self, reference: &str) -> anyhow::Result<()> {
        tracing::info!(image = %reference, "pulling");
        let (name, tag) = build::engine::split_reference(reference);
        let options = bollard::query_parameters::CreateImageOptionsBuilder::new().from_image(name).tag(tag).build();
        let mut pulling = self.docker.create_image(Some(options), None, None);
        while let Some(progress) = pulling.next().await {
            progress.with_context(|| format!("pull {reference}"))?;
        }
        Ok(())
    }

    /// Remove the containers of this state folder that a runtime which died left.
    pub async fn remove_leftovers(&self) {
        let filters = std::collections::HashMap::from([("label", vec![format!("{RUNTIME_LABEL}={}", self.runtime)])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let Ok(leftovers) = self.docker.list_containers(Some(options)).await else { return };
        for leftover in leftovers {
            let Some(id) = leftover.id else { continue };
            tracing::info!(container = %&id[..12.min(id.len())], "removing a container left over");
            let options = RemoveContainerOptionsBuilder::new().force(true).build();
            let _ = self.docker.remove_container(&id, Some(options)).await;
        }
    }
}

impl Container {
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }

    pub fn exited(&self) -> Option<Exit> {
        self.exit.get().cloned()
    }

    /// `docker stop` with `grace` (SIGTERM, then SIGKILL), then remove it.
    pub async fn stop(self, grace: Duration) -> Option<Exit> {
        // Read while it runs: a stopped container's counters are gone.
        retire_cpu(&self.runtime, container_cpu_nanos(&self.docker, &self.id).await);
        let options = StopContainerOptionsBuilder::new().t(grace.as_secs().max(1) as i32).build();
        if let Err(err) = self.docker.stop_container(&self.id, Some(options)).await {
            tracing::warn!(container = %self.short_id(), "stop: {err}");
        }
        let exit = self.exit.get().cloned().or(Some(inspect_exit(&self.docker, &self.id).await));
        self.remove().await;
        exit
    }

    pub async fn remove(&self) {
        let options = RemoveContainerOptionsBuilder::new().force(true).build();
        if let Err(err) = self.docker.remove_container(&self.id, Some(options)).await {
            tracing::warn!(container = %self.short_id(), "remove: {err}");
        }
    }
}

/// CPU seconds used so far by the containers of the runtime `runtime`: those
/// running, and those it stopped (counted as they stopped, in its state
/// folder), so that scaling to zero does not take CPU time back. A
/// container that died on its own (killed for memory) takes its last
/// moments with it.
pub async fn cpu_seconds(runtime: &str) -> f64 {
    let retired = retired_nanos(runtime);
    let Ok(docker) = Docker::connect_with_local_defaults() else { return retired as f64 / 1e9 };
    let filters = std::collections::HashMap::from([("label", vec![format!("{RUNTIME_LABEL}={runtime}")])]);
    let options = ListContainersOptionsBuilder::new().filters(&filters).build();
    let Ok(containers) = docker.list_containers(Some(options)).await else { return retired as f64 / 1e9 };
    let mut nanos = retired;
    for id in containers.into_iter().filter_map(|c| c.id) {
        nanos += container_cpu_nanos(&docker, &id).await;
    }
    nanos as f64 / 1e9
}

/// The CPU nanoseconds a running container has used.
async fn container_cpu_nanos(docker: &Docker, id: &str) -> u64 {
    let options = bollard::query_parameters::StatsOptionsBuilder::new().stream(false).one_shot(true).build();
    let mut stats = docker.stats(id, Some(options));
    match stats.next().await {
        Some(Ok(stats)) => stats.cpu_stats.and_then(|cpu| cpu.cpu_usage).and_then(|usage| usage.total_usage).unwrap_or(0),
        _ => 0,
    }
}

fn retired_path(runtime: &str) -> std::path::PathBuf {
    std::path::Path::new(runtime).join("containers-cpu-retired-ns")
}

/// The CPU nanoseconds of the containers the runtime has stopped.
fn retired_nanos(runtime: &str) -> u64 {
    std::fs::read_to_string(retired_path(runtime)).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0)
}

/// Add a stopped container's CPU to its runtime's total (one runtime
/// process writes it; the lock keeps its own stops from racing).
fn retire_cpu(runtime: &str, nanos: u64) {
    static WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _writer = WRITER.lock().unwrap_or_else(|e| e.into_inner());
    let path = retired_path(runtime);
    if let Err(err) = std::fs::write(&path, (retired_nanos(runtime) + nanos).to_string()) {
        tracing::warn!("cannot count a stopped container's CPU in {}: {err}", path.display());
    }
}

/// The numeric `uid:gid` the image runs as (`User` of its config).
async fn image_user(docker: &Docker, container: &str) -> anyhow::Result<(u64, u64)> {
    let inspected = docker.inspect_container(container, None::<InspectContainerOptions>).await?;
    let user = inspected.config.and_then(|config| config.user).unwrap_or_default();
    let (uid, gid) = user.split_once(':').unwrap_or((&user, &user));
    match (uid.parse(), gid.parse()) {
        (Ok(uid), Ok(gid)) => Ok((uid, gid)),
        _ => anyhow::bail!(
            "the image runs as user `{user}`, not a numeric uid:gid\nhelp: function images set `USER 10001:10001` (base-image/Dockerfile)"
        ),
    }
}

/// A tar of the contract's secrets folder, each file readable by `user` alone.
fn secrets_tar(secrets: &[(String, String)], (uid, gid): (u64, u64)) -> anyhow::Result<Vec<u8>> {
    let mut archive = tar::Builder::new(Vec::new());
    let dir = contract::SECRETS_DIR.trim_start_matches('/');
    let mut parents = String::new();
    for part in dir.split('/') {
        parents.push_str(part);
        parents.push('/');
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        header.set_cksum();
        archive.append_data(&mut header, &parents, std::io::empty())?;
    }
    for (name, value) in secrets {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o400);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_size(value.len() as u64);
        header.set_cksum();
        archive.append_data(&mut header, format!("{dir}/{name}"), value.as_bytes())?;
    }
    Ok(archive.into_inner()?)
}

/// Append the container's output to its function's log until it exits.
async fn follow_logs(docker: Docker, id: String, path: std::path::PathBuf) {
    let Ok(mut file) = tokio::fs::OpenOptions::new().create(true).append(true).open(&path).await else {
        tracing::warn!(path = %path.display(), "cannot open the function log");
        return;
    };
    let options = LogsOptionsBuilder::new().follow(true).stdout(true).stderr(true).build();
    let mut stream = docker.logs(&id, Some(options));
    while let Some(Ok(chunk)) = stream.next().await {
        let _ = file.write_all(&chunk.into_bytes()).await;
    }
}

/// Wait for the container to exit, then record how.
async fn watch_exit(docker: Docker, id: String, exit: Arc<OnceLock<Exit>>) {
    let mut waiting = docker.wait_container(&id, None::<WaitContainerOptions>);
    // A non-zero exit arrives as an error item; either way it has exited.
    let _ = waiting.next().await;
    let _ = exit.set(inspect_exit(&docker, &id).await);
}

async fn inspect_exit(docker: &Docker, id: &str) -> Exit {
    match docker.inspect_container(id, None::<InspectContainerOptions>).await {
        Ok(inspected) => {
            let state = inspected.state.unwrap_or_default();
            let code = state.exit_code.unwrap_or(-1);
            let status = match code {
                137 => "killed (SIGKILL, exit code 137)".to_string(),
                code => format!("exit code {code}"),
            };
            Exit { status, out_of_memory: state.oom_killed.unwrap_or(false), code: state.exit_code }
        }
        Err(err) => Exit { status: format!("status unknown ({err})"), out_of_memory: false, code: None },
    }
}

/// The image of every function for this machine's platform, from the
/// manifest of the last `cargo xtask build`, each checked to be in the engine
/// as built.
pub async fn images(
    pipeline: &Pipeline,
    engine: &Engine,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let platform = Platform::host()
        .with_context(|| format!("no image platform runs on this machine's `{}`", std::env::consts::ARCH))?;
    let manifest_path = build::manifest_path(pipeline);
    let manifest = build::manifest::Images::read(&manifest_path);
    let help = format!("help: build them with `cargo xtask build --platform {platform}`");
    let mut images = std::collections::BTreeMap::new();
    for function in &pipeline.functions {
        let name = &function.name;
        let Some((set, image)) =
            manifest.functions.get(name).and_then(|set| Some((set, set.platforms.get(platform.name())?)))
        else {
            anyhow::bail!("no {platform} image of `{name}` in {}\n{help}", manifest_path.display());
        };
        let reference = format!("{}:{}", set.repository, image.tag);
        match engine.image_id(&reference).await? {
            Some(id) if id == image.image_id => {}
            Some(_) => anyhow::bail!("{reference} in the Docker Engine is not the image the last build made\n{help}"),
            None => anyhow::bail!("{reference} is not in the Docker Engine (removed, or built into another one)\n{help}"),
        }
        images.insert(name.clone(), reference);
    }
    Ok(images)
}
