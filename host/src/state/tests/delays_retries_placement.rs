//! Delayed jobs, retries with dead letters, and waiting reasons, on both backends.

use super::*;

on_both_backends!(
    delayed_jobs_wait_scheduled_until_their_time,
    retryable_failures_back_off_then_end_dead_and_can_be_redriven,
    host_errors_retry_apart_from_the_retry_budget_are_metered_apart_then_end_dead,
    jobs_with_a_waiting_reason_are_left_out_until_cleared,
);

fn retryable() -> Outcome {
    Outcome::Failed { class: FailureClass::Retryable, message: "flaky".into(), output: OutputRef::default() }
}

async fn delayed_jobs_wait_scheduled_until_their_time(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let now = crate::ids::now_ms();
    let mut later = new_job(t.id, 0, 0);
    later.not_before_ms = Some(now + 60_000);
    let mut past = new_job(t.id, 0, 0);
    past.not_before_ms = Some(now - 1);
    let later = s.insert_job(&later).await?.0;
    let past = s.insert_job(&past).await?.0;
    assert_eq!((later.state, later.not_before_ms), (JobState::Scheduled, Some(now + 60_000)));
    assert_eq!(past.state, JobState::Queued);
    // A scheduled job is not a candidate and cannot be claimed, but counts as waiting.
    let ids: Vec<JobId> = s.queued_candidates(10, &[]).await?.into_iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![past.id]);
    assert!(s.assign_jobs(None, &WorkerId("w".into()), &[later.id]).await?.is_empty());
    assert_eq!(s.queued_count(t.id).await?, 2);
    // Not due yet, then due.
    assert!(s.promote_scheduled(now + 59_999, 10).await?.is_empty());
    let promoted = s.promote_scheduled(now + 60_000, 10).await?;
    assert_eq!(promoted.iter().map(|j| (j.id, j.state)).collect::<Vec<_>>(), vec![(later.id, JobState::Queued)]);
    // Cancelling a scheduled job ends it at once.
    let mut third = new_job(t.id, 0, 0);
    third.not_before_ms = Some(now + 60_000);
    let third = s.insert_job(&third).await?.0;
    let c = s.request_cancel(t.id, third.id).await?.ok_or_else(|| anyhow::anyhow!("missing"))?;
    assert_eq!(c.state, JobState::Cancelled);
    assert!(s.promote_scheduled(now + 120_000, 10).await?.is_empty());
    Ok(())
}

/// Claims a queued job for `w`; returns the lease epoch.
async fn claim(s: &dyn StateStore, w: &WorkerId, id: JobId) -> anyhow::Result<i64> {
    let c = s.assign_jobs(None, w, &[id]).await?;
    c.first().map(|c| c.job.lease_epoch).ok_or_else(|| anyhow::anyhow!("job {id} was not claimed"))
}

async fn retryable_failures_back_off_then_end_dead_and_can_be_redriven(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let mut job = new_job(t.id, 0, 0);
    job.retry = RetryPolicy { max_attempts: 2, initial_backoff_ms: 10_000, max_backoff_ms: 10_000 };
    let job = s.insert_job(&job).await?.0;
    let w = WorkerId("w".into());

    // A lost worker does not count: the job is queued again with no failure.
    let e1 = claim(s, &w, job.id).await?;
    s.requeue_leases(None, &[(job.id, e1)]).await?;
    // First retryable failure: scheduled after a backoff of 5 to 10 s (equal jitter).
    let e2 = claim(s, &w, job.id).await?;
    let before = crate::ids::now_ms();
    let j = s.finish_attempt(job.id, e2, &retryable(), Usage::default()).await?;
    let j = j.ok_or_else(|| anyhow::anyhow!("refused"))?;
    assert_eq!((j.state, j.failures, j.attempt), (JobState::Scheduled, 1, 2));
    assert_eq!((j.failure_class, j.failure_message.as_deref()), (Some(FailureClass::Retryable), Some("flaky")));
    let wait = j.not_before_ms.unwrap_or(0) - before;
    assert!((5_000..=10_100).contains(&wait), "backoff {wait} ms");
    assert!(j.finished_at_ms.is_none() && j.worker_id.is_none());
    assert_eq!(s.promote_scheduled(j.not_before_ms.unwrap_or(0), 10).await?.len(), 1);
    // Second retryable failure: out of attempts, dead.
    let e3 = claim(s, &w, job.id).await?;
    let j = s.finish_attempt(job.id, e3, &retryable(), Usage::default()).await?;
    let j = j.ok_or_else(|| anyhow::anyhow!("refused"))?;
    assert_eq!((j.state, j.failures), (JobState::Dead, 2));
    assert!(j.finished_at_ms.is_some());
    // Re-driven: queued with its failures reset, then it succeeds.
    let other = s.create_tenant("other", "free").await?;
    assert!(s.redrive(other.id, job.id).await?.is_none(), "another tenant's job");
    let j = s.redrive(t.id, job.id).await?.ok_or_else(|| anyhow::anyhow!("missing"))?;
    assert_eq!((j.state, j.failures, j.failure_class), (JobState::Queued, 0, None));
    let e4 = claim(s, &w, job.id).await?;
    let j = s.finish_attempt(job.id, e4, &done(), Usage::default()).await?;
    assert_eq!(j.map(|j| (j.state, j.attempt)), Some((JobState::Succeeded, 4)));
    // Re-driving a job that is not dead changes nothing.
    let j = s.redrive(t.id, job.id).await?.ok_or_else(|| anyhow::anyhow!("missing"))?;
    assert_eq!(j.state, JobState::Succeeded);
    Ok(())
}

