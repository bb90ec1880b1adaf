//! The gateway's Prometheus metrics, under OpenFaaS's names, so that its
//! dashboards and alert rules work unchanged:
//!
//! - `gateway_function_invocation_started{function_name}`: calls begun;
//! - `gateway_function_invocation_total{function_name, code}`: calls answered, by status;
//! - `gateway_functions_seconds{function_name, code}`: their duration (histogram);
//! - `gateway_service_count{function_name}`: available replicas.
//!
//! `function_name` is `<name>.<namespace>`, as OpenFaaS labels it.

use std::time::Duration;

use prometheus::{CounterVec, Encoder as _, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry, TextEncoder};

use crate::openfaas::NAMESPACE;

pub struct Metrics {
    registry: Registry,
    started: CounterVec,
    total: CounterVec,
    seconds: HistogramVec,
    replicas: GaugeVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let started = CounterVec::new(
            Opts::new("gateway_function_invocation_started", "Function invocations started"),
            &["function_name"],
        )
        .expect("a valid metric");
        let total = CounterVec::new(
            Opts::new("gateway_function_invocation_total", "Function invocations answered"),
            &["function_name", "code"],
        )
        .expect("a valid metric");
        let seconds = HistogramVec::new(
            HistogramOpts::new("gateway_functions_seconds", "Function time taken"),
            &["function_name", "code"],
        )
        .expect("a valid metric");
        let replicas = GaugeVec::new(
            Opts::new("gateway_service_count", "Current count of replicas for function"),
            &["function_name"],
        )
        .expect("a valid metric");
        let registry = Registry::new();
        for metric in [
            Box::new(started.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(total.clone()),
            Box::new(seconds.clone()),
            Box::new(replicas.clone()),
        ] {
            registry.register(metric).expect("each metric is registered once");
        }
        Metrics { registry, started, total, seconds, replicas }
    }

    pub fn started(&self, function: &str) {
        self.started.with_label_values(&[&label(function)]).inc();
    }

    pub fn answered(&self, function: &str, status: u16, took: Duration) {
        let (function, code) = (label(function), status.to_string());
        self.total.with_label_values(&[&function, &code]).inc();
        self.seconds.with_label_values(&[&function, &code]).observe(took.as_secs_f64());
    }

    pub fn replicas(&self, function: &str, available: u64) {
        self.replicas.with_label_values(&[&label(function)]).set(available as f64);
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

fn label(function: &str) -> String {
    format!("{function}.{NAMESPACE}")
}
