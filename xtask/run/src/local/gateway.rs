//! The gateway: the OpenFaaS gateway API (every route of its OpenAPI spec)
//! over the runtime's functions.
//!
//! - `/function/<name>` proxies to a replica (starting one first when none
//!   runs); `/async-function/<name>` answers 202 at once, makes the call in
//!   the background and POSTs its answer to `X-Callback-Url`, as OpenFaaS's
//!   queue worker does.
//! - `/system/functions` lists, deploys, updates and removes functions;
//!   `/system/scale-function`, `/system/secrets`, `/system/logs`,
//!   `/system/namespaces` (one: `openfaas-fn`), `/system/info`,
//!   `/system/alert` (AlertManager's scale-up) and Prometheus `/metrics`
//!   with the gateway's metric names.
//! - A declared path with another method answers 405; an unknown path 404.
//!
//! Every error is answered in the functions' own error shape.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use futures::StreamExt as _;
use serde::Deserialize;
use stage_runtime::{ErrorKind, ErrorResponse, StageError, QUEUE_WAIT_HEADER};

use super::metrics::Metrics;
use super::replica::Program;
use super::runtime::Placer;
use super::scaler::{Function, Functions};
use super::secrets::{Refused, Secrets};
use crate::openfaas::{
    DeleteFunctionRequest, FunctionDeployment, FunctionStatus, LogEntry, PrometheusAlert, Resources,
    ScaleServiceRequest, Secret, SecretDescription, NAMESPACE,
};
use crate::pipeline::contract;

/// Calls of `/async-function` run at once at most; the others wait their turn.
const ASYNC_AT_ONCE: usize = 16;

/// What the gateway's routes share.
pub struct Gateway {
    functions: Arc<Functions>,
    secrets: Secrets,
    placer: Placer,
    metrics: Metrics,
    async_calls: Arc<tokio::sync::Semaphore>,
}

impl Gateway {
    pub fn new(functions: Arc<Functions>, secrets: Secrets, placer: Placer) -> Gateway {
        Gateway {
            functions,
            secrets,
            placer,
            metrics: Metrics::new(),
            async_calls: Arc::new(tokio::sync::Semaphore::new(ASYNC_AT_ONCE)),
        }
    }
}

type Shared = State<Arc<Gateway>>;

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "OK" }))
        .route("/metrics", get(metrics))
        .route("/system/info", get(info))
        .route("/system/alert", post(alert))
        .route("/system/functions", get(list).post(deploy).put(update).delete(delete))
        .route("/system/function/{name}", get(one))
        .route("/system/scale-function/{name}", post(scale))
        .route("/system/secrets", get(list_secrets).post(create_secret).put(update_secret).delete(delete_secret))
        .route("/system/logs", get(logs))
        .route("/system/namespaces", get(|| async { Json([NAMESPACE]) }))
        .route("/async-function/{name}", post(invoke_async))
        .route("/async-function/{name}/", any(invoke_async))
        .route("/async-function/{name}/{*rest}", any(invoke_async))
        .route("/function/{name}", post(proxy))
        .route("/function/{name}/", any(proxy))
        .route("/function/{name}/{*rest}", any(proxy))
        .fallback(|request: Request| async move {
            let path = request.uri().path().to_string();
            error("gateway", StageError::new(ErrorKind::NotFound, "not_found", format!("no route {path}")))
        })
        .with_state(gateway)
}

fn status(function: &Function) -> FunctionStatus {
    let spec = &function.spec;
    let replicas = function.replicas();
    let program = &function.launch().program;
    let (image, env_process) = match program {
        Program::Binary { .. } => ("local".to_string(), program.describe()),
        Program::Image { reference, .. } => (reference.clone(), String::new()),
    };
    let memory = (spec.memory_mb > 0).then(|| format!("{}Mi", spec.memory_mb));
    let limits = Resources { memory: memory.clone(), cpu: spec.cpu_limit.map(contract::cpu_quantity) };
    let requests = Resources { memory, cpu: (spec.cpu > 0.0).then(|| contract::cpu_quantity(spec.cpu)) };
    FunctionStatus {
        name: spec.name.clone(),
        image,
        namespace: NAMESPACE.into(),
        env_process,
        env_vars: spec.env_vars.clone(),
        labels: spec.labels.clone(),
        annotations: spec.annotations.clone(),
        secrets: spec.secrets.clone(),
        limits: Some(limits),
        requests: Some(requests),
        replicas: replicas.replicas,
        available_replicas: replicas.available,
        invocation_count: function.invocations.load(std::sync::atomic::Ordering::SeqCst),
    }
}

