//! Batches on both backends: jobs inserted together (one idempotency key twice in a batch), and
//! reports applied together as they would be one at a time: each job's updates in order, stale
//! ones refused, logs kept in order, usage metered once; a job starting while another ends. Jobs
//! inserted already assigned hold a lease as a claim would leave it.

use super::*;

on_both_backends!(
    a_batch_of_reports_applies_as_one_report_at_a_time,
    jobs_inserted_assigned_hold_a_claims_lease,
    a_batch_keeps_every_field_of_its_jobs
);

async fn jobs_inserted_assigned_hold_a_claims_lease(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let w = WorkerId("w1".into());
    let keyed = |key: &str| NewJob { idempotency_key: Some(key.into()), ..new_job(t.id, 0, 0) };
    let delayed = NewJob { not_before_ms: Some(crate::ids::now_ms() + 60_000), ..new_job(t.id, 0, 0) };
    let first = s.insert_job(&keyed("k")).await?.0;
    let batch = [new_job(t.id, 0, 0), new_job(t.id, 0, 0), delayed, keyed("k")];
    let direct = [Some(w.clone()), None, Some(w.clone()), Some(w.clone())];
    let inserted = s.insert_jobs_direct(&batch, &direct, None).await?;
    let seen: Vec<(&str, u32, i64, Option<&str>, bool)> = inserted
        .iter()
        .map(|(j, c)| (j.state.as_str(), j.attempt, j.lease_epoch, j.worker_id.as_ref().map(|w| w.0.as_str()), *c))
        .collect();
    assert_eq!(
        seen,
        [
            ("assigned", 1, 1, Some("w1"), true),
            ("queued", 0, 0, None, true),
            // A delayed job waits for its time, and a used idempotency key answers with its job.
            ("scheduled", 0, 0, None, true),
            ("queued", 0, 0, None, false),
        ]
    );
    assert_eq!(inserted[3].0.id, first.id);
    let placed = inserted[0].0.id;
    let leases: Vec<(JobId, i64)> = s.leases_of(&w).await?.iter().map(|l| (l.job_id, l.epoch)).collect();
    assert_eq!(leases, [(placed, 1)]);
    // Not in the queue: candidates and claims pass it by.
    let candidates: Vec<JobId> = s.queued_candidates(10, &[]).await?.iter().map(|c| c.id).collect();
    assert!(!candidates.contains(&placed) && candidates.contains(&inserted[1].0.id), "{candidates:?}");
    assert!(s.assign_jobs(None, &WorkerId("w2".into()), &[placed]).await?.is_empty());
    // Its attempt reports under epoch 1 as a claimed one does; epoch 0 is stale.
    let u = |epoch, update| FencedUpdate { job_id: placed, epoch, update };
    let applied = s.apply_updates(&[u(0, JobUpdate::Running), u(1, JobUpdate::Running)]).await?;
    assert!(matches!(applied[0], Applied::Stale), "{:?}", said(&applied[0]));
    assert!(matches!(&applied[1], Applied::Job(j) if j.state == JobState::Running && j.started_at_ms.is_some()));
    let done = s.apply_updates(&[u(1, finish(40, done()))]).await?;
    assert!(matches!(&done[0], Applied::Job(j) if j.state == JobState::Succeeded && j.fuel_used == 40));
    Ok(())
}

