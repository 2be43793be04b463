//! Where an attempt's outcome takes its job, for both SQL backends.

use super::{FailureClass, JobState, Outcome, OutputRef};

/// The job's next state after an attempt ended.
pub(crate) struct Next<'a> {
    pub state: JobState,
    pub class: Option<FailureClass>,
    pub message: Option<&'a str>,
    /// The output to keep; `None` leaves the stored output as it is (the job runs again).
    pub output: Option<&'a OutputRef>,
    /// Whether the attempt counts against the retry policy (a retryable failure).
    pub counts_failure: bool,
    /// When a retry may start, Unix ms.
    pub not_before_ms: Option<i64>,
}

impl<'a> Next<'a> {
    /// `retry`: for a retryable failure, the result of [`super::RetryPolicy::after_failure`]
    /// (`Some(at)`: retry at `at`; `None`: no attempt left).
    pub fn of(outcome: &'a Outcome, retry: Option<Option<i64>>) -> Self {
        let ended = |state, class, message: &'a str, output| Self {
            state,
            class: Some(class),
            message: Some(message),
            output: Some(output),
            counts_failure: false,
            not_before_ms: None,
        };
        match outcome {
            Outcome::Succeeded { output } => Self {
                state: JobState::Succeeded,
                class: None,
                message: None,
                output: Some(output),
                counts_failure: false,
                not_before_ms: None,
            },
            Outcome::Failed { class: FailureClass::Cancelled, message, output } => {
                ended(JobState::Cancelled, FailureClass::Cancelled, message, output)
            }
            Outcome::Failed { class: FailureClass::Retryable, message, output } => match retry {
                Some(Some(at)) => Self {
                    state: JobState::Scheduled,
                    class: Some(FailureClass::Retryable),
                    message: Some(message),
                    output: None,
                    counts_failure: true,
                    not_before_ms: Some(at),
                },
                Some(None) => {
                    Self { counts_failure: true, ..ended(JobState::Dead, FailureClass::Retryable, message, output) }
                }
                None => ended(JobState::Failed, FailureClass::Retryable, message, output),
            },
            Outcome::Failed { class, message, output } => ended(JobState::Failed, *class, message, output),
            Outcome::Suspended => Self {
                state: JobState::Queued,
                class: None,
                message: None,
                output: None,
                counts_failure: false,
                not_before_ms: None,
            },
        }
    }
}
