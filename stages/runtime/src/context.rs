//! What a handler gets for one invocation: its own temp dir (removed when the
//! invocation ends), claim-check I/O under `requests/<id>/<function>/…`, and a
//! way to run tools that measures their time and memory and can be cancelled.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::envelope::{Artifact, Invocation};
use crate::error::{ErrorKind, StageError};
use crate::store::Store;

pub struct Context {
    pub request_id: String,
    pub function: String,
    pub scope: Option<String>,
    /// When `exec_timeout` ends this invocation: it does not outlive this.
    pub deadline: std::time::SystemTime,
    work_dir: tempfile::TempDir,
    store: Store,
    rt: tokio::runtime::Handle,
    pub(crate) usage: Arc<Usage>,
}

/// Shared between the handler's thread and the server's task, which may
/// cancel the invocation (exec timeout) while a tool runs.
#[derive(Default)]
pub(crate) struct Usage {
    cancelled: AtomicBool,
    children: Mutex<Vec<i32>>,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) tool_us: AtomicU64,
    /// Time spent waiting on the object store (downloads, uploads, documents).
    pub(crate) store_us: AtomicU64,
    /// Largest peak RSS (KiB) of any child process this invocation ran.
    pub(crate) child_max_rss_kb: AtomicU64,
}

impl Usage {
    /// Stop the invocation: flag it and kill the tools it is running.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        for &pid in self.children.lock().unwrap().iter() {
            // SAFETY: plain syscall; pid is a child of ours not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// The most of a tool's standard output a stage reads (its answer: a
/// transcript, a probe); a tool that writes more fails the invocation.
pub const STDOUT_LIMIT: usize = 64 * 1024 * 1024;
/// The niceness tools run at. A tool (ffmpeg, PocketSphinx) is batch work
/// that keeps a core busy for seconds; the function's own threads (its
/// HTTP server, its store transfers) and the store and gateway it talks to
/// are short bursts that wait on each other. At the same priority every such
/// burst waits behind the tools for its turn on a busy machine, and an
/// invocation's dozen hops to the store and back cost it tens of
/// milliseconds; a step lower, a burst takes a core when it wakes. Tools
/// still get all the CPU nobody else wants, and share it among themselves as
/// before.
const TOOL_NICE: libc::c_int = 10;
/// The end of a tool's standard error that is kept (for error messages).
const STDERR_KEPT: usize = 64 * 1024;

/// An upload started by [`Context::put_in_background`]; cancelled if dropped.
pub struct Upload(tokio::task::JoinHandle<Result<(String, u64), StageError>>);

impl Drop for Upload {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Which part of an output a capped read keeps.
enum Keep {
    Head,
    Tail,
}

/// Read `reader` to its end (so the tool never blocks on a full pipe),
/// keeping at most `cap` bytes: its first ones, or its last ones; and
/// whether there were more.
fn read_capped(mut reader: impl std::io::Read, cap: usize, keep: Keep) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut more = false;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) | Err(_) => return (kept, more),
            Ok(n) => n,
        };
        match keep {
            Keep::Head => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
                more |= n > room;
            }
            Keep::Tail => {
                kept.extend_from_slice(&chunk[..n]);
                if kept.len() > cap {
                    kept.drain(..kept.len() - cap);
                    more = true;
                }
            }
        }
    }
}

/// A finished tool run.
pub struct ToolOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// An invocation's temp dir is `<function>-<pid>-…` in the temp folder: a
/// replica that starts can tell which ones a dead replica left.
fn work_dir_prefix(function: &str, pid: u32) -> String {
    format!("{function}-{pid}-")
}

/// The temp dirs of `function` whose process is gone (killed with SIGKILL
/// mid-invocation, its dirs were never removed). Those of live replicas
/// (other processes on this machine) are not among them.
pub fn dead_work_dirs(function: &str) -> Vec<std::path::PathBuf> {
    let prefix = format!("{function}-");
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return Vec::new() };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix(&prefix)).and_then(|rest| rest.split('-').next()?.parse::<u32>().ok());
            pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) && entry.path().is_dir()
        })
        .map(|entry| entry.path())
        .collect()
}

