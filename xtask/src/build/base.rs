//! The one base image, per platform, from `base-image/`: either its
//! Dockerfile (engines that can pull), or an offline bootstrap of the same
//! Debian packages: mmdebstrap makes a root filesystem (foreign
//! architectures run their maintainer scripts under qemu-user-static), and a
//! `FROM scratch` build adds it with the Dockerfile's config lines, so the
//! engine records the platform as it should (`docker import` would record
//! the host's).
//!
//! The root filesystem is cached outside the clone, keyed by the hash of
//! what makes it (packages, suite, architecture, the host's apt sources).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

use super::cargo::{host_platform, tail, which};
use super::engine::{context, Context, ContextFile, Engine};
use super::inputs::Inputs;
use crate::pipeline::{BaseRecipe, Build, Platform};

/// Bumped when the bootstrap's own steps change what it makes.
const BOOTSTRAP_VERSION: &str = "1";

/// The line in base-image/Dockerfile after which every instruction is image
/// config, shared with the bootstrap.
pub const CONFIG_MARKER: &str = "# --- image config, shared with the offline bootstrap ---";

/// The user functions run as (uid and gid), created in the root filesystem.
const APP_USER: &str = "app:x:10001:10001::/nonexistent:/usr/sbin/nologin";
const APP_GROUP: &str = "app:x:10001:";

/// The base recipe, read once.
pub struct Recipe {
    pub kind: BaseRecipe,
    pub dir: PathBuf,
    pub dockerfile: String,
    pub packages: Vec<String>,
    pub suite: String,
    /// The instructions after the marker line.
    pub config: String,
}

