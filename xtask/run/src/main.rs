//! `xtask-run`: the commands of `cargo xtask` that run the pipeline: the
//! targets (`deploy`, `teardown`, `status`, `logs`), `verify`, `bench`
//! and the test media. `cargo xtask` hands these commands over to it, so that
//! its light commands compile none of this.

mod bench;
mod deploy;
mod experiment;
mod local;
mod media;
mod openfaas;
mod search;
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
        flags::Command::Deploy(flags) => {
            let pipeline = pipeline::load(&global.file)?;
            deploy::deploy(&pipeline, global, flags)?;
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Teardown(_) => {
            let pipeline = pipeline::load(&global.file)?;
            deploy::open(&pipeline, global)?.teardown()?;
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Status(_) => {
            let pipeline = pipeline::load(&global.file)?;
            let deployed = deploy::print_status(deploy::open(&pipeline, global)?.as_ref())?;
            // As `systemctl status` does for a unit that is not running.
            Ok(if deployed { ExitCode::SUCCESS } else { ExitCode::from(3) })
        }
        flags::Command::Scale(scale) => {
            let pipeline = pipeline::load(&global.file)?;
            if pipeline.function(&scale.function).is_none() {
                bail!("no function `{}` in {}", scale.function, global.file.display());
            }
            deploy::open(&pipeline, global)?.scale(&scale.function, scale.replicas, scale.wait)?;
            println!("{}: {} replica(s) ready", scale.function, scale.replicas);
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Logs(logs) => {
            let pipeline = pipeline::load(&global.file)?;
            print!("{}", deploy::open(&pipeline, global)?.logs(logs.function.as_deref(), logs.lines)?);
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Verify(verify) => {
            let pipeline = pipeline::load(&global.file)?;
            let target = deploy::open(&pipeline, global)?;
            let passed = verify::run(&pipeline, target.as_ref(), verify)?;
            Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        flags::Command::Search(search) => {
            let pipeline = pipeline::load(&global.file)?;
            let target = deploy::open(&pipeline, global)?;
            search::run(&pipeline, target.as_ref(), search)?;
            Ok(ExitCode::SUCCESS)
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
        flags::Command::Experiment(experiment) => {
            let pipeline = pipeline::load(&global.file)?;
            experiment::run(&pipeline, global, experiment)?;
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Bench(flags::Bench { what: Some(flags::BenchWhat::Search(bench)), .. }) => {
            let pipeline = pipeline::load(&global.file)?;
            bench::search(&pipeline, global, bench)?;
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Bench(flags::Bench { what: Some(flags::BenchWhat::Soak(bench)), .. }) => {
            let pipeline = pipeline::load(&global.file)?;
            bench::soak::run(&pipeline, global, bench)?;
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Bench(flags::Bench { what: Some(flags::BenchWhat::Memory(bench)), .. }) => {
            let pipeline = pipeline::load(&global.file)?;
            bench::memory::run(&pipeline, global, bench)?;
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Bench(flags::Bench { what: Some(flags::BenchWhat::Store(bench)), .. }) => {
            bench::store::run(bench)?;
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Bench(flags::Bench { what: Some(flags::BenchWhat::Schedule(bench)), .. }) => {
            experiment::bench_schedule(bench.rate, bench.seconds)?;
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Bench(bench) => {
            let pipeline = pipeline::load(&global.file)?;
            bench::run(&pipeline, global, bench)?;
            Ok(ExitCode::SUCCESS)
        }
        flags::Command::Check(_) | flags::Command::Build(_) | flags::Command::Model(_) | flags::Command::Render(_) | flags::Command::Report(_) => {
            bail!("this command is `cargo xtask`'s own: run it as `cargo xtask ...`")
        }
    }
}
