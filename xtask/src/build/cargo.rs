//! The Rust side of an image: which packages a function's binary is made of
//! (from `cargo metadata`, not folder names), and the binaries themselves,
//! cross-compiled per platform so that no image needs a RUN step or emulation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};
use cargo_metadata::{DependencyKind, Metadata, MetadataCommand, PackageId, TargetKind};

use crate::pipeline::Platform;

/// The workspace as cargo sees it.
pub struct Workspace {
    metadata: Metadata,
}

/// What a function's binary is built from.
pub struct Closure {
    /// Files of the workspace packages it is built from: manifests and the
    /// folders of their library, binary and build-script sources.
    pub files: BTreeSet<PathBuf>,
    /// The other packages (`name version source`), as Cargo.lock pins them.
    pub locked: BTreeSet<String>,
}

impl Workspace {
    pub fn load(manifest_dir: &Path) -> anyhow::Result<Workspace> {
        let metadata = MetadataCommand::new()
            .current_dir(manifest_dir)
            .exec()
            .context("run `cargo metadata` on the workspace")?;
        Ok(Workspace { metadata })
    }

    pub fn root(&self) -> &Path {
        self.metadata.workspace_root.as_std_path()
    }

    /// The workspace package whose folder is `source`.
    pub fn package_at(&self, source: &Path) -> Option<&cargo_metadata::Package> {
        self.metadata.workspace_packages().into_iter().find(|package| {
            package.manifest_path.parent().is_some_and(|dir| dir.as_std_path() == source)
        })
    }

    /// The name of the binary target of package `name`.
    pub fn binary_of(&self, package: &cargo_metadata::Package) -> Option<String> {
        package.targets.iter().find(|target| target.is_kind(TargetKind::Bin)).map(|target| target.name.clone())
    }

    /// Everything package `root` is built from: the packages reachable through
    /// normal and build dependencies (not dev-dependencies), on any platform.
    pub fn closure(&self, root: &PackageId) -> anyhow::Result<Closure> {
        let resolve = self.metadata.resolve.as_ref().context("cargo metadata gave no dependency graph")?;
        let nodes: BTreeMap<&PackageId, &cargo_metadata::Node> = resolve.nodes.iter().map(|node| (&node.id, node)).collect();
        let mut seen = BTreeSet::new();
        let mut todo = vec![root];
        while let Some(id) = todo.pop() {
            if !seen.insert(id) {
                continue;
            }
            let node = nodes.get(id).with_context(|| format!("`{id}` is not in the dependency graph"))?;
            for dep in &node.deps {
                let used = dep.dep_kinds.iter().any(|kind| kind.kind != DependencyKind::Development);
                if used {
                    todo.push(&dep.pkg);
                }
            }
        }
        let members: BTreeSet<&PackageId> = self.metadata.workspace_members.iter().collect();
        let mut closure = Closure { files: BTreeSet::new(), locked: BTreeSet::new() };
        for id in seen {
            let package = &self.metadata[id];
            if members.contains(id) {
                closure.files.insert(package.manifest_path.clone().into_std_path_buf());
                for target in &package.targets {
                    let built = target.is_kind(TargetKind::Lib)
                        || target.is_kind(TargetKind::Bin)
                        || target.is_kind(TargetKind::CustomBuild)
                        || target.is_kind(TargetKind::ProcMacro);
                    if !built {
                        continue;
                    }
                    let src = target.src_path.as_std_path();
                    let dir = src.parent().unwrap_or(src);
                    // A binary at the package root (`main.rs` beside Cargo.toml) is one file.
                    if dir == package.manifest_path.parent().map(|d| d.as_std_path()).unwrap_or(dir) {
                        closure.files.insert(src.to_path_buf());
                    } else {
                        files_under(dir, &mut closure.files)?;
                    }
                }
            } else {
                let source = package.source.as_ref().map_or_else(|| "path".to_string(), |s| s.repr.clone());
                closure.locked.insert(format!("{} {} {source}", package.name, package.version));
            }
        }
        Ok(closure)
    }
}

