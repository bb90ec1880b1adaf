//! `cargo xtask`'s light half: the pipeline model and the phases that need no
//! runtime (check, build, render, report). `xtask-run` uses the model and the flags from here.

pub mod build;
pub mod flags;
pub mod model;
pub mod pipeline;
pub mod render;
pub mod report;

/// `cargo`, as the environment names it, without the variables cargo sets for
/// the program it runs (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, ...). Build
/// scripts such as ring's rerun when those change, so a cargo started from
/// `cargo run` or from a test with them set would rebuild dependencies, and
/// the next cargo without them would rebuild them again.
pub fn cargo_command() -> std::process::Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let set_by_cargo = name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
            || matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "OUT_DIR"
            );
        if set_by_cargo {
            command.env_remove(name);
        }
    }
    command
}

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
