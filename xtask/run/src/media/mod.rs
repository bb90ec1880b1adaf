//! Deterministic test media: a ~40 s video of spoken sentences over a moving test pattern,
//! with a face picture shown part of the time, plus video-only and audio-only copies.
//!
//! [`synthesize`] writes them with espeak-ng and ffmpeg into a folder and records them in
//! `media.json`; a later call that finds the files intact returns that record instead.

mod speech;
mod video;

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Env var naming a face photo to show in the video, instead of [`DEBIAN_FACE_PICTURE`].
pub const FACE_PICTURE_ENV: &str = "VS_FACE_PICTURE";
/// NASA's public-domain portrait of Eileen Collins, shipped by Debian's `python3-imageio`.
pub const DEBIAN_FACE_PICTURE: &str = "/usr/lib/python3/dist-packages/imageio/resources/images/astronaut.png";

/// Bump when the way the files are made changes in a way the recipe does not capture.
const RECIPE_VERSION: u32 = 1;
const MANIFEST: &str = "media.json";
const VIDEO: &str = "video.mp4";
const SILENT_VIDEO: &str = "silent.mp4";
const AUDIO_ONLY: &str = "speech.m4a";
const FILES: [&str; 3] = [VIDEO, SILENT_VIDEO, AUDIO_ONLY];

/// The synthesized files and what they contain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaSet {
    /// H.264 + AAC mp4, 640x360 at 25 fps, a keyframe every second.
    pub video: PathBuf,
    /// The spoken sentences, in order.
    pub sentences: Vec<String>,
    /// Where each sentence is spoken, in seconds (parallel to `sentences`).
    pub speech_spans: Vec<(f64, f64)>,
    /// `video`'s video stream alone.
    pub silent_video: PathBuf,
    /// `video`'s audio stream alone (AAC in m4a).
    pub audio_only: PathBuf,
    /// The photo shown in the video, if one was found.
    pub face_picture: Option<PathBuf>,
    /// When the photo is on screen, in seconds.
    pub face_spans: Vec<(f64, f64)>,
    /// Length of every file, in seconds (a whole number).
    pub duration_s: f64,
}

/// `media.json`: the media set, the recipe it was made from and each file's SHA-256.
#[derive(Serialize, Deserialize)]
struct Manifest {
    #[serde(flatten)]
    media: MediaSet,
    recipe: String,
    sha256: BTreeMap<String, String>,
}

/// Makes the test media in `out_dir`, or returns the ones already there when
/// `out_dir/media.json` matches the recipe and every file's hash.
///
/// The face picture is `$VS_FACE_PICTURE`, else [`DEBIAN_FACE_PICTURE`] when installed, else none.
pub fn synthesize(out_dir: &Path) -> Result<MediaSet> {
    synthesize_with(out_dir, face_picture(std::env::var_os(FACE_PICTURE_ENV))?.as_deref())
}

fn synthesize_with(out_dir: &Path, face: Option<&Path>) -> Result<MediaSet> {
    fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let out_dir = out_dir.canonicalize().with_context(|| format!("cannot resolve {}", out_dir.display()))?;
    let recipe = recipe(face)?;
    if let Some(media) = existing(&out_dir, &recipe) {
        return Ok(media);
    }
    generate(&out_dir, face, recipe).with_context(|| format!("cannot synthesize test media in {}", out_dir.display()))
}

