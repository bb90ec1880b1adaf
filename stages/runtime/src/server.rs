//! The OpenFaaS watchdog contract, kept by the function itself: `/_/health`,
//! `/_/ready`, `max_inflight` → 429, `exec_timeout` → 504, SIGTERM → health
//! fails, in-flight work drains, then exit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::context::{Context, Usage};
use crate::envelope::{ErrorResponse, Invocation, Metrics, Response};
use crate::error::{ErrorKind, StageError};
use crate::store::Store;
use crate::Handler;

struct Shared<H> {
    handler: Arc<H>,
    config: Config,
    store: Store,
    slots: Option<Arc<Semaphore>>,
    draining: AtomicBool,
    served: AtomicBool,
}

/// The port was taken: the process exits with [`crate::EXIT_PORT_IN_USE`].
#[derive(Debug)]
pub(crate) struct PortInUse;

impl std::fmt::Display for PortInUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the port is in use")
    }
}

pub(crate) async fn run<H: Handler>(handler: H, config: Config, store: Store) -> anyhow::Result<()> {
    let bind: std::net::IpAddr = crate::config::parse_var("BIND_ADDR", [127, 0, 0, 1].into())?;
    let addr = SocketAddr::new(bind, config.port);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let error = anyhow::anyhow!("cannot listen on {addr}: {e}");
        if e.kind() == std::io::ErrorKind::AddrInUse {
            error.context(PortInUse)
        } else {
            error
        }
    })?;
    let shared = Arc::new(Shared {
        handler: Arc::new(handler),
        slots: (config.max_inflight > 0).then(|| Arc::new(Semaphore::new(config.max_inflight))),
        config,
        store,
        draining: AtomicBool::new(false),
        served: AtomicBool::new(false),
    });
    let app = Router::new()
        .route("/_/health", get(health::<H>))
        .route("/_/ready", get(ready::<H>))
        .fallback(invoke::<H>)
        .with_state(shared.clone());
    tracing::info!(function = %shared.config.function, %addr, "listening");

    let drain = shared.clone();
    let drain_started = Arc::new(tokio::sync::Notify::new());
    let notify = drain_started.clone();
    let shutdown = async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        drain.draining.store(true, Ordering::SeqCst);
        notify.notify_one();
        tracing::info!("SIGTERM: health fails now, draining in-flight work");
        tokio::time::sleep(drain.config.drain_delay).await;
    };
    let limit = shared.config.write_timeout + shared.config.drain_delay;
    let server = axum::serve(listener, app).with_graceful_shutdown(shutdown);
    tokio::select! {
        result = server => result?,
        // Connections that never finish can't hold the process past its budget.
        _ = async {
            drain_started.notified().await;
            tokio::time::sleep(limit).await;
        } => tracing::warn!("drain took longer than {limit:?}; exiting"),
    }
    tracing::info!("drained; exiting");
    Ok(())
}

async fn health<H>(State(s): State<Arc<Shared<H>>>) -> impl IntoResponse {
    if s.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "OK")
    }
}

async fn ready<H>(State(s): State<Arc<Shared<H>>>) -> impl IntoResponse {
    if s.draining.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    match &s.slots {
        Some(slots) if slots.available_permits() == 0 => (StatusCode::TOO_MANY_REQUESTS, "busy"),
        _ => (StatusCode::OK, "OK"),
    }
}