/// Remove [`dead_work_dirs`] of `function`. Returns how many went.
pub(crate) fn sweep_work_dirs(function: &str) -> usize {
    dead_work_dirs(function).into_iter().filter(|dir| std::fs::remove_dir_all(dir).is_ok()).count()
}

impl Context {
    pub(crate) fn new(
        inv: &Invocation,
        function: &str,
        store: Store,
        rt: tokio::runtime::Handle,
        usage: Arc<Usage>,
        deadline: std::time::SystemTime,
    ) -> Result<Context, StageError> {
        let work_dir = tempfile::Builder::new()
            .prefix(&work_dir_prefix(function, std::process::id()))
            .tempdir()
            .map_err(|e| StageError::internal("io", format!("cannot create a temp dir: {e}")))?;
        Ok(Context {
            request_id: inv.request_id.clone(),
            function: function.to_string(),
            scope: inv.scope.clone(),
            deadline,
            work_dir,
            store,
            rt,
            usage,
        })
    }

    /// This invocation's private folder; gone when the invocation ends.
    pub fn work_dir(&self) -> &Path {
        self.work_dir.path()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The tokio runtime, for handlers that do async work (the orchestrator).
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.rt
    }

    pub fn cancelled(&self) -> bool {
        self.usage.cancelled.load(Ordering::SeqCst)
    }

    /// Fail with a timeout if the invocation was cancelled.
    pub fn check_cancelled(&self) -> Result<(), StageError> {
        if self.cancelled() {
            return Err(StageError::new(ErrorKind::Timeout, "timeout", "invocation cancelled"));
        }
        Ok(())
    }

    /// The deterministic key of this function's output `name`: a retry
    /// overwrites the same object instead of adding another.
    pub fn output_key(&self, name: &str) -> String {
        match &self.scope {
            Some(scope) => format!("requests/{}/{}/{scope}/{name}", self.request_id, self.function),
            None => format!("requests/{}/{}/{name}", self.request_id, self.function),
        }
    }

    /// Download the single input `name` into the work dir as `file_name`.
    pub fn fetch(&self, inv: &Invocation, name: &str, file_name: &str) -> Result<PathBuf, StageError> {
        let uri = one(inv, name)?;
        self.fetch_uri(uri, file_name)
    }

    pub fn fetch_uri(&self, uri: &str, file_name: &str) -> Result<PathBuf, StageError> {
        self.check_cancelled()?;
        let dest = self.work_dir().join(file_name);
        let bytes = self.stored(self.store.download(uri, &dest))?;
        self.usage.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        Ok(dest)
    }

    /// A small JSON document from the store.
    pub fn get_json<T: DeserializeOwned>(&self, uri: &str) -> Result<T, StageError> {
        let bytes = self.stored(self.store.get_bytes(uri))?;
        self.parse_json(uri, &bytes)
    }

    /// Small JSON documents from the store, all requested at once (a round
    /// trip each, side by side); in the order of `uris`.
    pub fn get_json_all<T: DeserializeOwned>(&self, uris: &[&str]) -> Result<Vec<T>, StageError> {
        let fetched = self.stored(futures::future::try_join_all(uris.iter().map(|uri| self.store.get_bytes(uri))))?;
        uris.iter().zip(fetched).map(|(uri, bytes)| self.parse_json(uri, &bytes)).collect()
    }

    fn parse_json<T: DeserializeOwned>(&self, uri: &str, bytes: &[u8]) -> Result<T, StageError> {
        self.usage.bytes_in.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        serde_json::from_slice(bytes)
            .map_err(|e| StageError::bad_input("bad_document", format!("{uri} is not the JSON expected: {e}")))
    }

    /// Upload a file from the work dir as output `name`; returns its URI.
    pub fn put(&self, src: &Path, name: &str) -> Result<String, StageError> {
        self.check_cancelled()?;
        let (uri, bytes) = self.stored(self.store.upload(src, &self.output_key(name)))?;
        self.usage.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        Ok(uri)
    }