async fn a_batch_keeps_every_field_of_its_jobs(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let mut odd = new_job(t.id, i32::MIN, i32::MAX);
    odd.params = r#"{"q": "ü \" \\ \n ☃", "n": -1}"#.into();
    odd.input = InputRef::Inline((0..=255).collect());
    odd.idempotency_key = Some("key \" ' \\ ü ☃".into());
    odd.retry = RetryPolicy { max_attempts: 100, initial_backoff_ms: 86_400_000, max_backoff_ms: 86_400_000 };
    odd.placement.require.insert("zone".into(), "eu-1 \"x\"".into());
    odd.placement.avoid_workloads.push("echo".into());
    odd.trace_parent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    let empty = NewJob { input: InputRef::Inline(Vec::new()), ..new_job(t.id, 0, 0) };
    let blob = NewJob { input: InputRef::Blob { digest: Digest::of(b"input"), size: 1 << 40 }, ..new_job(t.id, 0, 0) };
    let later = NewJob { not_before_ms: Some(crate::ids::now_ms() + 60_000), ..new_job(t.id, 7, 0) };
    let batch = [odd, empty, blob, later];
    let inserted = s.insert_jobs(&batch).await?;
    assert!(inserted.iter().all(|(_, new)| *new));
    for (job, (answer, _)) in batch.iter().zip(&inserted) {
        let stored = s.get_job(t.id, job.id).await?.ok_or_else(|| anyhow::anyhow!("{} is gone", job.id))?;
        for seen in [answer, &stored] {
            assert_eq!(
                (seen.id, seen.tenant_id, &seen.workload, seen.digest, &seen.params, &seen.input),
                (job.id, job.tenant_id, &job.workload, job.digest, &job.params, &job.input)
            );
            assert_eq!((seen.priority, seen.tier_priority), (job.priority, job.tier_priority));
            assert_eq!((&seen.idempotency_key, seen.not_before_ms), (&job.idempotency_key, job.not_before_ms));
            assert_eq!(
                (seen.retry.max_attempts, seen.retry.initial_backoff_ms, seen.retry.max_backoff_ms),
                (job.retry.max_attempts, job.retry.initial_backoff_ms, job.retry.max_backoff_ms)
            );
            assert_eq!((&seen.placement, &seen.trace_parent), (&job.placement, &job.trace_parent));
            let state = if job.not_before_ms.is_some() { JobState::Scheduled } else { JobState::Queued };
            assert_eq!((seen.state, seen.attempt, seen.lease_epoch, &seen.worker_id), (state, 0, 0, &None));
        }
    }
    Ok(())
}

fn log(message: &str) -> LogLine {
    LogLine { at_ms: 1, attempt: 1, level: "info".into(), message: message.into() }
}

fn finish(fuel_used: u64, outcome: Outcome) -> JobUpdate {
    JobUpdate::Finish { outcome, usage: Usage { fuel_used, memory_peak_bytes: 1 << 16, wall_ms: 1 } }
}

/// What an answer says, for comparing.
fn said(a: &Applied) -> String {
    match a {
        Applied::Stale => "stale".into(),
        Applied::Stored => "stored".into(),
        Applied::Checkpoint(seq) => format!("checkpoint {seq}"),
        Applied::Job(job) => format!("job {}", job.state.as_str()),
    }
}

