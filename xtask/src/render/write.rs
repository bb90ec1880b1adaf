//! A render into its folder: every file or none. The files go to a staging
//! folder next to the output folder, which then takes the output's place by
//! rename; an earlier render there is removed file by file, from the list it
//! left (`.xtask-render`). A folder holding anything else is never touched:
//! render refuses it.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context as _};

use super::Rendered;

/// The list of files a render wrote, inside its folder. No `.yaml`/`.json`
/// extension: `kubectl apply -R -f` skips it.
pub const MARKER: &str = ".xtask-render";

/// What a write did.
#[derive(Debug)]
pub struct Written {
    /// Files written (the marker not counted).
    pub files: usize,
    /// Files of the earlier render there that this one no longer has.
    pub stale: Vec<PathBuf>,
}

/// What the output folder holds before the write.
enum Before {
    Absent,
    Empty,
    /// An earlier render's folder, with its files (relative).
    Render(Vec<PathBuf>),
}

/// Write `rendered` as the whole content of `out`.
pub fn write(out: &Path, rendered: &Rendered) -> anyhow::Result<Written> {
    let Some(name) = out.file_name().map(|name| name.to_string_lossy().into_owned()) else {
        bail!("`--out {}` names no folder\nhelp: name the folder to write, like `--out manifests`", out.display());
    };
    let paths: Vec<PathBuf> = rendered.manifests.iter().map(|manifest| manifest.path()).collect();
    for path in &paths {
        assert!(
            path.components().all(|part| matches!(part, Component::Normal(_))),
            "manifest path {} stays inside the folder",
            path.display()
        );
    }
    let before = before(out)?;
    let parent = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).with_context(|| format!("create {}", parent.display()))?;
    let staging = parent.join(format!(".{name}.render-{}", std::process::id()));
    std::fs::create_dir(&staging).with_context(|| {
        format!("create the staging folder {} (left by an earlier render that stopped? remove it)", staging.display())
    })?;
    if let Err(err) = fill(&staging, rendered, &paths) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(err);
    }

    let stale = match &before {
        Before::Render(files) => files.iter().filter(|file| !paths.contains(file)).cloned().collect(),
        Before::Absent | Before::Empty => Vec::new(),
    };
    match before {
        Before::Absent => rename(&staging, out)?,
        Before::Empty => {
            std::fs::remove_dir(out).with_context(|| format!("replace the empty folder {}", out.display()))?;
            rename(&staging, out)?;
        }
        Before::Render(files) => {
            let old = parent.join(format!(".{name}.old-{}", std::process::id()));
            std::fs::rename(out, &old).with_context(|| format!("move the earlier render {} aside", out.display()))?;
            if let Err(err) = rename(&staging, out) {
                let _ = std::fs::rename(&old, out);
                let _ = std::fs::remove_dir_all(&staging);
                return Err(err);
            }
            remove_render(&old, &files).with_context(|| {
                format!("the new render is in {}; the earlier one, moved to {}, is not removed", out.display(), old.display())
            })?;
        }
    }
    Ok(Written { files: paths.len(), stale })
}

fn rename(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::rename(from, to).with_context(|| format!("rename {} to {}", from.display(), to.display()))
}

/// Every manifest and the marker, in `dir`.
fn fill(dir: &Path, rendered: &Rendered, paths: &[PathBuf]) -> anyhow::Result<()> {
    let mut list = String::from("# Written by `cargo xtask render`, which replaces these files on its next run.\n");
    for (manifest, path) in rendered.manifests.iter().zip(paths) {
        let file = dir.join(path);
        if let Some(folder) = file.parent() {
            std::fs::create_dir_all(folder).with_context(|| format!("create {}", folder.display()))?;
        }
        std::fs::write(&file, &manifest.text).with_context(|| format!("write {}", file.display()))?;
        list.push_str(&format!("{}\n", path.display()));
    }
    std::fs::write(dir.join(MARKER), list).with_context(|| format!("write {}", dir.join(MARKER).display()))
}

/// What `out` holds: refuses a file, and a folder with anything that an
/// earlier render did not write.
fn before(out: &Path) -> anyhow::Result<Before> {
    let meta = match std::fs::symlink_metadata(out) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Before::Absent),
        Err(err) => return Err(err).with_context(|| format!("inspect {}", out.display())),
    };
    if !meta.is_dir() {
        bail!(
            "{} is not a folder: render writes a folder of manifests\nhelp: choose a new or empty folder for `--out`",
            out.display()
        );
    }
    let found = files_under(out, Path::new(""))?;
    if found.is_empty() && is_empty(out)? {
        return Ok(Before::Empty);
    }
    let marker = out.join(MARKER);
    let Ok(list) = std::fs::read_to_string(&marker) else {
        bail!(
            "{} is not empty and no render wrote it (it has no {MARKER}): render replaces the whole folder\nhelp: choose a new or empty folder for `--out`",
            out.display()
        );
    };
    let listed: Vec<PathBuf> =
        list.lines().filter(|line| !line.is_empty() && !line.starts_with('#')).map(PathBuf::from).collect();
    if let Some(foreign) = found.iter().find(|file| file.as_os_str() != MARKER && !listed.contains(file)) {
        bail!(
            "{} holds {}, which the earlier render there did not write: render replaces the whole folder\nhelp: move that file out, or choose another folder for `--out`",
            out.display(),
            foreign.display()
        );
    }
    Ok(Before::Render(listed.into_iter().filter(|file| found.contains(file)).collect()))
}

/// Every file (anything not a folder) under `dir`, relative to the folder walked from.
fn files_under(dir: &Path, relative: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir.join(relative)).with_context(|| format!("list {}", dir.join(relative).display()))?;
    for entry in entries {
        let entry = entry?;
        let path = relative.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            files.extend(files_under(dir, &path)?);
        } else {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Whether `dir` holds nothing at all.
fn is_empty(dir: &Path) -> anyhow::Result<bool> {
    Ok(std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))?.next().is_none())
}

/// Remove an earlier render moved to `dir`: its listed files, its marker,
/// then its folders, each only once empty (anything else makes this fail
/// rather than go).
fn remove_render(dir: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    for file in files.iter().map(PathBuf::as_path).chain([Path::new(MARKER)]) {
        match std::fs::remove_file(dir.join(file)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(err).with_context(|| format!("remove {}", dir.join(file).display()));
            }
            _ => {}
        }
    }
    let mut folders: Vec<PathBuf> =
        files.iter().flat_map(|file| file.ancestors().skip(1)).filter(|folder| !folder.as_os_str().is_empty()).map(Path::to_path_buf).collect();
    folders.sort_by_key(|folder| (std::cmp::Reverse(folder.components().count()), folder.clone()));
    folders.dedup();
    for folder in folders.iter().map(|folder| dir.join(folder)).chain([dir.to_path_buf()]) {
        match std::fs::remove_dir(&folder) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(err).with_context(|| format!("remove {}", folder.display()));
            }
            _ => {}
        }
    }
    Ok(())
}
