//! The runtime's state folder: its lock, `runtime.json`, generated secrets and
//! logs. Commands other than `up --foreground` only read it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

/// What a running runtime tells the other commands, in `runtime.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeInfo {
    pub pid: u32,
    pub gateway_url: String,
    pub store_url: String,
    pub bucket: String,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    /// How long stopping may take: every function drains its in-flight work.
    pub stop_timeout_s: u64,
}

/// The folder of one local runtime (`.xtask/local` by default), absolute.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    pub fn new(root: &Path) -> anyhow::Result<StateDir> {
        let root = std::path::absolute(root).with_context(|| format!("resolve state folder {}", root.display()))?;
        Ok(StateDir { root })
    }

    pub fn runtime_json(&self) -> PathBuf {
        self.root.join("runtime.json")
    }
    pub fn runtime_log(&self) -> PathBuf {
        self.root.join("runtime.log")
    }
    fn lock_file(&self) -> PathBuf {
        self.root.join("runtime.lock")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn function_log(&self, function: &str) -> PathBuf {
        self.logs().join(format!("{function}.log"))
    }
    pub fn secrets(&self) -> PathBuf {
        self.root.join("secrets")
    }
    /// Per-function folder holding links to only the secrets it declares.
    pub fn function_secrets(&self, function: &str) -> PathBuf {
        self.root.join("functions").join(function).join("secrets")
    }
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// Take the runtime lock for this folder, held until the returned file is
    /// dropped (or the process dies). Fails when another runtime holds it.
    pub fn lock(&self) -> anyhow::Result<File> {
        std::fs::create_dir_all(&self.root).with_context(|| format!("create state folder {}", self.root.display()))?;
        let path = self.lock_file();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                bail!("a local runtime already runs for {} (see `cargo xtask status`)", self.root.display())
            }
            Err(TryLockError::Error(e)) => return Err(e).with_context(|| format!("lock {}", path.display())),
        }
        file.set_len(0)?;
        write!(file, "{}", std::process::id())?;
        Ok(file)
    }

    /// The pid of the runtime holding the lock, or `None` when none runs.
    pub fn locked_by(&self) -> anyhow::Result<Option<u32>> {
        let path = self.lock_file();
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("open {}", path.display())),
        };
        match file.try_lock_shared() {
            Ok(()) => return Ok(None),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(e).with_context(|| format!("lock {}", path.display())),
        }
        let mut pid = String::new();
        file.read_to_string(&mut pid)?;
        Ok(Some(pid.trim().parse().with_context(|| format!("{} holds no pid", path.display()))?))
    }

    /// `runtime.json` of the runtime that runs now; a stale file is ignored.
    pub fn running(&self) -> anyhow::Result<Option<RuntimeInfo>> {
        if self.locked_by()?.is_none() {
            return Ok(None);
        }
        self.read_info()
    }

    pub fn read_info(&self) -> anyhow::Result<Option<RuntimeInfo>> {
        let path = self.runtime_json();
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("read {}", path.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
        }
    }

    /// Write `runtime.json` atomically (temp file, then rename).
    pub fn write_info(&self, info: &RuntimeInfo) -> anyhow::Result<()> {
        let path = self.runtime_json();
        let temp = path.with_extension("json.tmp");
        std::fs::write(&temp, serde_json::to_vec_pretty(info)?).with_context(|| format!("write {}", temp.display()))?;
        std::fs::rename(&temp, &path).with_context(|| format!("write {}", path.display()))
    }

    pub fn remove_info(&self) {
        let _ = std::fs::remove_file(self.runtime_json());
    }

    /// Read each secret from `secrets/<name>`, generating a random value (mode
    /// 0600) for those not there yet.
    pub fn ensure_secrets(&self, names: &[String]) -> anyhow::Result<Vec<(String, String)>> {
        let dir = self.secrets();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("create {}", dir.display()))?;
        names
            .iter()
            .map(|name| {
                let path = dir.join(name);
                if let Ok(value) = std::fs::read_to_string(&path) {
                    if !value.trim().is_empty() {
                        return Ok((name.clone(), value.trim().to_string()));
                    }
                }
                let value = random_hex(20)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&path)
                    .with_context(|| format!("write secret {}", path.display()))?;
                file.write_all(value.as_bytes())?;
                Ok((name.clone(), value))
            })
            .collect()
    }
}

/// `bytes` random bytes from the kernel, hex-encoded.
fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).context("read /dev/urandom")?;
    Ok(hex::encode(buf))
}

/// Send `signal` to `pid`; a process already gone is not an error.
pub fn signal(pid: i32, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Wait until `done()` holds, checking every 50 ms; false after `deadline`.
pub fn wait_until(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + deadline;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `lines` lines of the file from byte `from` on (the whole file when 0).
pub fn tail(path: &Path, from: u64, lines: usize) -> anyhow::Result<String> {
    let mut file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let len = file.metadata()?.len();
    // Read backwards in growing chunks until enough lines are in.
    let mut chunk = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(chunk).max(from);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf);
        let all: Vec<&str> = text.lines().collect();
        // The first line of a chunk that doesn't start the file may be partial.
        let complete = if start == from { &all[..] } else { all.get(1..).unwrap_or(&[]) };
        if complete.len() >= lines || start == from {
            let keep = &complete[complete.len().saturating_sub(lines)..];
            return Ok(keep.iter().map(|line| format!("{line}\n")).collect());
        }
        chunk *= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_after_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "one\ntwo\nthree\nfour\n").unwrap();
        assert_eq!(tail(&path, 0, 2).unwrap(), "three\nfour\n");
        assert_eq!(tail(&path, 0, 10).unwrap(), "one\ntwo\nthree\nfour\n");
        assert_eq!(tail(&path, 8, 10).unwrap(), "three\nfour\n");
    }

    #[test]
    fn secrets_are_generated_once_and_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path()).unwrap();
        let names = vec!["a".to_string(), "b".to_string()];
        let first = state.ensure_secrets(&names).unwrap();
        assert_eq!(first.len(), 2);
        assert_ne!(first[0].1, first[1].1);
        assert_eq!(first[0].1.len(), 40);
        assert_eq!(state.ensure_secrets(&names).unwrap(), first);
        let mode = std::fs::metadata(state.secrets().join("a")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn lock_is_exclusive_and_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path()).unwrap();
        assert_eq!(state.locked_by().unwrap(), None);
        let held = state.lock().unwrap();
        assert!(state.lock().is_err());
        assert_eq!(state.locked_by().unwrap(), Some(std::process::id()));
        drop(held);
        assert_eq!(state.locked_by().unwrap(), None);
    }
}