async fn metrics(State(gateway): Shared) -> Response {
    for function in gateway.functions.all() {
        gateway.metrics.replicas(&function.spec.name, function.replicas().available);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], gateway.metrics.render()).into_response()
}

async fn info() -> Json<serde_json::Value> {
    // No build-time commit is recorded; the spec requires the field.
    let version = serde_json::json!({ "sha": "unknown", "release": env!("CARGO_PKG_VERSION") });
    Json(serde_json::json!({
        "provider": { "provider": "xtask-local", "orchestration": "process-or-docker", "version": version },
        "version": version,
        "arch": std::env::consts::ARCH,
    }))
}

async fn list(State(gateway): Shared) -> Json<Vec<FunctionStatus>> {
    Json(gateway.functions.all().iter().map(|f| status(f)).collect())
}

#[derive(Deserialize)]
struct NamespaceQuery {
    namespace: Option<String>,
}

async fn one(State(gateway): Shared, Path(name): Path<String>, Query(query): Query<NamespaceQuery>) -> Response {
    if let Err(response) = check_namespace(&name, query.namespace.as_deref()) {
        return response;
    }
    match gateway.functions.get(&name) {
        Some(function) => Json(status(&function)).into_response(),
        None => unknown(&gateway.functions, &name),
    }
}

/// A JSON body of type `T`, or a 400 saying what is wrong with it.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Response> {
    serde_json::from_slice(bytes).map_err(|e| {
        error("gateway", StageError::bad_input("bad_request", format!("the body is not a valid {what}: {e}")))
    })
}

async fn deploy(State(gateway): Shared, bytes: axum::body::Bytes) -> Response {
    deploy_or_update(gateway, &bytes, false).await
}

async fn update(State(gateway): Shared, bytes: axum::body::Bytes) -> Response {
    deploy_or_update(gateway, &bytes, true).await
}

async fn deploy_or_update(gateway: Arc<Gateway>, bytes: &[u8], update: bool) -> Response {
    let deployment: FunctionDeployment = match body(bytes, "FunctionDeployment") {
        Ok(deployment) => deployment,
        Err(response) => return response,
    };
    let name = deployment.service.clone();
    let namespace = deployment.namespace.as_deref();
    let checked = if update { check_namespace(&name, namespace) } else { check_namespace_to_create(&name, namespace) };
    if let Err(response) = checked {
        return response;
    }
    match (gateway.functions.get(&name).is_some(), update) {
        (false, true) => return unknown(&gateway.functions, &name),
        (true, false) => {
            let message = format!("function `{name}` already exists; update it with PUT /system/functions");
            return error(&name, StageError::bad_input("function_exists", message));
        }
        _ => {}
    }
    let function = match gateway.placer.deployed(&deployment, gateway.functions.runs_images(), &gateway.secrets) {
        Ok(function) => function,
        Err(err) => return error(&name, err),
    };
    gateway.functions.deploy(function).await;
    tracing::info!(function = %name, image = %deployment.image, "{} through the API", if update { "updated" } else { "deployed" });
    if update { StatusCode::OK.into_response() } else { StatusCode::ACCEPTED.into_response() }
}

async fn delete(State(gateway): Shared, bytes: axum::body::Bytes) -> Response {
    let request: DeleteFunctionRequest = match body(&bytes, "DeleteFunctionRequest") {
        Ok(request) => request,
        Err(response) => return response,
    };
    if gateway.functions.remove(&request.function_name).await {
        StatusCode::OK.into_response()
    } else {
        unknown(&gateway.functions, &request.function_name)
    }
}

