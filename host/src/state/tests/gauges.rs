//! The queue figures `/metrics` reads, on both backends.

use super::*;

on_both_backends!(gauges_count_live_jobs_by_state_and_find_the_oldest_queued);

/// Inserts a job and waits a few ms, so that jobs inserted one after another differ in
/// `created_at_ms`.
async fn insert(s: &dyn StateStore, job: NewJob) -> anyhow::Result<JobRecord> {
    let job = s.insert_job(&job).await?.0;
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    Ok(job)
}

async fn gauges_count_live_jobs_by_state_and_find_the_oldest_queued(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    assert_eq!(s.oldest_queued_at_ms().await?, None);
    assert!(s.job_counts().await?.is_empty());
    let w = WorkerId("w".into());
    let oldest = insert(s, new_job(t.id, 0, 0)).await?;
    let second = insert(s, new_job(t.id, 0, 0)).await?;
    let third = insert(s, new_job(t.id, 0, 0)).await?;
    let mut later = new_job(t.id, 0, 0);
    later.not_before_ms = Some(crate::ids::now_ms() + 60_000);
    insert(s, later).await?;
    let (running, assigned, ended) = (
        insert(s, new_job(t.id, 0, 0)).await?,
        insert(s, new_job(t.id, 0, 0)).await?,
        insert(s, new_job(t.id, 0, 0)).await?,
    );
    let claimed = s.assign_jobs(None, &w, &[running.id, assigned.id, ended.id]).await?;
    let epoch = |id: JobId| claimed.iter().find(|c| c.job.id == id).map(|c| c.job.lease_epoch).unwrap_or(0);
    assert!(s.mark_running(running.id, epoch(running.id)).await?.is_some());
    assert!(s.finish_attempt(ended.id, epoch(ended.id), &done(), Usage::default()).await?.is_some());
    // The oldest queued job waits for a reason: still queued, still the oldest.
    s.set_waiting_reasons(&[(oldest.id, "no worker has gpu=a100".into())]).await?;

    let mut counts: Vec<(String, &str, u64)> =
        s.job_counts().await?.into_iter().map(|(tier, state, n)| (tier, state.as_str(), n)).collect();
    counts.sort();
    let standard = |state: &'static str, n| ("standard".to_owned(), state, n);
    assert_eq!(
        counts,
        vec![standard("assigned", 1), standard("queued", 3), standard("running", 1), standard("scheduled", 1)]
    );
    assert_eq!(s.oldest_queued_at_ms().await?, Some(oldest.created_at_ms));
    // Once it is claimed, the next one is the oldest.
    s.assign_jobs(None, &w, &[oldest.id]).await?;
    assert_eq!(s.oldest_queued_at_ms().await?, Some(second.created_at_ms));
    s.assign_jobs(None, &w, &[second.id, third.id]).await?;
    assert_eq!(s.oldest_queued_at_ms().await?, None);
    Ok(())
}
