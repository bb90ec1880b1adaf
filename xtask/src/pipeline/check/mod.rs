//! From pipeline.yaml as written to the model: parse quantities and check
//! everything serde cannot (names, bounds, budgets, the DAG), pointing each
//! error at the key or value to change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;

mod build;
mod dag;

use super::diagnostic::{Diagnostic, Source};
use super::model::{
    Bounds, Capacity, Dag, Embedded, Function, Kubernetes, KubernetesMode, OpenFaas, Parameters, Pattern, Pipeline, Regime,
    Scale, Start, Storage, Target, TargetKind,
};
use super::raw::{RawFunction, RawPattern, RawPipeline, RawRegime, RawStart, RawStorage, RawTarget, RawTargetKind, RawTimeouts, Text};
use super::timeouts::{GatewayTimeouts, Settings, Timeouts};
use super::suggest;
use super::units::{bytes_to_mib, parse_cpu, parse_duration, parse_memory};

/// Largest memory a function may ask for.
const MAX_MEMORY: u64 = 64 << 30;

type Checked<T> = Result<T, Diagnostic>;

/// Check `raw` and build the model; `dir` is the absolute folder of the file.
pub fn check(raw: RawPipeline, source: Source, dir: PathBuf) -> Checked<Pipeline> {
    let detector_model = raw.parameters.detector.model_path(&dir);
    let checker = Checker {
        source: &source,
        dir: &dir,
        secrets: &raw.secrets,
        detector_model: &detector_model,
    };
    let settings = checker.timeout_settings(&raw.timeouts)?;
    let storage = checker.storage(raw.storage)?;
    checker.secret_list()?;
    let targets = checker.targets(raw.targets)?;
    checker.parameters(&raw.parameters)?;
    let functions = raw
        .functions
        .into_iter()
        .map(|(name, function)| checker.function(name, function))
        .collect::<Checked<Vec<_>>>()?;
    let (dag, warnings) = checker.dag(raw.dag, &functions)?;
    checker.all_functions_in_dag(&dag, &functions)?;
    let timeouts = Timeouts::derive(settings, &functions, &dag);
    if let Some(violation) = timeouts.violations().into_iter().next() {
        return Err(checker.error(&violation.path, violation.message, format!("{} (rule: {})", violation.help, violation.rule)));
    }
    let build = raw.build.map(|build| checker.build(build)).transpose()?;
    let experiments = raw
        .experiments
        .into_iter()
        .map(|(name, regime)| Ok((name.clone(), checker.regime(&name, regime)?)))
        .collect::<Checked<IndexMap<_, _>>>()?;
    Ok(Pipeline {
        name: raw.name,
        timeouts,
        storage,
        secrets: raw.secrets,
        targets,
        parameters: raw.parameters,
        functions,
        dag,
        build,
        experiments,
        warnings,
        dir,
        source,
    })
}

struct Checker<'a> {
    source: &'a Source,
    dir: &'a Path,
    secrets: &'a [String],
    /// The file `parameters.detector.model` names, for `detector_model: true` assets.
    detector_model: &'a Path,
}