async fn scale(State(gateway): Shared, Path(name): Path<String>, bytes: axum::body::Bytes) -> Response {
    let Some(function) = gateway.functions.get(&name) else { return unknown(&gateway.functions, &name) };
    // Any content type, as OpenFaaS accepts it.
    let request: ScaleServiceRequest = match serde_json::from_slice(&bytes) {
        Ok(request) => request,
        Err(e) => {
            let message = format!("expected {{\"serviceName\": \"{name}\", \"replicas\": N}}: {e}");
            return error(&name, StageError::bad_input("bad_scale_request", message));
        }
    };
    if let Some(service) = request.service_name.as_deref().filter(|s| !s.is_empty() && *s != name) {
        let message = format!("serviceName `{service}` does not match the path's function `{name}`");
        return error(&name, StageError::bad_input("bad_scale_request", message));
    }
    if let Err(response) = check_namespace(&name, request.namespace.as_deref()) {
        return response;
    }
    match gateway.functions.scale(&function, request.replicas).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(err) => error(&name, err),
    }
}

/// AlertManager's alerts: a firing one for a function scales it up (here:
/// starts its replica); a resolved one changes nothing.
async fn alert(State(gateway): Shared, bytes: axum::body::Bytes) -> Response {
    // The spec: "500 Internal error with swarm or request JSON invalid".
    let alert: PrometheusAlert = match serde_json::from_slice(&bytes) {
        Ok(alert) => alert,
        Err(e) => {
            let message = format!("the body is not a valid PrometheusAlert: {e}");
            return error("gateway", StageError::internal("bad_alert", message));
        }
    };
    tracing::info!(receiver = %alert.receiver, status = %alert.status, alerts = alert.alerts.len(), "alert");
    for inner in alert.alerts.iter().filter(|a| a.status == "firing") {
        let (name, _) = split_namespace(&inner.labels.function_name);
        match gateway.functions.get(name) {
            Some(function) => {
                tracing::info!(function = %name, alert = %inner.labels.alertname, "alert firing: scaling up");
                if let Err(err) = gateway.functions.scale(&function, function.replicas().replicas + 1).await {
                    tracing::warn!(function = %name, "scaling up on alert failed: {}", err.message);
                }
            }
            None => tracing::warn!(function = %name, "alert for an unknown function"),
        }
    }
    StatusCode::OK.into_response()
}

async fn list_secrets(State(gateway): Shared) -> Json<Vec<Secret>> {
    let names = gateway.secrets.names();
    Json(names.into_iter().map(|name| Secret { name, namespace: Some(NAMESPACE.into()), value: None, raw_value: None }).collect())
}

/// The value of a create or update: `value`, or `rawValue` in base64.
fn secret_value(secret: &Secret) -> Result<String, Response> {
    let bad = |message: String| error("gateway", StageError::bad_input("bad_secret", message));
    match (&secret.value, &secret.raw_value) {
        (Some(value), _) => Ok(value.clone()),
        (None, Some(raw)) => {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD.decode(raw).map_err(|e| bad(format!("rawValue is not base64: {e}")))?;
            String::from_utf8(bytes).map_err(|_| bad("rawValue must decode to UTF-8 text here".into()))
        }
        (None, None) => Err(bad(format!("secret `{}` has neither `value` nor `rawValue`", secret.name))),
    }
}

fn refused(name: &str, refused: Refused) -> Response {
    let err = match refused {
        Refused::BadName(message) => StageError::bad_input("bad_secret", message),
        Refused::Exists => StageError::bad_input("secret_exists", format!("secret `{name}` exists; update it with PUT")),
        Refused::Missing => StageError::new(ErrorKind::NotFound, "unknown_secret", format!("no secret `{name}`")),
        Refused::Io(err) => StageError::internal("io", format!("{err:#}")),
    };
    error("gateway", err)
}

async fn create_secret(State(gateway): Shared, bytes: axum::body::Bytes) -> Response {
    secret_change(&gateway, &bytes, |secrets, name, value| secrets.create(name, value), true)
}

async fn update_secret(State(gateway): Shared, bytes: axum::body::Bytes) -> Response {
    secret_change(&gateway, &bytes, |secrets, name, value| secrets.update(name, value), false)
}

