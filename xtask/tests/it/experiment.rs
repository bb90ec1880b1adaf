//! `cargo xtask experiment` on the real local runtime with `fault` functions
//! as the steps (each sleeps a little), so that a run takes seconds: warm
//! regimes have no cold start after their warm-up, cold ones scale every
//! function to zero before each request and every measured invocation is a
//! cold start; the results folder is complete and its records agree.

use serde_json::Value;

use crate::support::{repo, xtask_in};

fn pipeline() -> String {
    let stages = repo().join("stages");
    let step = |name: &str| {
        format!(
            "  {name}:\n    source: {}\n    memory: 64Mi\n    cpu: 0.5\n    timeout: 10s\n    max_inflight: 4\n    \
             scale: {{ min: 0, max: 1 }}\n    env: {{ FAULT: \"sleep:200\" }}\n    secrets: [s3-access-key, s3-secret-key]\n",
            stages.join("fault").display()
        )
    };
    format!(
        "name: experiment-test\n{common}functions:\n  orchestrator:\n    source: {orchestrator}\n    memory: 128Mi\n    cpu: 0.5\n    \
         timeout: 10m\n    max_inflight: 8\n    scale: {{ min: 0, max: 1 }}\n    secrets: [s3-access-key, s3-secret-key]\n{first}{second}\
         dag:\n  entry: orchestrator\n  inputs: {{ video: required }}\n  steps:\n    \
         - {{ function: first, needs: [video], produces: [first] }}\n    - {{ function: second, needs: [first], produces: [second] }}\n  retry:\n    attempts: 2\n    backoff: 100ms\n\
         experiments:\n  warm-steady: {{ start: warm, pattern: steady, rate: 4, requests: 4, warmup: 1 }}\n  \
         cold-steady: {{ start: cold, pattern: steady, rate: 1, requests: 2 }}\n",
        common = crate::support::common_sections("300s"),
        orchestrator = stages.join("orchestrator").display(),
        first = step("first"),
        second = step("second"),
    )
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[test]
fn warm_and_cold_regimes_write_their_records_and_keep_to_the_regime() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pipeline.yaml"), pipeline()).unwrap();
    std::fs::write(dir.path().join("input.mp4"), b"the fault steps never read it").unwrap();
    let run = |regime: &str| {
        let out = dir.path().join(regime);
        let output = xtask_in(dir.path(), &["experiment", regime, "--input", "input.mp4", "--out", out.to_str().unwrap()]);
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "experiment {regime}:\n{stdout}\n{stderr}");
        assert!(stdout.contains(&format!("results: {}", out.display())), "{stdout}");
        out
    };

    let warm = run("warm-steady");
    for file in ["requests.jsonl", "requests.csv", "invocations.jsonl", "invocations.csv", "summary.json", "environment.json"] {
        assert!(warm.join(file).is_file(), "{file} is missing");
    }
    let requests = lines(&warm.join("requests.jsonl"));
    assert_eq!(requests.len(), 5, "one warm-up and four measured: {requests:#?}");
    assert_eq!(requests.iter().filter(|r| r["warmup"] == true).count(), 1);
    assert!(requests.iter().all(|r| r["outcome"] == "succeeded"), "{requests:#?}");
    let invocations = lines(&warm.join("invocations.jsonl"));
    let measured: Vec<&Value> = invocations.iter().filter(|i| i["warmup"] == false).collect();
    assert_eq!(measured.len(), 8, "two steps per measured request: {invocations:#?}");
    assert!(measured.iter().all(|i| i["cold_start"] == false && i["mismatch"] == false), "warm after the warm-up: {measured:#?}");
    let summary: Value = serde_json::from_slice(&std::fs::read(warm.join("summary.json")).unwrap()).unwrap();
    assert_eq!((summary["scheduled"].as_u64(), summary["succeeded"].as_u64()), (Some(4), Some(4)), "{summary:#}");
    assert_eq!(summary["latency_ms"]["count"], 4);
    assert!(summary["latency_ms"]["p50"].as_f64().unwrap() >= 400.0, "two steps of 200 ms each: {summary:#}");
    let csv = std::fs::read_to_string(warm.join("requests.csv")).unwrap();
    assert!(csv.starts_with("request_id,warmup,group,scheduled_s,started_s,late_ms,"), "{csv}");
    assert_eq!(csv.lines().count(), 6, "a header and five rows");
    let environment: Value = serde_json::from_slice(&std::fs::read(warm.join("environment.json")).unwrap()).unwrap();
    assert_eq!(environment["schedule_s"], serde_json::json!([0.0, 0.25, 0.5, 0.75]), "{environment:#}");
    assert_eq!(environment["pipeline_sha256"].as_str().map(str::len), Some(64));

    let cold = run("cold-steady");
    let invocations = lines(&cold.join("invocations.jsonl"));
    assert_eq!(invocations.len(), 4, "two requests, two steps: {invocations:#?}");
    assert!(invocations.iter().all(|i| i["cold_start"] == true && i["mismatch"] == false), "each after a scale to zero: {invocations:#?}");
    let requests = lines(&cold.join("requests.jsonl"));
    assert_eq!(requests.iter().map(|r| r["group"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1], "a group per request");
    let summary: Value = serde_json::from_slice(&std::fs::read(cold.join("summary.json")).unwrap()).unwrap();
    assert_eq!((summary["cold_starts"].as_u64(), summary["mismatches"].as_u64()), (Some(4), Some(0)), "{summary:#}");

    let output = xtask_in(dir.path(), &["down"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    // Each run's own report, and both side by side.
    for run in [&warm, &cold] {
        let report = std::fs::read_to_string(run.join("report.md")).unwrap();
        for svg in ["latency-cdf.svg", "latency-over-time.svg", "stages.svg", "cost-latency.svg"] {
            assert!(report.contains(&format!("![{svg}]({svg})")), "{report}");
            let text = std::fs::read_to_string(run.join(svg)).unwrap();
            assert!(text.starts_with("<svg") && text.matches("<text").count() >= 5, "{svg}: axes and labels:\n{text}");
        }
        let stages = std::fs::read_to_string(run.join("stages.svg")).unwrap();
        assert!(stages.contains("\nfirst\n") && stages.contains("\nsecond\n"), "a bar per function: {stages}");
    }
    let out = dir.path().join("report");
    let output = xtask_in(dir.path(), &["report", warm.to_str().unwrap(), cold.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("| warm-steady | local | warm | steady 4 at 4/s | 4 | 100 % |"), "{stdout}");
    assert!(stdout.contains("| cold-steady | local | cold | steady 2 at 1/s | 2 | 100 % |"), "{stdout}");
    assert!(stdout.contains("Cold-start penalty `cold-steady` ÷ `warm-steady` (medians): "), "{stdout}");
    let cdf = std::fs::read_to_string(out.join("latency-cdf.svg")).unwrap();
    assert!(cdf.contains("warm-steady (n=4)") && cdf.contains("cold-steady (n=2)"), "a series per run: {cdf}");
}

#[test]
fn an_unknown_regime_lists_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pipeline.yaml"), pipeline()).unwrap();
    let output = xtask_in(dir.path(), &["experiment", "hot-steady"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no regime `hot-steady`") && stderr.contains("the regimes are `warm-steady`, `cold-steady`"), "{stderr}");
}
