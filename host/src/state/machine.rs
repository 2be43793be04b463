//! The job state machine, in one place: the states ([`JobState`]), the events that move a job
//! ([`Event`]), the allowed moves ([`TRANSITIONS`], a `(state, event) → state` table), and where
//! an attempt's outcome takes its job ([`Next`]). Both SQL stores guard their statements with the
//! state lists below (`WHERE state IN …`), each checked against the table by the tests here, and
//! the table in `docs/architecture.md` is generated from [`TRANSITIONS`] and checked by a test
//! (`BLESS=1` rewrites it).

use super::{FailureClass, JobState, Outcome, OutputRef, RetryPolicy};

/// What moves a job. A submission is not an event of the table: a job is born `queued`, or
/// `scheduled` when its start time is ahead ([`INITIAL`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// Its start time came: a delayed job, or a retry whose backoff ended.
    Due,
    /// A scheduling round leased it to a worker (`attempt` and `lease_epoch` rise by one).
    Claim,
    /// The worker holding the lease started the guest (a repeat changes nothing).
    Start,
    /// Progress, a checkpoint or log lines from the worker holding the lease.
    Report,
    /// The attempt succeeded.
    Succeed,
    /// The attempt failed with a class that ends the job.
    Fail,
    /// The attempt failed retryably (class `retryable`) or with a host error (`host_error`),
    /// and its policy leaves a retry: it waits out a backoff.
    Retry,
    /// The same, with no retry left: a dead letter.
    Exhaust,
    /// The attempt ended cancelled, as asked through the API.
    Stop,
    /// Cancelled through the API before it started.
    Cancel,
    /// The attempt stopped for a drain (`suspended`), its worker was lost, or its lease did not
    /// survive a coordinator restart: queued again, resuming from its last checkpoint.
    Requeue,
    /// A dead job re-driven through the API, with its failure counts reset.
    Redrive,
}

impl Event {
    /// Every event, in the order of the table.
    pub const ALL: [Event; 12] = [
        Event::Due,
        Event::Claim,
        Event::Start,
        Event::Report,
        Event::Succeed,
        Event::Fail,
        Event::Retry,
        Event::Exhaust,
        Event::Stop,
        Event::Cancel,
        Event::Requeue,
        Event::Redrive,
    ];

    /// The event's name in the docs' table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Due => "due",
            Self::Claim => "claim",
            Self::Start => "start",
            Self::Report => "report",
            Self::Succeed => "succeed",
            Self::Fail => "fail",
            Self::Retry => "retry",
            Self::Exhaust => "exhaust",
            Self::Stop => "stop",
            Self::Cancel => "cancel",
            Self::Requeue => "requeue",
            Self::Redrive => "redrive",
        }
    }
}

/// The states a job is born in.
pub const INITIAL: [JobState; 2] = [JobState::Queued, JobState::Scheduled];

use Event as E;
use JobState as S;

/// Allowed moves: from any of some states, on an event, to a state (`None`: the state stays);
/// who performs them and through which state-store method (for the docs' table).
pub struct Transition {
    pub from: &'static [JobState],
    pub event: Event,
    pub to: Option<JobState>,
    pub by: &'static str,
    pub method: &'static str,
}

const fn t(
    from: &'static [JobState],
    event: Event,
    to: Option<JobState>,
    by: &'static str,
    method: &'static str,
) -> Transition {
    Transition { from, event, to, by, method }
}

/// A job leased to a worker: every update a worker sends is guarded by these states.
const HELD: &[JobState] = &[S::Assigned, S::Running];
const WORKER: &str = "coordinator, on the worker's report";
const FENCED: &str = "`apply_updates` (fenced by the lease epoch)";
const CANCEL: &str = "API `POST /v1/jobs/{id}/cancel`";

