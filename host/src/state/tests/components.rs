//! Components on both backends: the tenants' holds, the stored bytes they count, and the
//! collector's sweep, claim and forgetting.

use super::*;
use crate::ids::now_ms;

on_both_backends!(
    replaced_components_are_released_after_the_grace_period_then_collected,
    jobs_that_have_not_ended_keep_their_components,
    a_component_held_again_is_kept_and_one_digest_serves_every_tenant,
    stored_components_without_a_record_are_adopted,
);

/// The grace period of these tests, ms.
const GRACE: i64 = 1_000;

fn workload(name: &str, bytes: &[u8]) -> Workload {
    Workload {
        name: name.into(),
        digest: Digest::of(bytes),
        size_bytes: bytes.len() as u64,
        imports: Vec::new(),
        created_at_ms: now_ms(),
    }
}

/// Uploads `bytes` under `name` as the API does: holds the component, then records the workload.
async fn upload(s: &dyn StateStore, tenant: TenantId, name: &str, bytes: &[u8]) -> anyhow::Result<Digest> {
    let w = workload(name, bytes);
    assert_eq!(s.hold_component(tenant, w.digest, Some(w.size_bytes)).await?, ComponentHold::Held);
    assert_eq!(s.put_workload(tenant, &w).await?, ComponentHold::Held);
    Ok(w.digest)
}

/// A sweep `ahead_ms` from now, then a claim: the components taken for deletion, by digest.
async fn collect_at(s: &dyn StateStore, ahead_ms: i64) -> anyhow::Result<Vec<(Digest, u64)>> {
    let at = now_ms() + ahead_ms;
    s.sweep_components(at, GRACE).await?;
    let mut claimed = s.claim_components(at, 100).await?;
    claimed.sort();
    Ok(claimed)
}

async fn replaced_components_are_released_after_the_grace_period_then_collected(
    s: &dyn StateStore,
) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let (a, b) = (vec![1u8; 300], vec![2u8; 500]);
    let da = upload(s, t.id, "echo", &a).await?;
    assert_eq!(s.stored_bytes(t.id).await?.components_bytes, 300);
    let db = upload(s, t.id, "echo", &b).await?;
    // The replaced component counts no more at once.
    assert_eq!(s.stored_bytes(t.id).await?.components_bytes, 500);
    assert_eq!(s.list_workloads(t.id, None, 1000).await?.len(), 1);

    // Within the grace period nothing is taken; past it, the replaced one only.
    assert!(collect_at(s, 0).await?.is_empty());
    assert_eq!(collect_at(s, 2 * GRACE).await?, vec![(da, 300)]);
    // Taken again by a claim until forgotten (a collector that stopped half-way).
    assert_eq!(s.claim_components(now_ms(), 100).await?, vec![(da, 300)]);

    // While its bytes are being deleted nobody holds it, and no workload names it.
    assert_eq!(s.hold_component(t.id, da, Some(300)).await?, ComponentHold::Collecting);
    assert_eq!(s.hold_component(t.id, da, None).await?, ComponentHold::Collecting);
    assert_eq!(s.put_workload(t.id, &workload("again", &a)).await?, ComponentHold::Collecting);
    assert!(s.get_workload(t.id, "again").await?.is_none(), "nothing recorded");
    assert_eq!(s.stored_bytes(t.id).await?.components_bytes, 500);

    assert!(s.forget_component(da).await?);
    assert!(!s.forget_component(da).await?, "forgotten already");
    assert!(!s.forget_component(db).await?, "only a claimed component is forgotten");
    assert!(s.claim_components(now_ms(), 100).await?.is_empty());
    // Gone: a re-drive finds nothing to hold; an upload of the same bytes records it afresh.
    assert_eq!(s.hold_component(t.id, da, None).await?, ComponentHold::Missing);
    upload(s, t.id, "again", &a).await?;
    assert_eq!(s.stored_bytes(t.id).await?.components_bytes, 800);
    assert!(collect_at(s, 2 * GRACE).await?.is_empty(), "both are named by a workload");
    Ok(())
}

