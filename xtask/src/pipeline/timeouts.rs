//! One timeout model. Each function declares its exec timeout; `timeouts:`
//! declares how long a replica may take to start and the margin between two
//! layers. Every other timeout is derived here, inner layer to outer, and
//! nothing else in the tool adds its own margin:
//!
//! ```text
//! exec            the handler is stopped, the function answers 504   (function.timeout)
//!  < watchdog     the function's read/write timeout                  exec + margin
//!  < upstream     the gateway's wait for the answer                  watchdog + margin
//!  < call         the gateway's whole call: a replica, then upstream cold_start + upstream
//!  < attempt      the orchestrator's deadline for one attempt        call + margin
//! ```
//!
//! So a retry never starts while the attempt it replaces can still write:
//! the function stopped at `exec`, its answer left by `watchdog`, and the
//! gateway gave up by `call`, all before the orchestrator's `attempt` ends.
//!
//! Over the whole pipeline: the gateway's `upstream` and read/write cover
//! the longest call; the queue worker's `ack_wait` outlasts the longest
//! asynchronous run; the request's budget (every step's attempts and
//! backoffs, the fan-out in waves of `max_parallel` over at most
//! `max_items` items) fits in the entry's exec timeout; the client waits
//! longer than the gateway. A gateway or queue worker someone else operates
//! can be pinned in `timeouts:`; the rules then say whether the pipeline
//! fits it. `cargo xtask render --explain-timeouts` prints the table.

use std::time::Duration;

use super::{longest_chain, Dag, Function, Step};

/// A duration as people read it: `1h 30m`, `93s`, `4m 40s 500ms`.
fn d(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// `timeouts:` as declared.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Longest a replica may take from start to healthy (image pull, model load).
    pub cold_start: Duration,
    /// Between two layers: the inner one's answer reaches the outer one before it gives up.
    pub margin: Duration,
    /// A gateway whose settings are not ours (`timeouts.gateway`).
    pub gateway: Option<GatewayTimeouts>,
    /// A queue worker whose `ack_wait` is not ours (`timeouts.ack_wait`).
    pub ack_wait: Option<Duration>,
    /// A client whose timeout is not ours (`timeouts.client`).
    pub client: Option<Duration>,
}

/// An OpenFaaS gateway's three timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayTimeouts {
    /// How long it waits for a function's answer (`upstream_timeout`).
    pub upstream: Duration,
    /// Its HTTP server's `read_timeout`.
    pub read: Duration,
    /// Its HTTP server's `write_timeout`: a synchronous call ends by then.
    pub write: Duration,
}

/// One call of a function, layer by layer (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub exec: Duration,
    /// The watchdog's read and write timeouts.
    pub watchdog: Duration,
    pub upstream: Duration,
    /// How long the gateway waits for a ready replica (a cold start).
    pub ready: Duration,
    pub call: Duration,
    pub attempt: Duration,
}

impl Call {
    /// How long a replica is given to finish after SIGTERM before it is
    /// killed: its last call's answer is out by `watchdog`, plus a margin.
    pub fn stop_grace(&self) -> Duration {
        self.upstream
    }
}

/// A rule of the model that a pipeline breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule, as the table writes it (`exec <= gateway upstream`).
    pub rule: &'static str,
    /// The pipeline.yaml value to change (`functions.transcribe.timeout`).
    pub path: String,
    pub message: String,
    pub help: String,
}

/// Every derived timeout of a pipeline.
#[derive(Debug, Clone)]
pub struct Timeouts {
    pub settings: Settings,
    /// Per function, in file order.
    pub calls: Vec<(String, Call)>,
    /// The gateway's settings: pinned, or derived from the longest call.
    pub gateway: GatewayTimeouts,
    /// The queue worker's `ack_wait`: pinned, or the longest call plus a margin.
    pub ack_wait: Duration,
    /// The client's timeout for a synchronous request: pinned, or the
    /// gateway's write timeout plus a margin.
    pub client: Duration,
    /// The whole request's worst case, as the entry runs it.
    pub request: RequestBudget,
    /// The entry function's name.
    pub entry: String,
}

