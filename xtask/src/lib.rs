//! `cargo xtask`'s light half: the pipeline model and the phases that need no
//! runtime (check, build). `xtask-run` uses the model and the flags from here.

pub mod build;
pub mod flags;
pub mod model;
pub mod pipeline;

/// A `main`: parse the command line, run it, print any error and choose the
/// exit code (2 for bad input or environment; `run` returns 1 itself when a
/// check fails).
pub fn main(run: impl FnOnce(flags::Xtask) -> anyhow::Result<std::process::ExitCode>) -> std::process::ExitCode {
    let xtask = <flags::Xtask as clap::Parser>::parse();
    match run(xtask) {
        Ok(code) => code,
        Err(err) => {
            report(&err);
            std::process::ExitCode::from(2)
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
