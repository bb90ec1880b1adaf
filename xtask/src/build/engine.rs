//! The Docker Engine, through bollard: connect (negotiating the API version:
//! the engine here speaks 1.41), look images up, build one from a tar
//! context, push a tag. Nothing here runs the docker CLI.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;

use anyhow::{bail, Context as _};
use bollard::query_parameters::{BuildImageOptionsBuilder, PushImageOptionsBuilder};
use bollard::Docker;
use futures::StreamExt as _;

use crate::pipeline::Platform;

pub const START_HELP: &str = "start the Docker Engine: `sudo systemctl start docker`, or where there is no systemd \
`dockerd --bridge=none --iptables=false &` (as root; `.ci/services` does that), or point DOCKER_HOST at a running one";

#[derive(Clone)]
pub struct Engine {
    docker: Docker,
}

/// What a build printed, and how it ended.
pub struct BuildOutcome {
    pub log: String,
    pub error: Option<String>,
}

impl Engine {
    /// Connect to the engine of DOCKER_HOST (or the local socket) and agree on an API version.
    pub async fn connect() -> anyhow::Result<Engine> {
        let where_ = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let unreachable = |err: &dyn std::fmt::Display| {
            anyhow::anyhow!("the Docker Engine at {where_} is unreachable: {err}\nhelp: {START_HELP}")
        };
        let docker = Docker::connect_with_local_defaults().map_err(|err| unreachable(&err))?;
        let docker = docker.negotiate_version().await.map_err(|err| unreachable(&err))?;
        docker.ping().await.map_err(|err| unreachable(&err))?;
        Ok(Engine { docker })
    }

    /// The client, for what this module does not wrap (running containers).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The image ID (its config digest) of `reference`, or `None` when the engine has no such image.
    pub async fn image_id(&self, reference: &str) -> anyhow::Result<Option<String>> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(image.id),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(err) => Err(err).with_context(|| format!("look up image {reference}")),
        }
    }

    /// Build `context` (a tar holding a `Dockerfile`) for `platform` and tag it
    /// `tag`. The engine tags only a build that succeeded. Every line it prints
    /// goes to `log`.
    pub async fn build(
        &self,
        context: Context,
        tag: &str,
        platform: Platform,
        labels: &HashMap<String, String>,
        log: &mut std::fs::File,
    ) -> anyhow::Result<BuildOutcome> {
        let options = BuildImageOptionsBuilder::new()
            .dockerfile("Dockerfile")
            .t(tag)
            .platform(platform.name())
            .labels(labels)
            .rm(true)
            .forcerm(true)
            .build();
        let body = match context {
            Context::Bytes(bytes) => bollard::body_full(bytes.into()),
            Context::File(path) => {
                let file = tokio::fs::File::open(&path)
                    .await
                    .with_context(|| format!("open the build context {}", path.display()))?;
                bollard::body_try_stream(tokio_util::io::ReaderStream::new(file))
            }
        };
        let mut stream = self.docker.build_image(options, None, Some(body));
        let mut text = String::new();
        let mut error = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(line) = info.stream.or(info.status) {
                        text.push_str(&line);
                        log.write_all(line.as_bytes())?;
                    }
                    if let Some(detail) = info.error_detail {
                        error = Some(detail.message.unwrap_or_else(|| "the build failed".into()));
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error: message }) => {
                    error = Some(message);
                }
                Err(err) => {
                    error = Some(err.to_string());
                    break;
                }
            }
        }
        if let Some(message) = &error {
            writeln!(log, "error: {message}")?;
        }
        Ok(BuildOutcome { log: text, error })
    }

    /// Push `reference` (`host/repo:tag`) to its registry.
    pub async fn push(&self, reference: &str, log: &mut std::fs::File) -> anyhow::Result<()> {
        let (name, tag) = split_reference(reference);
        let options = PushImageOptionsBuilder::new().tag(tag).build();
        let mut stream = self.docker.push_image(name, Some(options), None);
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(status) = info.status {
                        writeln!(log, "{status}")?;
                    }
                    if let Some(detail) = info.error_detail {
                        bail!("push {reference}: {}", detail.message.unwrap_or_default());
                    }
                }
                Err(err) => return Err(err).with_context(|| format!("push {reference}")),
            }
        }
        Ok(())
    }
}

/// `host:5000/repo/name:tag` → (`host:5000/repo/name`, `tag`).
pub fn split_reference(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (reference, "latest"),
    }
}

/// A build context: a tar in memory, or a tar file streamed to the engine.
pub enum Context {
    Bytes(Vec<u8>),
    File(std::path::PathBuf),
}

/// A tar of `files` (path in the archive → bytes or a file on disk), the
/// build context of one image. Entries have fixed metadata so that the same
/// files give the same context.
pub fn context<W: std::io::Write>(out: W, files: &[(&str, ContextFile<'_>)]) -> anyhow::Result<W> {
    let mut archive = tar::Builder::new(out);
    for (name, file) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(if matches!(file, ContextFile::Executable(_)) { 0o755 } else { 0o644 });
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        match file {
            ContextFile::Bytes(bytes) => {
                header.set_size(bytes.len() as u64);
                header.set_cksum();
                archive.append_data(&mut header, name, *bytes)?;
            }
            ContextFile::Path(path) | ContextFile::Executable(path) => {
                let opened = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
                header.set_size(opened.metadata()?.len());
                header.set_cksum();
                archive.append_data(&mut header, name, opened)?;
            }
        }
    }
    Ok(archive.into_inner()?)
}

pub enum ContextFile<'a> {
    Bytes(&'a [u8]),
    Path(&'a Path),
    /// A file that keeps the executable bit.
    Executable(&'a Path),
}
