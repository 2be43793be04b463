//! Metering on both backends: fuel metered once across checkpoints, a lost worker and the end;
//! outcomes, bytes and time per workload; tenants kept apart; the range and the fuel query.

use super::*;

on_both_backends!(usage_is_metered_once_per_unit_and_kept_per_tenant);

fn cp(fuel_used: u64, state: &[u8]) -> Checkpoint {
    Checkpoint { state: state.to_vec(), fuel_used, ..Checkpoint::default() }
}

async fn usage_is_metered_once_per_unit_and_kept_per_tenant(s: &dyn StateStore) -> anyhow::Result<()> {
    let t = setup(s).await?;
    let other = s.create_tenant("other", "free").await?;
    let before = crate::ids::now_ms();
    let (job, _) = s.insert_job(&new_job(t.id, 0, 0)).await?;
    let (w1, w2) = (WorkerId("w1".into()), WorkerId("w2".into()));

    // Attempt 1 checkpoints at 100 and 250 fuel units, then its worker is lost (fuel it spent
    // after the checkpoint was never reported).
    let e1 = s.assign_jobs(None, &w1, &[job.id]).await?[0].job.lease_epoch;
    s.mark_running(job.id, e1).await?;
    s.save_checkpoint(job.id, e1, &cp(100, b"0123456789")).await?;
    s.save_checkpoint(job.id, e1, &cp(250, b"01234")).await?;
    // A stale report meters nothing.
    assert_eq!(s.save_checkpoint(job.id, e1 - 1, &cp(10_000, b"x")).await?, None);
    s.requeue_orphans(None, std::slice::from_ref(&w2)).await?;

    // Attempt 2 resumes at 250 and ends at 400: 150 more, not 400.
    let e2 = s.assign_jobs(None, &w2, &[job.id]).await?[0].job.lease_epoch;
    s.mark_running(job.id, e2).await?;
    let usage = Usage { fuel_used: 400, memory_peak_bytes: 1 << 20, wall_ms: 30 };
    s.finish_attempt(job.id, e2, &done(), usage).await?.expect("accepted");
    // The same report again is stale: nothing more is metered.
    assert!(s.finish_attempt(job.id, e2, &done(), usage).await?.is_none());

    // A failed job of another workload, and a queued job cancelled (metered as cancelled).
    let mut failing = new_job(t.id, 0, 0);
    failing.workload = "wordfreq".into();
    let (f, _) = s.insert_job(&failing).await?;
    let ef = s.assign_jobs(None, &w1, &[f.id]).await?[0].job.lease_epoch;
    let failed = Outcome::Failed {
        class: FailureClass::Trap,
        message: "boom".into(),
        output: OutputRef { inline: b"partial".to_vec(), parts: 0, bytes: 7 },
    };
    s.finish_attempt(f.id, ef, &failed, Usage { fuel_used: 5, memory_peak_bytes: 4 << 20, wall_ms: 2 }).await?;
    let (q, _) = s.insert_job(&new_job(t.id, 0, 0)).await?;
    s.request_cancel(t.id, q.id).await?;
    // Cancelling again counts nothing more.
    s.request_cancel(t.id, q.id).await?;
    // The other tenant's job is its own.
    let (o, _) = s.insert_job(&new_job(other.id, 0, 0)).await?;
    let eo = s.assign_jobs(None, &w1, &[o.id]).await?[0].job.lease_epoch;
    s.finish_attempt(o.id, eo, &done(), Usage { fuel_used: 77, ..Usage::default() }).await?;

    let after = crate::ids::now_ms() + 1;
    let usage = s.usage(t.id, before - 3_600_000, after).await?;
    let names: Vec<&str> = usage.iter().map(|w| w.workload.as_str()).collect();
    assert_eq!(names, ["echo", "wordfreq"]);
    let echo = &usage[0].usage;
    assert_eq!(
        Metered {
            fuel: 400,
            wall_ms: 30,
            memory_peak_bytes: 1 << 20,
            checkpoints: 2,
            checkpoint_bytes: 15,
            output_bytes: 3,
            attempts: 1,
            succeeded: 1,
            failed: 0,
            cancelled: 1,
            dead: 0,
            host_errors: 0,
            host_error_fuel: 0,
            host_error_wall_ms: 0,
        },
        *echo
    );
    let wf = &usage[1].usage;
    assert_eq!((wf.fuel, wf.failed, wf.output_bytes, wf.memory_peak_bytes), (5, 1, 7, 4 << 20));

    // A range that ends before the first hour holds nothing; the fuel query sums per tenant.
    assert!(s.usage(t.id, 0, before - 7_200_000).await?.is_empty());
    let mut fuel = s.fuel_since(before - 3_600_000).await?;
    fuel.sort_by_key(|(_, f)| *f);
    assert_eq!(fuel, vec![(other.id, 77), (t.id, 405)]);
    Ok(())
}
