//! `cargo xtask`: one command per phase. `main` parses flags, runs one command
//! and is the only place that chooses the exit code and prints errors.

mod bench;
mod flags;
mod local;
mod media;
mod model;
mod pipeline;
mod verify;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let xtask = flags::Xtask::parse();
    match run(xtask) {
        Ok(code) => code,
        Err(err) => {
            report(&err);
            ExitCode::from(2)
        }
    }
}

fn run(xtask: flags::Xtask) -> anyhow::Result<ExitCode> {
    let global = &xtask.global;
    match &xtask.command {
        flags::Command::Check(_) => {
            let pipeline = pipeline::load(&global.file)?;
            println!(
                "{}: pipeline `{}` ok ({} functions, {} DAG steps)",
                global.file.display(),
                pipeline.name,
                pipeline.functions.len(),
                pipeline.dag.step_count()
            );
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Up(up) => {
            let pipeline = pipeline::load(&global.file)?;
            let (target, _) = pipeline.target(global.target.as_deref())?;
            model::ensure(&pipeline.dir.join(&pipeline.parameters.detector.model)).map_err(|e| {
                let help = format!("put the ONNX file there, or use the default `.cache/models/{}`, which is fetched", model::CENTERFACE_FILE);
                pipeline.error_at("parameters.detector.model", format!("{e:#}"), Some(help))
            })?;
            local::up(&pipeline, target, up)?;
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Down(down) => {
            local::down(down)?;
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Status(status) => {
            local::status(status)?;
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Logs(logs) => {
            local::logs(logs)?;
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Verify(verify) => {
            let pipeline = pipeline::load(&global.file)?;
            let passed = verify::run(&pipeline, verify)?;
            Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        flags::Command::Media(media) => {
            let set = media::synthesize(&media.out)?;
            println!("{}", serde_json::to_string_pretty(&set)?);
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Model(model) => {
            let path = model::fetch_centerface(&model.cache)?;
            println!("{}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Bench(bench) => {
            let pipeline = pipeline::load(&global.file)?;
            let (target, _) = pipeline.target(global.target.as_deref())?;
            bench::run(&pipeline, target, bench)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Print an error the way STYLE.md shows: `error:` first, the pointer and help
/// when the error carries them, then the cause chain.
fn report(err: &anyhow::Error) {
    if let Some(diag) = err.downcast_ref::<pipeline::Diagnostic>() {
        eprintln!("{diag}");
        return;
    }
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("cause: {cause}");
    }
}
