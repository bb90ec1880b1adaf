//! `cargo xtask build`: one image per function and platform, on one shared
//! base, tagged with the hash of everything that goes into it.
//!
//! Invariants:
//! - Every input that changes an image is in its [`Inputs`] (sources of the
//!   crates in its dependency closure, their Cargo.lock entries, toolchain,
//!   target, profile, assets, image recipe, base image ID); the tag is their hash.
//! - An image whose tag exists (in the engine; in the registry when pushing)
//!   is not built again; one that is built says why.
//! - The engine tags only builds that succeeded: no tag names a failed build.
//! - Function images have no RUN step: binaries are cross-compiled on the
//!   host, never under emulation.
//! - This module reads the pipeline model only; it writes `.xtask/build/`
//!   (logs, the inputs of the last build, the images manifest).

mod base;
mod cargo;
pub mod engine;
mod inputs;
pub mod manifest;
mod registry;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _};

use crate::flags;
use crate::pipeline::{Build, Function, Pipeline, Platform};
use engine::{ContextFile, Engine};
use inputs::{Inputs, Record};
pub use manifest::{ImageSet, Images};
use registry::Registry;

/// What happens to one image.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// Its tag exists where it is needed.
    UpToDate,
    /// Built, not pushed yet.
    Push,
    /// Built now, with the reason.
    Build(String),
}

/// One image to make: a function (or the base) on a platform.
struct Job {
    /// `cut-clips`, or `base`.
    name: String,
    platform: Platform,
    repository: String,
    tag: String,
    inputs: Inputs,
    action: Action,
    /// The crate's binary name, for function images.
    binary: Option<String>,
}

impl Job {
    fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }

    fn key(&self) -> String {
        format!("{} {}", self.name, self.platform)
    }
}

/// Times of a build's phases, for `bench` and the closing line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    pub plan: std::time::Duration,
    pub base: std::time::Duration,
    pub cargo: std::time::Duration,
    pub assemble: std::time::Duration,
    pub push: std::time::Duration,
    pub total: std::time::Duration,
}

/// How a build ended.
pub struct Outcome {
    pub built: usize,
    pub pushed: usize,
    pub up_to_date: usize,
    pub timings: Timings,
    pub images: Images,
    /// For each function image built (`function platform`): the bytes of its
    /// binary and assets, what its layers above the base should hold.
    pub payload: BTreeMap<String, u64>,
}

pub fn run(pipeline: &Pipeline, flags: &flags::Build) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(build(pipeline, flags))
}

/// The folder of the build's logs, record and manifest.
pub fn state_dir(pipeline: &Pipeline) -> PathBuf {
    pipeline.dir.join(".xtask/build")
}

/// The manifest of the last build: every image it made or found.
pub fn manifest_path(pipeline: &Pipeline) -> PathBuf {
    state_dir(pipeline).join("images.json")
}

/// Where the base root filesystems are cached, outside the clone.
fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VS_CACHE_DIR").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    home.join("videosearcher")
}

