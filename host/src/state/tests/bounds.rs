//! What a tenant's jobs weigh, on both backends: their params in its stored bytes (kept by the
//! triggers of the `params_bytes` migrations), and pages of jobs and log lines read within a
//! byte bound.

use super::*;

on_both_backends!(
    params_count_in_stored_bytes_until_purged,
    pages_stop_at_the_row_that_reaches_their_byte_bound,
    workloads_are_listed_in_pages_by_name,
);

fn with_params(tenant: TenantId, params: &str) -> NewJob {
    NewJob { params: params.to_owned(), ..new_job(tenant, 0, 0) }
}

async fn params_count_in_stored_bytes_until_purged(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let other = s.create_tenant("other", "free").await?;
    assert_eq!(s.stored_bytes(t.id).await?, StoredBytes::default());
    s.put_input(t.id, Digest::of(b"input"), 1_000).await?;

    // Bytes of the JSON text, not characters: "é" is two bytes.
    let a = format!(r#"{{"k":"{}"}}"#, "é".repeat(50));
    let jobs = [with_params(t.id, &a), with_params(t.id, "{}"), with_params(other.id, r#"{"x":1}"#)];
    s.insert_jobs(&jobs).await?;
    let stored = s.stored_bytes(t.id).await?;
    assert_eq!((stored.params_bytes, stored.inputs_bytes), (a.len() as u64 + 2, 1_000));
    assert_eq!(stored.total(), a.len() as u64 + 2 + 1_000);
    assert_eq!(s.stored_bytes(other.id).await?.params_bytes, 7);

    // An idempotent replay stores nothing, so it adds nothing.
    let keyed = NewJob { idempotency_key: Some("k".into()), ..with_params(t.id, r#"{"n":1}"#) };
    s.insert_job(&keyed).await?;
    s.insert_jobs(&[NewJob { id: JobId::new(), ..keyed.clone() }, with_params(t.id, "{}")]).await?;
    assert_eq!(s.stored_bytes(t.id).await?.params_bytes, a.len() as u64 + 2 + 7 + 2);

    // Retention deleting an ended job takes its params off.
    let w = WorkerId("w".into());
    let claimed = s.assign_jobs(None, &w, &[jobs[0].id]).await?;
    s.finish_attempt(jobs[0].id, claimed[0].job.lease_epoch, &done(), Usage::default()).await?;
    assert_eq!(s.purge_finished(crate::ids::now_ms() + 1, 10).await?.len(), 1);
    assert_eq!(s.stored_bytes(t.id).await?.params_bytes, 2 + 7 + 2);
    assert_eq!(s.stored_bytes(other.id).await?.params_bytes, 7, "another tenant's figure is its own");
    Ok(())
}

async fn pages_stop_at_the_row_that_reaches_their_byte_bound(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    // Five jobs of 100 bytes of params and 2 of inline input each, inserted oldest first.
    let params = format!(r#"{{"p":"{}"}}"#, "x".repeat(92));
    assert_eq!(params.len(), 100);
    let jobs: Vec<NewJob> = (0..5).map(|_| with_params(t.id, &params)).collect();
    s.insert_jobs(&jobs).await?;
    let newest: Vec<JobId> = jobs.iter().rev().map(|j| j.id).collect();
    let list = |max_bytes: Option<u64>, before: Option<JobId>| {
        let filter = JobFilter { limit: 4, max_bytes, before, ..JobFilter::default() };
        async move { anyhow::Ok(s.list_jobs(t.id, &filter).await?.iter().map(|j| j.id).collect::<Vec<_>>()) }
    };
    assert_eq!(list(None, None).await?, newest[..4], "no bound but the limit");
    // 102 bytes each: the second reaches 204, the third would pass 250.
    assert_eq!(list(Some(250), None).await?, newest[..3]);
    assert_eq!(list(Some(204), None).await?, newest[..2], "the row that reaches the bound is the last");
    assert_eq!(list(Some(1), None).await?, newest[..1], "at least one");
    assert_eq!(list(Some(250), Some(newest[2])).await?, newest[3..], "the bound holds after a cursor");

    // Log lines: after an offset, within a bound on their messages' bytes.
    let w = WorkerId("w".into());
    let job = jobs[0].id;
    let epoch = s.assign_jobs(None, &w, &[job]).await?[0].job.lease_epoch;
    let lines: Vec<LogLine> = (0..6)
        .map(|i| LogLine { at_ms: i, attempt: 1, level: "info".into(), message: format!("{i}{}", "m".repeat(9)) })
        .collect();
    s.append_logs(job, epoch, &lines).await?;
    let logs = |offset: u32, max_bytes: Option<u64>| async move {
        let page = LogFilter { offset, limit: 4, max_bytes };
        anyhow::Ok(s.job_logs(t.id, job, page).await?.into_iter().map(|l| l.at_ms).collect::<Vec<_>>())
    };
    assert_eq!(logs(0, None).await?, [0, 1, 2, 3]);
    assert_eq!(logs(4, None).await?, [4, 5]);
    assert_eq!(logs(1, Some(25)).await?, [1, 2, 3], "10 bytes each: the third reaches 30");
    assert_eq!(logs(0, Some(20)).await?, [0, 1]);
    let stranger = s.create_tenant("stranger", "free").await?.id;
    assert!(s.job_logs(stranger, job, LogFilter { offset: 0, limit: 4, max_bytes: None }).await?.is_empty());
    Ok(())
}

async fn workloads_are_listed_in_pages_by_name(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let component = Digest::of(b"component");
    for name in ["c", "a", "b"] {
        let w = Workload { name: name.into(), digest: component, size_bytes: 9, imports: vec![], created_at_ms: 1 };
        s.put_workload(t.id, &w).await?;
    }
    let names = |after: Option<&'static str>, limit: u32| async move {
        anyhow::Ok(s.list_workloads(t.id, after, limit).await?.into_iter().map(|w| w.name).collect::<Vec<_>>())
    };
    assert_eq!(names(None, 2).await?, ["a", "b"]);
    assert_eq!(names(Some("b"), 2).await?, ["c"]);
    assert_eq!(names(None, 10).await?, ["a", "b", "c"]);
    assert!(s.has_component(t.id, component).await?);
    assert!(!s.has_component(t.id, Digest::of(b"another")).await?);
    let stranger = s.create_tenant("stranger", "free").await?.id;
    assert!(!s.has_component(stranger, component).await?, "another tenant's components are not its own");
    Ok(())
}
