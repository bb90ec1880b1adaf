//! Why a function's rollout is not ready, in plain words, from what the
//! cluster says: the Deployment's conditions, its pods' container states
//! and conditions, and the pods' events. Pure: the caller fetches, this
//! reads, so every case is tested on objects the tests build.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};

/// What stops a rollout, most specific first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The image cannot be pulled (`ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`).
    ImagePull { image: String, message: String },
    /// The binary is for another CPU (`exec format error`).
    WrongArchitecture { message: String },
    /// A Secret the pod mounts or reads does not exist.
    MissingSecret { message: String },
    /// The container was killed for memory.
    OutOfMemory { limit: Option<String> },
    /// The container keeps exiting.
    CrashLoop { restarts: i32, message: String },
    /// No node can take the pod.
    Unschedulable { message: String },
    /// The Deployment made no pod (its controller reports a failure, or none runs).
    NoPods { message: String },
    /// Pods exist and nothing is wrong with them that the cluster reports.
    NotReady { ready: i32, wanted: i32 },
}

impl Problem {
    /// One sentence for the user, with what to do.
    pub fn explain(&self, function: &str, target: &str, namespace: &str) -> String {
        match self {
            Problem::ImagePull { image, message } => format!(
                "cannot pull its image {image}: {message}\n    help: push it where the cluster pulls from (`cargo xtask build --push`); OpenFaaS CE pulls only images anyone may pull"
            ),
            Problem::WrongArchitecture { message } => format!(
                "its binary is for another CPU (exec format error: {message})\n    help: build for the nodes' platform: add it to `build.platforms` and run `cargo xtask build --push`"
            ),
            Problem::MissingSecret { message } => format!(
                "a secret is missing: {message}\n    help: give every secret a value (a file in the target's `secrets_dir`, or VS_SECRET_<NAME>) and deploy again"
            ),
            Problem::OutOfMemory { limit } => format!(
                "killed for memory (limit {})\n    help: raise `functions.{function}.memory` in pipeline.yaml",
                limit.as_deref().unwrap_or("unset")
            ),
            Problem::CrashLoop { restarts, message } => format!(
                "keeps crashing ({restarts} restarts): {message}\n    help: see why with `cargo xtask logs --target {target} {function}`"
            ),
            Problem::Unschedulable { message } => format!(
                "no node can take its pod: {message}\n    help: lower `functions.{function}.memory`/`cpu`, or add nodes"
            ),
            Problem::NoPods { message } => format!(
                "no pod was made: {message}\n    help: the cluster's controller manager makes them; check it runs (`kubectl get events -n {namespace}`)"
            ),
            Problem::NotReady { ready, wanted } => format!(
                "{ready} of {wanted} replicas ready, and the cluster reports nothing wrong\n    help: its readiness probe (`/_/health`) fails: see `cargo xtask logs --target {target} {function}`"
            ),
        }
    }
}

/// Whether the Deployment's rollout is complete: the controller saw the
/// latest spec and every wanted replica is updated and available.
pub fn rolled_out(deployment: &Deployment) -> bool {
    let wanted = deployment.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1);
    let generation = deployment.metadata.generation.unwrap_or(0);
    let Some(status) = &deployment.status else { return wanted == 0 && generation == 0 };
    status.observed_generation.unwrap_or(0) >= generation
        && status.updated_replicas.unwrap_or(0) >= wanted
        && status.available_replicas.unwrap_or(0) >= wanted
        && status.ready_replicas.unwrap_or(0) >= wanted
}

