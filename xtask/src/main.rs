//! `cargo xtask`: one command per phase. `main` parses flags, runs one command
//! and is the only place that chooses the exit code and prints errors.
//!
//! The commands that run the pipeline (`deploy`, `teardown`, `status`, `logs`,
//! `verify`, `media`, `bench`) live in `xtask-run` (`xtask/run/`), which
//! compiles the local runtime, the object store and the stages' libraries;
//! they are handed over to it as typed, so that `check` and `build` build light.

use std::process::ExitCode;

use xtask::{build, flags, model, pipeline, render, report};

fn main() -> ExitCode {
    xtask::main(run)
}

fn run(xtask: flags::Xtask) -> anyhow::Result<ExitCode> {
    let global = &xtask.global;
    match &xtask.command {
        flags::Command::Check(_) => {
            let pipeline = pipeline::load(&global.file)?;
            for warning in &pipeline.warnings {
                eprintln!("{warning}");
            }
            println!(
                "{}: pipeline `{}` ok ({} functions, {} DAG steps)",
                global.file.display(),
                pipeline.name,
                pipeline.functions.len(),
                pipeline.dag.step_count()
            );
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Build(flags) => {
            let pipeline = pipeline::load(&global.file)?;
            build::run(&pipeline, flags)?;
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Render(flags) => {
            let pipeline = pipeline::load(&global.file)?;
            if flags.explain_timeouts {
                print!("{}", pipeline.timeouts.table());
                return Ok(ExitCode::SUCCESS);
            }
            let out = flags.out.as_ref().expect("clap requires --out without --explain-timeouts");
            let (target, _) = render::cluster_target(&pipeline, global.target.as_deref())?;
            let manifest = build::manifest_path(&pipeline);
            let images = build::Images::read(&manifest);
            let rendered = render::render(&pipeline, target, &render::BuiltImages { images: &images, manifest: &manifest })?;
            for warning in &rendered.warnings {
                eprintln!("warning: {warning}");
            }
            let written = render::write(out, &rendered)?;
            eprintln!("{}", rendered.summary(out, &written));
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Report(flags) => {
            let runs = flags.runs.iter().map(|dir| report::Run::read(dir)).collect::<anyhow::Result<Vec<_>>>()?;
            print!("{}", report::compare(&runs, &flags.out)?);
            eprintln!("report: {}", flags.out.join("report.md").display());
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Model(flags) => {
            let pipeline = pipeline::load(&global.file)?;
            let detector = &pipeline.parameters.detector;
            let cache = flags.cache.clone().unwrap_or_else(|| pipeline.dir.join(&detector.model_dir));
            let models = match (flags.all, flags.names.as_slice()) {
                (true, _) => model::DetectorModel::ALL.to_vec(),
                (false, []) => vec![detector.model],
                (false, names) => names.to_vec(),
            };
            for model in models {
                println!("{}", model::fetch(model, &cache)?.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Deploy(_)
        | flags::Command::Teardown(_)
        | flags::Command::Status(_)
        | flags::Command::Scale(_)
        | flags::Command::Logs(_)
        | flags::Command::Verify(_)
        | flags::Command::Search(_)
        | flags::Command::Media(_)
        | flags::Command::Bench(_)
        | flags::Command::Experiment(_) => hand_over(),
    }
}

/// Run this command line in `xtask-run`, built by cargo in xtask's own
/// profile; it replaces this process, so signals and the exit code are its.
fn hand_over() -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt as _;

    use anyhow::Context as _;

    let mut command = xtask::cargo_command();
    command
        .args(["run", "--quiet", "--bin", "xtask-run", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/run/Cargo.toml"));
    let exe = std::env::current_exe().context("find the xtask executable")?;
    match exe.parent().and_then(|dir| dir.file_name()).and_then(|name| name.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(profile) => {
            command.args(["--profile", profile]);
        }
    }
    command.arg("--").args(std::env::args_os().skip(1));
    let err = command.exec();
    Err(err).with_context(|| format!("run `{} run --bin xtask-run`", command.get_program().to_string_lossy()))
}
