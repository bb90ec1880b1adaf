//! The function binaries: built with cargo in xtask's own profile, or taken
//! prebuilt from `XTASK_BIN_DIR`.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context as _};
use serde::Deserialize;

use crate::pipeline::Pipeline;

/// Where prebuilt function binaries are; set, it skips the build.
pub const BIN_DIR_VAR: &str = "XTASK_BIN_DIR";

/// Each function's executable, by function name.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The folder they are in, handed to the background runtime.
    pub dir: PathBuf,
    pub by_function: BTreeMap<String, PathBuf>,
}

/// Build every function's crate (or find them in `XTASK_BIN_DIR`) and check
/// each binary exists.
pub fn function_binaries(pipeline: &Pipeline) -> anyhow::Result<Binaries> {
    let dir = match std::env::var_os(BIN_DIR_VAR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => build(pipeline)?,
    };
    let mut by_function = BTreeMap::new();
    for function in &pipeline.functions {
        // Several functions may run one crate's binary (with other `env:`).
        let crate_name = crate_name(&function.source);
        let binary = dir.join(&crate_name);
        if !binary.is_file() {
            bail!(
                "no binary `{crate_name}` for function `{}` at {}\nhelp: build it with `cargo build -p {crate_name}`, or unset {BIN_DIR_VAR}",
                function.name,
                binary.display(),
            );
        }
        by_function.insert(function.name.clone(), binary);
    }
    Ok(Binaries { dir, by_function })
}

/// The crate of a function: the last component of its `source`.
fn crate_name(source: &Path) -> String {
    source.file_name().map_or_else(String::new, |name| name.to_string_lossy().into_owned())
}

/// One line of `cargo build --message-format=json`, the fields used here.
#[derive(Deserialize)]
struct Message {
    reason: String,
    #[serde(default)]
    executable: Option<PathBuf>,
}

/// `cargo build -p <crate>...` in the profile xtask was built with; returns
/// the folder of the executables.
fn build(pipeline: &Pipeline) -> anyhow::Result<PathBuf> {
    let Some(first) = pipeline.functions.first() else { bail!("the pipeline declares no functions") };
    let mut command = xtask::cargo_command();
    command
        .arg("build")
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(first.source.join("Cargo.toml"));
    for function in &pipeline.functions {
        command.arg("-p").arg(crate_name(&function.source));
    }
    match own_profile()?.as_str() {
        "debug" => {}
        "release" => {
            command.arg("--release");
        }
        other => {
            command.arg("--profile").arg(other);
        }
    }
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = command.spawn().with_context(|| format!("run {}", command.get_program().to_string_lossy()))?;
    let mut executables = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line.context("read cargo's output")?;
        if let Ok(Message { reason, executable: Some(path) }) = serde_json::from_str(&line) {
            if reason == "compiler-artifact" {
                executables.push(path);
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("building the function binaries failed ({status})\nhelp: the compiler's messages are above");
    }
    match executables.first().and_then(|path| path.parent()) {
        Some(dir) => Ok(dir.to_path_buf()),
        None => bail!("cargo built no executable for the functions"),
    }
}

/// The profile folder xtask runs from (`debug`, `release`, ...).
fn own_profile() -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("find the xtask executable")?;
    let dir = exe.parent().and_then(|dir| dir.file_name()).context("xtask executable has no folder")?;
    Ok(dir.to_string_lossy().into_owned())
}