async fn build(pipeline: &Pipeline, flags: &flags::Build) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let Some(build) = pipeline.build.as_ref() else {
        return Err(pipeline.error_in_file(
            "the pipeline has no `build:` section",
            Some("add `build:` with `base`, `base_recipe`, `platforms`, `profile` and `parallel` (see the repository's pipeline.yaml)".into()),
        )
        .into());
    };
    let functions = select_functions(pipeline, &flags.functions)?;
    let platforms = select_platforms(build, &flags.platforms)?;
    let push = flags.push && !flags.no_push;
    let registry_prefix = flags.registry.clone().or_else(|| build.registry.clone());
    if push && registry_prefix.is_none() {
        return Err(pipeline
            .error_at("build", "`--push` needs a registry, and `build:` names none", Some("add `registry: host:port/path` to `build:`".into()))
            .into());
    }
    let prefix = registry_prefix.clone().unwrap_or_else(|| pipeline.name.clone());
    let registry = match (&registry_prefix, push) {
        (Some(prefix), true) => {
            let registry = Registry::new(registry::split_repository(prefix).0);
            registry.ping().await?;
            Some(registry)
        }
        _ => None,
    };

    // The toolchain for every platform, before anything slow starts.
    if !flags.dry_run {
        for &platform in &platforms {
            cargo::check_target(platform)?;
        }
    }

    let state = state_dir(pipeline);
    let logs = state.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
    let engine = Engine::connect().await?;
    let ui = Ui::new();

    // The base, per platform.
    let recipe = base::Recipe::read(build)?;
    let record_path = state.join("inputs.json");
    let record = Record::read(&record_path);
    let mut bases = Vec::new();
    for &platform in &platforms {
        let inputs = recipe.inputs(platform)?;
        let mut job = Job {
            name: "base".into(),
            platform,
            repository: format!("{prefix}/base"),
            tag: inputs.tag(),
            inputs,
            action: Action::UpToDate,
            binary: None,
        };
        job.action = action(&engine, registry.as_ref(), &job, record.images.get(&job.key())).await?;
        bases.push(job);
    }
    let base_started = Instant::now();
    let mut base_ids = BTreeMap::new();
    for job in &bases {
        if let (Action::Build(why), false) = (&job.action, flags.dry_run) {
            recipe.check_prerequisites(job.platform)?;
            ui.say(format!("build  {:<16} {:<12} {}  {why}", job.name, job.platform.name(), job.tag));
            let spinner = ui.spinner(format!("base image for {}", job.platform));
            let cache = cache_dir();
            let result = recipe.build(&engine, job.platform, &job.reference(), &cache, &logs).await;
            spinner.finish_and_clear();
            result?;
        }
        let id = engine.image_id(&job.reference()).await?;
        let id = match (id, flags.dry_run) {
            (Some(id), _) => id,
            (None, true) => format!("unbuilt {}", job.reference()),
            (None, false) => bail!("the engine has no image {} right after building it", job.reference()),
        };
        base_ids.insert(job.platform, id);
    }
    let base_time = base_started.elapsed();

    // The functions, per platform.
    let plan_started = Instant::now();
    let workspace = cargo::Workspace::load(&pipeline.dir)?;
    let toolchain = cargo::toolchain()?;
    let workspace_manifest = workspace.root().join("Cargo.toml");
    let revision = git_revision(workspace.root());
    let mut digests = inputs::Digests::default();
    let mut jobs = Vec::new();
    for function in &functions {
        let package = workspace.package_at(&function.source).with_context(|| {
            format!("function `{}`: no package of the workspace at {}", function.name, function.source.display())
        })?;
        let binary = workspace
            .binary_of(package)
            .with_context(|| format!("function `{}`: package `{}` has no binary", function.name, package.name))?;
        let closure = workspace.closure(&package.id)?;
        ensure_assets(pipeline, function)?;
        for &platform in &platforms {
            let mut inputs = Inputs::default();
            inputs.text("base image", &base_ids[&platform]);
            inputs.text("toolchain", &toolchain);
            inputs.text("target", platform.rust_target());
            inputs.text("profile", &build.profile);
            inputs.digest("Cargo.toml (workspace)", digests.of(&workspace_manifest)?);
            for file in &closure.files {
                let name = file.strip_prefix(workspace.root()).unwrap_or(file).display().to_string();
                inputs.digest(format!("source {name}"), digests.of(file)?);
            }
            for locked in &closure.locked {
                inputs.text(format!("crate {locked}"), locked);
            }
            for asset in &function.assets {
                inputs.digest(format!("asset {}", asset.to), digests.of(&asset.from)?);
            }
            inputs.text("image recipe", &function_dockerfile(function, &binary));
            let mut job = Job {
                name: function.name.clone(),
                platform,
                repository: format!("{prefix}/{}", function.name),
                tag: inputs.tag(),
                inputs,
                action: Action::UpToDate,
                binary: Some(binary.clone()),
            };
            job.action = action(&engine, registry.as_ref(), &job, record.images.get(&job.key())).await?;
            jobs.push(job);
        }
    }
    let plan_time = plan_started.elapsed();

    if flags.dry_run {
        for job in bases.iter().chain(&jobs) {
            let what = match &job.action {
                Action::UpToDate => "up to date".to_string(),
                Action::Push => "would push".to_string(),
                Action::Build(why) => format!("would build: {why}"),
            };
            ui.say(format!("{:<16} {:<12} {}  {what}", job.name, job.platform.name(), job.tag));
        }
        let count = |wanted: fn(&Action) -> bool| bases.iter().chain(&jobs).filter(|job| wanted(&job.action)).count();
        ui.say(format!(
            "dry run: would build {} images, push {}, {} up to date",
            count(|a| matches!(a, Action::Build(_))),
            count(|a| matches!(a, Action::Push)),
            count(|a| *a == Action::UpToDate)
        ));
        return Ok(Outcome {
            built: 0,
            pushed: 0,
            up_to_date: count(|a| *a == Action::UpToDate),
            timings: Timings { plan: plan_time, base: base_time, total: started.elapsed(), ..Timings::default() },
            images: Images::default(),
            payload: BTreeMap::new(),
        });
    }

    // Binaries, one cargo run per platform that has an image to build. It
    // always names every function's package: cargo unifies dependency features
    // over the packages it builds, so a smaller set would rebuild dependencies
    // with other features; unchanged packages are fresh and cost nothing.
    let cargo_started = Instant::now();
    let mut all_packages = Vec::new();
    for function in &pipeline.functions {
        if let Some(package) = workspace.package_at(&function.source) {
            all_packages.push(package.name.to_string());
        }
    }
    all_packages.sort();
    all_packages.dedup();
    let mut binaries: BTreeMap<Platform, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for &platform in &platforms {
        let needed = jobs.iter().any(|job| job.platform == platform && matches!(job.action, Action::Build(_)));
        if !needed {
            continue;
        }
        let packages = all_packages.clone();
        let spinner = ui.spinner(format!("cargo build --profile {} --target {}", build.profile, platform.rust_target()));
        let log = logs.join(format!("cargo-{}.log", platform.arch()));
        let root = workspace.root().to_path_buf();
        let profile = build.profile.clone();
        let built = tokio::task::spawn_blocking(move || cargo::build(&root, &packages, platform, &profile, &log)).await?;
        spinner.finish_and_clear();
        binaries.insert(platform, built?);
    }
    let cargo_time = cargo_started.elapsed();

    // Images, `parallel` at a time.
    let assemble_started = Instant::now();
    let limit = Arc::new(tokio::sync::Semaphore::new(build.parallel));
    let to_build: Vec<&Job> = jobs.iter().filter(|job| matches!(job.action, Action::Build(_))).collect();
    let bar = ui.bar(to_build.len() as u64, "assembling images");
    let mut tasks = Vec::new();
    for job in &to_build {
        let binary_name = job.binary.clone().expect("function jobs have a binary");
        let binary = binaries
            .get(&job.platform)
            .and_then(|built| built.get(&binary_name))
            .with_context(|| format!("cargo built no binary `{binary_name}` for {}", job.platform))?
            .clone();
        let function = pipeline.function(&job.name).expect("jobs are made from the pipeline's functions").clone();
        let labels = HashMap::from([
            ("org.opencontainers.image.title".to_string(), function.name.clone()),
            ("org.opencontainers.image.revision".to_string(), revision.clone()),
            ("org.opencontainers.image.version".to_string(), job.tag.clone()),
            ("dev.videosearcher.content-hash".to_string(), job.tag.clone()),
        ]);
        let engine = engine.clone();
        let limit = limit.clone();
        let reference = job.reference();
        let platform = job.platform;
        let base = base_ids[&platform].clone();
        let log_path = logs.join(format!("{}-{}.log", job.name, platform.arch()));
        let bar = bar.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await?;
            let result = assemble(&engine, &function, &binary_name, &binary, &base, &reference, platform, &labels, &log_path).await;
            bar.inc(1);
            result
        }));
    }
    let mut failures = Vec::new();
    for (task, job) in tasks.into_iter().zip(&to_build) {
        match task.await? {
            Ok(()) => {
                let Action::Build(why) = &job.action else { unreachable!("only builds are assembled") };
                ui.say(format!("built  {:<16} {:<12} {}  {why}", job.name, job.platform.name(), job.tag));
            }
            Err(err) => failures.push(format!("{:#}", err)),
        }
    }
    bar.finish_and_clear();
    let assemble_time = assemble_started.elapsed();

    // Record what was built, even when some failed: they need not be built again.
    let mut record = record;
    for job in bases.iter().chain(&jobs) {
        let ok = engine.image_id(&job.reference()).await?.is_some();
        if ok {
            record.images.insert(job.key(), job.inputs.clone());
        }
    }
    record.write(&record_path)?;
    if !failures.is_empty() {
        bail!("{} of {} images failed to build:\n{}", failures.len(), to_build.len(), failures.join("\n\n"));
    }

    // Push, then one index per function (and for the base).
    let push_started = Instant::now();
    let mut pushed = 0;
    let mut images = Images::read(&manifest_path(pipeline));
    let mut sets: BTreeMap<String, ImageSet> = BTreeMap::new();
    for job in bases.iter().chain(&jobs) {
        let set = sets.entry(job.name.clone()).or_insert_with(|| ImageSet { repository: job.repository.clone(), ..ImageSet::default() });
        let id = engine.image_id(&job.reference()).await?.unwrap_or_default();
        set.platforms.insert(job.platform.name().to_string(), manifest::PlatformImage { tag: job.tag.clone(), image_id: id, digest: None });
    }
    if let Some(registry) = &registry {
        let all: Vec<&Job> = bases.iter().chain(&jobs).collect();
        let to_push: Vec<&&Job> = all.iter().filter(|job| job.action != Action::UpToDate).collect();
        let bar = ui.bar(to_push.len() as u64, "pushing");
        let mut tasks = Vec::new();
        for job in &to_push {
            let engine = engine.clone();
            let limit = limit.clone();
            let reference = job.reference();
            let log_path = logs.join(format!("{}-{}-push.log", job.name, job.platform.arch()));
            let bar = bar.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = limit.acquire_owned().await?;
                let mut log = std::fs::File::create(&log_path)?;
                let result = engine.push(&reference, &mut log).await;
                bar.inc(1);
                result
            }));
        }
        for task in tasks {
            task.await??;
            pushed += 1;
        }
        bar.finish_and_clear();
        for (name, set) in &mut sets {
            let (_, repository) = registry::split_repository(&set.repository);
            let mut entries = Vec::new();
            for (platform_name, image) in &mut set.platforms {
                let platform = Platform::parse(platform_name).expect("platform names come from Platform");
                let descriptor = registry
                    .manifest(repository, &image.tag)
                    .await?
                    .with_context(|| format!("the registry has no {}:{} after pushing it", set.repository, image.tag))?;
                image.digest = Some(descriptor.digest.clone());
                entries.push((platform, descriptor));
            }
            let mut index_inputs = Inputs::default();
            for (platform, descriptor) in &entries {
                index_inputs.text(platform.name(), &descriptor.digest);
            }
            let tag = index_inputs.tag();
            let index = registry.put_index(repository, &tag, &entries).await.with_context(|| format!("write the index of `{name}`"))?;
            set.index = Some(manifest::IndexImage { tag, digest: index.digest });
        }
    }
    let push_time = push_started.elapsed();
    for (name, set) in sets {
        if name == "base" {
            images.base = Some(set);
        } else {
            images.functions.insert(name, set);
        }
    }
    images.write(&manifest_path(pipeline))?;

    let built = bases.iter().chain(&jobs).filter(|job| matches!(job.action, Action::Build(_))).count();
    let up_to_date = bases.iter().chain(&jobs).filter(|job| job.action == Action::UpToDate).count();
    let timings = Timings {
        plan: plan_time,
        base: base_time,
        cargo: cargo_time,
        assemble: assemble_time,
        push: push_time,
        total: started.elapsed(),
    };
    ui.say(format!(
        "built {built} images, pushed {pushed}, {up_to_date} up to date in {:.1}s; manifest: {}",
        timings.total.as_secs_f64(),
        manifest_path(pipeline).display()
    ));
    let mut payload = BTreeMap::new();
    for job in &to_build {
        let binary = job.binary.as_ref().and_then(|name| binaries.get(&job.platform)?.get(name));
        let mut bytes = binary.and_then(|path| std::fs::metadata(path).ok()).map_or(0, |meta| meta.len());
        let function = pipeline.function(&job.name).expect("jobs are made from the pipeline's functions");
        for asset in &function.assets {
            bytes += std::fs::metadata(&asset.from).map_or(0, |meta| meta.len());
        }
        payload.insert(job.key(), bytes);
    }
    Ok(Outcome { built, pushed, up_to_date, timings, images, payload })
}

