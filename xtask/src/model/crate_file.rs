//! A `.crate` from cargo's registry, downloaded by cargo itself, and its members.
//!
//! `cargo info NAME@VERSION` reads the crate's manifest out of the `.crate`, which it leaves in
//! cargo's download cache (`$CARGO_HOME/registry/cache/<registry>/NAME-VERSION.crate`) without
//! resolving dependencies or building anything; cargo's own registry settings (source
//! replacement, mirrors) apply. A copy already in that cache with the pinned SHA-256 is used
//! as it is.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The `.crate` of `name` `version` in cargo's cache with SHA-256 `sha256`; cargo downloads it
/// (working in `scratch`) when no such copy is there.
pub(super) fn download(name: &str, version: &str, sha256: &str, scratch: &Path) -> Result<PathBuf> {
    let file = format!("{name}-{version}.crate");
    let cache = cargo_home()?.join("registry").join("cache");
    if let Some(found) = find(&cache, &file, sha256)?.pinned {
        return Ok(found);
    }
    let spec = format!("{name}@{version}");
    let mut command = crate::cargo_command();
    command.args(["info", "--quiet", &spec]).current_dir(scratch);
    let output = match command.output() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "cargo not found (tried `{}`); it downloads `{file}`\nhelp: install Rust with rustup, or run this through `cargo xtask`",
            command.get_program().to_string_lossy()
        ),
        other => other.with_context(|| format!("cannot run `cargo info {spec}`"))?,
    };
    if !output.status.success() {
        bail!(
            "`cargo info {spec}` failed ({}); is cargo's registry reachable?\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    let found = find(&cache, &file, sha256)?;
    match (found.pinned, found.other) {
        (Some(pinned), _) => Ok(pinned),
        (None, Some((path, actual))) => Err(super::sha256_mismatch(&path.display().to_string(), sha256, &actual)),
        (None, None) => bail!(
            "`cargo info {spec}` finished but left no {file} in {}/*/\nhelp: fetch it with `cargo fetch` from a manifest that depends on `{name} = \"={version}\"`, then run this again",
            cache.display()
        ),
    }
}

/// Copies of `file` in cargo's cache (one folder per registry): one with the pinned hash, or
/// else another one and its hash.
struct Found {
    pinned: Option<PathBuf>,
    other: Option<(PathBuf, String)>,
}

fn find(cache: &Path, file: &str, sha256: &str) -> Result<Found> {
    let mut found = Found { pinned: None, other: None };
    let registries = match fs::read_dir(cache) {
        Ok(registries) => registries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e).with_context(|| format!("cannot list cargo's download cache {}", cache.display())),
    };
    for registry in registries {
        let path = registry.with_context(|| format!("cannot list {}", cache.display()))?.path().join(file);
        if !path.is_file() {
            continue;
        }
        let actual = super::sha256_file(&path)?;
        if actual == sha256 {
            found.pinned = Some(path);
            break;
        }
        found.other = Some((path, actual));
    }
    Ok(found)
}

/// `$CARGO_HOME`, or `~/.cargo` as cargo defaults it.
fn cargo_home() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME").filter(|home| !home.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    match std::env::var_os("HOME").filter(|home| !home.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cargo")),
        None => bail!("neither CARGO_HOME nor HOME is set, so cargo's download cache cannot be found\nhelp: set CARGO_HOME to cargo's folder"),
    }
}

/// Reads the member at `path` (e.g. `NAME-VERSION/file`) of a `.crate` (a gzipped tar).
pub(super) fn member(crate_file: &Path, path: &str) -> Result<Vec<u8>> {
    let what = crate_file.display();
    let file = fs::File::open(crate_file).with_context(|| format!("cannot open {what}"))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut seen = Vec::new();
    for entry in archive.entries().with_context(|| format!("{what} is not a gzipped tar"))? {
        let mut entry = entry.with_context(|| format!("cannot read {what} (not a gzipped tar?)"))?;
        let name = entry.path().with_context(|| format!("an entry of {what} has no usable name"))?.to_string_lossy().into_owned();
        if name == path {
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes).with_context(|| format!("cannot extract `{path}` from {what}"))?;
            return Ok(bytes);
        }
        seen.push(name);
    }
    bail!(
        "{what} has no `{path}` (it holds: {})\nhelp: the package is not the pinned one; remove it and fetch again",
        seen.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crate_with(entries: &[(&str, &[u8])]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x-1.0.0.crate");
        let gz = flate2::write::GzEncoder::new(fs::File::create(&path).unwrap(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (name, bytes) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, *bytes).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        (dir, path)
    }

    #[test]
    fn member_is_read_from_the_gzipped_tar() {
        let (_dir, path) = crate_with(&[("x-1.0.0/Cargo.toml", b"[package]"), ("x-1.0.0/m.zip", b"zip bytes")]);
        assert_eq!(member(&path, "x-1.0.0/m.zip").unwrap(), b"zip bytes");
    }

    #[test]
    fn missing_member_names_the_file_and_what_it_holds() {
        let (_dir, path) = crate_with(&[("x-1.0.0/Cargo.toml", b"[package]")]);
        let err = member(&path, "x-1.0.0/m.zip").unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{} has no `x-1.0.0/m.zip` (it holds: x-1.0.0/Cargo.toml)\nhelp: the package is not the pinned one; remove it and fetch again",
                path.display()
            )
        );
    }

    #[test]
    fn copies_in_the_cache_are_told_apart_by_hash() {
        let cache = tempfile::tempdir().unwrap();
        for (registry, bytes) in [("a", &b"tampered"[..]), ("b", &b"pinned"[..])] {
            fs::create_dir_all(cache.path().join(registry)).unwrap();
            fs::write(cache.path().join(registry).join("x-1.0.0.crate"), bytes).unwrap();
        }
        let pinned = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"pinned"));
        let found = find(cache.path(), "x-1.0.0.crate", &pinned).unwrap();
        assert_eq!(found.pinned, Some(cache.path().join("b/x-1.0.0.crate")));
        let found = find(cache.path(), "x-1.0.0.crate", "0000").unwrap();
        assert!(found.pinned.is_none());
        assert!(found.other.is_some());
    }
}