fn secret_change(
    gateway: &Gateway,
    bytes: &[u8],
    change: impl FnOnce(&Secrets, &str, &str) -> Result<(), Refused>,
    create: bool,
) -> Response {
    let secret: Secret = match body(bytes, "Secret") {
        Ok(secret) => secret,
        Err(response) => return response,
    };
    let namespace = secret.namespace.as_deref();
    let checked = if create { check_namespace_to_create("gateway", namespace) } else { check_namespace("gateway", namespace) };
    if let Err(response) = checked {
        return response;
    }
    let done = if create { StatusCode::CREATED } else { StatusCode::OK };
    let value = match secret_value(&secret) {
        Ok(value) => value,
        Err(response) => return response,
    };
    match change(&gateway.secrets, &secret.name, &value) {
        Ok(()) => done.into_response(),
        Err(err) => refused(&secret.name, err),
    }
}

async fn delete_secret(State(gateway): Shared, bytes: axum::body::Bytes) -> Response {
    let secret: SecretDescription = match body(&bytes, "SecretDescription") {
        Ok(secret) => secret,
        Err(response) => return response,
    };
    if let Err(response) = check_namespace("gateway", secret.namespace.as_deref()) {
        return response;
    }
    match gateway.secrets.delete(&secret.name) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => refused(&secret.name, err),
    }
}

#[derive(Deserialize)]
struct LogsQuery {
    name: String,
    namespace: Option<String>,
    instance: Option<String>,
    /// An integer; `<= 0` means all. Read as text: any integer is one.
    tail: Option<String>,
    #[serde(default)]
    follow: bool,
    since: Option<String>,
}

/// The function's log as newline-delimited `LogEntry`s; with `follow`,
/// new lines as they are written, until the client goes away.
async fn logs(State(gateway): Shared, Query(query): Query<LogsQuery>) -> Response {
    let name = query.name.clone();
    if let Err(response) = check_namespace(&name, query.namespace.as_deref()) {
        return response;
    }
    if gateway.functions.get(&name).is_none() {
        return unknown(&gateway.functions, &name);
    }
    let tail = match query.tail.as_deref().map(parse_tail).transpose() {
        Ok(tail) => tail.flatten(),
        Err(message) => return error(&name, StageError::bad_input("bad_request", message)),
    };
    let since = match query.since.as_deref().map(|since| since.parse::<jiff::Timestamp>()).transpose() {
        Ok(since) => since,
        Err(e) => return error(&name, StageError::bad_input("bad_request", format!("`since` is not an RFC 3339 time: {e}"))),
    };
    let path = gateway.placer.log(&name);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let written = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap_or_else(|_| std::time::SystemTime::now());
    let instance = query.instance.clone().unwrap_or_else(|| name.clone());
    let lines = LogLines { name: name.clone(), instance };
    let mut entries: Vec<LogEntry> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| lines.entry(line, written))
        .filter(|(at, _)| since.is_none_or(|since| *at >= std::time::SystemTime::from(since)))
        .map(|(_, entry)| entry)
        .collect();
    if let Some(tail) = tail {
        let keep = tail.min(entries.len());
        entries.drain(..entries.len() - keep);
    }
    let mut ndjson = String::new();
    for entry in &entries {
        ndjson.push_str(&serde_json::to_string(entry).unwrap_or_default());
        ndjson.push('\n');
    }
    let head = futures::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from(ndjson)) });
    let body = if query.follow {
        let start = text.len() as u64;
        let more = futures::stream::unfold((path, start, String::new()), move |(path, offset, mut partial)| {
            let lines = lines.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let Ok(bytes) = read_from(&path, offset) else { continue };
                    if bytes.is_empty() {
                        continue;
                    }
                    let offset = offset + bytes.len() as u64;
                    partial.push_str(&String::from_utf8_lossy(&bytes));
                    let mut out = String::new();
                    while let Some(end) = partial.find('\n') {
                        let line: String = partial.drain(..=end).collect();
                        let line = line.trim_end();
                        if !line.is_empty() {
                            out.push_str(&serde_json::to_string(&lines.entry(line, std::time::SystemTime::now()).1).unwrap_or_default());
                            out.push('\n');
                        }
                    }
                    return Some((Ok(bytes::Bytes::from(out)), (path, offset, partial)));
                }
            }
        });
        Body::from_stream(head.chain(more))
    } else {
        Body::from_stream(head)
    };
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