async fn invoke<H: Handler>(State(s): State<Arc<Shared<H>>>, body: Bytes) -> HttpResponse {
    let started = Instant::now();
    let permit = match &s.slots {
        None => None,
        Some(slots) => match slots.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                let err = StageError::new(
                    ErrorKind::Overloaded,
                    "overloaded",
                    format!("{} requests in flight (max_inflight)", s.config.max_inflight),
                );
                return error_response(&s, None, err, None);
            }
        },
    };
    let inv: Invocation = match serde_json::from_slice(&body) {
        Ok(inv) => inv,
        Err(e) => {
            let err = StageError::bad_input("bad_json", format!("the request body is not an invocation: {e}"));
            return error_response(&s, None, err, None);
        }
    };
    if let Err(err) = check_name("request_id", &inv.request_id)
        .and_then(|()| inv.scope.as_deref().map_or(Ok(()), |scope| check_name("scope", scope)))
    {
        return error_response(&s, Some(&inv.request_id), err, None);
    }

    let cold_start = !s.served.swap(true, Ordering::SeqCst);
    let usage = Arc::new(Usage::default());
    let peak_self_kb = Arc::new(AtomicU64::new(rss_kb()));
    let sampler = tokio::spawn(sample_rss(peak_self_kb.clone()));

    let deadline = std::time::SystemTime::now() + s.config.exec_timeout;
    let work = {
        let (s, usage, inv) = (s.clone(), usage.clone(), inv.clone());
        let rt = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            // The slot is held until the work really ends, even past a timeout.
            let _permit = permit;
            let cx = Context::new(&inv, &s.config.function, s.store.clone(), rt, usage, deadline)?;
            s.handler.handle(&cx, &inv)
        })
    };
    let result = match tokio::time::timeout(s.config.exec_timeout, work).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(StageError::internal("panic", format!("the handler panicked: {join}"))),
        Err(_) => {
            usage.cancel();
            Err(StageError::new(
                ErrorKind::Timeout,
                "timeout",
                format!("exceeded exec_timeout {:?}", s.config.exec_timeout),
            ))
        }
    };
    sampler.abort();

    let duration = started.elapsed();
    let peak_kb = peak_self_kb.load(Ordering::Relaxed) + usage.child_max_rss_kb.load(Ordering::Relaxed);
    let metrics = Metrics {
        duration_ms: duration.as_secs_f64() * 1000.0,
        tool_ms: usage.tool_us.load(Ordering::Relaxed) as f64 / 1000.0,
        store_ms: usage.store_us.load(Ordering::Relaxed) as f64 / 1000.0,
        cold_start,
        memory_limit_mb: s.config.memory_limit_mb,
        peak_rss_mb: peak_kb as f64 / 1024.0,
        cost_unit: duration.as_secs_f64() * s.config.memory_limit_mb as f64 / 1024.0,
        bytes_in: usage.bytes_in.load(Ordering::Relaxed),
        bytes_out: usage.bytes_out.load(Ordering::Relaxed),
    };
    match result {
        Ok(outputs) => {
            log_line(&s.config.function, &inv, 200, &metrics, None);
            let body = Response {
                request_id: inv.request_id,
                function: s.config.function.clone(),
                scope: inv.scope,
                outputs,
                metrics,
            };
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(err) => {
            log_line(&s.config.function, &inv, err.kind.status(), &metrics, Some(&err));
            error_response(&s, Some(&inv.request_id), err, Some(metrics))
        }
    }
}

fn error_response<H>(
    s: &Shared<H>,
    request_id: Option<&str>,
    error: StageError,
    metrics: Option<Metrics>,
) -> HttpResponse {
    if metrics.is_none() {
        tracing::warn!(code = %error.code, "{}", error.message);
    }
    let status = StatusCode::from_u16(error.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorResponse {
        error,
        request_id: request_id.map(str::to_string),
        function: s.config.function.clone(),
        metrics,
    };
    (status, Json(body)).into_response()
}

/// Request ids and scopes become object key segments: keep them plain.
fn check_name(what: &str, name: &str) -> Result<(), StageError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 128 || !name.chars().all(plain) || name.starts_with('.') {
        return Err(StageError::bad_input(
            "invalid_name",
            format!("{what} `{name}` must be 1-128 characters of [A-Za-z0-9._-], not starting with `.`"),
        ));
    }
    Ok(())
}

/// The one JSON line per invocation that experiments and users read.
fn log_line(function: &str, inv: &Invocation, status: u16, m: &Metrics, err: Option<&StageError>) {
    let line = serde_json::json!({
        "ts_ms": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
        "request_id": inv.request_id,
        "function": function,
        // The replica: more than one may write the same log.
        "pid": std::process::id(),
        "scope": inv.scope,
        "status": status,
        "error": err.map(|e| e.code.as_str()),
        "duration_ms": (m.duration_ms * 1000.0).round() / 1000.0,
        "tool_ms": (m.tool_ms * 1000.0).round() / 1000.0,
        "store_ms": (m.store_ms * 1000.0).round() / 1000.0,
        "cold_start": m.cold_start,
        "memory_limit_mb": m.memory_limit_mb,
        "peak_rss_mb": (m.peak_rss_mb * 10.0).round() / 10.0,
        "cost_unit": m.cost_unit,
        "bytes_in": m.bytes_in,
        "bytes_out": m.bytes_out,
    });
    println!("{line}");
}

async fn sample_rss(peak_kb: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        tick.tick().await;
        peak_kb.fetch_max(rss_kb(), Ordering::Relaxed);
    }
}

/// Resident memory of this process in KiB.
fn rss_kb() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    pages * page / 1024
}
