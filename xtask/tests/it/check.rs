//! `cargo xtask check` on a temp copy of the repository's pipeline.yaml with one
//! mistake each: the whole stderr and the exit code are asserted.
//! After an intended change to pipeline.yaml or a message, refresh the
//! expectations with `UPDATE_EXPECT=1 cargo test -p xtask --test it check`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use expect_test::{expect, Expect};

const GOOD: &str = include_str!("../../../pipeline.yaml");

/// A temp folder holding `pipeline.yaml` (a copy of the good one, edited) and
/// an empty folder for every `source:` of the good one.
struct Fixture {
    dir: tempfile::TempDir,
    text: String,
}

impl Fixture {
    fn good() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        for line in GOOD.lines() {
            if let Some(source) = line.trim().strip_prefix("source: ") {
                std::fs::create_dir_all(dir.path().join(source)).unwrap();
            }
            if let Some(base) = line.trim().strip_prefix("base: ") {
                std::fs::create_dir_all(dir.path().join(base)).unwrap();
                for file in ["Dockerfile", "packages"] {
                    std::fs::write(dir.path().join(base).join(file), "").unwrap();
                }
            }
        }
        Fixture {
            dir,
            text: GOOD.to_string(),
        }
    }

    /// Replace `old`, which must occur exactly once, by `new`.
    fn replace(mut self, old: &str, new: &str) -> Fixture {
        assert_eq!(
            self.text.matches(old).count(),
            1,
            "`{old}` is not unique in pipeline.yaml"
        );
        self.text = self.text.replacen(old, new, 1);
        self
    }

    /// Replace the first `old` after the unique `anchor` by `new`.
    fn replace_after(mut self, anchor: &str, old: &str, new: &str) -> Fixture {
        assert_eq!(
            self.text.matches(anchor).count(),
            1,
            "`{anchor}` is not unique in pipeline.yaml"
        );
        let start = self.text.find(anchor).unwrap() + anchor.len();
        let at = start
            + self.text[start..]
                .find(old)
                .unwrap_or_else(|| panic!("no `{old}` after `{anchor}`"));
        self.text.replace_range(at..at + old.len(), new);
        self
    }

    /// Run `xtask check -f pipeline.yaml` in the temp folder.
    fn check(&self) -> Output {
        std::fs::write(self.dir.path().join("pipeline.yaml"), &self.text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["check", "-f", "pipeline.yaml"])
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// Assert that `check` fails with exit code 2, nothing on stdout and
    /// `expected` on stderr (the temp folder written as `$DIR`).
    /// `check` passes, saying `expected` on stderr.
    fn warns(&self, expected: Expect) {
        let output = self.check();
        let stderr = String::from_utf8(output.stderr).unwrap();
        expected.assert_eq(&stderr);
        assert_eq!(output.status.code(), Some(0), "exit code; stderr:\n{stderr}");
        assert!(String::from_utf8_lossy(&output.stdout).ends_with("ok (11 functions, 10 DAG steps)\n"));
    }

    fn fails(&self, expected: Expect) {
        let output = self.check();
        let stderr = String::from_utf8(output.stderr).unwrap();
        let dir = self.dir.path().canonicalize().unwrap();
        expected.assert_eq(&stderr.replace(&dir.display().to_string(), "$DIR"));
        assert_eq!(
            output.status.code(),
            Some(2),
            "exit code; stderr:\n{stderr}"
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout), "");
    }
}

fn repo_pipeline() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipeline.yaml")
}

