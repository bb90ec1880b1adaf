//! The functions the gateway serves and their processes: started on the first
//! call (cold start) or by `scale.min`, stopped after `idle_timeout` without
//! requests (scale to zero) or on request. At most one process per function.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stage_runtime::{ErrorKind, StageError};

use super::process::{Launch, Process, Spawner, StartError};
use crate::pipeline;

/// How long a cold start may take before the caller gets an error.
pub const START_DEADLINE: Duration = Duration::from_secs(30);
/// Added to a function's timeout: its drain after SIGTERM and the proxy's wait.
pub const MARGIN: Duration = Duration::from_secs(5);

const STOPPED: u8 = 0;
const STARTING: u8 = 1;
const READY: u8 = 2;

/// One function as the gateway sees it.
pub struct Function {
    pub spec: pipeline::Function,
    launch: Launch,
    process: tokio::sync::Mutex<Option<Process>>,
    phase: AtomicU8,
    pub invocations: AtomicU64,
    inflight: AtomicUsize,
    last_used: Mutex<Instant>,
}

/// Counts for `/system/functions`.
pub struct Replicas {
    pub replicas: u64,
    pub available: u64,
}

/// Marks one request in flight; dropping it marks the function used now.
pub struct Busy(Arc<Function>);

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Function {
    pub fn new(spec: pipeline::Function, launch: Launch) -> Function {
        Function {
            spec,
            launch,
            process: tokio::sync::Mutex::new(None),
            phase: AtomicU8::new(STOPPED),
            invocations: AtomicU64::new(0),
            inflight: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
        }
    }

    pub fn binary(&self) -> &std::path::Path {
        &self.launch.binary
    }

    pub fn env(&self) -> &[(String, String)] {
        &self.launch.env
    }

    pub fn replicas(&self) -> Replicas {
        match self.phase.load(Ordering::SeqCst) {
            READY => Replicas { replicas: 1, available: 1 },
            STARTING => Replicas { replicas: 1, available: 0 },
            _ => Replicas { replicas: 0, available: 0 },
        }
    }

    /// Count a call and hold the function busy until the guard drops.
    pub fn begin_call(self: &Arc<Self>) -> Busy {
        self.invocations.fetch_add(1, Ordering::SeqCst);
        self.inflight.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// Grace time for stopping: the function's own timeout plus its drain.
    pub fn grace(&self) -> Duration {
        self.spec.timeout + MARGIN
    }
}

/// Every function of the pipeline, by name.
pub struct Functions {
    by_name: BTreeMap<String, Arc<Function>>,
    spawner: Spawner,
    pub client: reqwest::Client,
    idle_timeout: Duration,
    closing: AtomicBool,
}

impl Functions {
    pub fn new(functions: Vec<Function>, idle_timeout: Duration) -> anyhow::Result<Functions> {
        Ok(Functions {
            by_name: functions.into_iter().map(|f| (f.spec.name.clone(), Arc::new(f))).collect(),
            spawner: Spawner::start()?,
            client: reqwest::Client::builder().build()?,
            idle_timeout,
            closing: AtomicBool::new(false),
        })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Function>> {
        self.by_name.get(name)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Function>> {
        self.by_name.values()
    }

    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// The URL of a healthy process of `function`, starting one if none runs
    /// (or the last one died).
    pub async fn ensure_running(&self, function: &Function) -> Result<String, StageError> {
        let mut slot = function.process.lock().await;
        if let Some(process) = slot.as_mut() {
            match process.exited() {
                None => return Ok(process.url.clone()),
                Some(status) => {
                    let pid = process.pid;
                    tracing::warn!(function = %function.spec.name, pid, %status, "process had exited; starting anew");
                    *slot = None;
                }
            }
        }
        if self.closing.load(Ordering::SeqCst) {
            function.phase.store(STOPPED, Ordering::SeqCst);
            return Err(StageError::new(ErrorKind::Unavailable, "shutting_down", "the local runtime is shutting down"));
        }
        function.phase.store(STARTING, Ordering::SeqCst);
        let started = Instant::now();
        match self.spawner.start_process(&function.launch, &self.client, START_DEADLINE).await {
            Ok(process) => {
                let pid = process.pid;
                tracing::info!(function = %function.spec.name, pid, "ready after {:?}", started.elapsed());
                let url = process.url.clone();
                *slot = Some(process);
                *function.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                function.phase.store(READY, Ordering::SeqCst);
                Ok(url)
            }
            Err(err) => {
                function.phase.store(STOPPED, Ordering::SeqCst);
                let err = start_error(&function.spec.name, err);
                tracing::warn!(function = %function.spec.name, "{}", err.message);
                Err(err)
            }
        }
    }

    /// Stop `function`'s process, if any; `why` goes to the log.
    pub async fn stop(&self, function: &Function, why: &str) {
        let mut slot = function.process.lock().await;
        if let Some(process) = slot.take() {
            tracing::info!(function = %function.spec.name, pid = process.pid, "stopping process ({why})");
            function.phase.store(STOPPED, Ordering::SeqCst);
            let status = process.stop(function.grace()).await;
            let status = status.map_or("status unknown".into(), |s| s.to_string());
            tracing::info!(function = %function.spec.name, "stopped ({status})");
        }
        function.phase.store(STOPPED, Ordering::SeqCst);
    }

    /// Set the replica count: 0 stops the process, more starts one (one is the
    /// most this runtime runs per function).
    pub async fn scale(&self, function: &Function, replicas: u64) -> Result<(), StageError> {
        if replicas == 0 {
            self.stop(function, "scaled to 0").await;
            return Ok(());
        }
        if replicas > 1 {
            let name = &function.spec.name;
            tracing::info!(function = %name, replicas, "the local runtime runs one process per function; starting one");
        }
        self.ensure_running(function).await.map(drop)
    }

    /// Start the functions with `scale.min >= 1`; failures are logged, and
    /// the next call tries again.
    pub async fn start_minimum(&self) {
        let starts = self.all().filter(|f| f.spec.scale.min >= 1).map(|f| self.ensure_running(f));
        futures::future::join_all(starts).await;
    }

    /// Every so often: forget processes that died, stop those idle for
    /// `idle_timeout` (unless `scale.min` keeps them). Runs forever.
    pub async fn scale_idle(&self) {
        let every = (self.idle_timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for function in self.all() {
                self.reap(function);
                let idle = function.inflight.load(Ordering::SeqCst) == 0
                    && function.last_used.lock().unwrap_or_else(|e| e.into_inner()).elapsed() >= self.idle_timeout;
                if function.spec.scale.min == 0 && idle && function.phase.load(Ordering::SeqCst) == READY {
                    // A call that arrived meanwhile holds the process lock or is counted in flight.
                    let Ok(mut slot) = function.process.try_lock() else { continue };
                    if function.inflight.load(Ordering::SeqCst) > 0 {
                        continue;
                    }
                    let Some(process) = slot.take() else { continue };
                    function.phase.store(STOPPED, Ordering::SeqCst);
                    let (name, pid, idle) = (&function.spec.name, process.pid, self.idle_timeout);
                    tracing::info!(function = %name, pid, "idle for {idle:?}; scaling to zero");
                    let grace = function.grace();
                    // Stop outside the lock so a new call can start a fresh process right away.
                    drop(slot);
                    tokio::spawn(async move { process.stop(grace).await });
                }
            }
        }
    }

    /// Forget the process of `function` if it has exited.
    fn reap(&self, function: &Function) {
        let Ok(mut slot) = function.process.try_lock() else { return };
        if let Some(process) = slot.as_mut() {
            if let Some(status) = process.exited() {
                tracing::warn!(function = %function.spec.name, pid = process.pid, %status, "process exited");
                *slot = None;
                function.phase.store(STOPPED, Ordering::SeqCst);
            }
        }
    }

    /// Refuse new starts, then stop every process (in parallel).
    pub async fn stop_all(&self) {
        self.closing.store(true, Ordering::SeqCst);
        futures::future::join_all(self.all().map(|f| self.stop(f, "runtime shutting down"))).await;
    }
}

/// The error a caller sees when a cold start failed.
fn start_error(function: &str, err: StartError) -> StageError {
    let with_log = |message: String, log: String| {
        if log.trim().is_empty() {
            message
        } else {
            format!("{message}; its log ends with:\n{log}")
        }
    };
    match err {
        StartError::Spawn(err) => {
            StageError::internal("spawn_failed", format!("cannot start function `{function}`: {err:#}"))
        }
        StartError::Exited { status, log } => StageError::new(
            ErrorKind::BadGateway,
            "function_exited",
            with_log(format!("function `{function}` exited during start ({status})"), log),
        ),
        StartError::Timeout { after, log } => StageError::new(
            ErrorKind::Unavailable,
            "start_timeout",
            with_log(format!("function `{function}` did not become healthy within {after:?}"), log),
        ),
    }
}
