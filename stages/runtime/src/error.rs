//! Classified failures. Each kind maps to one HTTP status; a function never
//! answers 200 with an error inside.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed (bad JSON, a key with `..`, a missing input name).
    BadInput,
    /// A named object does not exist.
    NotFound,
    /// Someone else holds what this needs to write: another invocation
    /// serves the same request.
    Conflict,
    /// The input is well-formed but its content can't be processed (corrupt media, no audio).
    Unprocessable,
    /// `max_inflight` reached; try again later.
    Overloaded,
    /// The function failed (a tool crashed, the store refused a write).
    Internal,
    /// A function this one called answered badly or not at all.
    BadGateway,
    /// The function is shutting down or not ready.
    Unavailable,
    /// `exec_timeout` or a deadline passed.
    Timeout,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadInput => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Unprocessable => 422,
            ErrorKind::Overloaded => 429,
            ErrorKind::Internal => 500,
            ErrorKind::BadGateway => 502,
            ErrorKind::Unavailable => 503,
            ErrorKind::Timeout => 504,
        }
    }

    /// The kind a caller sees when a function answered with `status`.
    pub fn from_status(status: u16) -> ErrorKind {
        match status {
            400 => ErrorKind::BadInput,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            422 => ErrorKind::Unprocessable,
            429 => ErrorKind::Overloaded,
            502 => ErrorKind::BadGateway,
            503 => ErrorKind::Unavailable,
            504 => ErrorKind::Timeout,
            _ => ErrorKind::Internal,
        }
    }

    /// Worth another attempt: the same request may succeed later.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Overloaded | ErrorKind::BadGateway | ErrorKind::Unavailable | ErrorKind::Timeout
        )
    }
}

/// A classified failure: `kind` decides the HTTP status, `code` names the
/// cause for machines (`no_audio`, `corrupt_media`, …), `message` for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageError {
    pub kind: ErrorKind,
    pub code: String,
    pub message: String,
}

impl StageError {
    pub fn new(kind: ErrorKind, code: &str, message: impl Into<String>) -> StageError {
        StageError { kind, code: code.to_string(), message: message.into() }
    }
    pub fn bad_input(code: &str, message: impl Into<String>) -> StageError {
        StageError::new(ErrorKind::BadInput, code, message)
    }
    pub fn unprocessable(code: &str, message: impl Into<String>) -> StageError {
        StageError::new(ErrorKind::Unprocessable, code, message)
    }
    pub fn internal(code: &str, message: impl Into<String>) -> StageError {
        StageError::new(ErrorKind::Internal, code, message)
    }
}

impl std::fmt::Display for StageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.kind.status(), self.message)
    }
}

impl std::error::Error for StageError {}

/// Anything unclassified is an internal failure; its whole chain is kept.
impl From<anyhow::Error> for StageError {
    fn from(err: anyhow::Error) -> StageError {
        StageError::internal("internal", format!("{err:#}"))
    }
}