/// Every allowed move. Any `(state, event)` pair not here is refused: the statement matches no
/// row and changes nothing.
pub const TRANSITIONS: &[Transition] = &[
    t(
        &[S::Scheduled],
        E::Due,
        Some(S::Queued),
        "leader, every 250 ms, once `not_before` passed",
        "`promote_scheduled`",
    ),
    t(&[S::Scheduled, S::Queued], E::Cancel, Some(S::Cancelled), CANCEL, "`request_cancel`"),
    t(
        &[S::Queued],
        E::Claim,
        Some(S::Assigned),
        "leader's scheduling round, or a direct start on submission",
        "`assign_jobs`, `insert_jobs_direct`",
    ),
    t(HELD, E::Start, Some(S::Running), WORKER, FENCED),
    t(HELD, E::Report, None, WORKER, FENCED),
    t(HELD, E::Succeed, Some(S::Succeeded), WORKER, FENCED),
    t(HELD, E::Fail, Some(S::Failed), WORKER, FENCED),
    t(HELD, E::Retry, Some(S::Scheduled), WORKER, FENCED),
    t(HELD, E::Exhaust, Some(S::Dead), WORKER, FENCED),
    t(HELD, E::Stop, Some(S::Cancelled), WORKER, FENCED),
    t(
        HELD,
        E::Requeue,
        Some(S::Queued),
        "worker drain (`suspended`), lost worker, coordinator start",
        "`apply_updates`, `requeue_orphans`, `requeue_leases`",
    ),
    t(&[S::Dead], E::Redrive, Some(S::Queued), "API `POST /v1/jobs/{id}/redrive`", "`redrive`"),
];

/// The state `event` takes a job in `from` to; `None` when the move is not allowed.
pub fn next(from: JobState, event: Event) -> Option<JobState> {
    TRANSITIONS.iter().find(|t| t.from.contains(&from) && t.event == event).map(|t| t.to.unwrap_or(from))
}

/// The states `event` applies to, in the order of [`JobState`].
pub fn sources(event: Event) -> Vec<JobState> {
    let mut out: Vec<JobState> =
        TRANSITIONS.iter().filter(|t| t.event == event).flat_map(|t| t.from.iter().copied()).collect();
    out.sort_by_key(|s| s.ordinal());
    out.dedup();
    out
}

/// `states` as an SQL list: `('assigned', 'running')`.
pub fn sql_list(states: &[JobState]) -> String {
    let quoted: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
    format!("({})", quoted.join(", "))
}

/// The guard of every update a worker sends under its lease ([`Event::Start`], [`Event::Report`]
/// and an attempt's end): the job is leased.
pub const LEASED: &str = "('assigned', 'running')";
/// The guard of a cancellation through the API that ends the job at once ([`Event::Cancel`]).
pub const WAITING: &str = "('scheduled', 'queued')";
/// The states of a job that has not ended.
pub const LIVE: &str = "('scheduled', 'queued', 'assigned', 'running')";
/// The states of a job that has ended for good.
pub const ENDED: &str = "('succeeded', 'failed', 'cancelled', 'dead')";

/// A live job's failures so far and its retry policy, read (and locked) before an attempt's end
/// that may retry it is applied.
pub(crate) struct Retries {
    pub failures: u32,
    pub host_failures: u32,
    pub policy: RetryPolicy,
}

impl Retries {
    /// For an attempt that failed with `class` at `now_ms`: `Some(at)` to retry at `at`, `None`
    /// when no attempt is left. A host error counts against `host` (the host retry policy), any
    /// other class against the job's own policy.
    pub fn after(&self, class: FailureClass, host: &RetryPolicy, now_ms: i64) -> Option<i64> {
        match class {
            FailureClass::HostError => host.after_failure(self.host_failures, now_ms),
            _ => self.policy.after_failure(self.failures, now_ms),
        }
    }
}

/// Whether an attempt's end may retry the job, so that its [`Retries`] must be read first.
pub(crate) fn may_retry(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Failed { class: FailureClass::Retryable | FailureClass::HostError, .. })
}

/// The job's next state after an attempt ended.
pub(crate) struct Next<'a> {
    pub state: JobState,
    pub class: Option<FailureClass>,
    pub message: Option<&'a str>,
    /// The output to keep; `None` leaves the stored output as it is (the job runs again).
    pub output: Option<&'a OutputRef>,
    /// Whether the attempt counts against the retry policy (a retryable failure).
    pub counts_failure: bool,
    /// Whether the attempt counts against the host retry policy (a host error).
    pub counts_host_failure: bool,
    /// When a retry may start, Unix ms.
    pub not_before_ms: Option<i64>,
}

