//! The registry's side of a multi-arch image, over the distribution API
//! (reqwest): look a tag up, and assemble one index per function from the
//! per-platform images the engine pushed. bollard pushes single images; it
//! cannot write an index.
//!
//! Loopback registries (`127.0.0.1`, `localhost`) are spoken to over plain
//! HTTP, as the Docker Engine does; every other over HTTPS.

use anyhow::{bail, Context as _};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::{Deserialize, Serialize};

use crate::pipeline::Platform;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A registry host (`127.0.0.1:5000`).
#[derive(Clone)]
pub struct Registry {
    host: String,
    http: reqwest::Client,
}

/// What an index entry points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

#[derive(Serialize)]
struct IndexEntry<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    digest: &'a str,
    size: u64,
    platform: PlatformField<'a>,
}

#[derive(Serialize)]
struct PlatformField<'a> {
    architecture: &'a str,
    os: &'a str,
}

#[derive(Serialize)]
struct Index<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    manifests: Vec<IndexEntry<'a>>,
}

impl Registry {
    pub fn new(host: &str) -> Registry {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("an HTTP client with default TLS settings");
        Registry { host: host.to_string(), http }
    }

    fn base(&self) -> String {
        let loopback = self.host.starts_with("127.") || self.host.starts_with("localhost") || self.host.starts_with("[::1]");
        let scheme = if loopback { "http" } else { "https" };
        format!("{scheme}://{}/v2", self.host)
    }

    /// The API answers (200, or 401 when it wants a login).
    pub async fn ping(&self) -> anyhow::Result<()> {
        let url = format!("{}/", self.base());
        let unreachable = |why: String| {
            anyhow::anyhow!(
                "the registry {} is unreachable: {why}\nhelp: start one (Debian's `docker-registry`: `.ci/services` starts it on 127.0.0.1:5000), \
fix `build.registry` in pipeline.yaml, or build without pushing (`--no-push`)",
                self.host
            )
        };
        match self.http.get(&url).send().await {
            Ok(answer) if answer.status().is_success() || answer.status() == 401 => Ok(()),
            Ok(answer) => Err(unreachable(format!("GET {url} answered {}", answer.status()))),
            Err(err) => Err(unreachable(format!("{err}"))),
        }
    }

    /// The manifest `repository:reference` names, or `None` when the registry has none.
    pub async fn manifest(&self, repository: &str, reference: &str) -> anyhow::Result<Option<Descriptor>> {
        let url = format!("{}/{repository}/manifests/{reference}", self.base());
        let answer = self
            .http
            .head(&url)
            .header(ACCEPT, [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX].join(", "))
            .send()
            .await
            .with_context(|| format!("HEAD {url}"))?;
        if answer.status() == 404 {
            return Ok(None);
        }
        if !answer.status().is_success() {
            bail!("HEAD {url} answered {}", answer.status());
        }
        let header = |name: &str| answer.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_string);
        let digest = header("docker-content-digest").with_context(|| format!("HEAD {url} gave no Docker-Content-Digest"))?;
        let media_type = header("content-type").with_context(|| format!("HEAD {url} gave no Content-Type"))?;
        let size = header("content-length").and_then(|len| len.parse().ok()).with_context(|| format!("HEAD {url} gave no Content-Length"))?;
        Ok(Some(Descriptor { media_type, digest, size }))
    }

    /// Put an index at `repository:tag` over the per-platform `images`. Docker
    /// manifests go into a Docker manifest list, OCI ones into an OCI index,
    /// so every registry takes it. Returns the index's descriptor.
    pub async fn put_index(&self, repository: &str, tag: &str, images: &[(Platform, Descriptor)]) -> anyhow::Result<Descriptor> {
        let docker = images.iter().all(|(_, image)| image.media_type == DOCKER_MANIFEST);
        let media_type = if docker { DOCKER_LIST } else { OCI_INDEX };
        let index = Index {
            schema_version: 2,
            media_type,
            manifests: images
                .iter()
                .map(|(platform, image)| IndexEntry {
                    media_type: &image.media_type,
                    digest: &image.digest,
                    size: image.size,
                    platform: PlatformField { architecture: platform.arch(), os: "linux" },
                })
                .collect(),
        };
        let body = serde_json::to_vec(&index)?;
        let url = format!("{}/{repository}/manifests/{tag}", self.base());
        let answer = self
            .http
            .put(&url)
            .header(CONTENT_TYPE, media_type)
            .body(body.clone())
            .send()
            .await
            .with_context(|| format!("PUT {url}"))?;
        if !answer.status().is_success() {
            let status = answer.status();
            let text = answer.text().await.unwrap_or_default();
            bail!("PUT {url} answered {status}: {}", text.trim());
        }
        Ok(Descriptor {
            media_type: media_type.to_string(),
            digest: format!("sha256:{}", super::inputs::sha256_hex(&body)),
            size: body.len() as u64,
        })
    }
}

/// `127.0.0.1:5000/videosearcher/cut-clips` → (`127.0.0.1:5000`, `videosearcher/cut-clips`).
pub fn split_repository(name: &str) -> (&str, &str) {
    name.split_once('/').unwrap_or(("", name))
}
