//! The gateway: the OpenFaaS HTTP API over the local functions. `/function/<name>`
//! proxies to the function's process (starting it first when none runs);
//! `/system/*` lists and scales them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use futures::StreamExt as _;
use serde::Deserialize;
use stage_runtime::{ErrorKind, ErrorResponse, StageError};

use super::replica::Program;
use crate::deploy::{FunctionStatus, Limits};
use super::scaler::{Function, Functions, MARGIN};
use crate::pipeline::contract;

pub fn router(functions: Arc<Functions>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "OK" }))
        .route("/system/info", get(info))
        .route("/system/functions", get(list))
        .route("/system/function/{name}", get(one))
        .route("/system/scale-function/{name}", post(scale))
        .route("/function/{name}", any(proxy))
        .route("/function/{name}/", any(proxy))
        .route("/function/{name}/{*rest}", any(proxy))
        .with_state(functions)
}

fn status(function: &Function) -> FunctionStatus {
    let spec = &function.spec;
    let replicas = function.replicas();
    // The watchdog settings, as OpenFaaS shows them; not the parameters or secrets.
    let env_vars = function
        .env()
        .iter()
        .filter(|(key, _)| spec.env.contains_key(key) || matches!(key.as_str(), "exec_timeout" | "max_inflight"))
        .cloned()
        .collect();
    let program = &function.launch().program;
    let (image, env_process) = match program {
        Program::Binary { .. } => ("local".to_string(), program.describe()),
        Program::Image { reference, .. } => (reference.clone(), String::new()),
    };
    FunctionStatus {
        name: spec.name.clone(),
        image,
        namespace: "local".into(),
        env_process,
        env_vars,
        labels: contract::labels(spec),
        annotations: contract::annotations(spec),
        secrets: spec.secrets.clone(),
        limits: Some(Limits { memory: contract::memory(spec), cpu: contract::cpu(spec) }),
        replicas: replicas.replicas,
        available_replicas: replicas.available,
        invocation_count: function.invocations.load(Ordering::SeqCst),
    }
}

async fn info() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "provider": {
            "provider": "xtask-local",
            "orchestration": "process",
            "version": { "release": env!("CARGO_PKG_VERSION") },
        },
        "version": { "release": env!("CARGO_PKG_VERSION") },
        "arch": std::env::consts::ARCH,
    }))
}

async fn list(State(functions): State<Arc<Functions>>) -> Json<Vec<FunctionStatus>> {
    Json(functions.all().map(|f| status(f)).collect())
}

async fn one(State(functions): State<Arc<Functions>>, Path(name): Path<String>) -> Response {
    match functions.get(&name) {
        Some(function) => Json(status(function)).into_response(),
        None => unknown(&functions, &name),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScaleRequest {
    #[serde(default)]
    service_name: Option<String>,
    replicas: u64,
}

async fn scale(
    State(functions): State<Arc<Functions>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Some(function) = functions.get(&name) else { return unknown(&functions, &name) };
    // Any content type, as OpenFaaS accepts it.
    let request: ScaleRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            let message = format!("expected {{\"serviceName\": \"{name}\", \"replicas\": N}}: {e}");
            return error(&name, StageError::bad_input("bad_scale_request", message));
        }
    };
    if let Some(service) = request.service_name.as_deref().filter(|s| *s != name) {
        let message = format!("serviceName `{service}` does not match the path's function `{name}`");
        return error(&name, StageError::bad_input("bad_scale_request", message));
    }
    match functions.scale(function, request.replicas).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(err) => error(&name, err),
    }
}

/// Forward the request to a process of the function and stream its answer back.
async fn proxy(State(functions): State<Arc<Functions>>, request: Request) -> Response {
    let (name, rest) = split_function_path(request.uri().path());
    let Some(function) = functions.get(name) else { return unknown(&functions, name) };
    let name = name.to_string();
    let busy = function.begin_call();
    let url = match functions.ensure_running(function).await {
        Ok(url) => url,
        Err(err) => return error(&name, err),
    };
    let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    let target = format!("{url}/{rest}{query}");

    let (parts, body) = request.into_parts();
    let mut headers = forwardable(&parts.headers);
    let call_id = headers
        .get("x-call-id")
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("a uuid is a header value"));
    headers.insert("x-call-id", call_id.clone());
    let answer = functions
        .client
        .request(parts.method, target)
        .headers(headers)
        .timeout(function.spec.timeout + MARGIN)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()))
        .send()
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) if e.is_timeout() => {
            let message = format!("function `{name}` did not answer within {:?}", function.spec.timeout + MARGIN);
            return error(&name, StageError::new(ErrorKind::Timeout, "gateway_timeout", message));
        }
        Err(e) => {
            if let Some(killed) = functions.out_of_memory(function, &url).await {
                return error(&name, killed);
            }
            let message = format!("function `{name}` did not answer: {}", chain(&e));
            return error(&name, StageError::new(ErrorKind::BadGateway, "bad_gateway", message));
        }
    };

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

/// `/function/<name>/<rest>` → (name, rest)
fn split_function_path(path: &str) -> (&str, &str) {
    let path = path.strip_prefix("/function/").unwrap_or(path);
    path.split_once('/').unwrap_or((path, ""))
}

/// The headers worth passing on: not the hop-by-hop ones, not `Host`.
fn forwardable(headers: &HeaderMap) -> HeaderMap {
    const HOP: [HeaderName; 7] = [
        header::CONNECTION,
        header::HOST,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
    ];
    let mut out = headers.clone();
    for name in HOP.iter().chain([&header::UPGRADE]) {
        out.remove(name);
    }
    out.remove("keep-alive");
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
    fn function_paths_split_into_name_and_rest() {
        assert_eq!(split_function_path("/function/extract-audio"), ("extract-audio", ""));
        assert_eq!(split_function_path("/function/extract-audio/"), ("extract-audio", ""));
        assert_eq!(split_function_path("/function/a/b/c"), ("a", "b/c"));
    }
}
