//! `xtask-run`: the commands of `cargo xtask` that run the pipeline: the
//! embedded local runtime (`up`, `down`, `status`, `logs`), `verify`, `bench`
//! and the test media. `cargo xtask` hands these commands over to it, so that
//! its light commands compile none of this.

mod bench;
mod local;
mod media;
mod verify;

use std::process::ExitCode;

use anyhow::bail;
use xtask::{build, flags, model, pipeline};

fn main() -> ExitCode {
    xtask::main(run)
}

fn run(xtask: flags::Xtask) -> anyhow::Result<ExitCode> {
    let global = &xtask.global;
    match &xtask.command {
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
        flags::Command::Bench(flags::Bench { what: Some(flags::BenchWhat::Build(bench)), .. }) => {
            let pipeline = pipeline::load(&global.file)?;
            bench::build::run(&pipeline, bench)?;
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Bench(bench) => {
            let pipeline = pipeline::load(&global.file)?;
            let (target, _) = pipeline.target(global.target.as_deref())?;
            bench::run(&pipeline, target, bench)?;
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Check(_) | flags::Command::Build(_) | flags::Command::Model(_) => {
            bail!("this command is `cargo xtask`'s own: run it as `cargo xtask ...`")
        }
    }
}