async fn host_errors_retry_apart_from_the_retry_budget_are_metered_apart_then_end_dead(
    s: &dyn StateStore,
) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let mut job = new_job(t.id, 0, 0);
    // No retry of the tenant's own: host errors must not use it.
    job.retry = RetryPolicy { max_attempts: 1, initial_backoff_ms: 0, max_backoff_ms: 0 };
    let job = s.insert_job(&job).await?.0;
    let w = WorkerId("w".into());
    let host_error = |m: &str| Outcome::Failed {
        class: FailureClass::HostError,
        message: m.to_owned(),
        output: OutputRef::default(),
    };
    let host = RetryPolicy::HOST;
    for n in 1..host.max_attempts {
        let e = claim(s, &w, job.id).await?;
        let before = crate::ids::now_ms();
        let usage = Usage { fuel_used: 100, memory_peak_bytes: 0, wall_ms: 7 };
        let j = s.finish_attempt(job.id, e, &host_error("object store down"), usage).await?;
        let j = j.ok_or_else(|| anyhow::anyhow!("refused"))?;
        assert_eq!((j.state, j.failures, j.host_failures), (JobState::Scheduled, 0, n));
        assert_eq!(j.failure_class, Some(FailureClass::HostError));
        let wait = j.not_before_ms.unwrap_or(0) - before;
        let full = host.initial_backoff_ms.saturating_mul(1 << (n - 1)).min(host.max_backoff_ms) as i64;
        assert!((full / 2..=full + 100).contains(&wait), "backoff {wait} ms after host error {n}");
        assert_eq!(s.promote_scheduled(j.not_before_ms.unwrap_or(0), 10).await?.len(), 1);
    }
    // The attempts' fuel and time are metered, and again apart; the fuel budget leaves them out.
    let usage = s.usage(t.id, 0, i64::MAX).await?;
    let m = &usage.first().ok_or_else(|| anyhow::anyhow!("no usage"))?.usage;
    let n = u64::from(host.max_attempts - 1);
    assert_eq!((m.attempts, m.host_errors, m.host_error_wall_ms, m.wall_ms), (n, n, 7 * n, 7 * n));
    assert_eq!((m.fuel, m.host_error_fuel), (100, 100), "fuel is metered once per job total");
    let budget: Vec<u64> = s.fuel_since(0).await?.into_iter().filter(|(id, _)| *id == t.id).map(|(_, f)| f).collect();
    assert_eq!(budget, vec![0]);
    // The last host retry used: dead, with the class.
    let e = claim(s, &w, job.id).await?;
    let j = s.finish_attempt(job.id, e, &host_error("still down"), Usage::default()).await?;
    let j = j.ok_or_else(|| anyhow::anyhow!("refused"))?;
    assert_eq!((j.state, j.failures, j.host_failures), (JobState::Dead, 0, host.max_attempts));
    assert_eq!((j.failure_class, j.failure_message.as_deref()), (Some(FailureClass::HostError), Some("still down")));
    // Re-driven, both counts start again.
    let j = s.redrive(t.id, job.id).await?.ok_or_else(|| anyhow::anyhow!("missing"))?;
    assert_eq!((j.state, j.failures, j.host_failures), (JobState::Queued, 0, 0));
    Ok(())
}

async fn jobs_with_a_waiting_reason_are_left_out_until_cleared(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let mut gpu = new_job(t.id, 10, 0);
    gpu.placement.require.insert("gpu".into(), "a100".into());
    gpu.placement.avoid_workloads.push("echo".into());
    let gpu = s.insert_job(&gpu).await?.0;
    let plain = s.insert_job(&new_job(t.id, 0, 0)).await?.0;
    let cands = s.queued_candidates(10, &[]).await?;
    assert_eq!(cands[0].placement.require.get("gpu").map(String::as_str), Some("a100"));
    assert_eq!(cands[0].placement.avoid_workloads, vec!["echo".to_owned()]);
    assert!(cands[1].placement.is_empty());

    s.set_waiting_reasons(&[(gpu.id, "no worker has gpu=a100".into())]).await?;
    let ids: Vec<JobId> = s.queued_candidates(10, &[]).await?.into_iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![plain.id]);
    let shown = s.get_job(t.id, gpu.id).await?.ok_or_else(|| anyhow::anyhow!("missing"))?;
    assert_eq!(shown.waiting_reason.as_deref(), Some("no worker has gpu=a100"));
    // Still waiting to start, so still counted against the queued-jobs quota; so is a scheduled job.
    assert_eq!(s.queued_count(t.id).await?, 2);
    let mut later = new_job(t.id, 0, 0);
    later.not_before_ms = Some(crate::ids::now_ms() + 60_000);
    let later = s.insert_job(&later).await?.0;
    assert_eq!(s.queued_count(t.id).await?, 3);
    s.request_cancel(t.id, later.id).await?;
    s.clear_waiting_reasons().await?;
    assert_eq!(s.queued_candidates(10, &[]).await?.len(), 2);
    // Assignment clears a reason too.
    s.set_waiting_reasons(&[(gpu.id, "x".into())]).await?;
    let claimed = s.assign_jobs(None, &WorkerId("w".into()), &[gpu.id]).await?;
    assert_eq!(claimed.first().map(|c| c.job.waiting_reason.clone()), Some(None));
    Ok(())
}