/// `tail`: how many entries at most; `None` for all (`<= 0`).
fn parse_tail(text: &str) -> Result<Option<usize>, String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("`tail` is not an integer: {text:?}"));
    }
    if text.starts_with('-') || digits.chars().all(|c| c == '0') {
        return Ok(None);
    }
    Ok(Some(digits.parse().unwrap_or(usize::MAX)))
}

/// Makes `LogEntry`s of one function's log lines.
#[derive(Clone)]
struct LogLines {
    name: String,
    instance: String,
}

impl LogLines {
    /// The entry of `line`, timed by the timestamp it starts with or else `fallback`.
    fn entry(&self, line: &str, fallback: std::time::SystemTime) -> (std::time::SystemTime, LogEntry) {
        let (timestamp, at) =
            line_time(line).unwrap_or_else(|| (rfc3339(fallback), fallback));
        let entry = LogEntry {
            name: self.name.clone(),
            namespace: NAMESPACE.into(),
            instance: self.instance.clone(),
            timestamp,
            text: line.to_string(),
        };
        (at, entry)
    }
}

/// The timestamp a log line starts with (as `tracing` writes it), if any.
fn line_time(line: &str) -> Option<(String, std::time::SystemTime)> {
    let first = line.split_whitespace().next()?;
    let at = first.parse::<jiff::Timestamp>().ok()?;
    Some((first.to_string(), at.into()))
}

fn rfc3339(at: std::time::SystemTime) -> String {
    jiff::Timestamp::try_from(at).map_or_else(|_| "1970-01-01T00:00:00Z".into(), |at| at.to_string())
}

fn read_from(path: &std::path::Path, offset: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read as _, Seek as _};
    let mut file = std::fs::File::open(path)?;
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// `name` or `name.namespace` → (name, namespace).
fn split_namespace(segment: &str) -> (&str, Option<&str>) {
    match segment.split_once('.') {
        Some((name, namespace)) => (name, Some(namespace)),
        None => (segment, None),
    }
}

/// Only the one namespace exists: naming another finds nothing (404).
fn check_namespace(function: &str, namespace: Option<&str>) -> Result<(), Response> {
    check_namespace_as(function, namespace, ErrorKind::NotFound)
}

/// Only the one namespace exists: creating in another is a bad request.
fn check_namespace_to_create(function: &str, namespace: Option<&str>) -> Result<(), Response> {
    check_namespace_as(function, namespace, ErrorKind::BadInput)
}

fn check_namespace_as(function: &str, namespace: Option<&str>, kind: ErrorKind) -> Result<(), Response> {
    match namespace {
        None | Some("") | Some(NAMESPACE) => Ok(()),
        Some(other) => Err(error(
            function,
            StageError::new(kind, "unknown_namespace", format!("no namespace `{other}`: the only one is `{NAMESPACE}`")),
        )),
    }
}

/// Forward the request to a replica of the function and stream its answer back.
async fn proxy(State(gateway): Shared, request: Request) -> Response {
    let (function, rest) = match addressed(&gateway, &request, "/function/") {
        Ok(found) => found,
        Err(response) => return response,
    };
    let name = function.spec.name.clone();
    let (parts, body) = request.into_parts();
    let body = reqwest::Body::wrap_stream(body.into_data_stream());
    match call(&gateway, &function, parts.method, &rest, parts.uri.query(), &parts.headers, body).await {
        Ok((answer, call_id, busy)) => {
            let mut response = Response::builder().status(answer.status().as_u16());
            if let Some(headers) = response.headers_mut() {
                *headers = forwardable(answer.headers());
                headers.insert("x-call-id", call_id);
            }
            // The call stays in flight (not idle) until its body has been sent.
            let stream = answer.bytes_stream().map(move |chunk| {
                let _ = &busy;
                chunk
            });
            response.body(Body::from_stream(stream)).unwrap_or_else(|e| {
                error(&name, StageError::internal("bad_response", format!("function `{name}` answered badly: {e}")))
            })
        }
        Err(response) => response,
    }
}

