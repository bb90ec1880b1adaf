//! The functions the gateway serves and their replicas (processes or
//! containers), scaled the way OpenFaaS's autoscaler scales on its inflight
//! metric:
//!
//! - a call goes to the ready replica with the fewest calls in flight that
//!   has room (fewer than the function's `max_inflight`);
//! - when none has room, the call starts a new replica (a cold start), up to
//!   `scale.max`, or joins one that is starting and has room; a function's
//!   first replica always starts, and each one more only while the CPU
//!   declared by every replica running fits the machine's cores (one
//!   machine is a one-node cluster that schedules by CPU requests: more
//!   replicas than cores would only make every call slower, past its
//!   timeout);
//! - at `scale.max` (or the machine's cores) with every replica full, the call waits at the gateway
//!   for a place, at most as long as a cold start may take (`call.ready`,
//!   the layer the timeout model gives the gateway before `upstream`), and is
//!   then sent to the least busy replica, whose own limit answers 429
//!   (back-pressure the orchestrator waits out);
//! - a replica idle for `idle_timeout` is stopped, down to `scale.min`
//!   (scale to zero when it is 0);
//! - how long each call waited for its replica (start or place) is
//!   measured and given to the caller (`X-Queue-Wait-Seconds`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use stage_runtime::{ErrorKind, StageError};

use super::replica::{Exit, Launch, Replica, Runner, StartError};
use crate::pipeline;
use crate::pipeline::timeouts::Call;

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
    /// Cores reserved (`requests.cpu`): what placement counts; 0: none declared.
    pub cpu: f64,
    /// Cores at most (`limits.cpu`).
    pub cpu_limit: Option<f64>,
    pub scale: pipeline::Scale,
    /// Calls one replica serves at once (its watchdog's `max_inflight`);
    /// 0: no bound, one replica serves every call.
    pub max_inflight: usize,
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
            cpu_limit: function.cpu_limit,
            scale: function.scale,
            max_inflight: function.max_inflight,
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
    pool: Mutex<Pool>,
    /// Woken whenever a place may have freed: a call ended, a replica
    /// became ready, a start failed, a replica went.
    changed: tokio::sync::Notify,
    pub invocations: AtomicU64,
}

/// A function's replicas, ready or starting.
#[derive(Default)]
struct Pool {
    slots: Vec<Slot>,
    next_serial: u64,
    /// The last replicas that exited, by URL: a call that lost its answer
    /// learns why even after the replica was reaped.
    exited: std::collections::VecDeque<(String, Exit)>,
}

/// How many exits a pool remembers.
const EXITS_KEPT: usize = 16;

/// The CPU the replicas running on this machine declare, against its cores.
struct Cpu {
    cores_milli: u64,
    declared_milli: Arc<std::sync::atomic::AtomicU64>,
}

/// A replica's declared CPU, counted while it exists.
struct Declared {
    milli: u64,
    total: Arc<std::sync::atomic::AtomicU64>,
}

impl Drop for Declared {
    fn drop(&mut self) {
        self.total.fetch_sub(self.milli, Ordering::SeqCst);
    }
}

impl Cpu {
    /// This machine's cores.
    pub fn of_this_machine() -> Cpu {
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as u64;
        Cpu { cores_milli: cores * 1000, declared_milli: Default::default() }
    }

    /// Count `cpu` for a new replica: always (`must`), or only if it fits.
    fn declare(&self, cpu: f64, must: bool) -> Option<Declared> {
        let milli = (cpu.max(0.0) * 1000.0).round() as u64;
        let total = &self.declared_milli;
        let fits = |declared: u64| (must || declared + milli <= self.cores_milli).then_some(declared + milli);
        total.fetch_update(Ordering::SeqCst, Ordering::SeqCst, fits).ok()?;
        Some(Declared { milli, total: total.clone() })
    }
}