async fn a_batch_of_reports_applies_as_one_report_at_a_time(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let keyed = |key: &str| NewJob { idempotency_key: Some(key.into()), ..new_job(t.id, 0, 0) };
    let retried = NewJob {
        retry: RetryPolicy { max_attempts: 3, initial_backoff_ms: 60_000, max_backoff_ms: 60_000 },
        ..new_job(t.id, 0, 0)
    };
    let batch = [new_job(t.id, 0, 0), new_job(t.id, 0, 0), keyed("k"), retried, keyed("k")];
    let inserted = s.insert_jobs(&batch).await?;
    let created: Vec<bool> = inserted.iter().map(|(_, c)| *c).collect();
    assert_eq!(created, [true, true, true, true, false]);
    // The second use of the key answers with the job that holds it.
    assert_eq!(inserted[4].0.id, inserted[2].0.id);
    assert_eq!(inserted[3].0.retry.max_attempts, 3);
    let ids: Vec<JobId> = inserted[..4].iter().map(|(j, _)| j.id).collect();
    let (a, b, c, d) = (ids[0], ids[1], ids[2], ids[3]);
    let claimed = s.assign_jobs(None, &WorkerId("w1".into()), &ids).await?;
    let epoch = |id: JobId| claimed.iter().find(|c| c.job.id == id).map_or(-1, |c| c.job.lease_epoch);
    let u = |job_id: JobId, update: JobUpdate| FencedUpdate { job_id, epoch: epoch(job_id), update };
    let cp =
        |fuel_used: u64| JobUpdate::Checkpoint(Checkpoint { state: b"s".to_vec(), fuel_used, ..Checkpoint::default() });
    let failed =
        Outcome::Failed { class: FailureClass::Retryable, message: "later".into(), output: OutputRef::default() };
    let updates = [
        u(a, JobUpdate::Running),
        u(b, JobUpdate::Running),
        u(a, JobUpdate::Progress(Progress { done: 1, total: 2, message: "half".into() })),
        u(a, JobUpdate::Logs(vec![log("one"), log("two")])),
        u(a, cp(100)),
        u(b, finish(50, done())),
        FencedUpdate { epoch: epoch(c) - 1, ..u(c, JobUpdate::Running) },
        u(a, cp(150)),
        u(b, finish(50, done())),
        u(d, finish(10, failed)),
        u(a, JobUpdate::Logs(vec![log("three")])),
        u(a, finish(200, done())),
        u(a, JobUpdate::Progress(Progress::default())),
    ];
    let answers: Vec<String> = s.apply_updates(&updates).await?.iter().map(said).collect();
    assert_eq!(
        answers,
        [
            "job running",
            "job running",
            "stored",
            "stored",
            "checkpoint 1",
            "job succeeded",
            "stale",
            "checkpoint 2",
            "stale",
            "job scheduled",
            "stored",
            "job succeeded",
            "stale",
        ]
    );
    let lines: Vec<String> = s
        .job_logs(t.id, a, LogFilter { offset: 0, limit: 10, max_bytes: None })
        .await?
        .into_iter()
        .map(|l| l.message)
        .collect();
    assert_eq!(lines, ["one", "two", "three"]);
    let job_a = s.get_job(t.id, a).await?.ok_or_else(|| anyhow::anyhow!("a is gone"))?;
    assert_eq!((job_a.checkpoints, job_a.fuel_used, job_a.progress.done), (2, 200, 1));
    let job_c = s.get_job(t.id, c).await?.ok_or_else(|| anyhow::anyhow!("c is gone"))?;
    assert_eq!(job_c.state, JobState::Assigned);
    let job_d = s.get_job(t.id, d).await?.ok_or_else(|| anyhow::anyhow!("d is gone"))?;
    assert_eq!((job_d.state, job_d.failures), (JobState::Scheduled, 1));
    assert!(job_d.not_before_ms.is_some_and(|at| at > crate::ids::now_ms() + 30_000));
    let usage = s.usage(t.id, 0, crate::ids::now_ms() + 3_600_000).await?;
    let m = &usage[0].usage;
    assert_eq!(
        (m.fuel, m.checkpoints, m.checkpoint_bytes, m.attempts, m.succeeded, m.output_bytes),
        (260, 2, 2, 3, 2, 6)
    );

    // One job starting while another ends: one wave, answered as one report at a time would be.
    let (e, f) = (s.insert_jobs(&[new_job(t.id, 0, 0)]).await?, s.insert_jobs(&[new_job(t.id, 0, 0)]).await?);
    let (e, f) = (e[0].0.id, f[0].0.id);
    let claimed = s.assign_jobs(None, &WorkerId("w1".into()), &[e, f]).await?;
    let epoch = |id: JobId| claimed.iter().find(|c| c.job.id == id).map_or(-1, |c| c.job.lease_epoch);
    let u = |job_id: JobId, update: JobUpdate| FencedUpdate { job_id, epoch: epoch(job_id), update };
    let answers: Vec<String> =
        s.apply_updates(&[u(e, JobUpdate::Running), u(f, finish(7, done()))]).await?.iter().map(said).collect();
    assert_eq!(answers, ["job running", "job succeeded"]);
    let job_e = s.get_job(t.id, e).await?.ok_or_else(|| anyhow::anyhow!("e is gone"))?;
    assert!(job_e.state == JobState::Running && job_e.started_at_ms.is_some(), "{job_e:?}");
    let usage = s.usage(t.id, 0, crate::ids::now_ms() + 3_600_000).await?;
    assert_eq!((usage[0].usage.fuel, usage[0].usage.succeeded), (267, 3), "only the result is metered");
    Ok(())
}
