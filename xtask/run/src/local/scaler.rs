//! The functions the gateway serves and their replicas (processes or
//! containers): started on the first call (cold start) or by `scale.min`,
//! stopped after `idle_timeout` without requests (scale to zero) or on
//! request. At most one replica per function.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use stage_runtime::{ErrorKind, StageError};

use super::replica::{Exit, Launch, Replica, Runner, StartError};
use crate::pipeline;
use crate::pipeline::timeouts::Call;

const STOPPED: u8 = 0;
const STARTING: u8 = 1;
const READY: u8 = 2;

/// What the runtime needs to know of a function, whether it came from the
/// pipeline file or through the gateway's API (`POST /system/functions`).
#[derive(Debug, Clone)]
pub struct Spec {
    pub name: String,
    /// Its timeouts, layer by layer (`pipeline::timeouts`): how long a cold
    /// start may take, how long the gateway waits for its answer, how long
    /// a stopping replica is given.
    pub call: Call,
    pub memory_mb: u64,
    pub cpu: f64,
    pub scale: pipeline::Scale,
    pub secrets: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// What `/system/functions` shows as its environment.
    pub env_vars: BTreeMap<String, String>,
}

impl Spec {
    /// A function of the pipeline file, as the contract describes it.
    pub fn of(function: &pipeline::Function, call: Call) -> Spec {
        use crate::pipeline::{contract, format_duration};
        let mut env_vars: BTreeMap<String, String> = function.env.clone().into_iter().collect();
        env_vars.insert("exec_timeout".into(), format_duration(function.timeout));
        env_vars.insert("max_inflight".into(), function.max_inflight.to_string());
        Spec {
            name: function.name.clone(),
            call,
            memory_mb: function.memory_mb,
            cpu: function.cpu,
            scale: function.scale,
            secrets: function.secrets.clone(),
            labels: contract::labels(function),
            annotations: contract::annotations(function),
            env_vars,
        }
    }
}

/// One function as the gateway sees it.
pub struct Function {
    pub spec: Spec,
    launch: Launch,
    replica: tokio::sync::Mutex<Option<Replica>>,
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
    pub fn new(spec: Spec, launch: Launch) -> Function {
        Function {
            spec,
            launch,
            replica: tokio::sync::Mutex::new(None),
            phase: AtomicU8::new(STOPPED),
            invocations: AtomicU64::new(0),
            inflight: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
        }
    }

