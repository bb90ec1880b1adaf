//! The bench's figures: medians, the three goals, the printed table and
//! `bench.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::bail;
use serde::Serialize;

use super::direct::DirectRun;
use xtask::report::records::{InvocationRecord, RequestRecord};

/// One request through the runtime.
#[derive(Debug, Serialize)]
pub struct Request {
    /// As an experiment records it: its id, latency (from the gateway call
    /// to its whole answer), clips.
    #[serde(flatten)]
    pub record: RequestRecord,
    /// User + system time of the runtime and its functions and tools meanwhile
    /// (from the input's upload on).
    pub cpu_s: f64,
    /// The linear steps' time as the orchestrator saw it (all attempts), by function.
    pub linear_ms: BTreeMap<String, f64>,
    /// Its invocations, from its state document, as an experiment records them.
    pub invocations: Vec<InvocationRecord>,
}

/// A figure, its goal (an upper bound) and whether it is met.
#[derive(Debug, Serialize)]
pub struct Goal {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
    pub goal: f64,
    pub met: bool,
}

#[derive(Debug, Serialize)]
pub struct Figures {
    pub input: PathBuf,
    pub clips: usize,
    pub runs: usize,
    /// 1-minute load average before and after.
    pub load_average: [f64; 2],
    pub cold_ms: f64,
    pub warm_median_ms: f64,
    pub direct_median_ms: f64,
    pub warm_median_cpu_s: f64,
    pub direct_median_cpu_s: f64,
    /// Median over every warm invocation of `duration_ms − tool_ms`.
    pub overhead_median_ms: f64,
    pub overhead_median_ms_by_function: BTreeMap<String, f64>,
    /// Median of `store_ms` (inside the overhead), by function.
    pub store_median_ms_by_function: BTreeMap<String, f64>,
    /// Cold starts during the warm requests (a function restarted).
    pub warm_cold_starts: usize,
    pub goals: Vec<Goal>,
    pub cold: Request,
    pub warm: Vec<Request>,
    pub direct: Vec<DirectRun>,
}

const PREDECESSOR: &str = "predecessor (Python on OpenFaaS CE/Kubernetes): warm single request 11.4–21.5 s; \
     cold-start penalty +30 % (its report) to +81.5 % (its raw CSV), i.e. cold ÷ warm 1.30–1.82\n\
     (its video gave 1 clip and 1 frame and transcription was a dummy: not like for like)";

impl Figures {
    pub fn new(
        input: &Path,
        cold: Request,
        warm: Vec<Request>,
        direct: Vec<DirectRun>,
        load_average: [f64; 2],
    ) -> anyhow::Result<Figures> {
        let clips: Vec<usize> = std::iter::once(cold.record.clips)
            .chain(warm.iter().map(|r| r.record.clips))
            .chain(direct.iter().map(|d| d.clips))
            .collect();
        if clips.iter().any(|&c| c != cold.record.clips) {
            bail!("the runs cut different numbers of clips (cold, warm..., direct...: {clips:?}); their times do not compare");
        }
        let cold_ms = cold.record.latency_ms;
        let warm_median_ms = median(warm.iter().map(|r| r.record.latency_ms));
        let direct_median_ms = median(direct.iter().map(|d| d.total_ms));
        let overhead = |i: &InvocationRecord| i.duration_ms - i.tool_ms;
        let invocations = || warm.iter().flat_map(|r| &r.invocations);
        let overhead_median_ms = median(invocations().map(overhead));
        let mut by_function: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut store_by_function: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for invocation in invocations() {
            by_function.entry(invocation.function.clone()).or_default().push(overhead(invocation));
            store_by_function.entry(invocation.function.clone()).or_default().push(invocation.store_ms);
        }
        let by_function: BTreeMap<String, f64> = by_function.into_iter().map(|(f, v)| (f, median(v))).collect();
        let worst_function = by_function.values().copied().fold(f64::NAN, f64::max);
        let goal = |name, value: f64, unit, goal: f64| Goal { name, value, unit, goal, met: value <= goal };
        Ok(Figures {
            input: input.to_path_buf(),
            clips: cold.record.clips,
            runs: warm.len(),
            load_average,
            cold_ms,
            warm_median_ms,
            direct_median_ms,
            warm_median_cpu_s: median(warm.iter().map(|r| r.cpu_s)),
            direct_median_cpu_s: median(direct.iter().map(|d| d.cpu_s)),
            overhead_median_ms,
            overhead_median_ms_by_function: by_function,
            store_median_ms_by_function: store_by_function.into_iter().map(|(f, v)| (f, median(v))).collect(),
            warm_cold_starts: invocations().filter(|i| i.cold_start).count(),
            goals: vec![
                goal("warm ÷ direct", warm_median_ms / direct_median_ms, "", 1.15),
                goal("cold ÷ warm", cold_ms / warm_median_ms, "", 1.05),
                goal("overhead per invocation", overhead_median_ms, "ms", 5.0),
                goal("overhead, worst function", worst_function, "ms", 30.0),
            ],
            cold,
            warm,
            direct,
        })
    }

