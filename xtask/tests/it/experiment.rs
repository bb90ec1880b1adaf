//! `cargo xtask experiment` on the real local runtime with `fault` functions
//! as the steps (each sleeps a little), so that a run takes seconds: warm
//! regimes have no cold start after their warm-up, cold ones scale every
//! function to zero before each request and every measured invocation is a
//! cold start; the results folder is complete and its records agree.

use serde_json::Value;

use crate::support::{repo, xtask_in};

fn pipeline() -> String {
    pipeline_with(4, "")
}

/// Two `fault` steps of 200 ms, each serving `max_inflight` calls at once on
/// its one replica, and the regimes `warm-steady`, `cold-steady` and `more`.
fn pipeline_with(max_inflight: u32, more: &str) -> String {
    let stages = repo().join("stages");
    let step = |name: &str| {
        format!(
            "  {name}:\n    source: {}\n    memory: 64Mi\n    cpu: 0.5\n    timeout: 10s\n    max_inflight: {max_inflight}\n    \
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
         cold-steady: {{ start: cold, pattern: steady, rate: 1, requests: 2 }}\n{more}",
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
    // Each invocation on its request's time axis: `second` is sent once
    // `first` answered; the local gateway tells each its queue wait.
    for request in requests.iter().filter(|r| r["warmup"] == false) {
        let of = |function: &str| -> &Value {
            let found: Vec<&&Value> = measured.iter().filter(|i| i["request_id"] == request["request_id"] && i["function"] == function).collect();
            assert_eq!(found.len(), 1, "{function} of {}: {measured:#?}", request["request_id"]);
            found[0]
        };
        let (first, second) = (of("first"), of("second"));
        let ms = |i: &Value, key: &str| i[key].as_f64().unwrap_or_else(|| panic!("no {key}: {i:#}"));
        assert!(ms(second, "started_ms") >= ms(first, "started_ms") + ms(first, "elapsed_ms") - 1.0, "{first:#}\n{second:#}");
        assert!((0.0..ms(first, "elapsed_ms")).contains(&ms(first, "queued_ms")), "{first:#}");
        assert_eq!(ms(first, "paused_ms"), 0.0, "nothing answered 429: {first:#}");
    }
    let summary: Value = serde_json::from_slice(&std::fs::read(warm.join("summary.json")).unwrap()).unwrap();
    assert_eq!((summary["scheduled"].as_u64(), summary["succeeded"].as_u64()), (Some(4), Some(4)), "{summary:#}");
    assert_eq!(summary["latency_ms"]["count"], 4);
    assert!(summary["cpu_s_per_request"].as_f64().is_some_and(|cpu| cpu > 0.0), "the local target's CPU is measured: {summary:#}");
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
        for svg in ["latency-cdf.svg", "latency-over-time.svg", "stages.svg", "waterfall.svg", "cost-latency.svg"] {
            assert!(report.contains(&format!("![{svg}]({svg})")), "{report}");
            let text = std::fs::read_to_string(run.join(svg)).unwrap();
            assert!(text.starts_with("<svg") && text.matches("<text").count() >= 5, "{svg}: axes and labels:\n{text}");
        }
        let stages = std::fs::read_to_string(run.join("stages.svg")).unwrap();
        assert!(stages.contains("\nfirst\n") && stages.contains("\nsecond\n"), "a bar per function: {stages}");
        let waterfall = std::fs::read_to_string(run.join("waterfall.svg")).unwrap();
        assert!(waterfall.contains("median request") && waterfall.contains("seconds since the request started"), "{waterfall}");
        assert!(waterfall.contains("\nfirst\n") && waterfall.contains("\nsecond\n"), "a row per invocation: {waterfall}");
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

#[test]
fn a_capacity_search_raises_the_rate_until_the_p95_bound_breaks() {
    // One call at a time per step, 200 ms each: 5 requests/s at most. At 1/s
    // a request takes about 0.4 s; at 20/s ten requests queue behind each
    // other for about 2 s, far past the bound of 1 s.
    let search = "  search: { start: warm, pattern: steady, rate: 1, requests: 10, warmup: 1, capacity: { p95: 1s, factor: 20, steps: 3 } }\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pipeline.yaml"), pipeline_with(1, search)).unwrap();
    std::fs::write(dir.path().join("input.mp4"), b"the fault steps never read it").unwrap();
    let out = dir.path().join("search");
    let output = xtask_in(dir.path(), &["experiment", "search", "--input", "input.mp4", "--out", out.to_str().unwrap()]);
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let _ = xtask_in(dir.path(), &["down"]);

    let capacity: Value = serde_json::from_slice(&std::fs::read(out.join("capacity.json")).unwrap()).unwrap();
    let steps = capacity["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "the search ends at the first step not sustained: {capacity:#}");
    assert_eq!((steps[0]["rate"].as_f64(), steps[0]["sustained"].as_bool()), (Some(1.0), Some(true)), "{capacity:#}");
    assert!(steps[0]["p95_ms"].as_f64().unwrap() < 1000.0, "{capacity:#}");
    assert_eq!((steps[1]["rate"].as_f64(), steps[1]["sustained"].as_bool()), (Some(20.0), Some(false)), "{capacity:#}");
    assert!(steps[1]["p95_ms"].as_f64().unwrap() > 1000.0, "{capacity:#}");
    assert!(steps.iter().all(|s| s["requests"] == 10 && s["failed"] == 0), "{capacity:#}");
    assert_eq!(capacity["highest_sustained_rate"], 1.0, "{capacity:#}");
    let cpu = capacity["cpu_s_per_request"].as_f64().unwrap_or_else(|| panic!("the local target's CPU is measured: {capacity:#}"));
    assert!(cpu > 0.0, "{capacity:#}");
    let bound = capacity["cpu_bound_rate"].as_f64().unwrap();
    assert!((bound - capacity["cores"].as_f64().unwrap() / cpu).abs() < 1e-6 * bound, "{capacity:#}");
    assert!(stdout.contains("highest sustained rate 1.0000/s; CPU-bound limit "), "{stdout}");
    assert!(stdout.contains("sustained ÷ CPU-bound limit: "), "{stdout}");
    // Every step's requests are in the records, one group per step.
    let requests = lines(&out.join("requests.jsonl"));
    let groups: Vec<u64> = requests.iter().filter(|r| r["warmup"] == false).map(|r| r["group"].as_u64().unwrap()).collect();
    assert_eq!(groups, [vec![0; 10], vec![1; 10]].concat(), "{requests:#?}");
}