/// Whether `job`'s image must be built, pushed, or neither.
async fn action(engine: &Engine, registry: Option<&Registry>, job: &Job, last: Option<&Inputs>) -> anyhow::Result<Action> {
    if let Some(registry) = registry {
        let (_, repository) = registry::split_repository(&job.repository);
        if registry.manifest(repository, &job.tag).await?.is_some() {
            return Ok(Action::UpToDate);
        }
    }
    if engine.image_id(&job.reference()).await?.is_some() {
        return Ok(if registry.is_some() { Action::Push } else { Action::UpToDate });
    }
    Ok(Action::Build(job.inputs.why(last)))
}

/// The Dockerfile of a function image: the base, the binary, the assets.
/// No RUN step: nothing runs under emulation.
fn function_dockerfile(function: &Function, binary: &str) -> String {
    let mut text = format!("FROM {{base}}\nCOPY {binary} /usr/local/bin/{binary}\n");
    if !function.assets.is_empty() {
        text.push_str("COPY assets/ /\n");
    }
    text.push_str(&format!(
        "ENV FUNCTION_NAME={}\nUSER 10001:10001\nEXPOSE 8080\nENTRYPOINT [\"/usr/local/bin/{binary}\"]\n",
        function.name
    ));
    text
}

#[allow(clippy::too_many_arguments)]
async fn assemble(
    engine: &Engine,
    function: &Function,
    binary_name: &str,
    binary: &Path,
    base: &str,
    reference: &str,
    platform: Platform,
    labels: &HashMap<String, String>,
    log_path: &Path,
) -> anyhow::Result<()> {
    let dockerfile = function_dockerfile(function, binary_name).replace("{base}", base);
    let asset_names: Vec<String> = function.assets.iter().map(|asset| format!("assets{}", asset.to)).collect();
    let mut files = vec![("Dockerfile", ContextFile::Bytes(dockerfile.as_bytes())), (binary_name, ContextFile::Executable(binary))];
    for (asset, name) in function.assets.iter().zip(&asset_names) {
        files.push((name.as_str(), ContextFile::Path(&asset.from)));
    }
    let context = engine::context(Vec::new(), &files)?;
    let mut log = std::fs::File::create(log_path).with_context(|| format!("create {}", log_path.display()))?;
    let outcome = engine.build(engine::Context::Bytes(context), reference, platform, labels, &mut log).await?;
    if let Some(error) = outcome.error {
        bail!(
            "image of `{}` for {platform} failed: {error}\n{}\nhelp: the whole log is {}",
            function.name,
            cargo::tail(&outcome.log, 10),
            log_path.display()
        );
    }
    Ok(())
}

