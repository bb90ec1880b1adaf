//! Every timeout the templates need, in one struct built by one function.
//!
//! TODO(timeouts): `timeouts` computes them here from `functions.*.timeout`
//! and `gateway.timeout` until the pipeline's timeout model
//! (`xtask/src/pipeline/timeouts.rs`) lands; at that merge its body becomes a
//! read of that model, and no template or other function of `render/`
//! changes. No other file of `render/` does timeout arithmetic.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::pipeline::Pipeline;

/// TODO(timeouts): from the timeout model. Between a function's exec timeout
/// and the end of its pod's grace period: the function's own drain limit
/// (exec timeout + drain delay + 1s, `stages/runtime/src/server.rs`) ends
/// well inside it.
const TERMINATION_MARGIN: Duration = Duration::from_secs(10);
/// TODO(timeouts): from the timeout model. Between the gateway's upstream
/// timeout and its (and faas-netes') HTTP read and write timeouts, and the
/// queue worker's ack wait: OpenFaaS wants the upstream timeout the shortest.
const GATEWAY_MARGIN: Duration = Duration::from_secs(5);

/// What the manifests say about time, for every function and for OpenFaaS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderTimeouts {
    /// By function name, every function of the pipeline.
    pub functions: BTreeMap<String, FunctionTimeouts>,
    pub gateway: GatewayTimeouts,
    /// The readiness probe of every function (`/_/health`).
    pub readiness: Probe,
    /// The liveness probe of every function (`/_/health`).
    pub liveness: Probe,
}

/// One function's times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionTimeouts {
    /// How long one request may run (the contract's `exec_timeout`).
    pub exec: Duration,
    /// `terminationGracePeriodSeconds`: how long Kubernetes waits after
    /// SIGTERM before killing the pod; above the function's drain time, so
    /// that the requests in flight finish.
    pub termination_grace: Duration,
}

/// The OpenFaaS chart's timeouts (`openfaas-values.yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayTimeouts {
    /// `gateway.upstreamTimeout`: the longest call to a function.
    pub upstream: Duration,
    /// `gateway.readTimeout`.
    pub read: Duration,
    /// `gateway.writeTimeout`.
    pub write: Duration,
    /// `faasnetes.readTimeout`.
    pub faasnetes_read: Duration,
    /// `faasnetes.writeTimeout`.
    pub faasnetes_write: Duration,
    /// `queueWorker.ackWait`: how long an async call may run before the queue
    /// delivers it again.
    pub ack_wait: Duration,
}

/// A Kubernetes probe's timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
}

/// Every timeout of the manifests of `pipeline`.
pub fn timeouts(pipeline: &Pipeline) -> RenderTimeouts {
    // TODO(timeouts): read these from the timeout model instead.
    let functions = pipeline
        .functions
        .iter()
        .map(|function| {
            let times = FunctionTimeouts { exec: function.timeout, termination_grace: function.timeout + TERMINATION_MARGIN };
            (function.name.clone(), times)
        })
        .collect();
    let upstream = pipeline.gateway.timeout;
    let http = upstream + GATEWAY_MARGIN;
    RenderTimeouts {
        functions,
        gateway: GatewayTimeouts {
            upstream,
            read: http,
            write: http,
            faasnetes_read: http,
            faasnetes_write: http,
            ack_wait: http,
        },
        readiness: Probe { period: Duration::from_secs(2), timeout: Duration::from_secs(1), failure_threshold: 3 },
        liveness: Probe { period: Duration::from_secs(10), timeout: Duration::from_secs(2), failure_threshold: 3 },
    }
}
