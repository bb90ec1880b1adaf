//! fault: a function that misbehaves on purpose, chosen by `FAULT`:
//!
//! - `ok` (default): record the invocation and answer at once
//! - `sleep:MS`: work for MS milliseconds, then answer
//! - `hang`: never finish on its own (only the exec timeout ends it)
//! - `fail`: answer 500
//! - `unavailable:N`: answer 503 to the first N invocations
//! - `crash:N`: kill its own process mid-request on the first N invocations,
//!   counted across restarts in `FAULT_STATE_DIR`
//!
//! Every successful answer writes one object, `<function>.json`, listing the
//! inputs it saw, and returns it as the output named after the function.
//! `FAULT_ITEMS=N` adds the list `items` of N URIs to fan out over;
//! `FAULT_FLAG=NAME:true`, `NAME:false` or `NAME:SCOPE,SCOPE` adds the flag
//! `NAME`, true everywhere, nowhere, or only in the listed scopes.
//! Not part of VideoSearcher: tests declare it in their pipeline files.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use stage_runtime::{Artifact, Artifacts, Context, ErrorKind, Handler, Invocation, StageError};

enum Mode {
    Ok,
    Sleep(Duration),
    Hang,
    Fail,
    Unavailable(u32),
    Crash(u32),
}

struct Fault {
    mode: Mode,
    calls: AtomicU32,
    state_dir: PathBuf,
}

fn main() -> ExitCode {
    stage_runtime::serve(|config| {
        let text = stage_runtime::var("FAULT")?.unwrap_or_else(|| "ok".into());
        let (name, arg) = text.split_once(':').unwrap_or((&text, "0"));
        let n: u64 = arg.parse().map_err(|_| anyhow::anyhow!("FAULT={text}: `{arg}` is not a number"))?;
        let mode = match name {
            "ok" => Mode::Ok,
            "sleep" => Mode::Sleep(Duration::from_millis(n)),
            "hang" => Mode::Hang,
            "fail" => Mode::Fail,
            "unavailable" => Mode::Unavailable(n as u32),
            "crash" => Mode::Crash(n as u32),
            _ => anyhow::bail!("FAULT={text}: unknown mode `{name}`"),
        };
        let state_dir = stage_runtime::var("FAULT_STATE_DIR")?.map_or_else(std::env::temp_dir, PathBuf::from);
        let _ = config;
        Ok(Fault { mode, calls: AtomicU32::new(0), state_dir })
    })
}

impl Handler for Fault {
    fn handle(&self, cx: &Context, inv: &Invocation) -> Result<Artifacts, StageError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        match self.mode {
            Mode::Ok => {}
            Mode::Sleep(time) => sleep(cx, time)?,
            Mode::Hang => loop {
                sleep(cx, Duration::from_secs(3600))?;
            },
            Mode::Fail => return Err(StageError::internal("fault", "failing on purpose")),
            Mode::Unavailable(n) if call <= n => {
                return Err(StageError::new(ErrorKind::Unavailable, "fault", format!("unavailable on call {call}")))
            }
            Mode::Unavailable(_) => {}
            Mode::Crash(n) => {
                let marker = self.state_dir.join(format!("{}.crashes", cx.function));
                let crashes: u32 = std::fs::read_to_string(&marker).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
                if crashes < n {
                    std::fs::write(&marker, (crashes + 1).to_string()).map_err(anyhow::Error::from)?;
                    std::thread::sleep(Duration::from_millis(100));
                    // SAFETY: raising a signal against ourselves; the point is to die mid-request.
                    unsafe { libc::raise(libc::SIGKILL) };
                }
            }
        }
        if stage_runtime::var("S3_ENDPOINT").ok().flatten().is_none() {
            return Ok(Artifacts::new());
        }
        let seen: Vec<&String> = inv.inputs.keys().collect();
        let uri = cx.put_json(&serde_json::json!({ "function": cx.function, "inputs": seen }), &format!("{}.json", cx.function))?;
        let mut outputs = Artifacts::from([(cx.function.clone(), Artifact::One(uri.clone()))]);
        // A list to fan out over, when asked to produce one.
        if let Some(n) = stage_runtime::var("FAULT_ITEMS").ok().flatten().and_then(|n| n.parse::<usize>().ok()) {
            outputs.insert("items".into(), Artifact::Many(vec![uri; n]));
        }
        if let Some(flag) = stage_runtime::var("FAULT_FLAG")? {
            let (name, value) = flag.split_once(':').ok_or_else(|| anyhow::anyhow!("FAULT_FLAG={flag}: write NAME:VALUE"))?;
            let value = match value {
                "true" => true,
                "false" => false,
                scopes => inv.scope.as_deref().is_some_and(|scope| scopes.split(',').any(|s| s == scope)),
            };
            outputs.insert(name.to_string(), Artifact::Flag(value));
        }
        Ok(outputs)
    }
}

/// Sleep in small steps so that a cancelled invocation stops promptly.
fn sleep(cx: &Context, time: Duration) -> Result<(), StageError> {
    let deadline = std::time::Instant::now() + time;
    while std::time::Instant::now() < deadline {
        cx.check_cancelled()?;
        std::thread::sleep(Duration::from_millis(10).min(deadline - std::time::Instant::now()));
    }
    Ok(())
}