#[test]
fn good_pipeline_passes() {
    let output = Fixture::good().check();
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "pipeline.yaml: pipeline `video-searcher` ok (11 functions, 10 DAG steps)\n"
    );
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn repository_pipeline_passes_in_place() {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["check", "-f"])
        .arg(repo_pipeline())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn missing_file_is_an_error_with_its_cause() {
    let fixture = Fixture::good();
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["check", "-f", "nowhere.yaml"])
        .current_dir(fixture.dir.path())
        .output()
        .unwrap();
    expect![[r#"
        error: cannot read the pipeline file nowhere.yaml
        cause: No such file or directory (os error 2)
    "#]]
    .assert_eq(&String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn bad_yaml_points_at_unclosed_list() {
    Fixture::good().replace("produces: [clips] }", "produces: [clips }").fails(expect![[r#"
        error: invalid YAML: did not find expected ',' or ']'
           --> pipeline.yaml:271:73
        271 |     - { function: cut-clips, needs: [video, segments], produces: [clips }
            |                                                                         ^
        help: while parsing a flow sequence that starts at 271:66: check its indentation and that its brackets and quotes are closed
    "#]]);
}

#[test]
fn tab_indentation_is_bad_yaml() {
    Fixture::good().replace_after("source: stages/orchestrator", "    cpu: 0.5\n", "\tcpu: 0.5\n").fails(expect![[r#"
        error: invalid YAML: found a tab character that violates indentation
           --> pipeline.yaml:136:1
        136 |  cpu: 0.5
            | ^
        help: while scanning a plain scalar that starts at 135:13: check its indentation and that its brackets and quotes are closed
    "#]]);
}

#[test]
fn unknown_key_suggests_timeout() {
    Fixture::good()
        .replace_after("  transcribe:\n", "    timeout:", "    timeot:")
        .fails(expect![[r#"
            error: unknown key `timeot` in `functions.transcribe`
               --> pipeline.yaml:191:5
            191 |     timeot: 120s
                |     ^^^^^^
            help: did you mean `timeout`? `functions.transcribe` accepts: `source`, `memory`, `cpu`, `cpu_limit`, `timeout`, `max_inflight`, `scale`, `env`, `secrets`, `assets`
        "#]]);
}

#[test]
fn unknown_key_without_close_match_lists_allowed_keys() {
    Fixture::good()
        .replace("storage:\n", "storage:\n  bucket_name: x\n")
        .fails(expect![[r#"
            error: unknown key `bucket_name` in `storage`
              --> pipeline.yaml:21:3
            21 |   bucket_name: x
               |   ^^^^^^^^^^^
            help: `storage` accepts: `bucket`, `region`, `access_key_secret`, `secret_key_secret`
        "#]]);
}

#[test]
fn missing_key_points_at_its_mapping() {
    Fixture::good()
        .replace_after("source: stages/orchestrator", "    cpu: 0.5\n", "")
        .fails(expect![[r#"
            error: `functions.orchestrator` is missing `cpu`
               --> pipeline.yaml:133:3
            133 |   orchestrator:
                |   ^^^^^^^^^^^^
            help: add `cpu:` to `functions.orchestrator`
        "#]]);
}

#[test]
fn wrong_type_names_the_expected_type() {
    Fixture::good()
        .replace("max_inflight: 32", "max_inflight: lots")
        .fails(expect![[r#"
            error: `functions.orchestrator.max_inflight` must be a whole number, found string "lots"
               --> pipeline.yaml:140:19
            140 |     max_inflight: lots
                |                   ^^^^
            help: write a whole number here
        "#]]);
}

#[test]
fn openfaas_target_without_gateway_points_at_its_kind() {
    Fixture::good()
        .replace("    gateway: http://127.0.0.1:31112\n", "")
        .fails(expect![[r#"
            error: target `openfaas` of kind `openfaas` has no `gateway`
              --> pipeline.yaml:54:11
            54 |     kind: openfaas
               |           ^^^^^^^^
            help: add `gateway:` to `targets.openfaas`
        "#]]);
}

#[test]
fn embedded_target_refuses_an_openfaas_setting() {
    Fixture::good()
        .replace("    gateway_port: 8081\n", "    gateway_port: 8081\n    secrets_dir: secrets\n")
        .fails(expect![[r#"
            error: `secrets_dir` is not a setting of a `docker` target (`docker`)
              --> pipeline.yaml:47:18
            47 |     secrets_dir: secrets
               |                  ^^^^^^^
            help: a `docker` target takes `gateway_port`, `store_port`, `idle_timeout`
        "#]]);
}

#[test]
fn openfaas_gateway_must_be_a_url() {
    Fixture::good()
        .replace("gateway: http://127.0.0.1:31112", "gateway: 127.0.0.1:31112")
        .fails(expect![[r#"
            error: `127.0.0.1:31112` at `targets.openfaas.gateway` is not an http(s) URL
              --> pipeline.yaml:55:14
            55 |     gateway: 127.0.0.1:31112
               |              ^^^^^^^^^^^^^^^
            help: write it like `http://127.0.0.1:8080`
        "#]]);
}

#[test]
fn unknown_target_kind_lists_known_kinds() {
    Fixture::good()
        .replace("kind: local", "kind: cloud")
        .fails(expect![[r#"
            error: unknown target kind `cloud` at `targets.local.kind`
              --> pipeline.yaml:35:11
            35 |     kind: cloud
               |           ^^^^^
            help: known kinds: `local`, `docker`, `openfaas`, `kubernetes`
        "#]]);
}

#[test]
fn kubernetes_target_with_unknown_mode_suggests_a_known_one() {
    Fixture::good().replace("mode: deployments", "mode: deployment").fails(expect![[r#"
        error: unknown mode `deployment` at `targets.kubernetes.mode`
          --> pipeline.yaml:71:11
        71 |     mode: deployment
           |           ^^^^^^^^^^
        help: did you mean `deployments`? known modes: `deployments`, `function-crd` (`deployments` works with OpenFaaS CE, `function-crd` needs OpenFaaS Pro)
    "#]]);
}

#[test]
fn kubernetes_target_without_mode_points_at_its_kind() {
    Fixture::good().replace("    mode: deployments\n", "").fails(expect![[r#"
        error: target `kubernetes` of kind `kubernetes` has no `mode`
          --> pipeline.yaml:70:11
        70 |     kind: kubernetes
           |           ^^^^^^^^^^
        help: add `mode:` to `targets.kubernetes`
    "#]]);
}

#[test]
fn kubernetes_target_without_secrets_dir_points_at_its_kind() {
    Fixture::good().replace("    secrets_dir: .secrets/kubernetes\n", "").fails(expect![[r#"
        error: target `kubernetes` of kind `kubernetes` has no `secrets_dir`
          --> pipeline.yaml:70:11
        70 |     kind: kubernetes
           |           ^^^^^^^^^^
        help: add `secrets_dir:` to `targets.kubernetes`
    "#]]);
}

#[test]
fn kubernetes_target_refuses_an_embedded_setting() {
    Fixture::good()
        .replace("    mode: deployments\n", "    mode: deployments\n    gateway_port: 8080\n")
        .fails(expect![[r#"
            error: `gateway_port` is not a setting of a `kubernetes` target (`kubernetes`)
              --> pipeline.yaml:72:19
            72 |     gateway_port: 8080
               |                   ^^^^
            help: a `kubernetes` target takes `namespace`, `openfaas_namespace`, `mode`, `gateway`, `store`, `function_gateway`, `function_store`, `bind_addr`, `secrets_dir`, `minio`
        "#]]);
}

#[test]
fn kubernetes_namespace_must_be_a_dns_label() {
    Fixture::good().replace("    namespace: openfaas-fn\n", "    namespace: OpenFaaS_fn\n").fails(expect![[r#"
        error: `OpenFaaS_fn` at `targets.kubernetes.namespace` is not a Kubernetes namespace name
          --> pipeline.yaml:72:16
        72 |     namespace: OpenFaaS_fn
           |                ^^^^^^^^^^^
        help: use at most 63 lowercase letters, digits and `-`, starting and ending with a letter or digit, like `openfaas-fn`
    "#]]);
}

#[test]
fn kubernetes_function_store_must_be_a_url() {
    Fixture::good()
        .replace_after("  kubernetes:\n", "function_store: http://minio.openfaas:9000", "function_store: minio.openfaas:9000")
        .fails(expect![[r#"
            error: `minio.openfaas:9000` at `targets.kubernetes.function_store` is not an http(s) URL
              --> pipeline.yaml:75:21
            75 |     function_store: minio.openfaas:9000
               |                     ^^^^^^^^^^^^^^^^^^^
            help: write it like `http://127.0.0.1:8080`
        "#]]);
}

#[test]
fn kubernetes_bind_addr_must_be_an_ip_address() {
    Fixture::good()
        .replace("    minio: true\n", "    minio: true\n    bind_addr: all\n")
        .fails(expect![[r#"
            error: `all` at `targets.kubernetes.bind_addr` is not an IP address
              --> pipeline.yaml:78:16
            78 |     bind_addr: all
               |                ^^^
            help: functions bind all of their pod's addresses with `0.0.0.0`
        "#]]);
}

#[test]
fn kubernetes_minio_must_be_a_boolean() {
    Fixture::good().replace("    minio: true\n", "    minio: maybe\n").fails(expect![[r#"
        error: `targets.kubernetes.minio` must be a boolean, found string "maybe"
          --> pipeline.yaml:77:12
        77 |     minio: maybe
           |            ^^^^^
        help: write a boolean here
    "#]]);
}

#[test]
fn kubernetes_target_needs_secret_names_kubernetes_takes() {
    Fixture::good()
        .replace("  - s3-secret-key\n", "  - s3-secret-key\n  - Api_Token\n")
        .fails(expect![[r#"
            error: secret `Api_Token` cannot name a Kubernetes Secret (target `kubernetes` is of kind `kubernetes`)
              --> pipeline.yaml:32:5
            32 |   - Api_Token
               |     ^^^^^^^^^
            help: use lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit, like `s3-access-key`
        "#]]);
}

#[test]
fn duplicate_function_points_at_second_declaration() {
    Fixture::good()
        .replace("  detect-speech:\n", "  extract-audio:\n")
        .fails(expect![[r#"
            error: function `extract-audio` is declared twice
               --> pipeline.yaml:151:3
            151 |   extract-audio:
                |   ^^^^^^^^^^^^^
            help: function names are unique: rename or remove one (the first is at line 143)
        "#]]);
}

#[test]
fn duplicate_key_points_at_second_one() {
    Fixture::good()
        .replace_after("source: stages/orchestrator", "    cpu: 0.5\n", "    cpu: 0.5\n    cpu: 1\n")
        .fails(expect![[r#"
            error: key `cpu` appears twice in `functions.orchestrator`
               --> pipeline.yaml:137:5
            137 |     cpu: 1
                |     ^^^
            help: keep one of them (the first is at line 136)
        "#]]);
}

#[test]
fn second_yaml_document_is_rejected() {
    let fixture = Fixture::good();
    let text = format!("{}---\nname: other\n", fixture.text);
    Fixture { text, ..fixture }.fails(expect![[r#"
        error: the pipeline file holds more than one YAML document
           --> pipeline.yaml:321:1
        321 | ---
            | ^^^
        help: keep one document: remove this `---` and what follows, or merge it into the first
    "#]]);
}

#[test]
fn unknown_step_suggests_declared_function() {
    Fixture::good().replace("function: cut-clips,", "function: cut-clip,").fails(expect![[r#"
        error: unknown function `cut-clip` in `dag.steps`
           --> pipeline.yaml:271:19
        271 |     - { function: cut-clip, needs: [video, segments], produces: [clips] }
            |                   ^^^^^^^^
        help: did you mean `cut-clips`? declared functions: `orchestrator`, `extract-audio`, `detect-speech`, `cut-clips`, `clip-audio`, `compress-clip`, `transcribe`, `sample-frames`, `detect-objects`, `match-transcript`, `answer`
    "#]]);
}

#[test]
fn unknown_entry_suggests_declared_function() {
    Fixture::good().replace("entry: orchestrator", "entry: orchestrater").fails(expect![[r#"
        error: unknown function `orchestrater` in `dag.entry`
           --> pipeline.yaml:263:10
        263 |   entry: orchestrater
            |          ^^^^^^^^^^^^
        help: did you mean `orchestrator`? declared functions: `orchestrator`, `extract-audio`, `detect-speech`, `cut-clips`, `clip-audio`, `compress-clip`, `transcribe`, `sample-frames`, `detect-objects`, `match-transcript`, `answer`
    "#]]);
}

#[test]
fn function_used_twice_points_at_second_use() {
    Fixture::good()
        .replace("- { function: detect-objects, needs: [frames]", "- { function: cut-clips, needs: [frames]")
        .fails(expect![[r#"
            error: function `cut-clips` is two steps of the DAG
               --> pipeline.yaml:287:21
            287 |       - { function: cut-clips, needs: [frames], produces: [detections] }
                |                     ^^^^^^^^^
            help: a function is one step: remove this one, or declare another function (the first is `dag.steps[2].function`, line 271)
        "#]]);
}

#[test]
fn entry_listed_as_step_is_a_cycle() {
    Fixture::good()
        .replace("- { function: extract-audio,", "- { function: orchestrator,")
        .fails(expect![[r#"
            error: the entry `orchestrator` is also a step: the DAG would call itself (a cycle)
               --> pipeline.yaml:269:19
            269 |     - { function: orchestrator, needs: [video], produces: [audio] }
                |                   ^^^^^^^^^^^^
            help: remove this step: the entry runs the steps and is not one of them
        "#]]);
}

#[test]
fn function_outside_dag_is_rejected() {
    Fixture::good()
        .replace("      - { function: detect-objects, needs: [frames], produces: [detections] }\n", "")
        .fails(expect![[r#"
            error: function `detect-objects` is not in the DAG
               --> pipeline.yaml:203:3
            203 |   detect-objects:
                |   ^^^^^^^^^^^^^^
            help: add a step that calls it to `dag.steps` or `dag.fan_out.steps`, or remove it from `functions`
        "#]]);
}

#[test]
fn undeclared_secret_suggests_declared_one() {
    Fixture::good()
        .replace_after("  transcribe:\n", "s3-secret-key]", "s3-secret-ky]")
        .fails(expect![[r#"
            error: function `transcribe` uses undeclared secret `s3-secret-ky`
               --> pipeline.yaml:194:30
            194 |     secrets: [s3-access-key, s3-secret-ky]
                |                              ^^^^^^^^^^^^
            help: did you mean `s3-secret-key`? declare it under `secrets:` or fix the name
        "#]]);
}

#[test]
fn storage_credential_secret_must_be_declared() {
    Fixture::good()
        .replace(
            "secret_key_secret: s3-secret-key",
            "secret_key_secret: s3-key",
        )
        .fails(expect![[r#"
            error: `storage.secret_key_secret` uses undeclared secret `s3-key`
              --> pipeline.yaml:25:22
            25 |   secret_key_secret: s3-key
               |                      ^^^^^^
            help: declare it under `secrets:` or fix the name
        "#]]);
}

#[test]
fn missing_source_folder_points_at_source() {
    Fixture::good()
        .replace("source: stages/transcribe", "source: stages/transcriber")
        .fails(expect![[r#"
            error: source folder `stages/transcriber` of function `transcribe` does not exist
               --> pipeline.yaml:186:13
            186 |     source: stages/transcriber
                |             ^^^^^^^^^^^^^^^^^^
            help: `source` is relative to the pipeline file's folder: looked for $DIR/stages/transcriber
        "#]]);
}

#[test]
fn memory_above_64gi_is_rejected() {
    Fixture::good()
        .replace_after("source: stages/orchestrator", "memory: 128Mi", "memory: 65Gi")
        .fails(expect![[r#"
            error: function `orchestrator` memory 65Gi exceeds the 64Gi limit
               --> pipeline.yaml:135:13
            135 |     memory: 65Gi
                |             ^^^^
            help: lower it to `64Gi` or less
        "#]]);
}

#[test]
fn zero_memory_is_rejected() {
    Fixture::good()
        .replace_after("source: stages/orchestrator", "memory: 128Mi", "memory: 0Mi")
        .fails(expect![[r#"
            error: function `orchestrator` memory is 0
               --> pipeline.yaml:135:13
            135 |     memory: 0Mi
                |             ^^^
            help: give it what one replica needs, like `256Mi`
        "#]]);
}

#[test]
fn memory_with_unknown_unit_is_rejected() {
    Fixture::good()
        .replace_after("source: stages/orchestrator", "memory: 128Mi", "memory: 128MB")
        .fails(expect![[r#"
            error: function `orchestrator` memory `128MB` has an unknown unit `MB`
               --> pipeline.yaml:135:13
            135 |     memory: 128MB
                |             ^^^^^
            help: write it like `256Mi`, `1Gi` or `512M`
        "#]]);
}

#[test]
fn cpu_must_be_above_zero() {
    Fixture::good()
        .replace_after("source: stages/orchestrator", "cpu: 0.5", "cpu: 0m")
        .fails(expect![[r#"
            error: function `orchestrator` cpu 0m is not above 0
               --> pipeline.yaml:136:10
            136 |     cpu: 0m
                |          ^^
            help: write cores like `0.5` or `1`, or millicores like `500m`
        "#]]);
}

#[test]
fn input_size_limit_needs_a_unit() {
    Fixture::good()
        .replace("max_size: 1Gi", "max_size: lots")
        .fails(expect![[r#"
            error: `lots` is not a whole number with a unit; write bytes with a unit, like `1Gi` or `500Mi` (`parameters.input`)
               --> pipeline.yaml:103:5
            103 |     max_size: lots
                |     ^^^^^^^^^^^^^^
        "#]]);
}

#[test]
fn cpu_limit_may_not_be_below_cpu() {
    Fixture::good()
        .replace_after("source: stages/orchestrator", "cpu_limit: 1", "cpu_limit: 250m")
        .fails(expect![[r#"
            error: function `orchestrator` cpu_limit 250m is below its cpu 0.5
               --> pipeline.yaml:138:16
            138 |     cpu_limit: 250m
                |                ^^^^
            help: a replica is given at least `cpu`: raise `cpu_limit` to it, or leave it out for no limit
        "#]]);
}

#[test]
fn scale_min_above_max_points_at_min() {
    Fixture::good()
        .replace("scale: { min: 1, max: 2 }", "scale: { min: 3, max: 2 }")
        .fails(expect![[r#"
            error: function `orchestrator` scale min 3 exceeds max 2
               --> pipeline.yaml:141:19
            141 |     scale: { min: 3, max: 2 }
                |                   ^
            help: lower `min` or raise `max`
        "#]]);
}

#[test]
fn scale_max_zero_is_rejected() {
    Fixture::good()
        .replace("scale: { min: 1, max: 2 }", "scale: { min: 0, max: 0 }")
        .fails(expect![[r#"
            error: function `orchestrator` scale max is 0: it could never run
               --> pipeline.yaml:141:27
            141 |     scale: { min: 0, max: 0 }
                |                           ^
            help: use 1 or more (`min: 0` already lets it scale to zero)
        "#]]);
}

#[test]
fn max_inflight_zero_is_rejected() {
    Fixture::good()
        .replace("max_inflight: 32", "max_inflight: 0")
        .fails(expect![[r#"
            error: function `orchestrator` max_inflight is 0: it could never take a request
               --> pipeline.yaml:140:19
            140 |     max_inflight: 0
                |                   ^
            help: use 1 or more
        "#]]);
}

// One failing example per rule of the timeout model (pipeline/timeouts.rs).

const GATEWAY_PIN: &str = "  # gateway: { upstream: 600s, read: 610s, write: 610s }\n";
const ACK_WAIT_PIN: &str = "  # ack_wait: 2h\n";

#[test]
fn timeout_rule_exec_within_gateway_upstream() {
    Fixture::good()
        .replace(GATEWAY_PIN, "  gateway: { upstream: 600s, read: 610s, write: 610s }\n")
        .fails(expect![[r#"
            error: function `orchestrator` runs up to 1h 50m and answers by 1h 50m 2s, but the gateway waits only 10m for it (timeouts.gateway.upstream)
               --> pipeline.yaml:139:14
            139 |     timeout: 110m
                |              ^^^^
            help: lower this timeout to <= 9m 58s, or raise the gateway's upstream timeout to >= 1h 50m 2s (rule: exec <= gateway upstream)
        "#]]);
}

#[test]
fn timeout_rule_gateway_upstream_before_read_and_write() {
    Fixture::good()
        .replace(GATEWAY_PIN, "  gateway: { upstream: 2h, read: 2h, write: 3h }\n")
        .fails(expect![[r#"
            error: the gateway's read timeout 2h ends before its upstream timeout 2h plus the margin 1s
              --> pipeline.yaml:17:34
            17 |   gateway: { upstream: 2h, read: 2h, write: 3h }
               |                                  ^^
            help: raise it to >= 2h 1s (rule: gateway upstream < gateway read/write)
        "#]]);
}

#[test]
fn timeout_rule_ack_wait_outlasts_the_longest_async_run() {
    Fixture::good().replace(ACK_WAIT_PIN, "  ack_wait: 30m\n").fails(expect![[r#"
        error: the queue worker's ack_wait 30m is not longer than the longest call 1h 50m 32s: it would redeliver an asynchronous request still running
          --> pipeline.yaml:18:13
        18 |   ack_wait: 30m
           |             ^^^
        help: raise it to >= 1h 50m 33s (rule: ack_wait > longest async run)
    "#]]);
}

#[test]
fn timeout_rule_entry_covers_the_request_budget() {
    Fixture::good().replace("timeout: 110m", "timeout: 60m").fails(expect![[r#"
        error: entry `orchestrator` timeout 1h is shorter than the worst case of the steps it waits for (1h 38m 51s)
           --> pipeline.yaml:139:14
        139 |     timeout: 60m
            |              ^^^
        help: the worst case is the longest chain of steps, each to every attempt's deadline plus the backoffs: extract-audio 4m 40s 500ms, detect-speech 4m 40s 500ms, cut-clips 7m 40s 500ms, clip-audio 2m 40s 500ms, transcribe 7m 40s 500ms, match-transcript 2m 10s 500ms, compress-clip 4m 40s 500ms, sample-frames 3m 10s 500ms, detect-objects 6m 10s 500ms, answer 2m 10s 500ms, its fanned-out steps 3 times (max_items / max_parallel); raise its timeout to >= 1h 38m 52s, or lower the steps' timeouts, `dag.retry.attempts` or `dag.fan_out.max_items` (rule: orchestrator deadlines <= its exec timeout)
    "#]]);
}

#[test]
fn timeout_rule_client_outlasts_the_gateway() {
    Fixture::good().replace(ACK_WAIT_PIN, "  client: 1h\n").fails(expect![[r#"
        error: the client's timeout 1h ends before the gateway's write timeout 1h 50m 33s plus the margin 1s
          --> pipeline.yaml:18:11
        18 |   client: 1h
           |           ^^
        help: raise it to >= 1h 50m 34s (rule: client > gateway)
    "#]]);
}

#[test]
fn fan_out_max_items_zero_is_rejected() {
    Fixture::good().replace("max_items: 10", "max_items: 0").fails(expect![[r#"
        error: `dag.fan_out.max_items` is 0: every request with an item would be refused
           --> pipeline.yaml:278:16
        278 |     max_items: 0
            |                ^
        help: give the most items a request may have, like `10`: the request's budget covers that many
    "#]]);
}

#[test]
fn duration_without_unit_is_rejected() {
    Fixture::good()
        .replace("backoff: 500ms", "backoff: 500")
        .fails(expect![[r#"
            error: duration `500` at `dag.retry.backoff` has no unit
               --> pipeline.yaml:291:14
            291 |     backoff: 500
                |              ^^^
            help: write a whole number with a unit: `500ms`, `60s`, `2m`, `1h`
        "#]]);
}

#[test]
fn fan_out_max_parallel_zero_is_rejected() {
    Fixture::good()
        .replace("max_parallel: 4", "max_parallel: 0")
        .fails(expect![[r#"
            error: `dag.fan_out.max_parallel` is 0: no item would run
               --> pipeline.yaml:277:19
            277 |     max_parallel: 0
                |                   ^
            help: use 1 or more
        "#]]);
}

#[test]
fn retry_attempts_zero_is_rejected() {
    Fixture::good()
        .replace("attempts: 3", "attempts: 0")
        .fails(expect![[r#"
            error: `dag.retry.attempts` is 0: no step would ever run
               --> pipeline.yaml:290:15
            290 |     attempts: 0
                |               ^
            help: use 1 for no retries, or more
        "#]]);
}

#[test]
fn top_db_min_above_max_is_rejected() {
    Fixture::good()
        .replace("top_db: { min: 24,", "top_db: { min: 50,")
        .fails(expect![[r#"
            error: `parameters.speech.top_db` min 50 exceeds max 49
               --> pipeline.yaml:107:20
            107 |     top_db: { min: 50, max: 49 }
                |                    ^^
            help: lower `min` or raise `max`
        "#]]);
}

#[test]
fn sentence_min_must_be_below_max() {
    Fixture::good()
        .replace(
            "sentence_seconds: { min: 6,",
            "sentence_seconds: { min: 30,",
        )
        .fails(expect![[r#"
            error: `parameters.speech.sentence_seconds` min 30 must be below max 30
               --> pipeline.yaml:108:30
            108 |     sentence_seconds: { min: 30, max: 30 }
                |                              ^^
            help: lower `min` or raise `max` (min < max)
        "#]]);
}

#[test]
fn frames_per_minute_zero_is_rejected() {
    Fixture::good()
        .replace("per_minute: 12", "per_minute: 0")
        .fails(expect![[r#"
            error: `parameters.frames.per_minute` is 0: no frame would be sampled
               --> pipeline.yaml:113:17
            113 |     per_minute: 0
                |                 ^
            help: sample at least 1 frame per minute
        "#]]);
}

#[test]
fn score_threshold_outside_unit_interval_is_rejected() {
    Fixture::good()
        .replace("score_threshold: 0.5", "score_threshold: 1.5")
        .fails(expect![[r#"
            error: `parameters.detector.score_threshold` 1.5 is outside 0..1
               --> pipeline.yaml:117:22
            117 |     score_threshold: 1.5
                |                      ^^^
            help: use a fraction between 0 and 1, like 0.5
        "#]]);
}

#[test]
fn nms_iou_outside_unit_interval_is_rejected() {
    Fixture::good()
        .replace("nms_iou: 0.3", "nms_iou: -0.3")
        .fails(expect![[r#"
            error: `parameters.detector.nms_iou` -0.3 is outside 0..1
               --> pipeline.yaml:118:14
            118 |     nms_iou: -0.3
                |              ^^^^
            help: use a fraction between 0 and 1, like 0.5
        "#]]);
}

#[test]
fn unknown_detector_model_suggests_a_known_one() {
    Fixture::good()
        .replace("model: centerface", "model: yolov12n")
        .fails(expect![[r#"
            error: unknown detector model `yolov12n` at `parameters.detector.model`
               --> pipeline.yaml:115:12
            115 |     model: yolov12n # faces, MIT; or yolov12n-coco: the 80 COCO classes, AGPL-3.0 weights (README)
                |            ^^^^^^^^
            help: did you mean `yolov12n-coco`? known models: `centerface`, `yolov12n-coco` (`cargo xtask model --help` says what each is)
        "#]]);
}

#[test]
fn detector_model_asset_cannot_also_name_a_file() {
    Fixture::good()
        .replace("      - detector_model: true\n", "      - detector_model: true\n        from: model.onnx\n")
        .fails(expect![[r#"
            error: an asset is either a file (`from`) or the detector model (`detector_model: true`), not both
               --> pipeline.yaml:222:9
            222 |       - detector_model: true
                |         ^^^^^^^^^^^^^^
            help: remove `from:`: the detector model is the file `parameters.detector.model` names
        "#]]);
}

#[test]
fn asset_without_a_source_is_rejected() {
    Fixture::good()
        .replace("      - detector_model: true\n", "      - detector_model: false\n")
        .fails(expect![[r#"
            error: asset `functions.detect-objects.assets[0]` says nothing to copy
               --> pipeline.yaml:222:9
            222 |       - detector_model: false
                |         ^^^^^^^^^^^^^^^^^^^^^
            help: add `from:` (a file, relative to the pipeline file's folder), or `detector_model: true` for the model `parameters.detector.model` names
        "#]]);
}

#[test]
fn zero_sample_rate_is_rejected() {
    Fixture::good()
        .replace("audio_sample_rate: 16000", "audio_sample_rate: 0")
        .fails(expect![[r#"
            error: `parameters.compress.audio_sample_rate` is 0
               --> pipeline.yaml:111:24
            111 |     audio_sample_rate: 0
                |                        ^
            help: use a sample rate in Hz, like 16000 or 22050
        "#]]);
}

#[test]
fn env_cannot_override_parameters() {
    Fixture::good()
        .replace("RUST_LOG: info", "VS_FRAMES_PER_MINUTE: 3")
        .fails(expect![[r#"
            error: function `detect-objects` cannot set environment variable `VS_FRAMES_PER_MINUTE`
               --> pipeline.yaml:211:7
            211 |       VS_FRAMES_PER_MINUTE: 3
                |       ^^^^^^^^^^^^^^^^^^^^
            help: `VS_*` variables come from `parameters:`; change the parameter there
        "#]]);
}

#[test]
fn fan_out_item_must_differ_from_its_list() {
    Fixture::good()
        .replace("item: clip", "item: clips")
        .fails(expect![[r#"
            error: artifact `clips` has two producers: `cut-clips` and the fan-out (one item of `clips`)
               --> pipeline.yaml:275:11
            275 |     item: clips
                |           ^^^^^
            help: an artifact has one producer, so that every step knows what it gets: rename one of them (the first is `dag.steps[2].produces[0]`, line 271)
        "#]]);
}

#[test]
fn unknown_platform_is_pointed_at_with_a_suggestion() {
    Fixture::good()
        .replace("platforms: [linux/amd64, linux/arm64]", "platforms: [linux/amd64, linux/arm]")
        .fails(expect![[r#"
            error: unknown platform `linux/arm`
              --> pipeline.yaml:89:28
            89 |   platforms: [linux/amd64, linux/arm]
               |                            ^^^^^^^^^
            help: did you mean `linux/arm64`? known platforms: `linux/amd64`, `linux/arm64`
        "#]]);
}

#[test]
fn registry_with_a_scheme_is_refused() {
    Fixture::good()
        .replace("registry: 127.0.0.1:5000/videosearcher", "registry: http://127.0.0.1:5000/videosearcher")
        .fails(expect![[r#"
            error: `build.registry` has a scheme `http://`
              --> pipeline.yaml:91:13
            91 |   registry: http://127.0.0.1:5000/videosearcher
               |             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
            help: write a registry host with a path, like `127.0.0.1:5000/videosearcher`: image references carry no scheme
        "#]]);
}

#[test]
fn asset_destination_must_be_an_absolute_file_path() {
    Fixture::good()
        .replace("to: /opt/videosearcher/models/detector.onnx", "to: models/detector.onnx")
        .fails(expect![[r#"
            error: asset destination `models/detector.onnx` is not an absolute file path
               --> pipeline.yaml:223:13
            223 |         to: models/detector.onnx
                |             ^^^^^^^^^^^^^^^^^^^^
            help: write where the file goes inside the image, like `/opt/videosearcher/models/model.onnx`
        "#]]);
}

#[test]
fn base_folder_without_its_recipe_is_pointed_at() {
    Fixture::good().replace("base: base-image", "base: no-such-folder").fails(expect![[r#"
        error: base image folder `no-such-folder` has no `Dockerfile`
          --> pipeline.yaml:84:9
        84 |   base: no-such-folder
           |         ^^^^^^^^^^^^^^
        help: `base` is relative to the pipeline file's folder and holds `Dockerfile` and `packages`: looked in $DIR/no-such-folder
    "#]]);
}

#[test]
fn cold_regime_with_a_warmup_is_rejected() {
    Fixture::good()
        .replace("cold-steady: { start: cold, pattern: steady, rate: 0.05, requests: 3 }", "cold-steady: { start: cold, pattern: steady, rate: 0.05, requests: 3, warmup: 1 }")
        .fails(expect![[r#"
            error: regime `cold-steady` is cold, but warms its functions up first
               --> pipeline.yaml:308:81
            308 |   cold-steady: { start: cold, pattern: steady, rate: 0.05, requests: 3, warmup: 1 }
                |                                                                                 ^
            help: remove `warmup` (a cold regime scales every function to zero before each request or burst), or make it `start: warm`
        "#]]);
}

#[test]
fn steady_regime_without_a_rate_is_rejected() {
    Fixture::good()
        .replace("cold-steady: { start: cold, pattern: steady, rate: 0.05, requests: 3 }", "cold-steady: { start: cold, pattern: steady, requests: 3 }")
        .fails(expect![[r#"
            error: regime `cold-steady` has a `steady` pattern but no `rate`
               --> pipeline.yaml:308:40
            308 |   cold-steady: { start: cold, pattern: steady, requests: 3 }
                |                                        ^^^^^^
            help: add `rate:` to `experiments.cold-steady`
        "#]]);
}

#[test]
fn burst_regime_refuses_a_rate() {
    Fixture::good()
        .replace("cold-burst: { start: cold, pattern: burst, size: 3 }", "cold-burst: { start: cold, pattern: burst, size: 3, rate: 2 }")
        .fails(expect![[r#"
            error: `rate` is not a setting of a `burst` pattern (`experiments.cold-burst`)
               --> pipeline.yaml:309:61
            309 |   cold-burst: { start: cold, pattern: burst, size: 3, rate: 2 }
                |                                                             ^
            help: a `burst` pattern takes `size`, `bursts`, `gap`
        "#]]);
}

#[test]
fn capacity_search_of_a_cold_regime_is_rejected() {
    Fixture::good()
        .replace("cold-steady: { start: cold, pattern: steady, rate: 0.05, requests: 3 }", "cold-steady: { start: cold, pattern: steady, rate: 0.05, requests: 3, capacity: { p95: 60s, factor: 2, steps: 3 } }")
        .fails(expect![[r#"
            error: regime `cold-steady` searches for capacity but is not warm and steady
               --> pipeline.yaml:308:83
            308 |   cold-steady: { start: cold, pattern: steady, rate: 0.05, requests: 3, capacity: { p95: 60s, factor: 2, steps: 3 } }
                |                                                                                   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
            help: a capacity search raises a steady rate on warm functions: make it `start: warm` and `pattern: steady`
        "#]]);
}

#[test]
fn capacity_factor_that_does_not_raise_the_rate_is_rejected() {
    Fixture::good().replace("capacity: { p95: 45s, factor: 1.3, steps: 6 }", "capacity: { p95: 45s, factor: 0.5, steps: 6 }").fails(expect![[r#"
        error: factor `0.5` does not raise the rate
           --> pipeline.yaml:320:35
        320 |     capacity: { p95: 45s, factor: 0.5, steps: 6 }
            |                                   ^^^
        help: give a number above 1, like `1.5`
    "#]]);
}

#[test]
fn need_nobody_produces_suggests_the_close_name() {
    Fixture::good().replace("needs: [audio_16k]", "needs: [audio_16]").fails(expect![[r#"
        error: transcribe needs `audio_16`, which no step produces and the request does not bring
           --> pipeline.yaml:281:41
        281 |       - { function: transcribe, needs: [audio_16], produces: [transcript] }
            |                                         ^^^^^^^^
        help: did you mean `audio_16k`? artifacts it can need: `audio`, `audio_16k`, `clip`, `clips`, `compressed`, `detections`, `frames`, `items`, `match`, `matched`, `query`, `result`, `segments`, `transcript`, `video`; or add `audio_16` to a step's `produces` or to `dag.inputs`
    "#]]);
}

#[test]
fn when_flag_nobody_produces_is_rejected() {
    Fixture::good().replace("when: matched", "when: matchd").fails(expect![[r#"
        error: compress-clip needs `matchd`, which no step produces and the request does not bring
           --> pipeline.yaml:285:57
        285 |       - { function: compress-clip, needs: [clip], when: matchd, produces: [compressed] }
            |                                                         ^^^^^^
        help: did you mean `matched`? artifacts it can need: `audio`, `audio_16k`, `clip`, `clips`, `compressed`, `detections`, `frames`, `items`, `match`, `matched`, `query`, `result`, `segments`, `transcript`, `video`; or add `matchd` to a step's `produces` or to `dag.inputs`
    "#]]);
}

#[test]
fn artifact_with_two_producers_points_at_the_second() {
    Fixture::good().replace("produces: [transcript] }", "produces: [transcript, audio] }").fails(expect![[r#"
        error: artifact `audio` has two producers: `extract-audio` and `transcribe`
           --> pipeline.yaml:281:76
        281 |       - { function: transcribe, needs: [audio_16k], produces: [transcript, audio] }
            |                                                                            ^^^^^
        help: an artifact has one producer, so that every step knows what it gets: rename one of them (the first is `dag.steps[0].produces[0]`, line 269)
    "#]]);
}

#[test]
fn dataflow_cycle_is_named_step_by_step() {
    Fixture::good().replace("needs: [audio], produces: [segments]", "needs: [audio, clips], produces: [segments]").fails(expect![[r#"
        error: the steps form a cycle: detect-speech needs cut-clips needs detect-speech
           --> pipeline.yaml:270:7
        270 |     - { function: detect-speech, needs: [audio, clips], produces: [segments] }
            |       ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
        help: a step runs once what it needs exists, so none of these can start: remove one of the needs
    "#]]);
}

#[test]
fn request_step_cannot_need_an_items_artifact() {
    Fixture::good().replace("needs: [segments, items]", "needs: [segments, transcript]").fails(expect![[r#"
        error: answer needs `transcript`, which exists only inside each item of the fan-out (`transcribe`)
           --> pipeline.yaml:272:45
        272 |     - { function: answer, needs: [segments, transcript], produces: [result] }
            |                                             ^^^^^^^^^^
        help: the request's steps see an item's artifacts through the fan-out's `collect` document: need that instead
    "#]]);
}

#[test]
fn linear_step_gets_the_migration() {
    Fixture::good()
        .replace("    - { function: extract-audio, needs: [video], produces: [audio] }", "    - extract-audio")
        .fails(expect![[r#"
            error: step `extract-audio` names only its function: a step now says which artifacts it needs and produces
               --> pipeline.yaml:269:7
            269 |     - extract-audio
                |       ^^^^^^^^^^^^^
            help: write it as `{ function: extract-audio, needs: [...], produces: [...] }` with the names of the artifacts it reads and writes (pipeline.yaml's `dag:` shows every step of VideoSearcher)
        "#]]);
}

#[test]
fn step_without_outputs_is_rejected() {
    Fixture::good().replace("needs: [video], produces: [audio] }", "needs: [video] }").fails(expect![[r#"
        error: step `extract-audio` produces nothing
           --> pipeline.yaml:269:7
        269 |     - { function: extract-audio, needs: [video] }
            |       ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
        help: list the artifacts its answer carries in `produces`: a step without outputs does nothing the DAG can see
    "#]]);
}

#[test]
fn result_must_be_an_artifact_of_the_request() {
    Fixture::good().replace("result: result", "result: detections").fails(expect![[r#"
        error: the request's answer needs `detections`, which exists only inside each item of the fan-out (`detect-objects`)
           --> pipeline.yaml:288:11
        288 |   result: detections
            |           ^^^^^^^^^^
        help: the request's steps see an item's artifacts through the fan-out's `collect` document: need that instead
    "#]]);
}

#[test]
fn unused_output_is_a_warning() {
    Fixture::good()
        .replace("needs: [video], produces: [audio] }", "needs: [video], produces: [audio, waveform] }")
        .warns(expect![[r#"
            warning: `waveform` is produced by `extract-audio` but nothing needs it
               --> pipeline.yaml:269:68
            269 |     - { function: extract-audio, needs: [video], produces: [audio, waveform] }
                |                                                                    ^^^^^^^^
            help: need it in a step, or remove it (a step's unused output still costs its upload)
        "#]]);
}

#[test]
fn unused_request_input_is_a_warning() {
    Fixture::good().replace("    query: optional\n", "    query: optional\n    subtitles: optional\n").warns(expect![[r#"
        warning: request input `subtitles` is needed by no step
           --> pipeline.yaml:268:5
        268 |     subtitles: optional
            |     ^^^^^^^^^
        help: need it in a step, or remove it from `dag.inputs`
    "#]]);
}

#[test]
fn fan_out_needing_its_own_collection_is_a_cycle() {
    Fixture::good().replace("needs: [clip], when: matched", "needs: [clip, items], when: matched").fails(expect![[r#"
        error: the steps form a cycle: the fan-out needs the fan-out
           --> pipeline.yaml:274:11
        274 |     over: clips
            |           ^^^^^
        help: a step runs once what it needs exists, so none of these can start: remove one of the needs
    "#]]);
}