/// One call to a replica of `function`, counted in the metrics: the answer
/// (its body not yet read), the call id, and the guard that keeps the
/// function busy until the body is read; or the error response to give.
async fn call(
    gateway: &Gateway,
    function: &Arc<Function>,
    method: axum::http::Method,
    rest: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: reqwest::Body,
) -> Result<(reqwest::Response, HeaderValue, super::scaler::Busy), Response> {
    let name = function.spec.name.clone();
    let started = Instant::now();
    gateway.metrics.started(&name);
    let answered = |status: u16| gateway.metrics.answered(&name, status, started.elapsed());
    let super::scaler::Lease { url, waited, busy } = match gateway.functions.admit(function).await {
        Ok(lease) => lease,
        Err(err) => {
            answered(err.kind.status());
            return Err(error(&name, err));
        }
    };
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    let target = format!("{url}/{rest}{query}");
    let mut headers = forwardable(headers);
    let call_id = call_id(&headers);
    headers.insert("x-call-id", call_id.clone());
    // A replica is ready: its answer (a 504 at worst) is out by `upstream`.
    let deadline = function.spec.call.upstream;
    let sent = gateway.functions.client.request(method, target).headers(headers).timeout(deadline).body(body).send().await;
    let failed = |err: StageError| {
        answered(err.kind.status());
        Err(error(&name, err))
    };
    match sent {
        Ok(mut answer) => {
            answered(answer.status().as_u16());
            let waited = HeaderValue::from_str(&format!("{:.6}", waited.as_secs_f64())).expect("a number is a header value");
            answer.headers_mut().insert(QUEUE_WAIT_HEADER, waited);
            Ok((answer, call_id, busy))
        }
        Err(e) if e.is_timeout() => {
            let message = format!("function `{name}` did not answer within {deadline:?}");
            failed(StageError::new(ErrorKind::Timeout, "gateway_timeout", message))
        }
        Err(e) => {
            if let Some(killed) = gateway.functions.out_of_memory(function, &url).await {
                return failed(killed);
            }
            let message = format!("function `{name}` did not answer: {}", chain(&e));
            failed(StageError::new(ErrorKind::BadGateway, "bad_gateway", message))
        }
    }
}

/// `/async-function/<name>`: 202 now; the call runs in the background and
/// its answer is POSTed to `X-Callback-Url`, with `X-Call-Id`,
/// `X-Function-Name`, `X-Function-Status` and `X-Duration-Seconds`.
async fn invoke_async(State(gateway): Shared, request: Request) -> Response {
    let (function, rest) = match addressed(&gateway, &request, "/async-function/") {
        Ok(found) => found,
        Err(response) => return response,
    };
    let name = function.spec.name.clone();
    let (parts, body) = request.into_parts();
    let callback = match parts.headers.get("x-callback-url").map(|url| url.to_str().map(str::to_string)) {
        Some(Ok(url)) if url.starts_with("http://") || url.starts_with("https://") => Some(url),
        Some(_) => {
            let message = "X-Callback-Url must be an http(s) URL".to_string();
            return error(&name, StageError::bad_input("bad_callback", message));
        }
        None => None,
    };
    let body = match axum::body::to_bytes(body, 64 * 1024 * 1024).await {
        Ok(body) => body,
        Err(e) => return error(&name, StageError::bad_input("bad_request", format!("cannot read the body: {e}"))),
    };
    let mut headers = parts.headers.clone();
    headers.remove("x-callback-url");
    let call_id = call_id(&headers);
    headers.insert("x-call-id", call_id.clone());
    let query = parts.uri.query().map(str::to_string);
    let gateway = gateway.clone();
    let answer_id = call_id.clone();
    tokio::spawn(async move {
        let Ok(_turn) = gateway.async_calls.clone().acquire_owned().await else { return };
        let started = Instant::now();
        let answered =
            call(&gateway, &function, parts.method, &rest, query.as_deref(), &headers, reqwest::Body::from(body)).await;
        let (status, answer_headers, answer_body) = match answered {
            Ok((answer, _, _busy)) => {
                let status = answer.status().as_u16();
                let headers = forwardable(answer.headers());
                (status, headers, answer.bytes().await.unwrap_or_default())
            }
            Err(response) => {
                let status = response.status().as_u16();
                let headers = forwardable(response.headers());
                (status, headers, axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap_or_default())
            }
        };
        let elapsed = started.elapsed().as_secs_f64();
        tracing::info!(function = %name, call_id = ?call_id, status, "async call done in {elapsed:.3}s");
        let Some(callback) = callback else { return };
        let mut request = gateway.functions.client.post(&callback).headers(answer_headers).body(answer_body);
        request = request
            .header("x-call-id", call_id)
            .header("x-function-name", &name)
            .header("x-function-status", status.to_string())
            .header("x-duration-seconds", format!("{elapsed:.6}"));
        if let Err(e) = request.timeout(Duration::from_secs(30)).send().await {
            tracing::warn!(function = %name, %callback, "the callback failed: {}", chain(&e));
        }
    });
    let mut response = StatusCode::ACCEPTED.into_response();
    response.headers_mut().insert("x-call-id", answer_id);
    response
}