impl<'a> Next<'a> {
    /// `retry`: for a failure that [`may_retry`], the result of [`Retries::after`] (`Some(at)`:
    /// retry at `at`; `None`: no attempt left).
    pub fn of(outcome: &'a Outcome, retry: Option<Option<i64>>) -> Self {
        let ended = |state, class, message: &'a str, output| Self {
            state,
            class: Some(class),
            message: Some(message),
            output: Some(output),
            counts_failure: false,
            counts_host_failure: false,
            not_before_ms: None,
        };
        match outcome {
            Outcome::Succeeded { output } => Self {
                state: JobState::Succeeded,
                class: None,
                message: None,
                output: Some(output),
                counts_failure: false,
                counts_host_failure: false,
                not_before_ms: None,
            },
            Outcome::Failed { class: FailureClass::Cancelled, message, output } => {
                ended(JobState::Cancelled, FailureClass::Cancelled, message, output)
            }
            Outcome::Failed { class: class @ (FailureClass::Retryable | FailureClass::HostError), message, output } => {
                let host = *class == FailureClass::HostError;
                let counted = |next: Self| Self { counts_failure: !host, counts_host_failure: host, ..next };
                match retry {
                    Some(Some(at)) => counted(Self {
                        state: JobState::Scheduled,
                        class: Some(*class),
                        message: Some(message),
                        output: None,
                        counts_failure: false,
                        counts_host_failure: false,
                        not_before_ms: Some(at),
                    }),
                    // A host error brings no output of its own (the attempt stored none): the
                    // dead job keeps what its last checkpoint stored.
                    Some(None) if host => {
                        counted(Self { output: None, ..ended(JobState::Dead, *class, message, output) })
                    }
                    Some(None) => counted(ended(JobState::Dead, *class, message, output)),
                    None => ended(JobState::Failed, *class, message, output),
                }
            }
            Outcome::Failed { class, message, output } => ended(JobState::Failed, *class, message, output),
            Outcome::Suspended => Self {
                state: JobState::Queued,
                class: None,
                message: None,
                output: None,
                counts_failure: false,
                counts_host_failure: false,
                not_before_ms: None,
            },
        }
    }
}