/// One replica: starting (no `replica` yet) or ready.
struct Slot {
    serial: u64,
    _declared: Declared,
    replica: Option<Replica>,
    /// Its start's outcome, for the calls that joined it while it started.
    started: tokio::sync::watch::Receiver<Option<Result<String, StageError>>>,
    /// Calls sent to it (or waiting for it to become ready).
    inflight: usize,
    last_used: Instant,
}

/// Counts for `/system/functions`.
pub struct Replicas {
    pub replicas: u64,
    pub available: u64,
}

/// A call's place on one replica; dropping it frees the place and marks the
/// replica used now.
pub struct Busy {
    function: Arc<Function>,
    serial: u64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut pool = self.function.lock();
        if let Some(slot) = pool.slots.iter_mut().find(|slot| slot.serial == self.serial) {
            slot.inflight = slot.inflight.saturating_sub(1);
            slot.last_used = Instant::now();
        }
        drop(pool);
        self.function.changed.notify_waiters();
    }
}

/// Where a call goes: the replica's URL, how long it waited for it, and its
/// place there (held until the answer has been sent on).
pub struct Lease {
    pub url: String,
    pub waited: Duration,
    pub busy: Busy,
}

/// Where a starting replica's outcome is sent: its URL, or why it did not start.
type Started = tokio::sync::watch::Sender<Option<Result<String, StageError>>>;

/// What a call does next, decided under the pool's lock.
enum Next {
    /// Send it to this ready replica.
    Go(u64, String),
    /// Wait for this starting replica.
    Join(u64, tokio::sync::watch::Receiver<Option<Result<String, StageError>>>),
    /// Start this new replica.
    Start(u64, Started),
    /// Every replica is full and there are `scale.max`: wait for a place.
    Wait,
}

impl Function {
    pub fn new(spec: Spec, launch: Launch) -> Function {
        Function {
            spec,
            launch,
            pool: Mutex::new(Pool::default()),
            changed: tokio::sync::Notify::new(),
            invocations: AtomicU64::new(0),
        }
    }