/// Writes every file in a temporary folder inside `out_dir`, then moves them in, the
/// manifest last: an interrupted run leaves no manifest and is redone.
fn generate(out_dir: &Path, face: Option<&Path>, recipe: String) -> Result<MediaSet> {
    let work = tempfile::Builder::new().prefix(".media-").tempdir_in(out_dir)?;
    let work = work.path();

    let speech = speech::synthesize(work)?;
    let track = work.join("speech.s16le");
    fs::write(&track, speech.to_le_bytes())?;
    let duration_s = speech.duration_s();
    let face_spans = if face.is_some() { face_spans(&speech.group_spans, duration_s) } else { Vec::new() };
    video::encode(&track, duration_s, face.map(|p| (p, face_spans.as_slice())), &work.join(VIDEO))?;
    video::copy_streams(&work.join(VIDEO), "v", &work.join(SILENT_VIDEO))?;
    video::copy_streams(&work.join(VIDEO), "a", &work.join(AUDIO_ONLY))?;

    let mut sha256 = BTreeMap::new();
    for name in FILES {
        sha256.insert(name.to_string(), file_sha256(&work.join(name))?);
    }
    let media = MediaSet {
        video: out_dir.join(VIDEO),
        sentences: speech::GROUPS.iter().flatten().map(|s| s.to_string()).collect(),
        speech_spans: speech.sentence_spans,
        silent_video: out_dir.join(SILENT_VIDEO),
        audio_only: out_dir.join(AUDIO_ONLY),
        face_picture: face.map(Path::to_path_buf),
        face_spans,
        duration_s,
    };
    let manifest = Manifest { media, recipe, sha256 };
    fs::write(work.join(MANIFEST), serde_json::to_string_pretty(&manifest)? + "\n")?;

    match fs::remove_file(out_dir.join(MANIFEST)) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    for name in FILES.into_iter().chain([MANIFEST]) {
        fs::rename(work.join(name), out_dir.join(name)).with_context(|| format!("cannot move {name} into place"))?;
    }
    Ok(manifest.media)
}

/// The recorded media set, if its recipe is `recipe` and every file is intact in `out_dir`.
fn existing(out_dir: &Path, recipe: &str) -> Option<MediaSet> {
    let text = fs::read_to_string(out_dir.join(MANIFEST)).ok()?;
    let manifest: Manifest = serde_json::from_str(&text).ok()?;
    let media = &manifest.media;
    let files = [(&media.video, VIDEO), (&media.silent_video, SILENT_VIDEO), (&media.audio_only, AUDIO_ONLY)];
    let intact = files.iter().all(|&(path, name)| {
        *path == out_dir.join(name)
            && manifest.sha256.get(name).is_some_and(|hash| file_sha256(path).is_ok_and(|h| &h == hash))
    });
    (manifest.recipe == recipe && intact).then_some(manifest.media)
}

/// Everything the files depend on, hashed: a change to any of it remakes them.
fn recipe(face: Option<&Path>) -> Result<String> {
    let face_sha256 = face.map(file_sha256).transpose()?;
    let inputs = serde_json::json!({
        "version": RECIPE_VERSION,
        "voice": [speech::VOICE, &speech::SPEED_WPM.to_string()],
        "groups": speech::GROUPS,
        "layout": [speech::LEAD_IN_S, speech::SENTENCE_GAP_S, speech::GROUP_GAP_S, speech::TAIL_S],
        "video": [video::SIZE, &video::FPS.to_string(), &video::FACE_HEIGHT.to_string()],
        "face": [face, face_sha256],
    });
    Ok(hex::encode(Sha256::digest(inputs.to_string())))
}

/// The face is on screen around every second group, from the end of the group before to
/// the start of the group after, so the whole clip of that group shows it.
fn face_spans(group_spans: &[(f64, f64)], duration_s: f64) -> Vec<(f64, f64)> {
    (1..group_spans.len())
        .step_by(2)
        .map(|g| (group_spans[g - 1].1, group_spans.get(g + 1).map_or(duration_s, |next| next.0)))
        .collect()
}

/// The face picture given `$VS_FACE_PICTURE`'s value.
fn face_picture(env: Option<std::ffi::OsString>) -> Result<Option<PathBuf>> {
    match env.filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            ensure!(path.is_file(), "{FACE_PICTURE_ENV}={} is not a file", path.display());
            Ok(Some(path))
        }
        None => Ok(Some(PathBuf::from(DEBIAN_FACE_PICTURE)).filter(|p| p.is_file())),
    }
}

fn file_sha256(path: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut file = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Runs a tool and returns its stdout; `package` is the Debian package that provides it.
fn run(cmd: &mut Command, package: &str) -> Result<Vec<u8>> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let output = cmd.stdin(Stdio::null()).output().map_err(|e| match e.kind() {
        ErrorKind::NotFound => anyhow::anyhow!("`{program}` not found: install it with `apt-get install {package}`"),
        _ => anyhow::Error::new(e).context(format!("cannot run {program}")),
    })?;
    if !output.status.success() {
        bail!("{program} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(output.stdout)
}

#[cfg(test)]
mod tests;