    /// Start uploading the work-dir file `src` as output `name` and return
    /// at once, so that the next tool run overlaps the transfer; the file is
    /// removed once it is stored. [`Context::finish_uploads`] waits for it;
    /// an [`Upload`] dropped unfinished (the handler failed) is cancelled, so
    /// nothing is written after the invocation ended.
    pub fn put_in_background(&self, src: PathBuf, name: &str) -> Result<Upload, StageError> {
        self.check_cancelled()?;
        let (store, key) = (self.store.clone(), self.output_key(name));
        Ok(Upload(self.rt.spawn(async move {
            let stored = store.upload(&src, &key).await;
            let _ = tokio::fs::remove_file(&src).await;
            stored
        })))
    }

    /// Wait for `uploads`; their URIs, in order. The time waited counts as
    /// store time, the part that overlapped tool runs does not.
    pub fn finish_uploads(&self, uploads: Vec<Upload>) -> Result<Vec<String>, StageError> {
        let mut uploads = uploads;
        let handles = uploads.iter_mut().map(|upload| &mut upload.0);
        let done = self.stored(futures::future::join_all(handles));
        let mut uris = Vec::with_capacity(done.len());
        for result in done {
            let (uri, bytes) = result.map_err(|e| StageError::internal("panic", format!("an upload task failed: {e}")))??;
            self.usage.bytes_out.fetch_add(bytes, Ordering::Relaxed);
            uris.push(uri);
        }
        Ok(uris)
    }

    pub fn put_json<T: Serialize>(&self, value: &T, name: &str) -> Result<String, StageError> {
        self.check_cancelled()?;
        let bytes = serde_json::to_vec_pretty(value).map_err(anyhow::Error::from)?;
        self.usage.bytes_out.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.stored(self.store.put_bytes(&self.output_key(name), bytes.into()))
    }

    /// Wait for a call to the store and count its time.
    fn stored<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let out = self.rt.block_on(call);
        self.usage.store_us.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        out
    }

    /// Run in-process tool work (e.g. model inference) and count its time.
    pub fn tool<T>(&self, work: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = work();
        self.add_tool_time(started.elapsed());
        out
    }

    fn add_tool_time(&self, spent: Duration) {
        self.usage.tool_us.fetch_add(spent.as_micros() as u64, Ordering::Relaxed);
    }

    /// Run a tool to completion in the work dir. Its time and peak memory are
    /// counted; a cancelled invocation kills it; a non-zero exit is an error
    /// carrying the end of its stderr, classified by `on_failure`.
    pub fn run(&self, cmd: &mut Command, on_failure: ErrorKind) -> Result<ToolOutput, StageError> {
        self.check_cancelled()?;
        let program = cmd.get_program().to_string_lossy().into_owned();
        let oom_kills_before = crate::memory::oom_kills();
        let started = Instant::now();
        // SAFETY: setpriority(2) is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::setpriority(libc::PRIO_PROCESS, 0, TOOL_NICE);
                Ok(())
            });
        }
        let mut child = cmd
            .current_dir(self.work_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| StageError::internal("tool_missing", format!("cannot run `{program}`: {e}")))?;
        let pid = child.id() as i32;
        self.usage.children.lock().unwrap().push(pid);
        // A cancel that came between the spawn and the line above killed
        // only the children it saw: this one goes now (`cancel` sets the
        // flag before it looks at the list).
        if self.cancelled() {
            // SAFETY: plain syscall; pid is a child of ours not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let stdout = std::thread::spawn(move || read_capped(out, STDOUT_LIMIT, Keep::Head));
        let (stderr, _) = read_capped(err, STDERR_KEPT, Keep::Tail);
        let (stdout, stdout_overflowed) = stdout.join().unwrap_or_default();
        let (status, max_rss_kb) = wait4(pid);
        self.usage.children.lock().unwrap().retain(|&p| p != pid);
        self.usage.child_max_rss_kb.fetch_max(max_rss_kb, Ordering::Relaxed);
        self.add_tool_time(started.elapsed());
        self.check_cancelled()?;
        match status {
            Ok(0) if stdout_overflowed => Err(StageError::internal(
                "tool_output_too_large",
                format!("`{program}` wrote more than {STDOUT_LIMIT} bytes to its standard output, more than a stage reads from a tool"),
            )),
            Ok(0) => Ok(ToolOutput { stdout, stderr }),
            Ok(code) => Err(StageError::new(
                on_failure,
                if on_failure == ErrorKind::Unprocessable { "bad_media" } else { "tool_failed" },
                format!("`{program}` exited with {code}: {}", tail(&stderr)),
            )),
            Err(libc::SIGKILL) if crate::memory::oom_killed_since(oom_kills_before) => {
                Err(out_of_memory(&self.function, &program))
            }
            Err(signal) => Err(StageError::internal(
                "tool_killed",
                format!("`{program}` was killed by signal {signal}: {}", tail(&stderr)),
            )),
        }
    }
}

