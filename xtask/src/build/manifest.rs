//! The build manifest (`.xtask/build/images.json`): function → platform →
//! tag and digest, plus the index, for render and deploy to consume.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Images {
    pub base: Option<ImageSet>,
    pub functions: BTreeMap<String, ImageSet>,
}

/// One image name, on every platform built.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ImageSet {
    /// `127.0.0.1:5000/videosearcher/cut-clips`.
    pub repository: String,
    /// The multi-arch index, once pushed.
    pub index: Option<IndexImage>,
    /// By platform (`linux/amd64`).
    pub platforms: BTreeMap<String, PlatformImage>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformImage {
    /// The content hash.
    pub tag: String,
    /// The engine's image ID (the config digest).
    pub image_id: String,
    /// The registry's manifest digest, once pushed.
    pub digest: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexImage {
    pub tag: String,
    pub digest: String,
}

impl Images {
    pub fn read(path: &Path) -> Images {
        std::fs::read(path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        super::inputs::write_atomically(path, &serde_json::to_vec_pretty(self)?)
    }
}
