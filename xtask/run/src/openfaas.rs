//! The OpenFaaS gateway API's documents, as its OpenAPI spec names them:
//! what the local gateway serves and what the `openfaas` target sends. Our
//! own types, written from the spec's field list (camelCase on the wire).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The one namespace the local gateway has (OpenFaaS's default).
pub const NAMESPACE: &str = "openfaas-fn";

/// `GET /system/functions`, `GET /system/function/{name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub env_process: String,
    #[serde(default)]
    pub env_vars: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub limits: Option<Resources>,
    #[serde(default)]
    pub requests: Option<Resources>,
    #[serde(default)]
    pub invocation_count: u64,
    #[serde(default)]
    pub replicas: u64,
    #[serde(default)]
    pub available_replicas: u64,
}

/// `limits` and `requests`: Kubernetes quantities (`512Mi`, `500m`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
}

/// `POST`/`PUT /system/functions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDeployment {
    pub service: String,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_process: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_vars: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Resources>,
}

/// `DELETE /system/functions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteFunctionRequest {
    pub function_name: String,
}

/// `POST /system/scale-function/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleServiceRequest {
    #[serde(default)]
    pub service_name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    pub replicas: u64,
}

/// `/system/secrets`: a name, and for create and update a value (plain, or
/// base64 in `rawValue`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub raw_value: Option<String>,
}

/// `DELETE /system/secrets`: the name alone (other fields are ignored).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretDescription {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub namespace: Option<String>,
}

/// An optional field that, when given, is a value: `null` is refused, as
/// the spec does not make these fields nullable.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// One line of `GET /system/logs` (newline-delimited JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogEntry {
    pub name: String,
    pub namespace: String,
    pub instance: String,
    pub timestamp: String,
    pub text: String,
}

/// `POST /system/alert`: what AlertManager sends, the part that is used.
#[derive(Debug, Clone, Deserialize)]
pub struct PrometheusAlert {
    pub status: String,
    pub receiver: String,
    pub alerts: Vec<PrometheusInnerAlert>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PrometheusInnerAlert {
    pub status: String,
    pub labels: AlertLabels,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AlertLabels {
    pub alertname: String,
    pub function_name: String,
}