    pub fn launch(&self) -> &Launch {
        &self.launch
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

    /// Grace time for stopping: its last call's answer is out by then.
    pub fn grace(&self) -> Duration {
        self.spec.call.stop_grace()
    }
}

/// Every function the gateway serves, by name: the pipeline's, and those
/// deployed through its API.
pub struct Functions {
    by_name: RwLock<BTreeMap<String, Arc<Function>>>,
    runner: Runner,
    pub client: reqwest::Client,
    idle_timeout: Duration,
    closing: AtomicBool,
}

impl Functions {
    pub fn new(functions: Vec<Function>, runner: Runner, idle_timeout: Duration) -> anyhow::Result<Functions> {
        Ok(Functions {
            by_name: RwLock::new(functions.into_iter().map(|f| (f.spec.name.clone(), Arc::new(f))).collect()),
            runner,
            client: reqwest::Client::builder().build()?,
            idle_timeout,
            closing: AtomicBool::new(false),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Function>>> {
        self.by_name.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, name: &str) -> Option<Arc<Function>> {
        self.read().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Function>> {
        self.read().values().cloned().collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Whether this runtime runs images (or processes).
    pub fn runs_images(&self) -> bool {
        matches!(self.runner, Runner::Containers(_))
    }

    /// Add `function`, or replace the one of its name (whose replica is
    /// stopped); start its `scale.min` replica in the background.
    pub async fn deploy(self: &Arc<Self>, function: Function) {
        let function = Arc::new(function);
        let name = function.spec.name.clone();
        let replaced = self.by_name.write().unwrap_or_else(|e| e.into_inner()).insert(name, function.clone());
        if let Some(old) = replaced {
            self.stop(&old, "replaced").await;
        }
        if function.spec.scale.min >= 1 {
            let functions = self.clone();
            tokio::spawn(async move {
                let _ = functions.ensure_running(&function).await;
            });
        }
    }

    /// Remove the function `name` and stop its replica; `false` when there is none.
    pub async fn remove(&self, name: &str) -> bool {
        let removed = self.by_name.write().unwrap_or_else(|e| e.into_inner()).remove(name);
        match removed {
            Some(function) => {
                self.stop(&function, "removed").await;
                true
            }
            None => false,
        }
    }

    /// The URL of a healthy replica of `function`, starting one if none runs
    /// (or the last one died).
    pub async fn ensure_running(&self, function: &Function) -> Result<String, StageError> {
        let mut slot = function.replica.lock().await;
        if let Some(replica) = slot.as_mut() {
            match replica.exited() {
                None => return Ok(replica.url().to_string()),
                Some(exit) => {
                    let (id, status) = (replica.id(), &exit.status);
                    tracing::warn!(function = %function.spec.name, %id, %status, "replica had exited; starting anew");
                    if let Some(replica) = slot.take() {
                        replica.discard().await;
                    }
                }
            }
        }
        if self.closing.load(Ordering::SeqCst) {
            function.phase.store(STOPPED, Ordering::SeqCst);
            return Err(StageError::new(ErrorKind::Unavailable, "shutting_down", "the local runtime is shutting down"));
        }
        function.phase.store(STARTING, Ordering::SeqCst);
        let started = Instant::now();
        match self.runner.start(&function.launch, &self.client, function.spec.call.ready).await {
            Ok(replica) => {
                tracing::info!(function = %function.spec.name, id = %replica.id(), "ready after {:?}", started.elapsed());
                let url = replica.url().to_string();
                *slot = Some(replica);
                *function.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                function.phase.store(READY, Ordering::SeqCst);
                Ok(url)
            }
            Err(err) => {
                function.phase.store(STOPPED, Ordering::SeqCst);
                let err = start_error(&function.spec, err);
                tracing::warn!(function = %function.spec.name, "{}", err.message);
                Err(err)
            }
        }
    }

    /// Why a call to `function` at `url` got no answer: its replica was
    /// killed for memory (a classified error), or `None` when it is still
    /// running or ended otherwise.
    pub async fn out_of_memory(&self, function: &Function, url: &str) -> Option<StageError> {
        let mut slot = tokio::time::timeout(Duration::from_secs(2), function.replica.lock()).await.ok()?;
        let replica = slot.as_mut().filter(|replica| replica.url() == url)?;
        let exit = replica.exited_within(Duration::from_secs(1)).await?;
        exit.out_of_memory.then(|| out_of_memory(&function.spec, "while serving a call"))
    }

    /// Stop `function`'s replica, if any; `why` goes to the log.
    pub async fn stop(&self, function: &Function, why: &str) {
        let mut slot = function.replica.lock().await;
        if let Some(replica) = slot.take() {
            tracing::info!(function = %function.spec.name, id = %replica.id(), "stopping replica ({why})");
            function.phase.store(STOPPED, Ordering::SeqCst);
            let exit = replica.stop(function.grace()).await;
            let status = exit.map_or("status unknown".into(), |exit| exit.status);
            tracing::info!(function = %function.spec.name, "stopped ({status})");
        }
        function.phase.store(STOPPED, Ordering::SeqCst);
    }

    /// Set the replica count: 0 stops the replica, more starts one (one is the
    /// most this runtime runs per function).
    pub async fn scale(&self, function: &Function, replicas: u64) -> Result<(), StageError> {
        if replicas == 0 {
            self.stop(function, "scaled to 0").await;
            return Ok(());
        }
        if replicas > 1 {
            let name = &function.spec.name;
            tracing::info!(function = %name, replicas, "the local runtime runs one replica per function; starting one");
        }
        self.ensure_running(function).await.map(drop)
    }

    /// Start the functions with `scale.min >= 1`; failures are logged, and
    /// the next call tries again.
    pub async fn start_minimum(&self) {
        self.runner.clean_up().await;
        let functions = self.all();
        let starts = functions.iter().filter(|f| f.spec.scale.min >= 1).map(|f| self.ensure_running(f));
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
            for function in &self.all() {
                self.reap(function);
                let idle = function.inflight.load(Ordering::SeqCst) == 0
                    && function.last_used.lock().unwrap_or_else(|e| e.into_inner()).elapsed() >= self.idle_timeout;
                if function.spec.scale.min == 0 && idle && function.phase.load(Ordering::SeqCst) == READY {
                    // A call that arrived meanwhile holds the replica lock or is counted in flight.
                    let Ok(mut slot) = function.replica.try_lock() else { continue };
                    if function.inflight.load(Ordering::SeqCst) > 0 {
                        continue;
                    }
                    let Some(replica) = slot.take() else { continue };
                    function.phase.store(STOPPED, Ordering::SeqCst);
                    let (name, id, idle) = (&function.spec.name, replica.id(), self.idle_timeout);
                    tracing::info!(function = %name, %id, "idle for {idle:?}; scaling to zero");
                    let grace = function.grace();
                    // Stop outside the lock so a new call can start a fresh replica right away.
                    drop(slot);
                    tokio::spawn(async move { replica.stop(grace).await });
                }
            }
        }
    }

    /// Forget the replica of `function` if it has exited.
    fn reap(&self, function: &Function) {
        let Ok(mut slot) = function.replica.try_lock() else { return };
        if let Some(replica) = slot.as_mut() {
            if let Some(exit) = replica.exited() {
                let (id, status) = (replica.id(), &exit.status);
                tracing::warn!(function = %function.spec.name, %id, %status, out_of_memory = exit.out_of_memory, "replica exited");
                if let Some(replica) = slot.take() {
                    tokio::spawn(replica.discard());
                }
                function.phase.store(STOPPED, Ordering::SeqCst);
            }
        }
    }

    /// Refuse new starts, then stop every process (in parallel).
    pub async fn stop_all(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let functions = self.all();
        futures::future::join_all(functions.iter().map(|f| self.stop(f, "runtime shutting down"))).await;
        // And whatever replica had exited and was not removed yet (a container
        // killed for memory moments ago).
        self.runner.clean_up().await;
    }
}

/// A replica of `spec` the kernel killed for using more than its memory.
fn out_of_memory(spec: &Spec, when: &str) -> StageError {
    let name = &spec.name;
    StageError::new(
        ErrorKind::BadGateway,
        "out_of_memory",
        format!(
            "function `{name}` was killed for using more than its memory limit of {}Mi ({when}); \
             raise `functions.{name}.memory` in the pipeline file, or lower its `max_inflight`",
            spec.memory_mb
        ),
    )
}

/// The error a caller sees when a cold start failed.
fn start_error(spec: &Spec, err: StartError) -> StageError {
    let function = &spec.name;
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
        StartError::Exited { exit: Exit { out_of_memory: true, .. }, log } => {
            let mut error = out_of_memory(spec, "during start");
            error.message = with_log(error.message, log);
            error
        }
        StartError::Exited { exit, log } => StageError::new(
            ErrorKind::BadGateway,
            "function_exited",
            with_log(format!("function `{function}` exited during start ({})", exit.status), log),
        ),
        StartError::Timeout { after, log } => StageError::new(
            ErrorKind::Unavailable,
            "start_timeout",
            with_log(format!("function `{function}` did not become healthy within {after:?}"), log),
        ),
    }
}
