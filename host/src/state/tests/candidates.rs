//! The scheduler's candidates on both backends: each tenant's best queued jobs, however many
//! wait, stepping over tenants with nothing queued and jobs that are not in the queue.

use super::*;

on_both_backends!(candidates_are_each_tenants_best_however_many_wait);

async fn candidates_are_each_tenants_best_however_many_wait(s: &dyn StateStore) -> anyhow::Result<()> {
    let many = setup(s).await?;
    let busy = s.create_tenant("busy", "standard").await?;
    let few = s.create_tenant("few", "free").await?;
    let mut queued = Vec::new();
    for i in 0..40 {
        queued.push(s.insert_job(&new_job(many.id, i % 7, 0)).await?.0);
    }
    // `busy` has jobs, none of them queued: all claimed.
    let mut claimed = Vec::new();
    for _ in 0..5 {
        claimed.push(s.insert_job(&new_job(busy.id, 100, 0)).await?.0.id);
    }
    assert_eq!(s.assign_jobs(None, &WorkerId("w1".into()), &claimed).await?.len(), 5);
    let waiting = s.insert_job(&new_job(few.id, 50, 0)).await?.0;
    let few_jobs = [s.insert_job(&new_job(few.id, 1, 0)).await?.0, s.insert_job(&new_job(few.id, 2, 0)).await?.0];
    s.set_waiting_reasons(&[(waiting.id, "no worker has gpu=a100".into())]).await?;

    // Each tenant's jobs, best first: priority, then age (the id).
    let best = |jobs: &[JobRecord], n: usize| -> Vec<JobId> {
        let mut jobs: Vec<&JobRecord> = jobs.iter().collect();
        jobs.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.id.to_string()));
        jobs.iter().take(n).map(|j| j.id).collect()
    };
    let of = |all: &[Candidate], tenant: TenantId| -> Vec<JobId> {
        all.iter().filter(|c| c.tenant_id == tenant).map(|c| c.id).collect()
    };
    let five = s.queued_candidates(5, &[]).await?;
    assert_eq!(five.len(), 7, "five of `many`, two of `few`");
    assert_eq!(of(&five, many.id), best(&queued, 5));
    assert_eq!(of(&five, few.id), best(&few_jobs, 2));
    assert!(of(&five, busy.id).is_empty());

    let all = s.queued_candidates(100, &[]).await?;
    assert_eq!(of(&all, many.id), best(&queued, 40));
    assert_eq!(all.len(), 42);
    let skipped = s.queued_candidates(100, &[many.id]).await?;
    assert_eq!(skipped.iter().map(|c| c.id).collect::<Vec<_>>(), best(&few_jobs, 2));
    assert!(s.queued_candidates(100, &[many.id, few.id, busy.id]).await?.is_empty());
    Ok(())
}
