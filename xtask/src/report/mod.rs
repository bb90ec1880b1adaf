//! Reports of experiment runs: `report.md` with SVG plots in a run's own
//! folder (the experiment writes it as it ends), and `cargo xtask report
//! RUN...`, regimes side by side. Reads only the results folders: no
//! runtime, no target.

mod plots;
pub mod records;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use records::{InvocationRecord, RequestRecord, Summary};

/// One results folder, read back.
pub struct Run {
    pub dir: PathBuf,
    pub summary: Summary,
    pub requests: Vec<RequestRecord>,
    pub invocations: Vec<InvocationRecord>,
    pub environment: serde_json::Value,
}

impl Run {
    pub fn read(dir: &Path) -> anyhow::Result<Run> {
        let json = |name: &str| -> anyhow::Result<serde_json::Value> {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).with_context(|| {
                format!("{} is not the results folder of an experiment: no {name}\nhelp: run `cargo xtask experiment <regime>` first", dir.display())
            })?;
            serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))
        };
        let summary = serde_json::from_value(json("summary.json")?).with_context(|| format!("{}/summary.json", dir.display()))?;
        Ok(Run {
            dir: dir.to_path_buf(),
            summary,
            environment: json("environment.json")?,
            requests: records::read(dir, "requests")?,
            invocations: records::read(dir, "invocations")?,
        })
    }

    fn start(&self) -> &str {
        self.environment["start"].as_str().unwrap_or("?")
    }

    fn pattern(&self) -> &str {
        self.environment["pattern"].as_str().unwrap_or("?")
    }

    /// Whether its requests came in bursts (or one after another, steady).
    fn bursts(&self) -> bool {
        self.pattern().contains("burst")
    }
}