/// The docs' table of moves, as `docs/architecture.md` shows it.
pub fn docs_table() -> String {
    let mut out =
        String::from("| from | event | to | performed by | state store method |\n| --- | --- | --- | --- | --- |\n");
    for t in TRANSITIONS {
        let from: Vec<String> = t.from.iter().map(|s| format!("`{}`", s.as_str())).collect();
        let to = t.to.map_or_else(|| "(unchanged)".to_owned(), |s| format!("`{}`", s.as_str()));
        out.push_str(&format!("| {} | {} | {to} | {} | {} |\n", from.join(", "), t.event.as_str(), t.by, t.method));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [JobState; 8] =
        [S::Scheduled, S::Queued, S::Assigned, S::Running, S::Succeeded, S::Failed, S::Cancelled, S::Dead];

    #[test]
    fn every_pair_of_state_and_event_is_either_allowed_once_or_refused() {
        for from in STATES {
            for event in Event::ALL {
                let n = TRANSITIONS.iter().filter(|t| t.from.contains(&from) && t.event == event).count();
                assert!(n <= 1, "{from:?} on {event:?} is in the table {n} times");
            }
        }
        // Nothing leaves an end state but a re-drive of a dead letter.
        for t in TRANSITIONS.iter().filter(|t| t.from.iter().any(|s| s.is_terminal())) {
            assert_eq!((t.from, t.event, t.to), (&[S::Dead][..], E::Redrive, Some(S::Queued)));
        }
        // Every state is reachable from a birth state, and every event is used.
        let mut reached: Vec<JobState> = INITIAL.to_vec();
        let step = |reached: &[JobState]| {
            TRANSITIONS
                .iter()
                .filter(|t| t.from.iter().any(|s| reached.contains(s)))
                .find_map(|t| t.to.filter(|to| !reached.contains(to)))
        };
        while let Some(to) = step(&reached) {
            reached.push(to);
        }
        for s in STATES {
            assert!(reached.contains(&s), "{s:?} cannot be reached");
        }
        for e in Event::ALL {
            assert!(!sources(e).is_empty(), "{e:?} moves nothing");
        }
        assert_eq!(next(S::Queued, E::Claim), Some(S::Assigned));
        assert_eq!(next(S::Succeeded, E::Claim), None);
        assert_eq!(next(S::Queued, E::Succeed), None, "only a leased job ends an attempt");
        assert_eq!(next(S::Failed, E::Redrive), None, "only a dead letter is re-driven");
    }

    #[test]
    fn the_sql_guards_are_the_tables_source_states() {
        assert_eq!(LEASED, sql_list(&sources(E::Report)));
        for e in [E::Succeed, E::Fail, E::Retry, E::Exhaust, E::Stop, E::Requeue] {
            assert_eq!(LEASED, sql_list(&sources(e)), "{e:?}");
        }
        assert_eq!(sql_list(&sources(E::Start)), LEASED);
        assert_eq!(WAITING, sql_list(&sources(E::Cancel)));
        assert_eq!(sql_list(&sources(E::Claim)), "('queued')");
        assert_eq!(sql_list(&sources(E::Due)), "('scheduled')");
        assert_eq!(sql_list(&sources(E::Redrive)), "('dead')");
        let live: Vec<JobState> = STATES.into_iter().filter(|s| !s.is_terminal()).collect();
        let ended: Vec<JobState> = STATES.into_iter().filter(|s| s.is_terminal()).collect();
        assert_eq!((LIVE, ENDED), (sql_list(&live).as_str(), sql_list(&ended).as_str()));
    }

    fn failed(class: FailureClass) -> Outcome {
        Outcome::Failed { class, message: "m".into(), output: OutputRef::default() }
    }

    /// The event an outcome is, given what `Next` made of it.
    fn event_of(next: &Next<'_>) -> Event {
        match next.state {
            S::Succeeded => E::Succeed,
            S::Failed => E::Fail,
            S::Cancelled => E::Stop,
            S::Scheduled => E::Retry,
            S::Dead => E::Exhaust,
            S::Queued => E::Requeue,
            s => panic!("an attempt's end cannot lead to {s:?}"),
        }
    }

    #[test]
    fn every_outcome_takes_a_leased_job_where_the_table_says() {
        let classes = [
            FailureClass::GuestError,
            FailureClass::Trap,
            FailureClass::FuelExhausted,
            FailureClass::MemoryLimit,
            FailureClass::Timeout,
            FailureClass::OutputLimit,
            FailureClass::Cancelled,
            FailureClass::InvalidInput,
            FailureClass::Retryable,
            FailureClass::HostError,
        ];
        let mut outcomes = vec![Outcome::Succeeded { output: OutputRef::default() }, Outcome::Suspended];
        outcomes.extend(classes.into_iter().map(failed));
        for o in &outcomes {
            let retry: &[Option<Option<i64>>] = if may_retry(o) { &[Some(Some(5)), Some(None)] } else { &[None] };
            for &r in retry {
                let n = Next::of(o, r);
                for from in [S::Assigned, S::Running] {
                    assert_eq!(next(from, event_of(&n)), Some(n.state), "{o:?} with {r:?} from {from:?}");
                }
            }
        }
    }

    #[test]
    fn retryable_failures_and_host_errors_count_against_their_own_budgets() {
        let r = Retries {
            failures: 1,
            host_failures: 0,
            policy: RetryPolicy { max_attempts: 2, ..RetryPolicy::default() },
        };
        let host = RetryPolicy { max_attempts: 2, initial_backoff_ms: 100, max_backoff_ms: 100 };
        // The job's own policy is used up; the host's is not.
        assert_eq!(r.after(FailureClass::Retryable, &host, 0), None);
        let at = r.after(FailureClass::HostError, &host, 0);
        assert!(at.is_some_and(|at| (50..=100).contains(&at)), "{at:?}");

        let host_error = failed(FailureClass::HostError);
        let n = Next::of(&host_error, Some(Some(7)));
        assert_eq!((n.state, n.class, n.not_before_ms), (S::Scheduled, Some(FailureClass::HostError), Some(7)));
        assert_eq!((n.counts_failure, n.counts_host_failure), (false, true));
        assert!(n.output.is_none(), "the job runs again: its stored output stays");
        let n = Next::of(&host_error, Some(None));
        assert_eq!((n.state, n.counts_failure, n.counts_host_failure), (S::Dead, false, true));
        assert!(n.output.is_none(), "a dead letter of host errors keeps the output its checkpoints stored");
        let retryable = failed(FailureClass::Retryable);
        let n = Next::of(&retryable, Some(Some(7)));
        assert_eq!((n.state, n.counts_failure, n.counts_host_failure), (S::Scheduled, true, false));
    }

    #[test]
    fn the_docs_table_is_generated_from_the_machine() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/architecture.md");
        let doc = std::fs::read_to_string(&path).expect("docs/architecture.md");
        let (begin, end) = ("<!-- transitions: begin -->\n", "<!-- transitions: end -->");
        let (Some(b), Some(e)) = (doc.find(begin), doc.find(end)) else {
            panic!("docs/architecture.md lacks the markers {begin:?} and {end:?}");
        };
        let table = docs_table();
        if std::env::var_os("BLESS").is_some() {
            let blessed = format!("{}{table}{}", &doc[..b + begin.len()], &doc[e..]);
            std::fs::write(&path, blessed).expect("writing docs/architecture.md");
            return;
        }
        assert_eq!(&doc[b + begin.len()..e], table, "run with BLESS=1 to regenerate the table");
    }
}