    pub fn print(&self) {
        let invocations: usize = self.warm.iter().map(|r| r.invocations.len()).sum();
        println!(
            "bench: {} ({} clips), {} warm and {} direct runs, load average {:.1} → {:.1}",
            self.input.display(),
            self.clips,
            self.runs,
            self.direct.len(),
            self.load_average[0],
            self.load_average[1]
        );
        println!();
        println!("{:<28} {:>9} {:>9} {:>9}", "seconds", "cold", "warm", "direct");
        let warm_linear = |f: &str| median(self.warm.iter().map(|r| r.linear_ms.get(f).copied().unwrap_or(0.0)));
        type Phase = fn(&DirectRun) -> f64;
        let direct_phases: [(&str, Phase); 3] = [
            ("extract-audio", |d| d.extract_audio_ms),
            ("detect-speech", |d| d.detect_speech_ms),
            ("cut-clips", |d| d.cut_clips_ms),
        ];
        for (function, direct_ms) in direct_phases {
            let cold = self.cold.linear_ms.get(function).copied().unwrap_or(0.0);
            let direct = median(self.direct.iter().map(direct_ms));
            println!("{:<28} {:>9} {:>9} {:>9}", function, secs(cold), secs(warm_linear(function)), secs(direct));
        }
        let rest = |r: &Request| r.record.latency_ms - r.linear_ms.values().sum::<f64>();
        println!(
            "{:<28} {:>9} {:>9} {:>9}",
            "per-clip fan-out (+ rest)",
            secs(rest(&self.cold)),
            secs(median(self.warm.iter().map(rest))),
            secs(median(self.direct.iter().map(|d| d.fan_out_ms)))
        );
        println!(
            "{:<28} {:>9} {:>9} {:>9}",
            "end to end (median)",
            secs(self.cold_ms),
            secs(self.warm_median_ms),
            secs(self.direct_median_ms)
        );
        println!(
            "{:<28} {:>9.2} {:>9.2} {:>9.2}",
            "CPU time (median)",
            self.cold.cpu_s,
            self.warm_median_cpu_s,
            self.direct_median_cpu_s
        );
        let list = |values: Vec<f64>| values.into_iter().map(secs).collect::<Vec<_>>().join(" ");
        println!("  warm runs:   {}", list(self.warm.iter().map(|r| r.record.latency_ms).collect()));
        println!("  direct runs: {}", list(self.direct.iter().map(|d| d.total_ms).collect()));
        println!();
        println!("{:<28} {:>9} {:>9}", "goal", "value", "target");
        for goal in &self.goals {
            let (value, target) = match goal.unit {
                "ms" => (format!("{:.1} ms", goal.value), format!("≤ {:.0} ms", goal.goal)),
                _ => (format!("{:.2}", goal.value), format!("≤ {:.2}", goal.goal)),
            };
            println!("{:<28} {value:>9} {target:>9}  {}", goal.name, if goal.met { "met" } else { "NOT met" });
        }
        let by_function: Vec<String> = self
            .overhead_median_ms_by_function
            .iter()
            .map(|(f, ms)| format!("{f} {ms:.1} ({:.1})", self.store_median_ms_by_function.get(f).copied().unwrap_or(0.0)))
            .collect();
        println!(
            "overhead = duration_ms − tool_ms, median of {invocations} warm invocations; by function, ms (of which waiting on the store):\n  {}",
            by_function.join(", ")
        );
        let cpus = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        if self.load_average[0] > cpus / 2.0 {
            println!(
                "warning: the machine was busy before the bench began (load average {:.1} on {cpus} CPUs): \
                 wall times, and the ratios made of them, vary with that other work",
                self.load_average[0]
            );
        }
        if self.warm_cold_starts > 0 {
            println!("note: the warm requests had {} cold starts (a function process was started again)", self.warm_cold_starts);
        }
        println!(
            "CPU time warm ÷ direct: {:.2} (no goal; CPU seconds of the runtime's process tree against this process and its tools;\n  \
             steadier than wall time when other work runs, not immune: tools need more CPU when they share caches)",
            self.warm_median_cpu_s / self.direct_median_cpu_s
        );
        println!("{PREDECESSOR}");
    }
}

fn secs(ms: f64) -> String {
    format!("{:.2}", ms / 1000.0)
}

/// The middle value (the mean of the two middle ones for an even count); NaN when empty.
fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.into_iter().collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_takes_the_middle_or_the_mean_of_the_two_middle_values() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median([]).is_nan());
    }
}