async fn jobs_that_have_not_ended_keep_their_components(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let (a, b) = (vec![1u8; 300], vec![2u8; 500]);
    let da = upload(s, t.id, "echo", &a).await?;
    // A job that will fail for good, and one that waits for its start time.
    let mut failing = new_job(t.id, 0, 0);
    failing.digest = da;
    failing.retry.max_attempts = 1;
    let failing = s.insert_job(&failing).await?.0;
    let mut later = new_job(t.id, 0, 0);
    later.digest = da;
    later.not_before_ms = Some(now_ms() + 3_600_000);
    let later = s.insert_job(&later).await?.0;
    upload(s, t.id, "echo", &b).await?;

    // Kept for its jobs however long ago the workload moved on, and counted for the tenant again.
    assert!(collect_at(s, 10 * GRACE).await?.is_empty());
    assert_eq!(s.stored_bytes(t.id).await?.components_bytes, 800);
    // A dead job keeps nothing; the scheduled one still does.
    let w = WorkerId("w".into());
    let epoch = s.assign_jobs(None, &w, &[failing.id]).await?.first().map(|c| c.job.lease_epoch).unwrap_or(0);
    let retryable =
        Outcome::Failed { class: FailureClass::Retryable, message: "flaky".into(), output: OutputRef::default() };
    let dead = s.finish_attempt(failing.id, epoch, &retryable, Usage::default()).await?;
    assert_eq!(dead.map(|j| j.state), Some(JobState::Dead));
    assert!(collect_at(s, 10 * GRACE).await?.is_empty());
    assert_eq!(s.stored_bytes(t.id).await?.components_bytes, 800);

    // Once the last one ended, the grace period starts from the first sweep that finds it unused.
    s.request_cancel(t.id, later.id).await?;
    assert!(collect_at(s, 10 * GRACE).await?.is_empty());
    assert_eq!(s.stored_bytes(t.id).await?.components_bytes, 500);
    assert_eq!(collect_at(s, 12 * GRACE).await?, vec![(da, 300)]);
    assert!(s.forget_component(da).await?);
    Ok(())
}

async fn a_component_held_again_is_kept_and_one_digest_serves_every_tenant(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let u = s.create_tenant("other", "free").await?;
    let (a, b, c) = (vec![1u8; 300], vec![2u8; 500], vec![3u8; 700]);
    let da = upload(s, t.id, "echo", &a).await?;
    upload(s, u.id, "mine", &a).await?;
    assert_eq!(
        (s.stored_bytes(t.id).await?.components_bytes, s.stored_bytes(u.id).await?.components_bytes),
        (300, 300)
    );

    // `t` moves on: its hold goes, the bytes stay for `u`.
    upload(s, t.id, "echo", &b).await?;
    assert!(collect_at(s, 2 * GRACE).await?.is_empty());
    assert_eq!(
        (s.stored_bytes(t.id).await?.components_bytes, s.stored_bytes(u.id).await?.components_bytes),
        (500, 300)
    );

    // `u` moves on and back within the grace period: its hold is in use again, only the
    // component it left is taken.
    let dc = upload(s, u.id, "mine", &c).await?;
    assert_eq!(s.stored_bytes(u.id).await?.components_bytes, 700);
    upload(s, u.id, "mine", &a).await?;
    assert_eq!(s.stored_bytes(u.id).await?.components_bytes, 300);
    assert_eq!(collect_at(s, 2 * GRACE).await?, vec![(dc, 700)]);
    assert!(s.forget_component(dc).await?);

    // A hold without a workload yet (an upload storing its bytes) is kept for the grace period.
    let dd = Digest::of(b"in flight");
    assert_eq!(s.hold_component(t.id, dd, Some(9)).await?, ComponentHold::Held);
    assert_eq!(s.stored_bytes(t.id).await?.components_bytes, 509);
    assert!(collect_at(s, 0).await?.is_empty());
    assert_eq!(collect_at(s, 2 * GRACE).await?, vec![(dd, 9)]);
    assert!(s.forget_component(dd).await?);
    assert_eq!(s.stored_bytes(t.id).await?.components_bytes, 500);
    // A re-drive holds a component still stored, without its size.
    assert_eq!(s.hold_component(t.id, da, None).await?, ComponentHold::Held);
    assert_eq!(s.stored_bytes(t.id).await?.components_bytes, 800);
    Ok(())
}

async fn stored_components_without_a_record_are_adopted(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let a = vec![1u8; 300];
    let da = upload(s, t.id, "echo", &a).await?;
    let stray = Digest::of(b"left behind");
    assert_eq!(s.adopt_components(&[(da, 999), (stray, 11)]).await?, 1);
    assert_eq!(s.adopt_components(&[(da, 999), (stray, 11)]).await?, 0, "recorded already");
    assert_eq!(s.stored_bytes(t.id).await?.components_bytes, 300, "a recorded size is kept");
    // Nobody holds the stray bytes: taken at once.
    assert_eq!(collect_at(s, 0).await?, vec![(stray, 11)]);
    assert!(s.forget_component(stray).await?);
    assert!(collect_at(s, 2 * GRACE).await?.is_empty());
    Ok(())
}