/// What the entry may spend on one request: its longest chain of steps
/// (steps that do not need each other run at the same time), each step to
/// every attempt's deadline with the backoffs.
#[derive(Debug, Clone)]
pub struct RequestBudget {
    /// The chain, step by step, each with its worst case; fanned-out steps
    /// once (they count `waves` times).
    pub steps: Vec<(String, Duration)>,
    /// The fanned-out chain runs this many times one after the other
    /// (`max_items` ÷ `max_parallel`, rounded up); 0 when the chain has no
    /// fanned-out step.
    pub waves: u32,
    /// The request's steps of the chain once, its fanned-out steps `waves` times.
    pub total: Duration,
}

impl RequestBudget {
    /// The longest chain of `dag` by `budget`; the fanned-out chain counts
    /// `waves` times.
    fn longest_chain(dag: &Dag, budget: &dyn Fn(&Step) -> Duration) -> RequestBudget {
        let waves = dag.fan_out.as_ref().map_or(0, |fan| fan.max_items.div_ceil(fan.max_parallel.max(1)) as u32);
        let inner = dag.fan_out.as_ref().map(|fan| longest_chain(&fan.steps, budget, None)).unwrap_or_default();
        let (steps, total) = longest_chain(&dag.steps, budget, dag.fan_node(inner.1 * waves).as_ref());
        let mut expanded = Vec::new();
        let mut fanned = false;
        for (name, cost) in steps {
            if name.is_empty() {
                expanded.extend(inner.0.iter().cloned());
                fanned = true;
            } else {
                expanded.push((name, cost));
            }
        }
        RequestBudget { steps: expanded, waves: if fanned { waves } else { 0 }, total }
    }
}

impl Settings {
    /// One call of a function with `exec` as its exec timeout.
    pub fn call(&self, exec: Duration) -> Call {
        let watchdog = exec + self.margin;
        let upstream = watchdog + self.margin;
        let call = self.cold_start + upstream;
        Call { exec, watchdog, upstream, ready: self.cold_start, call, attempt: call + self.margin }
    }

    /// The worst case of one step: every attempt to its deadline, and the
    /// backoffs between them (doubling from `backoff`).
    pub fn step_budget(&self, exec: Duration, attempts: u32, backoff: Duration) -> Duration {
        let attempts = attempts.max(1);
        let backoffs: Duration = (0..attempts - 1).map(|n| backoff * 2u32.pow(n)).sum();
        self.call(exec).attempt * attempts + backoffs
    }
}

impl Timeouts {
    /// Derive every layer from the functions, the DAG and `settings`.
    pub fn derive(settings: Settings, functions: &[Function], dag: &Dag) -> Timeouts {
        let calls: Vec<(String, Call)> =
            functions.iter().map(|f| (f.name.clone(), settings.call(f.timeout))).collect();
        let longest = calls.iter().map(|(_, call)| *call).max_by_key(|call| call.call);
        let longest_upstream = longest.map_or(Duration::ZERO, |call| call.upstream);
        let longest_call = longest.map_or(Duration::ZERO, |call| call.call);
        let gateway = settings.gateway.unwrap_or(GatewayTimeouts {
            upstream: longest_upstream,
            read: longest_call + settings.margin,
            write: longest_call + settings.margin,
        });
        let ack_wait = settings.ack_wait.unwrap_or(longest_call + settings.margin);
        let client = settings.client.unwrap_or(gateway.write + settings.margin);
        let exec = |name: &str| functions.iter().find(|f| f.name == name).map_or(Duration::ZERO, |f| f.timeout);
        let budget = |step: &Step| settings.step_budget(exec(&step.function), dag.retry.attempts, dag.retry.backoff);
        let request = RequestBudget::longest_chain(dag, &budget);
        Timeouts { settings, calls, gateway, ack_wait, client, request, entry: dag.entry.clone() }
    }