/// A tool the kernel killed because this function's replica went over its
/// memory limit. Retried (503): with fewer calls in flight it may fit.
fn out_of_memory(function: &str, program: &str) -> StageError {
    let limit = crate::config::var("MEMORY_LIMIT_MB").ok().flatten().map_or(String::new(), |mb| format!(" of {mb}Mi"));
    StageError::new(
        ErrorKind::Unavailable,
        "out_of_memory",
        format!(
            "`{program}` was killed for memory: function `{function}` used more than its memory limit{limit}; \
             raise `functions.{function}.memory` in the pipeline file, or lower its `max_inflight`"
        ),
    )
}

/// The single URI of input `name`.
pub fn one<'a>(inv: &'a Invocation, name: &str) -> Result<&'a str, StageError> {
    match inv.inputs.get(name) {
        Some(Artifact::One(uri)) => Ok(uri),
        Some(Artifact::Many(_)) => {
            Err(StageError::bad_input("bad_input", format!("input `{name}` must be one URI, not a list")))
        }
        Some(Artifact::Flag(_)) => {
            Err(StageError::bad_input("bad_input", format!("input `{name}` must be one URI, not a flag")))
        }
        None => Err(StageError::bad_input("missing_input", format!("input `{name}` is missing"))),
    }
}

/// The URIs of input `name` (one or many).
pub fn many<'a>(inv: &'a Invocation, name: &str) -> Result<&'a [String], StageError> {
    match inv.inputs.get(name) {
        Some(Artifact::Flag(_)) => {
            Err(StageError::bad_input("bad_input", format!("input `{name}` must be URIs, not a flag")))
        }
        Some(artifact) => Ok(artifact.uris()),
        None => Err(StageError::bad_input("missing_input", format!("input `{name}` is missing"))),
    }
}

/// Reap `pid`, returning its exit code (or the signal that killed it) and its peak RSS in KiB.
fn wait4(pid: i32) -> (Result<i32, i32>, u64) {
    let mut status = 0;
    // SAFETY: rusage is plain data, zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our child; status and usage point to live locals.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return (Err(-1), 0);
    }
    let code = if libc::WIFEXITED(status) { Ok(libc::WEXITSTATUS(status)) } else { Err(libc::WTERMSIG(status)) };
    (code, usage.ru_maxrss.max(0) as u64)
}

fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

#[cfg(test)]
mod capped_tests {
    use super::{read_capped, Keep};

    #[test]
    fn a_capped_read_keeps_the_head_or_the_tail_and_says_there_was_more() {
        let text = b"the first words, then the last ones".repeat(5000);
        let (head, more) = read_capped(&text[..], 10, Keep::Head);
        assert_eq!((head.as_slice(), more), (&b"the first "[..], true));
        let (tail, more) = read_capped(&text[..], 9, Keep::Tail);
        assert_eq!((tail.as_slice(), more), (&b"last ones"[..], true));
        let (whole, more) = read_capped(&text[..], text.len(), Keep::Head);
        assert_eq!((whole.len(), more), (text.len(), false));
        let (whole, more) = read_capped(&text[..], text.len(), Keep::Tail);
        assert_eq!((whole.len(), more), (text.len(), false));
    }
}