/// The function a `<prefix><name>[.<namespace>]/<rest>` request is for, and
/// its `rest`; or the 404 to answer.
fn addressed(gateway: &Gateway, request: &Request, prefix: &str) -> Result<(Arc<Function>, String), Response> {
    let (segment, rest) = split_function_path(request.uri().path(), prefix);
    let (name, namespace) = split_namespace(segment);
    check_namespace(name, namespace)?;
    let function = gateway.functions.get(name).ok_or_else(|| unknown(&gateway.functions, name))?;
    Ok((function, rest.to_string()))
}

/// The call's id: the caller's `X-Call-Id`, or a new one.
fn call_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get("x-call-id")
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a uuid is a header value"))
}

/// `<prefix><name>/<rest>` → (name, rest)
fn split_function_path<'a>(path: &'a str, prefix: &str) -> (&'a str, &'a str) {
    let path = path.strip_prefix(prefix).unwrap_or(path);
    path.split_once('/').unwrap_or((path, ""))
}

/// The headers worth passing on: not the hop-by-hop ones, not `Host`.
fn forwardable(headers: &HeaderMap) -> HeaderMap {
    const HOP: [HeaderName; 8] = [
        header::CONNECTION,
        header::HOST,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ];
    let mut out = headers.clone();
    for name in HOP.iter() {
        out.remove(name);
    }
    out.remove("keep-alive");
    out.remove(header::CONTENT_LENGTH);
    out
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn unknown(functions: &Functions, name: &str) -> Response {
    let known = functions.names().join(", ");
    error(
        name,
        StageError::new(ErrorKind::NotFound, "unknown_function", format!("no function `{name}` (known: {known})")),
    )
}

/// An error answered by the gateway, in the functions' own error shape.
fn error(function: &str, error: StageError) -> Response {
    let status = StatusCode::from_u16(error.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorResponse { error, request_id: None, function: function.to_string(), metrics: None };
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_paths_split_into_name_namespace_and_rest() {
        assert_eq!(split_function_path("/function/extract-audio", "/function/"), ("extract-audio", ""));
        assert_eq!(split_function_path("/function/extract-audio/", "/function/"), ("extract-audio", ""));
        assert_eq!(split_function_path("/function/a/b/c", "/function/"), ("a", "b/c"));
        assert_eq!(split_function_path("/async-function/a.openfaas-fn/x", "/async-function/"), ("a.openfaas-fn", "x"));
        assert_eq!(split_namespace("a.openfaas-fn"), ("a", Some("openfaas-fn")));
        assert_eq!(split_namespace("a"), ("a", None));
    }

    #[test]
    fn log_lines_keep_their_own_time() {
        let (text, _) = line_time("2026-12-01T19:40:00.123456Z  INFO stage: listening").unwrap();
        assert_eq!(text, "2026-12-01T19:40:00.123456Z");
        assert!(line_time("listening on 127.0.0.1:8080").is_none());
    }
}