    /// The call of the function `name`; a function the pipeline does not
    /// declare (deployed through the gateway's API) gets the same layers
    /// from its own exec timeout through `Settings::call`.
    pub fn call(&self, name: &str) -> Option<Call> {
        self.calls.iter().find(|(n, _)| n == name).map(|(_, call)| *call)
    }

    /// The longest call of any function: what a runtime waits for before it stops.
    pub fn longest_call(&self) -> Duration {
        self.calls.iter().map(|(_, call)| call.call).max().unwrap_or_default()
    }

    /// Every rule the pipeline breaks, in the table's order.
    pub fn violations(&self) -> Vec<Violation> {
        let mut found = Vec::new();
        let s = &self.settings;
        let g = &self.gateway;
        for (name, call) in &self.calls {
            if call.upstream > g.upstream {
                found.push(Violation {
                    rule: "exec <= gateway upstream",
                    path: format!("functions.{name}.timeout"),
                    message: format!(
                        "function `{name}` runs up to {} and answers by {}, but the gateway waits only {} for it (timeouts.gateway.upstream)",
                        d(call.exec), d(call.upstream), d(g.upstream)
                    ),
                    help: format!(
                        "lower this timeout to <= {}, or raise the gateway's upstream timeout to >= {}",
                        d(g.upstream.saturating_sub(call.upstream - call.exec)),
                        d(call.upstream)
                    ),
                });
            }
        }
        for (key, value) in [("read", g.read), ("write", g.write)] {
            if value < g.upstream + s.margin {
                found.push(Violation {
                    rule: "gateway upstream < gateway read/write",
                    path: format!("timeouts.gateway.{key}"),
                    message: format!(
                        "the gateway's {key} timeout {} ends before its upstream timeout {} plus the margin {}",
                        d(value), d(g.upstream), d(s.margin)
                    ),
                    help: format!("raise it to >= {}", d(g.upstream + s.margin)),
                });
            }
        }
        let longest = self.longest_call();
        if self.ack_wait <= longest {
            found.push(Violation {
                rule: "ack_wait > longest async run",
                path: "timeouts.ack_wait".into(),
                message: format!(
                    "the queue worker's ack_wait {} is not longer than the longest call {}: it would redeliver an asynchronous request still running",
                    d(self.ack_wait), d(longest)
                ),
                help: format!("raise it to >= {}", d(longest + s.margin)),
            });
        }
        if let Some(entry) = self.call(&self.entry) {
            let needed = self.request.total + s.margin;
            if entry.exec < needed {
                let terms: Vec<String> = self.request.steps.iter().map(|(name, budget)| format!("{name} {}", d(*budget))).collect();
                let waves = match self.request.waves {
                    0 => String::new(),
                    n => format!(", its fanned-out steps {n} times (max_items / max_parallel)"),
                };
                found.push(Violation {
                    rule: "orchestrator deadlines <= its exec timeout",
                    path: format!("functions.{}.timeout", self.entry),
                    message: format!(
                        "entry `{}` timeout {} is shorter than the worst case of the steps it waits for ({})",
                        self.entry, d(entry.exec), d(self.request.total)
                    ),
                    help: format!(
                        "the worst case is the longest chain of steps, each to every attempt's deadline plus the backoffs: {}{waves}; raise its timeout to >= {}, or lower the steps' timeouts, `dag.retry.attempts` or `dag.fan_out.max_items`",
                        terms.join(", "), d(needed)
                    ),
                });
            }
        }
        if self.client < g.write + s.margin {
            found.push(Violation {
                rule: "client > gateway",
                path: "timeouts.client".into(),
                message: format!(
                    "the client's timeout {} ends before the gateway's write timeout {} plus the margin {}",
                    d(self.client), d(g.write), d(s.margin)
                ),
                help: format!("raise it to >= {}", d(g.write + s.margin)),
            });
        }
        found
    }