/// `report.md` and its plots in the run's own folder.
pub fn write_run(run: &Run) -> anyhow::Result<PathBuf> {
    let name = run.summary.regime.as_str();
    let files = [
        ("latency-cdf.svg", plots::latency_cdf(&[(name, &run.requests)])?),
        ("latency-over-time.svg", plots::latency_over_time(&run.requests)?),
        ("stages.svg", plots::stages(&run.invocations)?),
        ("waterfall.svg", plots::waterfall(&run.requests, &run.invocations)?),
        ("cost-latency.svg", plots::cost_against_latency(&run.requests)?),
    ];
    let mut md = String::new();
    let s = &run.summary;
    let _ = writeln!(md, "# `{}` on `{}`\n", s.regime, s.target);
    let _ = writeln!(md, "{} ({}), {} measured requests: {} succeeded, {} dropped, {} late; {} invocations, {} cold starts, {} mismatches left out.\n", run.start(), run.pattern(), s.scheduled, s.succeeded, s.dropped, s.late, s.invocations, s.cold_starts, s.mismatches);
    md.push_str(&table(std::slice::from_ref(run)));
    md.push('\n');
    let flagged: Vec<String> = s.memory.iter().filter(|(_, m)| m.flagged).map(|(f, m)| format!("{f} {:.0} of {} MiB", m.peak_rss_mb, m.limit_mb)).collect();
    if !flagged.is_empty() {
        let _ = writeln!(md, "Above 80 % of the declared memory: {}.\n", flagged.join(", "));
    }
    for (file, svg) in &files {
        let path = run.dir.join(file);
        std::fs::write(&path, svg).with_context(|| format!("write {}", path.display()))?;
        let _ = writeln!(md, "![{file}]({file})\n");
    }
    let path = run.dir.join("report.md");
    std::fs::write(&path, md).with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// `cargo xtask report RUN...`: the regimes side by side, the cold-start
/// penalty, and the runs' latency CDFs on one plot, into `out`. Returns the
/// Markdown.
pub fn compare(runs: &[Run], out: &Path) -> anyhow::Result<String> {
    anyhow::ensure!(!runs.is_empty(), "no run to report on\nhelp: name results folders of `cargo xtask experiment`");
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let mut md = String::from("# Experiments\n\n");
    md.push_str(&table(runs));
    md.push('\n');
    let warm: Vec<&Run> = runs.iter().filter(|r| r.start() == "warm").collect();
    let cold: Vec<&Run> = runs.iter().filter(|r| r.start() == "cold").collect();
    // Like with like: a cold burst against a warm burst, on the same target.
    for c in &cold {
        for w in warm.iter().filter(|w| w.bursts() == c.bursts() && w.summary.target == c.summary.target) {
            let (cm, wm) = (c.summary.latency_ms.p50, w.summary.latency_ms.p50);
            let [c_lo, c_hi] = c.summary.median_ci_ms;
            let [w_lo, w_hi] = w.summary.median_ci_ms;
            let _ = writeln!(
                md,
                "Cold-start penalty `{}` ÷ `{}` (medians): {:.2} (95 % CI {})",
                c.summary.regime,
                w.summary.regime,
                cm / wm,
                if [c_lo, c_hi, w_lo, w_hi].iter().all(|v| v.is_finite()) { format!("{:.2}..{:.2}", c_lo / w_hi, c_hi / w_lo) } else { "n/a: fewer than 6 requests in a run".into() }
            );
        }
    }
    // The same regime on the same target more than once: is each median
    // inside the other run's interval?
    for (i, a) in runs.iter().enumerate() {
        for b in runs[i + 1..].iter().filter(|b| b.summary.regime == a.summary.regime && b.summary.target == a.summary.target) {
            let (a, b) = (&a.summary, &b.summary);
            let verdict = match medians_inside_each_other((a.latency_ms.p50, a.median_ci_ms), (b.latency_ms.p50, b.median_ci_ms)) {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "n/a: fewer than 6 requests in a run",
            };
            let _ = writeln!(
                md,
                "Repeatability of `{}` on `{}`: medians {:.2} s ({:.2}..{:.2}) and {:.2} s ({:.2}..{:.2}); each inside the other's 95 % CI: {verdict}",
                a.regime,
                a.target,
                a.latency_ms.p50 / 1000.0,
                a.median_ci_ms[0] / 1000.0,
                a.median_ci_ms[1] / 1000.0,
                b.latency_ms.p50 / 1000.0,
                b.median_ci_ms[0] / 1000.0,
                b.median_ci_ms[1] / 1000.0,
            );
        }
    }
    let series: Vec<(&str, &[RequestRecord])> = runs.iter().map(|r| (r.summary.regime.as_str(), r.requests.as_slice())).collect();
    let path = out.join("latency-cdf.svg");
    std::fs::write(&path, plots::latency_cdf(&series)?).with_context(|| format!("write {}", path.display()))?;
    let _ = writeln!(md, "\n![latency CDF](latency-cdf.svg)");
    let path = out.join("report.md");
    std::fs::write(&path, &md).with_context(|| format!("write {}", path.display()))?;
    Ok(md)
}

/// Whether each of two medians lies inside the other's interval (`None`
/// when an interval is undefined: too few requests).
fn medians_inside_each_other((a, [a_lo, a_hi]): (f64, [f64; 2]), (b, [b_lo, b_hi]): (f64, [f64; 2])) -> Option<bool> {
    [a_lo, a_hi, b_lo, b_hi].iter().all(|v| v.is_finite()).then(|| (b_lo..=b_hi).contains(&a) && (a_lo..=a_hi).contains(&b))
}

/// One row per run: regime, pattern, latency percentiles with the
/// median's interval, success and cost.
fn table(runs: &[Run]) -> String {
    let mut md = String::from("| regime | target | start | pattern | n | success | p50 s (95 % CI) | p90 s | p95 s | p99 s | cost / request (s×GB) |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for run in runs {
        let s = &run.summary;
        let l = &s.latency_ms;
        let ci = if s.median_ci_ms.iter().all(|v| v.is_finite()) { format!(" ({:.2}..{:.2})", s.median_ci_ms[0] / 1000.0, s.median_ci_ms[1] / 1000.0) } else { String::new() };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.0} % | {:.2}{ci} | {:.2} | {:.2} | {:.2} | {:.2} |",
            s.regime,
            s.target,
            run.start(),
            run.pattern(),
            s.scheduled,
            s.success_rate * 100.0,
            l.p50 / 1000.0,
            l.p90 / 1000.0,
            l.p95 / 1000.0,
            l.p99 / 1000.0,
            s.cost_unit_per_request
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::medians_inside_each_other;

    #[test]
    fn medians_are_repeatable_only_when_each_lies_in_the_others_interval() {
        assert_eq!(medians_inside_each_other((10.0, [9.0, 12.0]), (11.0, [9.5, 11.5])), Some(true));
        // The figures of two warm-steady runs: 17.66 lies above 15.06..17.23.
        assert_eq!(medians_inside_each_other((17.66, [15.59, 23.69]), (15.52, [15.06, 17.23])), Some(false));
        assert_eq!(medians_inside_each_other((15.52, [15.06, 17.23]), (17.66, [15.59, 23.69])), Some(false), "symmetric");
        assert_eq!(medians_inside_each_other((1.0, [f64::NAN, f64::NAN]), (1.0, [0.5, 1.5])), None);
    }
}