/// The most specific problem of a Deployment that is not rolled out.
pub fn diagnose(deployment: &Deployment, pods: &[Pod], events: &[Event]) -> Problem {
    let statuses: Vec<&ContainerStatus> = pods
        .iter()
        .filter_map(|pod| pod.status.as_ref())
        .flat_map(|status| status.container_statuses.iter().flatten())
        .collect();
    let waiting = |reasons: &[&str]| {
        statuses.iter().find_map(|status| {
            let waiting = status.state.as_ref()?.waiting.as_ref()?;
            let reason = waiting.reason.as_deref()?;
            reasons.contains(&reason).then(|| (*status, waiting.message.clone().unwrap_or_else(|| reason.to_string())))
        })
    };
    let terminations = statuses.iter().flat_map(|status| {
        let now = status.state.as_ref().and_then(|state| state.terminated.as_ref());
        let last = status.last_state.as_ref().and_then(|state| state.terminated.as_ref());
        now.into_iter().chain(last)
    });
    let event_messages: Vec<String> = events.iter().filter_map(|event| event.message.clone()).collect();
    let messages: Vec<String> = statuses
        .iter()
        .flat_map(|status| {
            let state = [status.state.as_ref(), status.last_state.as_ref()];
            state.into_iter().flatten().flat_map(|state| {
                let waiting = state.waiting.as_ref().and_then(|w| w.message.clone());
                let terminated = state.terminated.as_ref().and_then(|t| t.message.clone());
                waiting.into_iter().chain(terminated)
            })
        })
        .chain(event_messages.iter().cloned())
        .collect();

    if let Some((status, message)) = waiting(&["ErrImagePull", "ImagePullBackOff", "InvalidImageName"]) {
        return Problem::ImagePull { image: status.image.clone(), message };
    }
    if let Some(message) = messages.iter().find(|m| m.contains("exec format error")) {
        return Problem::WrongArchitecture { message: message.clone() };
    }
    let secret_missing = |m: &&String| m.contains("secret") && m.contains("not found");
    if let Some(message) = messages.iter().find(secret_missing) {
        return Problem::MissingSecret { message: message.clone() };
    }
    if terminations.clone().any(|terminated| terminated.reason.as_deref() == Some("OOMKilled")) {
        let limit = deployment
            .spec
            .as_ref()
            .and_then(|spec| spec.template.spec.as_ref())
            .and_then(|spec| spec.containers.first())
            .and_then(|container| container.resources.as_ref()?.limits.as_ref()?.get("memory").map(|q| q.0.clone()));
        return Problem::OutOfMemory { limit };
    }
    if let Some((status, message)) = waiting(&["CrashLoopBackOff", "RunContainerError", "CreateContainerError"]) {
        let exit = terminations
            .clone()
            .next()
            .map(|t| format!("; last exit code {}{}", t.exit_code, t.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()))
            .unwrap_or_default();
        return Problem::CrashLoop { restarts: status.restart_count, message: format!("{message}{exit}") };
    }
    let unschedulable = pods.iter().find_map(|pod| {
        let conditions = pod.status.as_ref()?.conditions.as_ref()?;
        let scheduled = conditions.iter().find(|c| c.type_ == "PodScheduled")?;
        (scheduled.status == "False").then(|| scheduled.message.clone().unwrap_or_else(|| "Unschedulable".into()))
    });
    if let Some(message) = unschedulable {
        return Problem::Unschedulable { message };
    }
    let wanted = deployment.spec.as_ref().and_then(|spec| spec.replicas).unwrap_or(1);
    if pods.is_empty() {
        let failure = deployment
            .status
            .as_ref()
            .and_then(|status| status.conditions.as_ref())
            .and_then(|conditions| {
                conditions.iter().find(|c| {
                    (c.type_ == "ReplicaFailure" && c.status == "True")
                        || (c.type_ == "Progressing" && c.status == "False")
                })
            })
            .map(|c| c.message.clone().unwrap_or_else(|| c.reason.clone().unwrap_or_default()));
        let message = failure.unwrap_or_else(|| {
            let observed = deployment.status.as_ref().and_then(|s| s.observed_generation).is_some();
            if observed {
                "its controller reports no failure".into()
            } else {
                "no controller has looked at the Deployment yet".into()
            }
        });
        return Problem::NoPods { message };
    }
    let ready = deployment.status.as_ref().and_then(|status| status.ready_replicas).unwrap_or(0);
    Problem::NotReady { ready, wanted }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": { "name": "f", "generation": 2 },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": { "faas_function": "f" } },
                "template": { "spec": { "containers": [{
                    "name": "f", "image": "r/f@sha256:1",
                    "resources": { "limits": { "memory": "512Mi" } }
                }] } }
            },
            "status": status
        }))
        .unwrap()
    }

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({ "metadata": { "name": "f-1" }, "status": status })).unwrap()
    }

    fn container(state: serde_json::Value, last: serde_json::Value) -> serde_json::Value {
        json!({ "containerStatuses": [{
            "name": "f", "image": "r/f@sha256:1", "imageID": "", "ready": false, "restartCount": 4,
            "state": state, "lastState": last
        }] })
    }

    #[test]
    fn rolled_out_needs_the_latest_generation_and_every_replica() {
        let done = json!({ "observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1 });
        assert!(rolled_out(&deployment(done)));
        let stale = json!({ "observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1 });
        assert!(!rolled_out(&deployment(stale)));
        assert!(!rolled_out(&deployment(json!({ "observedGeneration": 2 }))));
    }

    #[test]
    fn each_failure_is_named() {
        let d = deployment(json!({ "observedGeneration": 2 }));
        let waiting = |reason: &str, message: &str| {
            pod(container(json!({ "waiting": { "reason": reason, "message": message } }), json!({})))
        };
        let cases = [
            (waiting("ImagePullBackOff", "Back-off pulling image"), "ImagePull"),
            (waiting("CrashLoopBackOff", "back-off 5m0s"), "CrashLoop"),
            (waiting("CreateContainerConfigError", "secret \"s3-access-key\" not found"), "MissingSecret"),
            (
                pod(container(
                    json!({ "waiting": { "reason": "CrashLoopBackOff" } }),
                    json!({ "terminated": { "exitCode": 137, "reason": "OOMKilled" } }),
                )),
                "OutOfMemory",
            ),
            (
                pod(container(
                    json!({ "waiting": { "reason": "CrashLoopBackOff" } }),
                    json!({ "terminated": { "exitCode": 128, "reason": "StartError", "message": "exec /usr/local/bin/f: exec format error" } }),
                )),
                "WrongArchitecture",
            ),
            (
                pod(json!({ "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient memory." }] })),
                "Unschedulable",
            ),
            (pod(container(json!({ "running": {} }), json!({}))), "NotReady"),
        ];
        for (pod, want) in cases {
            let got = diagnose(&d, &[pod], &[]);
            assert!(format!("{got:?}").starts_with(want), "{want}: {got:?}");
        }
        assert_eq!(
            diagnose(&d, &[], &[]),
            Problem::NoPods { message: "its controller reports no failure".into() }
        );
        let oom = diagnose(&d, &[pod(container(json!({}), json!({ "terminated": { "exitCode": 137, "reason": "OOMKilled" } })))], &[]);
        assert_eq!(oom, Problem::OutOfMemory { limit: Some("512Mi".into()) });
    }

    #[test]
    fn a_mount_event_names_the_missing_secret() {
        let d = deployment(json!({}));
        let pod = pod(container(json!({ "waiting": { "reason": "ContainerCreating" } }), json!({})));
        let event: Event = serde_json::from_value(json!({
            "metadata": { "name": "e" },
            "involvedObject": { "kind": "Pod", "name": "f-1" },
            "reason": "FailedMount",
            "message": "MountVolume.SetUp failed for volume \"secrets\" : secret \"s3-secret-key\" not found"
        }))
        .unwrap();
        let got = diagnose(&d, &[pod], &[event]);
        assert!(matches!(&got, Problem::MissingSecret { message } if message.contains("s3-secret-key")), "{got:?}");
    }
}