    /// The derived table, as `render --explain-timeouts` prints it.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let s = &self.settings;
        let mut out = String::new();
        let pinned = |yes: bool| if yes { "pinned" } else { "derived" };
        let _ = writeln!(out, "timeouts (cold_start {}, margin {}):", d(s.cold_start), d(s.margin));
        let _ = writeln!(out);
        let _ = writeln!(out, "{:<16} {:>10} {:>11} {:>11} {:>11} {:>11}", "function", "exec", "watchdog", "upstream", "call", "attempt");
        for (name, c) in &self.calls {
            let _ = writeln!(
                out,
                "{:<16} {:>10} {:>11} {:>11} {:>11} {:>11}",
                name, d(c.exec), d(c.watchdog), d(c.upstream), d(c.call), d(c.attempt)
            );
        }
        let _ = writeln!(out);
        let g = &self.gateway;
        let gateway = pinned(s.gateway.is_some());
        let _ = writeln!(out, "gateway upstream_timeout  {:>12}  ({gateway})", d(g.upstream));
        let _ = writeln!(out, "gateway read_timeout      {:>12}  ({gateway})", d(g.read));
        let _ = writeln!(out, "gateway write_timeout     {:>12}  ({gateway})", d(g.write));
        let _ = writeln!(out, "queue-worker ack_wait     {:>12}  ({})", d(self.ack_wait), pinned(s.ack_wait.is_some()));
        let _ = writeln!(out, "client timeout            {:>12}  ({})", d(self.client), pinned(s.client.is_some()));
        let _ = writeln!(out);
        let waves = match self.request.waves {
            0 => String::new(),
            n => format!(", fanned-out steps x{n}"),
        };
        let _ = writeln!(out, "request budget (longest chain, every attempt and backoff{waves}): {}", d(self.request.total));
        for (name, budget) in &self.request.steps {
            let _ = writeln!(out, "  {name:<16} {:>14}", d(*budget));
        }
        let _ = writeln!(out);
        let violations = self.violations();
        if violations.is_empty() {
            let _ = writeln!(out, "every rule holds:");
        } else {
            let _ = writeln!(out, "broken rules:");
        }
        for rule in RULES {
            let broken = violations.iter().any(|v| v.rule == *rule);
            let _ = writeln!(out, "  [{}] {rule}", if broken { "x" } else { "ok" });
        }
        out
    }
}

/// The rules `Timeouts::violations` checks, in its order.
pub const RULES: &[&str] = &[
    "exec <= gateway upstream",
    "gateway upstream < gateway read/write",
    "ack_wait > longest async run",
    "orchestrator deadlines <= its exec timeout",
    "client > gateway",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            cold_start: Duration::from_secs(30),
            margin: Duration::from_secs(1),
            gateway: None,
            ack_wait: None,
            client: None,
        }
    }

    #[test]
    fn layers_grow_inner_to_outer() {
        let call = settings().call(Duration::from_secs(60));
        assert_eq!(
            [call.exec, call.watchdog, call.upstream, call.call, call.attempt].map(|d| d.as_secs()),
            [60, 61, 62, 92, 93]
        );
        assert_eq!(call.ready, Duration::from_secs(30));
    }

    #[test]
    fn a_step_budget_counts_every_attempt_and_backoff() {
        // 3 attempts of 93 s, backoffs 0.5 s then 1 s.
        let budget = settings().step_budget(Duration::from_secs(60), 3, Duration::from_millis(500));
        assert_eq!(budget, Duration::from_millis(3 * 93_000 + 1_500));
        assert_eq!(settings().step_budget(Duration::from_secs(60), 1, Duration::from_secs(9)), Duration::from_secs(93));
    }
}