impl Checker<'_> {
    fn error(&self, path: &str, message: impl Into<String>, help: impl Into<String>) -> Diagnostic {
        self.source.error_at_value(path, message, Some(help.into()))
    }

    fn duration(&self, path: &str, text: &Text) -> Checked<Duration> {
        let duration = parse_duration(&text.0).map_err(|why| {
            self.error(
                path,
                format!("duration `{}` at `{path}` {why}", text.0),
                "write a whole number with a unit: `500ms`, `60s`, `2m`, `1h`",
            )
        })?;
        if duration.is_zero() {
            return Err(self.error(
                path,
                format!("`{path}` is 0"),
                "give it the time the work needs, like `60s`",
            ));
        }
        Ok(duration)
    }

    fn regime(&self, name: &str, raw: RawRegime) -> Checked<Regime> {
        let path = format!("experiments.{name}");
        let at = |key: &str| format!("{path}.{key}");
        let given: Vec<&str> = [
            ("rate", raw.rate.is_some()),
            ("requests", raw.requests.is_some()),
            ("jitter", raw.jitter.is_some()),
            ("size", raw.size.is_some()),
            ("bursts", raw.bursts.is_some()),
            ("gap", raw.gap.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, given)| given.then_some(key))
        .collect();
        let (pattern_name, takes, needs): (&str, &[&str], &[&str]) = match raw.pattern {
            RawPattern::Steady => ("steady", &["rate", "requests", "jitter"], &["rate", "requests"]),
            RawPattern::Burst => ("burst", &["size", "bursts", "gap"], &["size"]),
        };
        if let Some(key) = given.iter().find(|key| !takes.contains(key)) {
            let takes: Vec<String> = takes.iter().map(|k| format!("`{k}`")).collect();
            return Err(self.error(
                &at(key),
                format!("`{key}` is not a setting of a `{pattern_name}` pattern (`{path}`)"),
                format!("a `{pattern_name}` pattern takes {}", takes.join(", ")),
            ));
        }
        if let Some(key) = needs.iter().find(|key| !given.contains(key)) {
            return Err(self.error(
                &at("pattern"),
                format!("regime `{name}` has a `{pattern_name}` pattern but no `{key}`"),
                format!("add `{key}:` to `{path}`"),
            ));
        }
        let number = |key: &str, text: &Text| -> Checked<f64> {
            text.0.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0).ok_or_else(|| {
                self.error(&at(key), format!("`{}` at `{}` is not a number", text.0, at(key)), "write a number like `0.5`")
            })
        };
        let pattern = match raw.pattern {
            RawPattern::Steady => {
                let rate = number("rate", raw.rate.as_ref().expect("checked above"))?;
                if rate <= 0.0 {
                    return Err(self.error(&at("rate"), format!("regime `{name}` has rate 0: no request would start"), "give requests per second, like `0.2`"));
                }
                let jitter = raw.jitter.as_ref().map(|text| number("jitter", text)).transpose()?.unwrap_or(0.0);
                if jitter >= 1.0 {
                    return Err(self.error(&at("jitter"), format!("jitter {jitter} moves a start past the next one"), "use a fraction of the interval below 1, like `0.2`"));
                }
                let requests = raw.requests.expect("checked above");
                if requests == 0 {
                    return Err(self.error(&at("requests"), format!("regime `{name}` sends no request"), "use 1 or more"));
                }
                Pattern::Steady { rate, requests, jitter }
            }
            RawPattern::Burst => {
                let size = raw.size.expect("checked above");
                let bursts = raw.bursts.unwrap_or(1);
                if size == 0 || bursts == 0 {
                    let key = if size == 0 { "size" } else { "bursts" };
                    return Err(self.error(&at(key), format!("regime `{name}` sends no request"), "use 1 or more"));
                }
                let gap = match &raw.gap {
                    Some(text) => self.duration(&at("gap"), text)?,
                    None if bursts > 1 => {
                        return Err(self.error(&at("bursts"), format!("regime `{name}` has {bursts} bursts but no `gap` between them"), format!("add `gap:` (like `60s`) to `{path}`")));
                    }
                    None => Duration::ZERO,
                };
                Pattern::Burst { size, bursts, gap }
            }
        };
        let start = match raw.start {
            RawStart::Warm => Start::Warm,
            RawStart::Cold => Start::Cold,
        };
        let warmup = raw.warmup.unwrap_or(0);
        if start == Start::Cold && warmup > 0 {
            return Err(self.error(
                &at("warmup"),
                format!("regime `{name}` is cold, but warms its functions up first"),
                "remove `warmup` (a cold regime scales every function to zero before each request or burst), or make it `start: warm`",
            ));
        }
        let input = match raw.input {
            Some(input) => {
                let absolute = self.dir.join(&input);
                if !absolute.is_file() {
                    return Err(self.error(&at("input"), format!("input `{}` of regime `{name}` does not exist", input.display()), format!("looked for {}", absolute.display())));
                }
                Some(absolute)
            }
            None => None,
        };
        let capacity = match raw.capacity {
            None => None,
            Some(_) if start != Start::Warm || !matches!(pattern, Pattern::Steady { .. }) => {
                return Err(self.error(
                    &at("capacity"),
                    format!("regime `{name}` searches for capacity but is not warm and steady"),
                    "a capacity search raises a steady rate on warm functions: make it `start: warm` and `pattern: steady`",
                ));
            }
            Some(capacity) => {
                let at = |key: &str| format!("{path}.capacity.{key}");
                let factor = capacity.factor.0.parse::<f64>().ok().filter(|f| f.is_finite() && *f > 1.0).ok_or_else(|| {
                    self.error(&at("factor"), format!("factor `{}` does not raise the rate", capacity.factor.0), "give a number above 1, like `1.5`")
                })?;
                if capacity.steps == 0 {
                    return Err(self.error(&at("steps"), format!("regime `{name}` searches in 0 steps"), "use 1 or more"));
                }
                Some(Capacity { p95: self.duration(&at("p95"), &capacity.p95)?, failures: capacity.failures.unwrap_or(0), factor, steps: capacity.steps })
            }
        };
        Ok(Regime { start, pattern, warmup, seed: raw.seed.unwrap_or(1), input, capacity })
    }

    fn timeout_settings(&self, raw: &RawTimeouts) -> Checked<Settings> {
        let optional = |key: &str, text: Option<&Text>| text.map(|text| self.duration(&format!("timeouts.{key}"), text)).transpose();
        let gateway = match &raw.gateway {
            None => None,
            Some(gateway) => Some(GatewayTimeouts {
                upstream: self.duration("timeouts.gateway.upstream", &gateway.upstream)?,
                read: self.duration("timeouts.gateway.read", &gateway.read)?,
                write: self.duration("timeouts.gateway.write", &gateway.write)?,
            }),
        };
        Ok(Settings {
            cold_start: self.duration("timeouts.cold_start", &raw.cold_start)?,
            margin: self.duration("timeouts.margin", &raw.margin)?,
            gateway,
            ack_wait: optional("ack_wait", raw.ack_wait.as_ref())?,
            client: optional("client", raw.client.as_ref())?,
        })
    }

    fn storage(&self, storage: RawStorage) -> Checked<Storage> {
        let bucket = &storage.bucket;
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid {
            return Err(self.error(
                "storage.bucket",
                format!("`{bucket}` is not a valid bucket name"),
                "use 3 to 63 lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit",
            ));
        }
        for (key, name) in [
            ("access_key_secret", &storage.access_key_secret),
            ("secret_key_secret", &storage.secret_key_secret),
        ] {
            let path = format!("storage.{key}");
            self.declared_secret(&path, name, &format!("`{path}`"))?;
        }
        Ok(Storage {
            bucket: storage.bucket,
            region: storage.region,
            access_key_secret: storage.access_key_secret,
            secret_key_secret: storage.secret_key_secret,
        })
    }

    fn declared_secret(&self, path: &str, name: &str, user: &str) -> Checked<()> {
        if self.secrets.iter().any(|secret| secret == name) {
            return Ok(());
        }
        let hint = match suggest::closest(name, self.secrets.iter().map(String::as_str)) {
            Some(close) => format!("did you mean `{close}`? "),
            None => String::new(),
        };
        Err(self.error(
            path,
            format!("{user} uses undeclared secret `{name}`"),
            format!("{hint}declare it under `secrets:` or fix the name"),
        ))
    }

    fn secret_list(&self) -> Checked<()> {
        for (index, name) in self.secrets.iter().enumerate() {
            if let Some(first) = self.secrets[..index].iter().position(|other| other == name) {
                return Err(self.error(
                    &format!("secrets[{index}]"),
                    format!("secret `{name}` is declared twice"),
                    format!("remove this one (the first is `secrets[{first}]`)"),
                ));
            }
        }
        Ok(())
    }

    fn targets(&self, targets: IndexMap<String, RawTarget>) -> Checked<IndexMap<String, Target>> {
        let mut checked = IndexMap::new();
        for (name, target) in targets {
            let path = format!("targets.{name}");
            let kind = match target.kind {
                RawTargetKind::Local => TargetKind::Local(self.embedded(&name, &path, &target)?),
                RawTargetKind::Docker => TargetKind::Docker(self.embedded(&name, &path, &target)?),
                RawTargetKind::Openfaas => TargetKind::OpenFaas(self.openfaas(&name, &path, &target)?),
                RawTargetKind::Kubernetes => TargetKind::Kubernetes(self.kubernetes(&name, &path, &target)?),
            };
            checked.insert(name, Target { kind });
        }
        Ok(checked)
    }

    /// Every key `takes` lists is there; no other key is.
    fn target_keys(&self, name: &str, path: &str, target: &RawTarget, kind: &str, needs: &[&str], takes: &[&str]) -> Checked<()> {
        let given = target.keys();
        if let Some(extra) = given.iter().find(|key| !takes.contains(key)) {
            let takes: Vec<String> = takes.iter().map(|key| format!("`{key}`")).collect();
            return Err(self.error(
                &format!("{path}.{extra}"),
                format!("`{extra}` is not a setting of a `{kind}` target (`{name}`)"),
                format!("a `{kind}` target takes {}", takes.join(", ")),
            ));
        }
        if let Some(missing) = needs.iter().find(|key| !given.contains(key)) {
            return Err(self.error(
                &format!("{path}.kind"),
                format!("target `{name}` of kind `{kind}` has no `{missing}`"),
                format!("add `{missing}:` to `targets.{name}`"),
            ));
        }
        Ok(())
    }

    fn embedded(&self, name: &str, path: &str, target: &RawTarget) -> Checked<Embedded> {
        let kind = if matches!(target.kind, RawTargetKind::Docker) { "docker" } else { "local" };
        let keys = ["gateway_port", "store_port", "idle_timeout"];
        self.target_keys(name, path, target, kind, &keys, &keys)?;
        let (Some(gateway_port), Some(store_port), Some(idle_timeout)) =
            (target.gateway_port, target.store_port, target.idle_timeout.as_ref())
        else {
            unreachable!("checked above");
        };
        let idle_timeout = self.duration(&format!("{path}.idle_timeout"), idle_timeout)?;
        if gateway_port != 0 && gateway_port == store_port {
            return Err(self.error(
                &format!("{path}.store_port"),
                format!("target `{name}` uses port {store_port} for both the gateway and the store"),
                "give the store another port",
            ));
        }
        Ok(Embedded { gateway_port, store_port, idle_timeout })
    }

    fn openfaas(&self, name: &str, path: &str, target: &RawTarget) -> Checked<OpenFaas> {
        let needs = ["gateway", "store", "secrets_dir"];
        let takes = ["gateway", "store", "function_gateway", "function_store", "bind_addr", "secrets_dir"];
        self.target_keys(name, path, target, "openfaas", &needs, &takes)?;
        let url = |key: &str, text: Option<&Text>| self.url(path, key, text);
        let gateway = url("gateway", target.gateway.as_ref())?.expect("checked above");
        let store = url("store", target.store.as_ref())?.expect("checked above");
        let function_gateway = url("function_gateway", target.function_gateway.as_ref())?.unwrap_or_else(|| gateway.clone());
        let function_store = url("function_store", target.function_store.as_ref())?.unwrap_or_else(|| store.clone());
        let bind_addr = target.bind_addr.as_ref().map_or_else(|| "0.0.0.0".to_string(), |text| text.0.clone());
        let secrets_dir = self.dir.join(target.secrets_dir.as_ref().expect("checked above"));
        Ok(OpenFaas { gateway, store, function_gateway, function_store, bind_addr, secrets_dir })
    }

    /// The http(s) URL at `{path}.{key}`, without a trailing `/`.
    fn url(&self, path: &str, key: &str, text: Option<&Text>) -> Checked<Option<String>> {
        let Some(text) = text else { return Ok(None) };
        let url = text.0.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len() {
            return Err(self.error(
                &format!("{path}.{key}"),
                format!("`{}` at `{path}.{key}` is not an http(s) URL", text.0),
                "write it like `http://127.0.0.1:8080`",
            ));
        }
        Ok(Some(url))
    }

    fn kubernetes(&self, name: &str, path: &str, target: &RawTarget) -> Checked<Kubernetes> {
        let needs = ["mode", "secrets_dir"];
        let takes = [
            "namespace",
            "openfaas_namespace",
            "mode",
            "gateway",
            "store",
            "function_gateway",
            "function_store",
            "bind_addr",
            "secrets_dir",
            "minio",
        ];
        self.target_keys(name, path, target, "kubernetes", &needs, &takes)?;
        let namespace = |key: &str, text: Option<&Text>, default: &str| -> Checked<String> {
            let Some(text) = text else { return Ok(default.to_string()) };
            if !dns_label(&text.0) {
                return Err(self.error(
                    &format!("{path}.{key}"),
                    format!("`{}` at `{path}.{key}` is not a Kubernetes namespace name", text.0),
                    "use at most 63 lowercase letters, digits and `-`, starting and ending with a letter or digit, like `openfaas-fn`",
                ));
            }
            Ok(text.0.clone())
        };
        let namespace_ = namespace("namespace", target.namespace.as_ref(), "openfaas-fn")?;
        let openfaas_namespace = namespace("openfaas_namespace", target.openfaas_namespace.as_ref(), "openfaas")?;
        let mode_text = target.mode.as_ref().expect("checked above");
        let Some(mode) = KubernetesMode::parse(&mode_text.0) else {
            let known: Vec<String> = KubernetesMode::ALL.iter().map(|mode| format!("`{}`", mode.name())).collect();
            let hint = match suggest::closest(&mode_text.0, KubernetesMode::ALL.iter().map(|mode| mode.name())) {
                Some(close) => format!("did you mean `{close}`? "),
                None => String::new(),
            };
            return Err(self.error(
                &format!("{path}.mode"),
                format!("unknown mode `{}` at `{path}.mode`", mode_text.0),
                format!(
                    "{hint}known modes: {} (`deployments` works with OpenFaaS CE, `function-crd` needs OpenFaaS Pro)",
                    known.join(", ")
                ),
            ));
        };
        let url = |key: &str, text: Option<&Text>| self.url(path, key, text);
        let gateway = url("gateway", target.gateway.as_ref())?;
        let store = url("store", target.store.as_ref())?;
        let function_gateway =
            url("function_gateway", target.function_gateway.as_ref())?.unwrap_or_else(|| "http://gateway.openfaas:8080".into());
        let function_store =
            url("function_store", target.function_store.as_ref())?.unwrap_or_else(|| "http://minio.openfaas:9000".into());
        let bind_addr = match &target.bind_addr {
            None => "0.0.0.0".to_string(),
            Some(text) => {
                if text.0.parse::<std::net::IpAddr>().is_err() {
                    return Err(self.error(
                        &format!("{path}.bind_addr"),
                        format!("`{}` at `{path}.bind_addr` is not an IP address", text.0),
                        "functions bind all of their pod's addresses with `0.0.0.0`",
                    ));
                }
                text.0.clone()
            }
        };
        // Each secret becomes a Kubernetes Secret of that name, with one key of that name.
        for (index, secret) in self.secrets.iter().enumerate() {
            if !dns_subdomain(secret) {
                return Err(self.error(
                    &format!("secrets[{index}]"),
                    format!("secret `{secret}` cannot name a Kubernetes Secret (target `{name}` is of kind `kubernetes`)"),
                    "use lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit, like `s3-access-key`",
                ));
            }
        }
        let secrets_dir = self.dir.join(target.secrets_dir.as_ref().expect("checked above"));
        Ok(Kubernetes {
            namespace: namespace_,
            openfaas_namespace,
            mode,
            gateway,
            store,
            function_gateway,
            function_store,
            bind_addr,
            secrets_dir,
            minio: target.minio.unwrap_or(false),
        })
    }

    fn parameters(&self, parameters: &Parameters) -> Checked<()> {
        let Parameters {
            input: _,
            speech,
            compress,
            frames,
            detector,
        } = parameters;
        for (path, rate) in [
            ("parameters.speech.sample_rate", speech.sample_rate),
            (
                "parameters.compress.audio_sample_rate",
                compress.audio_sample_rate,
            ),
        ] {
            if rate == 0 {
                return Err(self.error(
                    path,
                    format!("`{path}` is 0"),
                    "use a sample rate in Hz, like 16000 or 22050",
                ));
            }
        }
        self.bounds("parameters.speech.top_db", speech.top_db, false)?;
        self.bounds(
            "parameters.speech.sentence_seconds",
            speech.sentence_seconds,
            true,
        )?;
        if compress.crf > 51 {
            return Err(self.error(
                "parameters.compress.crf",
                format!("`parameters.compress.crf` {} is above 51", compress.crf),
                "x264's crf goes from 0 (lossless) to 51 (smallest); 23 to 30 suits speech videos",
            ));
        }
        if frames.per_minute == 0 {
            return Err(self.error(
                "parameters.frames.per_minute",
                "`parameters.frames.per_minute` is 0: no frame would be sampled",
                "sample at least 1 frame per minute",
            ));
        }
        for (path, value) in [
            (
                "parameters.detector.score_threshold",
                detector.score_threshold,
            ),
            ("parameters.detector.nms_iou", detector.nms_iou),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(self.error(
                    path,
                    format!("`{path}` {value} is outside 0..1"),
                    "use a fraction between 0 and 1, like 0.5",
                ));
            }
        }
        if detector.input_size == 0 {
            return Err(self.error(
                "parameters.detector.input_size",
                "`parameters.detector.input_size` is 0",
                "use the model's input size in pixels, like 640",
            ));
        }
        Ok(())
    }

    /// `min <= max`, or `min < max` when `strict`; both at least 0.
    fn bounds(&self, path: &str, bounds: Bounds, strict: bool) -> Checked<()> {
        let Bounds { min, max } = bounds;
        if min < 0.0 {
            return Err(self.error(
                &format!("{path}.min"),
                format!("`{path}` min {min} is negative"),
                "use 0 or more",
            ));
        }
        let relation = if min > max {
            "exceeds"
        } else if strict && min == max {
            "must be below"
        } else {
            return Ok(());
        };
        Err(self.error(
            &format!("{path}.min"),
            format!("`{path}` min {min} {relation} max {max}"),
            format!(
                "lower `min` or raise `max`{}",
                if strict { " (min < max)" } else { "" }
            ),
        ))
    }

    fn function(&self, name: String, raw: RawFunction) -> Checked<Function> {
        let path = format!("functions.{name}");
        let at = |key: &str| format!("{path}.{key}");
        let valid_name = name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.ends_with('-');
        if !valid_name {
            return Err(self.source.error_at_key(
                &path,
                format!("`{name}` is not a valid function name"),
                Some("use lowercase letters, digits and `-`, starting with a letter: it names the process and its route".into()),
            ));
        }

        let source = self.dir.join(&raw.source);
        if !source.is_dir() {
            return Err(self.error(
                &at("source"),
                format!(
                    "source folder `{}` of function `{name}` does not exist",
                    raw.source.display()
                ),
                format!(
                    "`source` is relative to the pipeline file's folder: looked for {}",
                    source.display()
                ),
            ));
        }

        let memory_help = "write it like `256Mi`, `1Gi` or `512M`";
        let memory = parse_memory(&raw.memory.0).map_err(|why| {
            self.error(
                &at("memory"),
                format!("function `{name}` memory `{}` {why}", raw.memory.0),
                memory_help,
            )
        })?;
        if memory == 0 {
            return Err(self.error(
                &at("memory"),
                format!("function `{name}` memory is 0"),
                "give it what one replica needs, like `256Mi`",
            ));
        }
        if memory > MAX_MEMORY {
            return Err(self.error(
                &at("memory"),
                format!(
                    "function `{name}` memory {} exceeds the 64Gi limit",
                    raw.memory.0
                ),
                "lower it to `64Gi` or less",
            ));
        }

        let cpu_help = "write cores like `0.5` or `1`, or millicores like `500m`";
        let cpu = parse_cpu(&raw.cpu.0).map_err(|why| {
            self.error(
                &at("cpu"),
                format!("function `{name}` cpu `{}` {why}", raw.cpu.0),
                cpu_help,
            )
        })?;
        if cpu <= 0.0 {
            return Err(self.error(
                &at("cpu"),
                format!("function `{name}` cpu {} is not above 0", raw.cpu.0),
                cpu_help,
            ));
        }
        let cpu_limit = match &raw.cpu_limit {
            None => None,
            Some(text) => {
                let limit = parse_cpu(&text.0).map_err(|why| {
                    self.error(&at("cpu_limit"), format!("function `{name}` cpu_limit `{}` {why}", text.0), cpu_help)
                })?;
                if limit < cpu {
                    return Err(self.error(
                        &at("cpu_limit"),
                        format!("function `{name}` cpu_limit {} is below its cpu {}", text.0, raw.cpu.0),
                        "a replica is given at least `cpu`: raise `cpu_limit` to it, or leave it out for no limit",
                    ));
                }
                Some(limit)
            }
        };

        let timeout = self.duration(&at("timeout"), &raw.timeout)?;

        if raw.max_inflight == 0 {
            return Err(self.error(
                &at("max_inflight"),
                format!("function `{name}` max_inflight is 0: it could never take a request"),
                "use 1 or more",
            ));
        }
        let scale = Scale {
            min: raw.scale.min,
            max: raw.scale.max,
        };
        if scale.max == 0 {
            return Err(self.error(
                &at("scale.max"),
                format!("function `{name}` scale max is 0: it could never run"),
                "use 1 or more (`min: 0` already lets it scale to zero)",
            ));
        }
        if scale.min > scale.max {
            return Err(self.error(
                &at("scale.min"),
                format!(
                    "function `{name}` scale min {} exceeds max {}",
                    scale.min, scale.max
                ),
                "lower `min` or raise `max`",
            ));
        }

        let mut env = BTreeMap::new();
        for (key, value) in raw.env {
            let valid = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid || key.starts_with("VS_") {
                let help = if valid {
                    "`VS_*` variables come from `parameters:`; change the parameter there"
                } else {
                    "use letters, digits and `_`, not starting with a digit"
                };
                return Err(self.source.error_at_key(
                    &at(&format!("env.{key}")),
                    format!("function `{name}` cannot set environment variable `{key}`"),
                    Some(help.into()),
                ));
            }
            env.insert(key, value.0);
        }

        for (index, secret) in raw.secrets.iter().enumerate() {
            self.declared_secret(
                &at(&format!("secrets[{index}]")),
                secret,
                &format!("function `{name}`"),
            )?;
        }

        Ok(Function {
            name,
            source,
            memory_mb: bytes_to_mib(memory),
            cpu,
            cpu_limit,
            timeout,
            max_inflight: raw.max_inflight,
            scale,
            env,
            secrets: raw.secrets,
            assets: self.assets(&path, raw.assets)?,
        })
    }

    fn known_function(&self, path: &str, name: &str, functions: &[Function]) -> Checked<()> {
        if functions.iter().any(|function| function.name == name) {
            return Ok(());
        }
        let names = functions.iter().map(|function| function.name.as_str());
        let hint = match suggest::closest(name, names.clone()) {
            Some(close) => format!("did you mean `{close}`? "),
            None => String::new(),
        };
        let declared: Vec<String> = names.map(|name| format!("`{name}`")).collect();
        Err(self.error(
            path,
            format!(
                "unknown function `{name}` in `{}`",
                path.split('[').next().unwrap_or(path)
            ),
            format!("{hint}declared functions: {}", declared.join(", ")),
        ))
    }

    fn all_functions_in_dag(&self, dag: &Dag, functions: &[Function]) -> Checked<()> {
        for function in functions {
            let name = function.name.as_str();
            if name != dag.entry && !dag.all_steps().any(|step| step == name) {
                return Err(self.source.error_at_key(
                    &format!("functions.{name}"),
                    format!("function `{name}` is not in the DAG"),
                    Some("add a step that calls it to `dag.steps` or `dag.fan_out.steps`, or remove it from `functions`".into()),
                ));
            }
        }
        Ok(())
    }
}

/// A Kubernetes DNS-1123 label (namespaces, Services): at most 63 lowercase
/// letters, digits and `-`, starting and ending with a letter or digit.
fn dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A Kubernetes DNS-1123 subdomain (Secrets): labels joined by `.`, at most 253 characters.
fn dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(dns_label)
}
