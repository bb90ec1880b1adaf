//! Every timeout the templates need, in one struct built by one function,
//! read from the pipeline's timeout model (`pipeline/timeouts.rs`): no file
//! of `render/` does timeout arithmetic.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::pipeline::Pipeline;

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
    let model = &pipeline.timeouts;
    let functions = model
        .calls
        .iter()
        .map(|(name, call)| {
            // SIGTERM, then the function drains: its last answer is out by
            // its write timeout, within the grace period.
            (name.clone(), FunctionTimeouts { exec: call.exec, termination_grace: call.stop_grace() })
        })
        .collect();
    let gateway = model.gateway;
    RenderTimeouts {
        functions,
        gateway: GatewayTimeouts {
            upstream: gateway.upstream,
            read: gateway.read,
            write: gateway.write,
            faasnetes_read: gateway.read,
            faasnetes_write: gateway.write,
            ack_wait: model.ack_wait,
        },
        readiness: Probe { period: Duration::from_secs(2), timeout: Duration::from_secs(1), failure_threshold: 3 },
        liveness: Probe { period: Duration::from_secs(10), timeout: Duration::from_secs(2), failure_threshold: 3 },
    }
}