    pub fn launch(&self) -> &Launch {
        &self.launch
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn replicas(&self) -> Replicas {
        let pool = self.lock();
        let available = pool.slots.iter().filter(|slot| slot.replica.is_some()).count() as u64;
        Replicas { replicas: pool.slots.len() as u64, available }
    }

    /// The most replicas it may run (at least one, whatever `scale.max` says).
    fn most(&self) -> usize {
        (self.spec.scale.max as usize).max(1)
    }

    /// Whether a replica with `inflight` calls has room for one more.
    fn has_room(&self, inflight: usize) -> bool {
        self.spec.max_inflight == 0 || inflight < self.spec.max_inflight
    }

    /// Grace time for stopping: its last call's answer is out by then.
    pub fn grace(&self) -> Duration {
        self.spec.call.stop_grace()
    }

    /// Forget the replicas that have exited (they are discarded in the background).
    fn reap(&self, pool: &mut Pool) {
        let name = &self.spec.name;
        let mut exits = Vec::new();
        pool.slots.retain_mut(|slot| {
            let Some(replica) = slot.replica.as_mut() else { return true };
            let Some(exit) = replica.exited() else { return true };
            let (id, status) = (replica.id(), &exit.status);
            tracing::warn!(function = %name, %id, %status, out_of_memory = exit.out_of_memory, "replica exited");
            exits.push((replica.url().to_string(), exit));
            if let Some(replica) = slot.replica.take() {
                tokio::spawn(replica.discard());
            }
            false
        });
        for exit in exits {
            if pool.exited.len() == EXITS_KEPT {
                pool.exited.pop_front();
            }
            pool.exited.push_back(exit);
        }
    }

    /// Decide where a call goes; `overflow`: past its wait, any replica will do.
    fn next(&self, pool: &mut Pool, cpu: &Cpu, overflow: bool) -> Next {
        self.reap(pool);
        // Ready replicas first, then the least busy.
        let least = |pool: &Pool, room: &dyn Fn(usize) -> bool| {
            (0..pool.slots.len())
                .filter(|&i| room(pool.slots[i].inflight))
                .min_by_key(|&i| (pool.slots[i].replica.is_none(), pool.slots[i].inflight))
        };
        let room = least(pool, &|inflight| self.has_room(inflight));
        if room.is_none() && pool.slots.len() < self.most() {
            if let Some(declared) = cpu.declare(self.spec.cpu, pool.slots.is_empty()) {
                let (serial, sender) = pool.add(1, declared);
                return Next::Start(serial, sender);
            }
        }
        // No room and no new replica: past its wait, the least busy takes it.
        let Some(chosen) = room.or_else(|| least(pool, &|_| true).filter(|_| overflow)) else { return Next::Wait };
        let slot = &mut pool.slots[chosen];
        slot.inflight += 1;
        match &slot.replica {
            Some(replica) => Next::Go(slot.serial, replica.url().to_string()),
            None => Next::Join(slot.serial, slot.started.clone()),
        }
    }
}

impl Pool {
    /// A new starting replica with `inflight` calls waiting for it; the
    /// sender is for its start's outcome.
    fn add(&mut self, inflight: usize, declared: Declared) -> (u64, Started) {
        let (sender, started) = tokio::sync::watch::channel(None);
        let serial = self.next_serial;
        self.next_serial += 1;
        self.slots.push(Slot { serial, _declared: declared, replica: None, started, inflight, last_used: Instant::now() });
        (serial, sender)
    }
}

/// Every function the gateway serves, by name: the pipeline's, and those
/// deployed through its API.
pub struct Functions {
    by_name: RwLock<BTreeMap<String, Arc<Function>>>,
    runner: Runner,
    cpu: Cpu,
    pub client: reqwest::Client,
    idle_timeout: Duration,
    closing: AtomicBool,
}

impl Functions {
    pub fn new(functions: Vec<Function>, runner: Runner, idle_timeout: Duration) -> anyhow::Result<Functions> {
        Ok(Functions {
            by_name: RwLock::new(functions.into_iter().map(|f| (f.spec.name.clone(), Arc::new(f))).collect()),
            runner,
            cpu: Cpu::of_this_machine(),
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

    /// Add `function`, or replace the one of its name (whose replicas are
    /// stopped); start its `scale.min` replicas in the background.
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
                let _ = functions.scale_up(&function, function.spec.scale.min as usize).await;
            });
        }
    }

    /// Remove the function `name` and stop its replicas; `false` when there is none.
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

    /// A place for one call on a replica of `function` (see the module's
    /// rules): a ready one with room, a new one, or, at `scale.max`, the
    /// first to free a place within `call.ready`.
    pub async fn admit(self: &Arc<Self>, function: &Arc<Function>) -> Result<Lease, StageError> {
        function.invocations.fetch_add(1, Ordering::SeqCst);
        let arrived = Instant::now();
        let queue_until = tokio::time::Instant::from_std(arrived + function.spec.call.ready);
        loop {
            if self.closing.load(Ordering::SeqCst) {
                return Err(StageError::new(ErrorKind::Unavailable, "shutting_down", "the local runtime is shutting down"));
            }
            let changed = function.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let overflow = tokio::time::Instant::now() >= queue_until;
            let next = function.next(&mut function.lock(), &self.cpu, overflow);
            let (serial, mut started) = match next {
                Next::Go(serial, url) => {
                    let busy = Busy { function: function.clone(), serial };
                    return Ok(Lease { url, waited: arrived.elapsed(), busy });
                }
                Next::Start(serial, sender) => {
                    let started = sender.subscribe();
                    self.start(function.clone(), serial, sender);
                    (serial, started)
                }
                Next::Join(serial, started) => (serial, started),
                Next::Wait => {
                    let _ = tokio::time::timeout_at(queue_until, changed).await;
                    continue;
                }
            };
            // Held from here: a caller that goes away frees its place.
            let busy = Busy { function: function.clone(), serial };
            let outcome = started.wait_for(Option::is_some).await.map(|outcome| outcome.clone());
            return match outcome {
                Ok(Some(Ok(url))) => Ok(Lease { url, waited: arrived.elapsed(), busy }),
                Ok(Some(Err(err))) => Err(err),
                _ => Err(StageError::internal("start_lost", format!("the start of a replica of `{}` ended without an outcome", function.spec.name))),
            };
        }
    }

