//! [`JobError`]: how a job reports failure, with `From` conversions that make `?` pleasant.

use std::fmt;

/// Why a job failed. Returned from [`Job::run`](crate::Job::run) and from the fallible
/// [`Context`](crate::Context) methods.
///
/// Each variant maps one-to-one onto the WIT `job-error` variant and decides how the host
/// classifies the failure:
///
/// | variant | host failure class | retried? |
/// | --- | --- | --- |
/// | [`InvalidInput`](JobError::InvalidInput) | `invalid_input` | no: the same input fails again |
/// | [`Retryable`](JobError::Retryable) | `retryable` | yes, under the job's retry policy (after a backoff, from the last checkpoint); `dead` once it allows no more attempts |
/// | [`Failed`](JobError::Failed) | `guest_error` | no |
///
/// Conversions used by `?`:
///
/// * [`std::io::Error`]: [`ErrorKind::InvalidData`](std::io::ErrorKind::InvalidData) (for example
///   invalid UTF-8 from [`std::io::BufRead::read_line`]) becomes `InvalidInput`, every other kind
///   becomes `Failed`;
/// * [`serde_json::Error`] becomes `Failed` (use [`Context::params`](crate::Context::params) for
///   params, which reports `InvalidInput`);
/// * `String` and `&str` become `Failed` with that message.
///
/// The message is free text shown to the tenant through the API; keep it short and say what went
/// wrong (for example which column or which byte offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobError {
    /// The input or the params cannot be processed (malformed data, unknown column, ...).
    InvalidInput(String),
    /// A transient failure that another attempt may not meet.
    Retryable(String),
    /// Any other failure.
    Failed(String),
}

impl JobError {
    /// Builds [`JobError::InvalidInput`] from any message.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        JobError::InvalidInput(message.into())
    }

    /// Builds [`JobError::Retryable`] from any message.
    pub fn retryable(message: impl Into<String>) -> Self {
        JobError::Retryable(message.into())
    }

    /// Builds [`JobError::Failed`] from any message.
    pub fn failed(message: impl Into<String>) -> Self {
        JobError::Failed(message.into())
    }

    /// The error a job returns when the host asked it to stop with
    /// [`Interrupt::Cancel`](crate::Interrupt::Cancel): `Failed("cancelled")`. The host ends the
    /// job as `cancelled` whatever the message.
    pub fn cancelled() -> Self {
        JobError::Failed("cancelled".to_string())
    }

    /// The message carried by any variant.
    pub fn message(&self) -> &str {
        match self {
            JobError::InvalidInput(m) | JobError::Retryable(m) | JobError::Failed(m) => m,
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            JobError::Retryable(m) => write!(f, "retryable error: {m}"),
            JobError::Failed(m) => write!(f, "failed: {m}"),
        }
    }
}

impl std::error::Error for JobError {}

impl From<std::io::Error> for JobError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::InvalidData => JobError::InvalidInput(e.to_string()),
            _ => JobError::Failed(format!("I/O error: {e}")),
        }
    }
}

impl From<serde_json::Error> for JobError {
    fn from(e: serde_json::Error) -> Self {
        JobError::Failed(format!("JSON error: {e}"))
    }
}

impl From<String> for JobError {
    fn from(message: String) -> Self {
        JobError::Failed(message)
    }
}

impl From<&str> for JobError {
    fn from(message: &str) -> Self {
        JobError::Failed(message.to_string())
    }
}

impl From<JobError> for crate::bindings::JobError {
    fn from(e: JobError) -> Self {
        use crate::bindings::JobError as Wit;
        match e {
            JobError::InvalidInput(m) => Wit::InvalidInput(m),
            JobError::Retryable(m) => Wit::Retryable(m),
            JobError::Failed(m) => Wit::Failed(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_by_kind() {
        let bad = std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8");
        assert_eq!(JobError::from(bad), JobError::InvalidInput("not UTF-8".into()));
        let other = std::io::Error::other("boom");
        assert_eq!(JobError::from(other), JobError::Failed("I/O error: boom".into()));
    }

    #[test]
    fn strings_become_failed() {
        assert_eq!(JobError::from("x"), JobError::Failed("x".into()));
        assert_eq!(JobError::from(String::from("y")).message(), "y");
        assert_eq!(JobError::cancelled().to_string(), "failed: cancelled");
    }
}
