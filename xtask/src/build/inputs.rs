//! Content addressing: every input that changes an image, by name with its
//! digest. The tag is the hash of them all; the record of the last build's
//! inputs says *why* an image is built again.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Hex characters of the hash used as a tag.
const TAG_LEN: usize = 24;

/// Named inputs (`source stages/cut-clips/src/main.rs`, `base`, ...) and the
/// SHA-256 of each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs(pub BTreeMap<String, String>);

impl Inputs {
    pub fn text(&mut self, name: impl Into<String>, text: &str) {
        self.0.insert(name.into(), sha256_hex(text.as_bytes()));
    }

    pub fn file(&mut self, name: impl Into<String>, path: &Path) -> anyhow::Result<()> {
        let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        self.0.insert(name.into(), sha256_hex(&bytes));
        Ok(())
    }

    pub fn digest(&mut self, name: impl Into<String>, digest: String) {
        self.0.insert(name.into(), digest);
    }

    /// The tag: the hash over every name and digest.
    pub fn tag(&self) -> String {
        let mut hasher = Sha256::new();
        for (name, digest) in &self.0 {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(digest.as_bytes());
            hasher.update([b'\n']);
        }
        hex::encode(hasher.finalize())[..TAG_LEN].to_string()
    }

    /// What differs from `before`, in words: `changed a, b; added c; removed d`.
    pub fn why(&self, before: Option<&Inputs>) -> String {
        let Some(before) = before else { return "new".to_string() };
        let mut changed = Vec::new();
        let mut added = Vec::new();
        for (name, digest) in &self.0 {
            match before.0.get(name) {
                None => added.push(name.as_str()),
                Some(old) if old != digest => changed.push(name.as_str()),
                Some(_) => {}
            }
        }
        let removed: Vec<&str> = before.0.keys().filter(|name| !self.0.contains_key(*name)).map(String::as_str).collect();
        let mut parts = Vec::new();
        for (word, names) in [("changed", changed), ("added", added), ("removed", removed)] {
            if !names.is_empty() {
                parts.push(format!("{word} {}", list(&names)));
            }
        }
        if parts.is_empty() {
            // Same inputs, yet the image is gone (removed from the engine or the registry).
            "the image is missing".to_string()
        } else {
            parts.join("; ")
        }
    }
}

/// `a, b, c and 4 more`.
fn list(names: &[&str]) -> String {
    const SHOWN: usize = 3;
    let mut text = names.iter().take(SHOWN).copied().collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

/// Files' digests, each file read once per build (the runtime crate's
/// sources are in every function's closure, on every platform).
#[derive(Default)]
pub struct Digests(std::collections::HashMap<std::path::PathBuf, String>);

impl Digests {
    pub fn of(&mut self, path: &Path) -> anyhow::Result<String> {
        if let Some(digest) = self.0.get(path) {
            return Ok(digest.clone());
        }
        let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        let digest = sha256_hex(&bytes);
        self.0.insert(path.to_path_buf(), digest.clone());
        Ok(digest)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The inputs of the images built last, by `function platform`, kept in the
/// build folder.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Record {
    pub images: BTreeMap<String, Inputs>,
}

impl Record {
    pub fn read(path: &Path) -> Record {
        std::fs::read(path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
    }

    /// Write through a temp file and a rename: a crash leaves the old record.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        write_atomically(path, &serde_json::to_vec_pretty(self)?)
    }
}

pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("a file path has a folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let temp = dir.join(format!(".{}.tmp", path.file_name().unwrap_or_default().to_string_lossy()));
    std::fs::write(&temp, bytes).with_context(|| format!("write {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(pairs: &[(&str, &str)]) -> Inputs {
        let mut inputs = Inputs::default();
        for (name, text) in pairs {
            inputs.text(*name, text);
        }
        inputs
    }

    #[test]
    fn tag_changes_with_any_input_and_not_with_order() {
        let a = inputs(&[("source a.rs", "fn a() {}"), ("base", "sha256:1")]);
        let b = inputs(&[("base", "sha256:1"), ("source a.rs", "fn a() {}")]);
        assert_eq!(a.tag(), b.tag());
        assert_eq!(a.tag().len(), TAG_LEN);
        let c = inputs(&[("source a.rs", "fn a() { }"), ("base", "sha256:1")]);
        assert_ne!(a.tag(), c.tag());
        // A name is part of the hash: the same bytes at another path differ.
        let d = inputs(&[("source b.rs", "fn a() {}"), ("base", "sha256:1")]);
        assert_ne!(a.tag(), d.tag());
    }

    #[test]
    fn why_names_what_changed() {
        let before = inputs(&[("source a.rs", "1"), ("source b.rs", "1"), ("base", "x")]);
        let after = inputs(&[("source a.rs", "2"), ("source c.rs", "1"), ("base", "x")]);
        assert_eq!(after.why(None), "new");
        assert_eq!(after.why(Some(&before)), "changed source a.rs; added source c.rs; removed source b.rs");
        assert_eq!(before.why(Some(&before)), "the image is missing");
        let many = inputs(&[("a", "2"), ("b", "2"), ("c", "2"), ("d", "2"), ("e", "2")]);
        let old = inputs(&[("a", "1"), ("b", "1"), ("c", "1"), ("d", "1"), ("e", "1")]);
        assert_eq!(many.why(Some(&old)), "changed a, b, c and 2 more");
    }
}
