//! Speech to text with CMU PocketSphinx (Debian's `pocketsphinx` 0.8+5prealpha).
//!
//! [`command`] builds the `pocketsphinx_continuous` run for a 16 kHz mono WAV, the caller
//! runs it (the stage runtime measures its children), [`finish`] turns its output into a
//! [`Transcript`]. [`transcribe`] does all of it in one call.

mod input;
mod output;
pub mod overlap;

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub use input::check_input;
pub use output::parse;

/// Debian packages that provide the recogniser and its model.
pub const PACKAGES: &str = "pocketsphinx pocketsphinx-en-us";

/// Where the recogniser and its US English model are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Options {
    /// `pocketsphinx_continuous`, looked up on `PATH` unless it holds a `/`.
    pub binary: PathBuf,
    /// Model folder holding `en-us/` (acoustic model), `en-us.lm.bin` and `cmudict-en-us.dict`.
    pub model_dir: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            binary: PathBuf::from("pocketsphinx_continuous"),
            model_dir: PathBuf::from("/usr/share/pocketsphinx/model/en-us"),
        }
    }
}

impl Options {
    fn acoustic_model(&self) -> PathBuf {
        self.model_dir.join("en-us")
    }
    fn language_model(&self) -> PathBuf {
        self.model_dir.join("en-us.lm.bin")
    }
    fn dictionary(&self) -> PathBuf {
        self.model_dir.join("cmudict-en-us.dict")
    }
}

/// What was said: the recognised words in order, with their times in the audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    /// The words joined by single spaces.
    pub text: String,
    pub words: Vec<Word>,
}

/// One recognised word.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    /// Lower-case dictionary spelling, without the pronunciation variant (`to(3)` is `to`).
    pub word: String,
    pub start_s: f64,
    pub end_s: f64,
    /// Posterior probability in [0, 1] reported by the decoder.
    pub confidence: Option<f64>,
}

/// Checks that the binary can be found and the model is installed.
pub fn check_tools(opts: &Options) -> Result<()> {
    find_binary(&opts.binary)?;
    for path in [opts.acoustic_model().join("mdef"), opts.language_model(), opts.dictionary()] {
        if !path.is_file() {
            bail!(
                "PocketSphinx model file {} is missing: install the Debian package `pocketsphinx-en-us` \
                 (apt-get install {PACKAGES}) or point `model_dir` at an en-us model",
                path.display()
            );
        }
    }
    Ok(())
}

/// The `pocketsphinx_continuous` run that prints the words of `wav` with their times.
///
/// Its log goes to stderr (kept for [`finish`]'s error message), the words to stdout.
pub fn command(wav: &Path, opts: &Options) -> Command {
    let mut cmd = Command::new(&opts.binary);
    let args: [(&str, OsString); 5] = [
        ("-infile", wav.into()),
        ("-time", "yes".into()),
        ("-hmm", opts.acoustic_model().into()),
        ("-lm", opts.language_model().into()),
        ("-dict", opts.dictionary().into()),
    ];
    for (flag, value) in args {
        cmd.arg(flag).arg(value);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Reads the transcript from a finished [`command`]; a failed run becomes an error
/// carrying the decoder's `ERROR`/`FATAL` log lines.
pub fn finish(output: &Output) -> Result<Transcript> {
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("ERROR") || l.starts_with("FATAL")).collect();
        let detail = if errors.is_empty() { last_lines(&stderr, 5) } else { errors.join("\n") };
        bail!("pocketsphinx_continuous failed ({}):\n{detail}", output.status);
    }
    let stdout = std::str::from_utf8(&output.stdout).context("pocketsphinx_continuous printed invalid UTF-8")?;
    parse(stdout)
}

/// Explains a failure to start [`command`]; a missing binary names the Debian packages.
pub fn spawn_error(err: io::Error, opts: &Options) -> anyhow::Error {
    if err.kind() == io::ErrorKind::NotFound {
        binary_not_found(&opts.binary)
    } else {
        anyhow::Error::new(err).context(format!("cannot run {}", opts.binary.display()))
    }
}

/// Transcribes a 16 kHz mono 16-bit WAV file: checks, runs and parses in one call.
pub fn transcribe(wav_16k_mono: &Path, opts: &Options) -> Result<Transcript> {
    check_tools(opts)?;
    check_input(wav_16k_mono)?;
    let output = command(wav_16k_mono, opts).output().map_err(|err| spawn_error(err, opts))?;
    finish(&output).with_context(|| format!("cannot transcribe {}", wav_16k_mono.display()))
}

/// Resolves `binary` like the shell does: as given when it holds a `/`, else on `PATH`.
fn find_binary(binary: &Path) -> Result<PathBuf> {
    let not_found = || binary_not_found(binary);
    if binary.components().count() > 1 {
        return if binary.is_file() { Ok(binary.to_path_buf()) } else { Err(not_found()) };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|dir| dir.join(binary)).find(|p| p.is_file()).ok_or_else(not_found)
}

fn binary_not_found(binary: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "`{}` not found: install the Debian packages `{PACKAGES}` (apt-get install {PACKAGES})",
        binary.display()
    )
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_passes_the_model_files_and_asks_for_times() {
        let opts = Options { model_dir: PathBuf::from("/m"), ..Options::default() };
        let cmd = command(Path::new("/in/clip.wav"), &opts);
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(cmd.get_program(), "pocketsphinx_continuous");
        assert_eq!(
            args,
            [
                "-infile",
                "/in/clip.wav",
                "-time",
                "yes",
                "-hmm",
                "/m/en-us",
                "-lm",
                "/m/en-us.lm.bin",
                "-dict",
                "/m/cmudict-en-us.dict"
            ]
        );
    }

    #[test]
    fn missing_binary_names_the_debian_packages() {
        let opts = Options { binary: PathBuf::from("no-such-pocketsphinx"), ..Options::default() };
        let err = check_tools(&opts).unwrap_err().to_string();
        assert!(err.contains("`no-such-pocketsphinx` not found") && err.contains(PACKAGES), "{err}");
    }

    #[test]
    fn missing_model_names_the_model_package() {
        let opts = Options { binary: PathBuf::from("sh"), model_dir: PathBuf::from("/no/such/model") };
        let err = check_tools(&opts).unwrap_err().to_string();
        assert!(err.contains("/no/such/model/en-us/mdef") && err.contains("`pocketsphinx-en-us`"), "{err}");
    }

    #[test]
    fn failed_run_reports_the_decoder_errors() {
        let output = Command::new("sh")
            .args(["-c", "echo 'INFO: x' >&2; echo 'ERROR: \"continuous.c\", line 136: bad rate' >&2; exit 1"])
            .output()
            .unwrap();
        let err = finish(&output).unwrap_err().to_string();
        assert!(err.contains("exit status: 1") && err.contains("line 136: bad rate"), "{err}");
        assert!(!err.contains("INFO"), "{err}");
    }
}