impl Recipe {
    pub fn read(build: &Build) -> anyhow::Result<Recipe> {
        let dir = build.base.clone();
        let dockerfile_path = dir.join("Dockerfile");
        let dockerfile = std::fs::read_to_string(&dockerfile_path).with_context(|| format!("read {}", dockerfile_path.display()))?;
        let packages_path = dir.join("packages");
        let packages_text = std::fs::read_to_string(&packages_path).with_context(|| format!("read {}", packages_path.display()))?;
        let packages: Vec<String> = packages_text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_string)
            .collect();
        if packages.is_empty() {
            bail!("{} lists no package\nhelp: list the Debian packages of the base image, one a line", packages_path.display());
        }
        let suite = dockerfile
            .lines()
            .find_map(|line| line.trim().strip_prefix("ARG SUITE="))
            .map(|suite| suite.trim().to_string());
        let suite = match suite {
            Some(suite) => suite,
            None if build.base_recipe == BaseRecipe::Dockerfile => String::new(),
            None => bail!(
                "{} has no `ARG SUITE=<debian suite>` line\nhelp: the bootstrap takes the Debian suite from it; add `ARG SUITE=bookworm` before `FROM`",
                dockerfile_path.display()
            ),
        };
        let config = match dockerfile.split_once(CONFIG_MARKER) {
            Some((_, config)) => config.trim().to_string(),
            None if build.base_recipe == BaseRecipe::Dockerfile => String::new(),
            None => bail!(
                "{} has no line `{CONFIG_MARKER}`\nhelp: the bootstrap adds the instructions after that line to its image; put the ENV, USER, EXPOSE lines after it",
                dockerfile_path.display()
            ),
        };
        if build.base_recipe == BaseRecipe::Bootstrap {
            for (index, line) in config.lines().enumerate() {
                let word = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                if ["RUN", "FROM", "COPY", "ADD"].contains(&word.as_str()) {
                    bail!(
                        "{}: `{word}` after the config marker cannot run in the offline bootstrap (line {} below the marker)\nhelp: move it above `{CONFIG_MARKER}`, or list a package in `packages` instead",
                        dockerfile_path.display(),
                        index + 1
                    );
                }
            }
        }
        Ok(Recipe { kind: build.base_recipe, dir, dockerfile, packages, suite, config })
    }

    /// What the base image for `platform` is made from.
    pub fn inputs(&self, platform: Platform) -> anyhow::Result<Inputs> {
        let mut inputs = Inputs::default();
        inputs.text("platform", platform.name());
        inputs.text("base-image/Dockerfile", &self.dockerfile);
        inputs.text("base-image/packages", &self.packages.join("\n"));
        match self.kind {
            BaseRecipe::Bootstrap => {
                inputs.text("recipe", &format!("bootstrap {BOOTSTRAP_VERSION}"));
                inputs.text("apt sources", &apt_sources()?.1);
            }
            BaseRecipe::Dockerfile => {
                inputs.text("recipe", "dockerfile");
                // Every other file of the folder is in the build context.
                for entry in std::fs::read_dir(&self.dir)? {
                    let path = entry?.path();
                    let name = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
                    if path.is_file() && name != "Dockerfile" && name != "packages" {
                        inputs.file(format!("base-image/{name}"), &path)?;
                    }
                }
            }
        }
        Ok(inputs)
    }

    /// What must be on this machine to build the base for `platform`.
    pub fn check_prerequisites(&self, platform: Platform) -> anyhow::Result<()> {
        if self.kind != BaseRecipe::Bootstrap {
            return Ok(());
        }
        if which("mmdebstrap").is_none() {
            bail!("`mmdebstrap` is not on PATH: the offline base bootstrap needs it\nhelp: run `apt-get install mmdebstrap`, or set `build.base_recipe: dockerfile` on an engine that can pull");
        }
        if host_platform() != Some(platform) {
            let handler = Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64");
            let enabled = std::fs::read_to_string(handler).is_ok_and(|text| text.starts_with("enabled"));
            if platform == Platform::Arm64 && !enabled {
                bail!(
                    "no qemu handler for aarch64 programs in binfmt_misc: the {platform} base runs its packages' scripts under emulation\n\
help: run `apt-get install qemu-user-static binfmt-support`, then `mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc` \
(if it is not mounted) and `update-binfmts --enable qemu-aarch64`; or build only `--platform linux/amd64`"
                );
            }
        }
        Ok(())
    }

    /// Build the base image for `platform` and tag it `tag`.
    pub async fn build(&self, engine: &Engine, platform: Platform, tag: &str, cache: &Path, logs: &Path) -> anyhow::Result<()> {
        let log_path = logs.join(format!("base-{}.log", platform.arch()));
        let mut log = std::fs::File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        let labels = std::collections::HashMap::from([("org.opencontainers.image.title".to_string(), "videosearcher base".to_string())]);
        let (context_tar, temp) = match self.kind {
            BaseRecipe::Dockerfile => {
                let mut files: Vec<(String, PathBuf)> = Vec::new();
                for entry in std::fs::read_dir(&self.dir)? {
                    let path = entry?.path();
                    if path.is_file() {
                        files.push((path.file_name().unwrap_or_default().to_string_lossy().into_owned(), path));
                    }
                }
                files.sort();
                let entries: Vec<(&str, ContextFile<'_>)> = files.iter().map(|(name, path)| (name.as_str(), ContextFile::Path(path))).collect();
                (Context::Bytes(context(Vec::new(), &entries)?), None)
            }
            BaseRecipe::Bootstrap => {
                let rootfs = self.rootfs(platform, cache, &log_path).await?;
                let dockerfile = format!("FROM scratch\nADD rootfs.tar /\n{}\n", self.config);
                let temp = cache.join(format!(".context-{}-{}.tar", platform.arch(), std::process::id()));
                let file = std::fs::File::create(&temp).with_context(|| format!("create {}", temp.display()))?;
                context(
                    std::io::BufWriter::new(file),
                    &[("Dockerfile", ContextFile::Bytes(dockerfile.as_bytes())), ("rootfs.tar", ContextFile::Path(&rootfs))],
                )?
                .into_inner()
                .map_err(|err| err.into_error())?
                .sync_all()?;
                (Context::File(temp.clone()), Some(temp))
            }
        };
        let outcome = engine.build(context_tar, tag, platform, &labels, &mut log).await;
        if let Some(temp) = temp {
            let _ = std::fs::remove_file(temp);
        }
        let outcome = outcome?;
        if let Some(error) = outcome.error {
            bail!(
                "building the base image for {platform} failed: {error}\n{}\nhelp: the whole log is {}; the recipe is {}",
                tail(&outcome.log, 15),
                log_path.display(),
                self.dir.join("Dockerfile").display()
            );
        }
        Ok(())
    }

    /// The root filesystem tar for `platform`, from the cache or made now.
    async fn rootfs(&self, platform: Platform, cache: &Path, log_path: &Path) -> anyhow::Result<PathBuf> {
        let (sources, sources_text) = apt_sources()?;
        let mut key = Inputs::default();
        key.text("packages", &self.packages.join("\n"));
        key.text("suite", &self.suite);
        key.text("arch", platform.arch());
        key.text("apt sources", &sources_text);
        key.text("bootstrap", BOOTSTRAP_VERSION);
        let dir = cache.join("rootfs").join(key.tag());
        let rootfs = dir.join("rootfs.tar");
        if rootfs.is_file() {
            return Ok(rootfs);
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let partial = dir.join(format!(".rootfs-{}.tar", std::process::id()));
        let log = std::fs::OpenOptions::new().append(true).open(log_path)?;
        let mut command = Command::new("mmdebstrap");
        command
            .arg("--variant=essential")
            .arg(format!("--architectures={}", platform.arch()))
            .arg(format!("--include={}", self.packages.join(",")))
            // Snapshot mirrors serve Release files past their Valid-Until.
            .arg("--aptopt=Acquire::Check-Valid-Until \"false\"")
            .arg("--dpkgopt=path-exclude=/usr/share/doc/*")
            .arg("--dpkgopt=path-exclude=/usr/share/man/*")
            .arg("--dpkgopt=path-exclude=/usr/share/locale/*")
            .arg(format!(
                "--customize-hook=echo '{APP_USER}' >> \"$1/etc/passwd\"; echo '{APP_GROUP}' >> \"$1/etc/group\"; mkdir -p \"$1/var/openfaas/secrets\""
            ))
            .arg(&self.suite)
            .arg(&partial)
            .args(&sources)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let status = tokio::task::spawn_blocking(move || command.status()).await?.context("run mmdebstrap")?;
        if !status.success() {
            let _ = std::fs::remove_file(&partial);
            let text = std::fs::read_to_string(log_path).unwrap_or_default();
            bail!(
                "mmdebstrap failed for the {platform} base ({status})\n{}\nhelp: the whole log is {}",
                tail(&text, 15),
                log_path.display()
            );
        }
        std::fs::rename(&partial, &rootfs)?;
        Ok(rootfs)
    }
}

/// The host's apt source files (mmdebstrap reads them as mirrors, so the base
/// comes from wherever this machine gets its packages), and their text.
fn apt_sources() -> anyhow::Result<(Vec<PathBuf>, String)> {
    let mut files = Vec::new();
    let list = PathBuf::from("/etc/apt/sources.list");
    if std::fs::metadata(&list).is_ok_and(|meta| meta.len() > 0) {
        files.push(list);
    }
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut found: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "list" || ext == "sources"))
            .collect();
        found.sort();
        files.extend(found);
    }
    if files.is_empty() {
        bail!("this machine has no apt sources (/etc/apt/sources.list, /etc/apt/sources.list.d/): the bootstrap installs the base's packages from them\nhelp: configure apt, or set `build.base_recipe: dockerfile`");
    }
    let mut text = String::new();
    for file in &files {
        text.push_str(&std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?);
    }
    Ok((files, text))
}