/// Every asset exists; the detector model is fetched when missing.
fn ensure_assets(pipeline: &Pipeline, function: &Function) -> anyhow::Result<()> {
    for (index, asset) in function.assets.iter().enumerate() {
        if asset.from.is_file() {
            continue;
        }
        let path = format!("functions.{}.assets[{index}].from", function.name);
        let model = pipeline.detector_model();
        if asset.from == model {
            crate::model::ensure(&model).map_err(|err| {
                pipeline.error_at(&path, format!("{err:#}"), Some("run `cargo xtask model`, or put the ONNX file there".into()))
            })?;
            continue;
        }
        return Err(pipeline
            .error_at(&path, format!("asset `{}` of function `{}` does not exist", asset.from.display(), function.name), Some("`from` is relative to the pipeline file's folder".into()))
            .into());
    }
    Ok(())
}

fn select_functions<'a>(pipeline: &'a Pipeline, names: &[String]) -> anyhow::Result<Vec<&'a Function>> {
    if names.is_empty() {
        return Ok(pipeline.functions.iter().collect());
    }
    names
        .iter()
        .map(|name| {
            pipeline.function(name).with_context(|| {
                let known: Vec<String> = pipeline.functions.iter().map(|f| format!("`{}`", f.name)).collect();
                format!("unknown function `{name}` in `--function`\nhelp: declared functions: {}", known.join(", "))
            })
        })
        .collect()
}