    /// Start the replica of `function`'s starting slot `serial` in the
    /// background (a caller that goes away does not cancel it) and send its
    /// URL, once ready, or why it did not start (the slot then goes).
    fn start(self: &Arc<Self>, function: Arc<Function>, serial: u64, outcome: Started) {
        let functions = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = functions.runner.start(&function.launch, &functions.client, function.spec.call.ready).await;
            // Into its slot, unless the slot went meanwhile (scaled to zero,
            // removed, shutting down): then it is stopped.
            let (sent, unwanted) = {
                let mut pool = function.lock();
                let position = pool.slots.iter().position(|slot| slot.serial == serial);
                match (result, position) {
                    (Ok(replica), Some(i)) => {
                        let (name, id, replicas) = (&function.spec.name, replica.id(), pool.slots.len());
                        tracing::info!(function = %name, %id, replicas, "ready after {:?}", started.elapsed());
                        let url = replica.url().to_string();
                        // A port used again: an earlier replica's exit there is not this one's.
                        pool.exited.retain(|(exited, _)| *exited != url);
                        let slot = &mut pool.slots[i];
                        slot.replica = Some(replica);
                        slot.last_used = Instant::now();
                        (Ok(url), None)
                    }
                    (Ok(replica), None) => {
                        let name = &function.spec.name;
                        let message = format!("function `{name}` was stopped while a replica started");
                        (Err(StageError::new(ErrorKind::Unavailable, "replica_stopped", message)), Some(replica))
                    }
                    (Err(err), position) => {
                        if let Some(i) = position {
                            pool.slots.remove(i);
                        }
                        let err = start_error(&function.spec, err);
                        tracing::warn!(function = %function.spec.name, "{}", err.message);
                        (Err(err), None)
                    }
                }
            };
            if let Some(replica) = unwanted {
                replica.stop(function.grace()).await;
            }
            outcome.send_replace(Some(sent));
            function.changed.notify_waiters();
        });
    }

    /// Why a call to `function` at `url` got no answer: its replica was
    /// killed for memory (a classified error), or `None` when it is still
    /// running or ended otherwise (a container's exit is known a moment
    /// after its connections drop: it is asked for a second).
    pub async fn out_of_memory(&self, function: &Function, url: &str) -> Option<StageError> {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            {
                let mut pool = function.lock();
                // Exited already (and reaped), or exiting now.
                function.reap(&mut pool);
                if let Some((_, exit)) = pool.exited.iter().rev().find(|(exited, _)| exited == url) {
                    return exit.out_of_memory.then(|| out_of_memory(&function.spec, "while serving a call"));
                }
                if !pool.slots.iter().any(|slot| slot.replica.as_ref().is_some_and(|r| r.url() == url)) {
                    return None;
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stop every replica of `function` (in parallel); `why` goes to the log.
    pub async fn stop(&self, function: &Function, why: &str) {
        let slots: Vec<Slot> = std::mem::take(&mut function.lock().slots);
        self.stop_slots(function, slots, why).await;
    }

    async fn stop_slots(&self, function: &Function, slots: Vec<Slot>, why: &str) {
        let name = &function.spec.name;
        let stops = slots.into_iter().filter_map(|slot| slot.replica).map(|replica| async move {
            tracing::info!(function = %name, id = %replica.id(), "stopping replica ({why})");
            let exit = replica.stop(function.grace()).await;
            let status = exit.map_or("status unknown".into(), |exit| exit.status);
            tracing::info!(function = %name, "stopped ({status})");
        });
        futures::future::join_all(stops).await;
        function.changed.notify_waiters();
    }

    /// Set the replica count, within `scale.max`: 0 stops them all; fewer
    /// stops the least busy; more starts new ones and waits until they are ready.
    pub async fn scale(self: &Arc<Self>, function: &Arc<Function>, replicas: u64) -> Result<(), StageError> {
        let wanted = replicas as usize;
        if wanted > function.most() {
            let (name, most) = (&function.spec.name, function.most());
            tracing::info!(function = %name, replicas, "scale.max is {most}: running {most}");
        }
        let wanted = wanted.min(function.most());
        let surplus: Vec<Slot> = {
            let mut pool = function.lock();
            let ready = pool.slots.iter().filter(|slot| slot.replica.is_some()).count();
            let extra = pool.slots.len().saturating_sub(wanted).min(ready);
            pool.slots.sort_by_key(|slot| (slot.replica.is_none(), slot.inflight));
            pool.slots.drain(..extra).collect()
        };
        if !surplus.is_empty() {
            self.stop_slots(function, surplus, &format!("scaled to {replicas}")).await;
            return Ok(());
        }
        self.scale_up(function, wanted).await
    }

    /// Start replicas until `function` has `wanted`, and wait for them.
    async fn scale_up(self: &Arc<Self>, function: &Arc<Function>, wanted: usize) -> Result<(), StageError> {
        let mut starts = Vec::new();
        {
            let mut pool = function.lock();
            function.reap(&mut pool);
            for _ in pool.slots.len()..wanted {
                // Asked for: counted whether it fits or not.
                let declared = self.cpu.declare(function.spec.cpu, true).expect("a must always counts");
                let (serial, sender) = pool.add(0, declared);
                starts.push((serial, sender.subscribe()));
                self.start(function.clone(), serial, sender);
            }
        }
        let mut first_error = None;
        for (_, mut started) in starts {
            if let Ok(outcome) = started.wait_for(Option::is_some).await {
                if let Some(Err(err)) = &*outcome {
                    first_error.get_or_insert(err.clone());
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Start the functions' `scale.min` replicas; failures are logged, and
    /// the next call tries again.
    pub async fn start_minimum(self: &Arc<Self>) {
        self.runner.clean_up().await;
        let functions = self.all();
        let starts = functions.iter().filter(|f| f.spec.scale.min >= 1).map(|f| self.scale_up(f, f.spec.scale.min as usize));
        futures::future::join_all(starts).await;
    }

    /// Every so often: forget replicas that died, stop those idle for
    /// `idle_timeout` down to `scale.min`. Runs forever.
    pub async fn scale_idle(self: &Arc<Self>) {
        let every = (self.idle_timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(5));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            for function in self.all() {
                let idle: Vec<Slot> = {
                    let mut pool = function.lock();
                    function.reap(&mut pool);
                    let (min, mut keep) = (function.spec.scale.min as usize, pool.slots.len());
                    let idle_for = self.idle_timeout;
                    pool.slots
                        .extract_if(.., |slot| {
                            let idle = keep > min && slot.replica.is_some() && slot.inflight == 0 && slot.last_used.elapsed() >= idle_for;
                            keep -= usize::from(idle);
                            idle
                        })
                        .collect()
                };
                if idle.is_empty() {
                    continue;
                }
                // In the background: a new call can start a fresh replica meanwhile.
                let functions = self.clone();
                tokio::spawn(async move {
                    let why = format!("idle for {:?}", functions.idle_timeout);
                    functions.stop_slots(&function, idle, &why).await;
                });
            }
        }
    }

    /// Refuse new starts, then stop every replica (in parallel).
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