fn files_under(dir: &Path, files: &mut BTreeSet<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            files_under(&path, files)?;
        } else if kind.is_file() {
            files.insert(path);
        }
    }
    Ok(())
}

/// The compiler's identity (`rustc -vV`): a new toolchain rebuilds every binary.
pub fn toolchain() -> anyhow::Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc).arg("-vV").output().context("run `rustc -vV`")?;
    if !out.status.success() {
        bail!("`rustc -vV` failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The linker cargo uses for `platform`'s target, when it is not the host's.
pub fn cross_linker(platform: Platform) -> Option<(String, String)> {
    match platform {
        Platform::Amd64 => None,
        Platform::Arm64 => {
            let var = "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER".to_string();
            let linker = std::env::var(&var).unwrap_or_else(|_| "aarch64-linux-gnu-gcc".into());
            Some((var, linker))
        }
    }
}

/// The host's platform, whose binaries need no cross toolchain.
pub fn host_platform() -> Option<Platform> {
    match std::env::consts::ARCH {
        "x86_64" => Some(Platform::Amd64),
        "aarch64" => Some(Platform::Arm64),
        _ => None,
    }
}

/// Check that cargo can build for `platform`: the Rust target's standard
/// library is installed and, for a foreign target, its linker is on PATH.
pub fn check_target(platform: Platform) -> anyhow::Result<()> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc).args(["--print", "sysroot"]).output().context("run `rustc --print sysroot`")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let target = platform.rust_target();
    if !sysroot.join("lib/rustlib").join(target).join("lib").is_dir() {
        bail!(
            "the Rust target `{target}` (for {platform}) is not installed in {}\nhelp: run `rustup target add {target}`, or build only the other platforms with `--platform`",
            sysroot.display()
        );
    }
    if host_platform() == Some(platform) {
        return Ok(());
    }
    if let Some((var, linker)) = cross_linker(platform) {
        if which(&linker).is_none() {
            bail!(
                "the linker `{linker}` for `{target}` (for {platform}) is not found\nhelp: run `apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross`, or set {var} to a linker for that target"
            );
        }
    }
    Ok(())
}

pub fn which(program: &str) -> Option<PathBuf> {
    let path = Path::new(program);
    if path.components().count() > 1 {
        return path.is_file().then(|| path.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}

/// `cargo build` of `packages` for `platform` in `profile`; the binaries by
/// package name. cargo's output goes to `log`.
pub fn build(
    root: &Path,
    packages: &[String],
    platform: Platform,
    profile: &str,
    log: &Path,
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let target = platform.rust_target();
    let mut command = crate::cargo_command();
    command
        .current_dir(root)
        .args(["build", "--locked", "--message-format=json-render-diagnostics", "--profile", profile, "--target", target]);
    for package in packages {
        command.arg("-p").arg(package);
    }
    if let Some((var, linker)) = cross_linker(platform) {
        command.env(var, &linker);
        command.env(format!("CC_{}", target.replace('-', "_")), &linker);
    }
    let log_file = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    command.stdout(Stdio::piped()).stderr(log_file);
    let mut child = command.spawn().with_context(|| format!("run {}", command.get_program().to_string_lossy()))?;
    let mut binaries = BTreeMap::new();
    let stdout = child.stdout.take().expect("piped stdout");
    for message in cargo_metadata::Message::parse_stream(std::io::BufReader::new(stdout)) {
        if let cargo_metadata::Message::CompilerArtifact(artifact) = message.context("read cargo's output")? {
            if let Some(executable) = artifact.executable {
                binaries.insert(artifact.target.name.clone(), executable.into_std_path_buf());
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        bail!(
            "cargo build for {platform} failed ({status})\n{}\nhelp: the whole log is {}",
            tail(&text, 20),
            log.display()
        );
    }
    Ok(binaries)
}

/// The last `lines` lines of `text`, indented, for an error message.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].iter().map(|line| format!("  | {line}")).collect::<Vec<_>>().join("\n")
}