fn select_platforms(build: &Build, names: &[String]) -> anyhow::Result<Vec<Platform>> {
    if names.is_empty() {
        return Ok(build.platforms.clone());
    }
    let declared: Vec<String> = build.platforms.iter().map(|p| format!("`{p}`")).collect();
    names
        .iter()
        .map(|name| match Platform::parse(name) {
            Some(platform) if build.platforms.contains(&platform) => Ok(platform),
            _ => bail!("platform `{name}` in `--platform` is not one of `build.platforms`\nhelp: declared platforms: {}", declared.join(", ")),
        })
        .collect()
}

/// The commit the sources are at, for the images' revision label.
fn git_revision(root: &Path) -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root)
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Progress bars on a terminal, plain lines everywhere.
struct Ui {
    multi: indicatif::MultiProgress,
}

impl Ui {
    fn new() -> Ui {
        Ui { multi: indicatif::MultiProgress::new() }
    }

    fn say(&self, line: String) {
        self.multi.suspend(|| println!("{line}"));
    }

    fn spinner(&self, message: String) -> indicatif::ProgressBar {
        let spinner = self.multi.add(indicatif::ProgressBar::new_spinner());
        spinner.set_message(message);
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        spinner
    }

    fn bar(&self, len: u64, message: &str) -> indicatif::ProgressBar {
        let bar = self.multi.add(indicatif::ProgressBar::new(len));
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} [{bar:24}] {pos}/{len} {msg}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message.to_string());
        bar
    }
}
