//! Workers' fenced updates on PostgreSQL, applied set-based inside the caller's transaction.
//!
//! A batch of reports is cut into waves in which each job appears once (a job's updates keep
//! their order across waves). A wave costs one statement per kind of update, whatever its size:
//! one `UPDATE … FROM UNNEST(…)` for its `Running` updates and its results together (the
//! results' part also adds what they metered to `usage_hourly`), one for its progress, one
//! `INSERT … SELECT FROM UNNEST(…)` for its log lines, and one `SELECT … FOR UPDATE` for the
//! retry state of its retryable failures when it has any; checkpoints, which carry the guest's
//! state bytes, take two statements each. Every statement matches `lease_epoch = ? AND state IN
//! ('assigned', 'running')`: a stale epoch or an ended job changes nothing and is answered
//! [`Applied::Stale`].

use std::collections::{HashMap, HashSet};

use sqlx::{AssertSqlSafe, PgConnection, Row};

use super::super::rows::{parse, retry_policy};
use super::super::usage_sql::{ADD_USAGE, HOUR_MS, Mark, Meter};
use super::{JOB_COLUMNS, job_from_row};
use crate::ids::JobId;
use crate::state::machine::LEASED;
use crate::state::{
    Applied, Checkpoint, FailureClass, FencedUpdate, JobUpdate, LogLine, Next, Outcome, Retries, RetryPolicy,
    StateResult, may_retry,
};

/// Splits `list` into consecutive runs in which no job appears twice.
fn waves(list: &[FencedUpdate]) -> Vec<&[FencedUpdate]> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut start = 0;
    for (i, u) in list.iter().enumerate() {
        if !seen.insert(u.job_id) {
            out.push(&list[start..i]);
            seen.clear();
            seen.insert(u.job_id);
            start = i;
        }
    }
    if start < list.len() {
        out.push(&list[start..]);
    }
    out
}

/// Whether `list` takes one statement (`Running` updates and results of distinct jobs, none of
/// them a failure that may be retried): it needs no transaction of its own.
pub(super) fn single_statement(list: &[FencedUpdate]) -> bool {
    list.iter().all(|u| matches!(u.update, JobUpdate::Running | JobUpdate::Finish { .. }) && !retryable(u))
        && waves(list).len() == 1
}

/// Whether `u` reports a failure that may be retried (its next state depends on the retries so far).
fn retryable(u: &FencedUpdate) -> bool {
    matches!(&u.update, JobUpdate::Finish { outcome, .. } if may_retry(outcome))
}

/// Applies `list` in order, metering what it consumed into `meter`; the answers in the same order.
pub(super) async fn apply_all(
    conn: &mut PgConnection,
    list: &[FencedUpdate],
    now: i64,
    meter: &mut Meter,
    host_retry: &RetryPolicy,
) -> StateResult<Vec<Applied>> {
    let mut out = Vec::with_capacity(list.len());
    for wave in waves(list) {
        out.extend(apply_wave(conn, wave, now, meter, host_retry).await?);
    }
    Ok(out)
}

async fn apply_wave(
    conn: &mut PgConnection,
    wave: &[FencedUpdate],
    now: i64,
    meter: &mut Meter,
    host_retry: &RetryPolicy,
) -> StateResult<Vec<Applied>> {
    let retries = retry_states(conn, wave).await?;
    let mut out: Vec<Option<Applied>> = vec![None; wave.len()];
    let mut running = Vec::new();
    let mut progress = Vec::new();
    let mut logs = Vec::new();
    let mut finishes = Vec::new();
    for (i, u) in wave.iter().enumerate() {
        match &u.update {
            JobUpdate::Running => running.push(i),
            JobUpdate::Progress(_) => progress.push(i),
            JobUpdate::Logs(_) => logs.push(i),
            JobUpdate::Checkpoint(cp) => out[i] = Some(checkpoint(conn, u, cp, now, meter).await?),
            // Without a row locked above, the epoch is stale or the job ended.
            JobUpdate::Finish { .. } if retryable(u) && !retries.contains_key(&u.job_id) => {
                out[i] = Some(Applied::Stale)
            }
            JobUpdate::Finish { .. } => finishes.push(i),
        }
    }
    let started_and_ended = if finishes.is_empty() {
        set_running(conn, wave, &running, now).await?
    } else {
        finish(conn, wave, &finishes, &running, &retries, host_retry, now).await?
    };
    for (i, a) in started_and_ended {
        out[i] = Some(a);
    }
    for (i, a) in set_progress(conn, wave, &progress, now).await? {
        out[i] = Some(a);
    }
    for (i, a) in append_logs(conn, wave, &logs).await? {
        out[i] = Some(a);
    }
    Ok(out.into_iter().map(|a| a.unwrap_or(Applied::Stale)).collect())
}

/// Locks the live jobs of the wave's failures that may be retried (in id order, so that
/// concurrent transactions lock in one order) and reads their failures so far and retry policy.
async fn retry_states(conn: &mut PgConnection, wave: &[FencedUpdate]) -> StateResult<HashMap<JobId, Retries>> {
    let failed: Vec<&FencedUpdate> = wave.iter().filter(|u| retryable(u)).collect();
    if failed.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<String> = failed.iter().map(|u| u.job_id.to_string()).collect();
    let epochs: Vec<i64> = failed.iter().map(|u| u.epoch).collect();
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT j.id, j.failures, j.host_failures, j.max_attempts, j.initial_backoff_ms, j.max_backoff_ms \
         FROM jobs j JOIN UNNEST($1::text[], $2::bigint[]) AS u(uid, uepoch) \
         ON j.id = u.uid AND j.lease_epoch = u.uepoch WHERE j.state IN {LEASED} \
         ORDER BY j.id FOR UPDATE OF j"
    )))
    .bind(ids)
    .bind(epochs)
    .fetch_all(conn)
    .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for r in rows {
        let id: JobId = parse(&r.try_get::<String, _>("id")?, "job id")?;
        let policy =
            retry_policy(r.try_get("max_attempts")?, r.try_get("initial_backoff_ms")?, r.try_get("max_backoff_ms")?);
        let failures = u32::try_from(r.try_get::<i64, _>("failures")?).unwrap_or(u32::MAX);
        let host_failures = u32::try_from(r.try_get::<i64, _>("host_failures")?).unwrap_or(u32::MAX);
        out.insert(id, Retries { failures, host_failures, policy });
    }
    Ok(out)
}

/// The ids and epochs of the updates at `at`.
fn keys(wave: &[FencedUpdate], at: &[usize]) -> (Vec<String>, Vec<i64>) {
    at.iter().map(|&i| (wave[i].job_id.to_string(), wave[i].epoch)).unzip()
}

/// The `UPDATE` that moves the jobs with the ids and epochs in the arrays `ids` and `epochs`
/// from `assigned` to `running` at `now` (SQL placeholders), without its `RETURNING`.
fn start_sql(now: &str, ids: &str, epochs: &str) -> String {
    format!(
        "UPDATE jobs SET state = 'running', started_at_ms = COALESCE(started_at_ms, {now}), updated_at_ms = {now} \
         FROM UNNEST({ids}::text[], {epochs}::bigint[]) AS s(sid, sepoch) \
         WHERE id = s.sid AND lease_epoch = s.sepoch AND state IN {LEASED}"
    )
}

/// Pairs each update at `at` with the job row its statement returned, `Stale` where none.
fn jobs_or_stale(
    wave: &[FencedUpdate],
    at: &[usize],
    rows: Vec<sqlx::postgres::PgRow>,
) -> StateResult<Vec<(usize, Applied)>> {
    let mut by_id = HashMap::with_capacity(rows.len());
    for r in &rows {
        let job = job_from_row(r)?;
        by_id.insert(job.id, job);
    }
    Ok(at
        .iter()
        .map(|&i| (i, by_id.remove(&wave[i].job_id).map_or(Applied::Stale, |j| Applied::Job(Box::new(j)))))
        .collect())
}

/// Pairs each update at `at` with `Stored` when its job is among `ids`, else `Stale`.
fn stored_or_stale(wave: &[FencedUpdate], at: &[usize], ids: &[String]) -> StateResult<Vec<(usize, Applied)>> {
    let ids: HashSet<JobId> = ids.iter().map(|s| parse(s, "job id")).collect::<anyhow::Result<_>>()?;
    Ok(at.iter().map(|&i| (i, if ids.contains(&wave[i].job_id) { Applied::Stored } else { Applied::Stale })).collect())
}

/// Moves the jobs of the `Running` updates at `at` from `assigned` to `running`; their rows
/// (`Stale` where the epoch or state did not match).
async fn set_running(
    conn: &mut PgConnection,
    wave: &[FencedUpdate],
    at: &[usize],
    now: i64,
) -> StateResult<Vec<(usize, Applied)>> {
    if at.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, epochs) = keys(wave, at);
    let sql = format!("{} RETURNING {JOB_COLUMNS}", start_sql("$1", "$2", "$3"));
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(now).bind(ids).bind(epochs).fetch_all(conn).await?;
    jobs_or_stale(wave, at, rows)
}

async fn set_progress(
    conn: &mut PgConnection,
    wave: &[FencedUpdate],
    at: &[usize],
    now: i64,
) -> StateResult<Vec<(usize, Applied)>> {
    if at.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, epochs) = keys(wave, at);
    let (mut done, mut total, mut message) = (Vec::new(), Vec::new(), Vec::new());
    for &i in at {
        if let JobUpdate::Progress(p) = &wave[i].update {
            done.push(i64::try_from(p.done).unwrap_or(i64::MAX));
            total.push(i64::try_from(p.total).unwrap_or(i64::MAX));
            message.push(p.message.as_str());
        }
    }
    let changed: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "UPDATE jobs SET progress_done = u.udone, progress_total = u.utotal, progress_message = u.umessage, \
         updated_at_ms = $1 FROM UNNEST($2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[]) \
         AS u(uid, uepoch, udone, utotal, umessage) \
         WHERE id = u.uid AND lease_epoch = u.uepoch AND state IN {LEASED} RETURNING id"
    )))
    .bind(now)
    .bind(ids)
    .bind(epochs)
    .bind(done)
    .bind(total)
    .bind(message)
    .fetch_all(conn)
    .await?;
    stored_or_stale(wave, at, &changed)
}

async fn append_logs(
    conn: &mut PgConnection,
    wave: &[FencedUpdate],
    at: &[usize],
) -> StateResult<Vec<(usize, Applied)>> {
    if at.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, epochs) = keys(wave, at);
    let live: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM jobs JOIN UNNEST($1::text[], $2::bigint[]) AS u(uid, uepoch) \
         ON id = u.uid AND lease_epoch = u.uepoch WHERE state IN {LEASED}"
    )))
    .bind(ids)
    .bind(epochs)
    .fetch_all(&mut *conn)
    .await?;
    let applied = stored_or_stale(wave, at, &live)?;
    let lines: Vec<(JobId, &LogLine)> = applied
        .iter()
        .filter(|(_, a)| matches!(a, Applied::Stored))
        .filter_map(|&(i, _)| match &wave[i].update {
            JobUpdate::Logs(lines) => Some(lines.iter().map(move |l| (wave[i].job_id, l))),
            _ => None,
        })
        .flatten()
        .collect();
    if !lines.is_empty() {
        let job: Vec<String> = lines.iter().map(|(j, _)| j.to_string()).collect();
        let attempt: Vec<i64> = lines.iter().map(|(_, l)| i64::from(l.attempt)).collect();
        let at_ms: Vec<i64> = lines.iter().map(|(_, l)| l.at_ms).collect();
        let level: Vec<&str> = lines.iter().map(|(_, l)| l.level.as_str()).collect();
        let message: Vec<&str> = lines.iter().map(|(_, l)| l.message.as_str()).collect();
        // `WITH ORDINALITY … ORDER BY` keeps the lines' order in their sequence numbers.
        sqlx::query(
            "INSERT INTO job_logs (job_id, attempt, at_ms, level, message) \
             SELECT ujob, uattempt, uat, ulevel, umessage \
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[]) WITH ORDINALITY \
             AS u(ujob, uattempt, uat, ulevel, umessage, n) ORDER BY n",
        )
        .bind(job)
        .bind(attempt)
        .bind(at_ms)
        .bind(level)
        .bind(message)
        .execute(conn)
        .await?;
    }
    Ok(applied)
}

/// Stores a checkpoint and meters it (its fuel past what the job had metered, its bytes).
async fn checkpoint(
    conn: &mut PgConnection,
    u: &FencedUpdate,
    cp: &Checkpoint,
    now: i64,
    meter: &mut Meter,
) -> StateResult<Applied> {
    let fuel = i64::try_from(cp.fuel_used).unwrap_or(i64::MAX);
    // `b` is the row as it stood: its metered fuel before this update.
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE jobs SET checkpoints = checkpoints + 1, fuel_used = $1, fuel_metered = GREATEST(fuel_metered, $1), \
         updated_at_ms = $2 FROM (SELECT id AS bid, fuel_metered AS bfuel FROM jobs WHERE id = $3 FOR UPDATE) AS b \
         WHERE id = b.bid AND lease_epoch = $4 AND state IN {LEASED} \
         RETURNING checkpoints, tenant_id, workload, b.bfuel"
    )))
    .bind(fuel)
    .bind(now)
    .bind(u.job_id.to_string())
    .bind(u.epoch)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(Applied::Stale) };
    let seq: i64 = row.try_get("checkpoints")?;
    let mark = Mark {
        tenant_id: parse(&row.try_get::<String, _>("tenant_id")?, "tenant id")?,
        workload: row.try_get("workload")?,
        fuel_metered: u64::try_from(row.try_get::<i64, _>("bfuel")?).unwrap_or(0),
    };
    sqlx::query(
        "INSERT INTO checkpoints (job_id, seq, state, output_bytes, output_parts, output_tail, fuel_used, \
         created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (job_id) DO UPDATE SET seq = excluded.seq, \
         state = excluded.state, output_bytes = excluded.output_bytes, output_parts = excluded.output_parts, \
         output_tail = excluded.output_tail, fuel_used = excluded.fuel_used, created_at_ms = excluded.created_at_ms",
    )
    .bind(u.job_id.to_string())
    .bind(seq)
    .bind(&cp.state)
    .bind(i64::try_from(cp.output_bytes).unwrap_or(i64::MAX))
    .bind(i64::from(cp.output_parts))
    .bind(&cp.output_tail)
    .bind(fuel)
    .bind(now)
    .execute(conn)
    .await?;
    let applied = Applied::Checkpoint(u32::try_from(seq).unwrap_or(u32::MAX));
    // The new metered total was stored by the update above.
    meter.record(&mark, u, &applied, now);
    Ok(applied)
}

/// The columns of one `finish` statement, one element per result.
#[derive(Default)]
struct Results<'a> {
    id: Vec<String>,
    epoch: Vec<i64>,
    state: Vec<&'static str>,
    class: Vec<Option<&'static str>>,
    message: Vec<Option<&'a str>>,
    has_output: Vec<bool>,
    inline: Vec<Option<&'a [u8]>>,
    bytes: Vec<i64>,
    parts: Vec<i64>,
    fuel: Vec<i64>,
    memory: Vec<i64>,
    wall: Vec<i64>,
    terminal: Vec<bool>,
    failures: Vec<i64>,
    host_failures: Vec<i64>,
    not_before: Vec<Option<i64>>,
    host_error: Vec<bool>,
}

/// Ends the attempts of the results at `at`: each job's next state (see [`Next`]; a failure
/// that may be retried from `retries`, a host error's under `host_retry`), output and usage (and its start, for a job still `assigned`), in
/// one statement that also meters them into `usage_hourly` as [`Meter::record`] would: the fuel
/// past what the job had metered, wall time, peak memory, one attempt, the outcome, and the
/// output of an ended job. The same statement
/// applies the `Running` updates at `starting` (other jobs: a wave holds each job once) as
/// [`set_running`] would. The rows of both, `Stale` where none.
async fn finish(
    conn: &mut PgConnection,
    wave: &[FencedUpdate],
    at: &[usize],
    starting: &[usize],
    retries: &HashMap<JobId, Retries>,
    host_retry: &RetryPolicy,
    now: i64,
) -> StateResult<Vec<(usize, Applied)>> {
    if at.is_empty() {
        return set_running(conn, wave, starting, now).await;
    }
    let mut r = Results::default();
    for &i in at {
        let u = &wave[i];
        let JobUpdate::Finish { outcome, usage } = &u.update else { continue };
        let next = match (retries.get(&u.job_id), outcome) {
            (Some(b), Outcome::Failed { class, .. }) if retryable(u) => {
                Next::of(outcome, Some(b.after(*class, host_retry, now)))
            }
            _ => Next::of(outcome, None),
        };
        let host_error = matches!(outcome, Outcome::Failed { class: FailureClass::HostError, .. });
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        r.id.push(u.job_id.to_string());
        r.epoch.push(u.epoch);
        r.state.push(next.state.as_str());
        r.class.push(next.class.map(FailureClass::as_str));
        r.message.push(next.message);
        r.has_output.push(next.output.is_some());
        r.inline.push(next.output.map(|o| o.inline.as_slice()));
        r.bytes.push(next.output.map_or(0, |o| n(o.bytes)));
        r.parts.push(next.output.map_or(0, |o| i64::from(o.parts)));
        r.fuel.push(n(usage.fuel_used));
        r.memory.push(n(usage.memory_peak_bytes));
        r.wall.push(n(usage.wall_ms));
        r.terminal.push(next.state.is_terminal());
        r.failures.push(i64::from(next.counts_failure));
        r.host_failures.push(i64::from(next.counts_host_failure));
        r.not_before.push(next.not_before_ms);
        r.host_error.push(host_error);
    }
    let hour = now - now.rem_euclid(HOUR_MS);
    // The `Running` updates ride along as one more data-modifying CTE (no CTE sees another's
    // changes, and the two touch different rows).
    let (start, started) = if starting.is_empty() {
        (String::new(), String::new())
    } else {
        (
            format!("started AS ({} RETURNING {JOB_COLUMNS}), ", start_sql("$1", "$20", "$21")),
            format!(" UNION ALL SELECT {JOB_COLUMNS} FROM started"),
        )
    };
    let sql = format!(
        "WITH {start}u AS (SELECT * FROM UNNEST($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], \
           $7::boolean[], $8::bytea[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], \
           $14::boolean[], $15::bigint[], $16::bigint[], $18::bigint[], $19::boolean[]) \
           AS u(uid, uepoch, ustate, uclass, umessage, uhas_output, uinline, ubytes, uparts, ufuel, umemory, uwall, \
           uterminal, ufailures, unot_before, uhost_failures, uhost)), \
         b AS (SELECT j.id AS bid, j.fuel_metered AS bfuel FROM jobs j JOIN u ON j.id = u.uid \
           AND j.lease_epoch = u.uepoch WHERE j.state IN {LEASED} ORDER BY j.id FOR UPDATE OF j), \
         done AS (UPDATE jobs SET state = u.ustate, failure_class = u.uclass, failure_message = u.umessage, \
           output_inline = CASE WHEN u.uhas_output THEN u.uinline ELSE output_inline END, \
           output_bytes = CASE WHEN u.uhas_output THEN u.ubytes ELSE output_bytes END, \
           output_parts = CASE WHEN u.uhas_output THEN u.uparts ELSE output_parts END, \
           fuel_used = u.ufuel, fuel_metered = GREATEST(fuel_metered, u.ufuel), \
           memory_peak_bytes = GREATEST(memory_peak_bytes, u.umemory), \
           worker_id = CASE WHEN u.uterminal THEN worker_id ELSE NULL END, \
           finished_at_ms = CASE WHEN u.uterminal THEN $1 ELSE NULL END, \
           failures = failures + u.ufailures, host_failures = host_failures + u.uhost_failures, not_before_ms = COALESCE(u.unot_before, not_before_ms), \
           started_at_ms = COALESCE(started_at_ms, $1), updated_at_ms = $1 \
           FROM u JOIN b ON b.bid = u.uid \
           WHERE id = u.uid AND lease_epoch = u.uepoch AND state IN {LEASED} \
           RETURNING {JOB_COLUMNS}, GREATEST(u.ufuel - b.bfuel, 0) AS mfuel, u.uwall AS mwall, \
             u.umemory AS mmemory, u.uterminal AS mterminal, u.uhost AS mhost), \
         metered AS (INSERT INTO usage_hourly (tenant_id, workload, hour_ms, fuel, wall_ms, memory_peak_bytes, \
           checkpoints, checkpoint_bytes, output_bytes, attempts, succeeded, failed, cancelled, dead, \
           host_errors, host_error_fuel, host_error_wall_ms) \
           SELECT tenant_id, workload, $17, SUM(mfuel), SUM(mwall), MAX(mmemory), 0, 0, \
             SUM(CASE WHEN mterminal THEN output_bytes ELSE 0 END), COUNT(*), \
             COUNT(*) FILTER (WHERE state = 'succeeded'), COUNT(*) FILTER (WHERE state = 'failed'), \
             COUNT(*) FILTER (WHERE state = 'cancelled'), COUNT(*) FILTER (WHERE state = 'dead'), \
             COUNT(*) FILTER (WHERE mhost), COALESCE(SUM(mfuel) FILTER (WHERE mhost), 0), \
             COALESCE(SUM(mwall) FILTER (WHERE mhost), 0) \
           FROM done GROUP BY tenant_id, workload ORDER BY tenant_id, workload \
           ON CONFLICT (tenant_id, hour_ms, workload) DO UPDATE SET {ADD_USAGE}) \
         SELECT {JOB_COLUMNS} FROM done{started}"
    );
    let mut query = sqlx::query(AssertSqlSafe(sql))
        .bind(now)
        .bind(r.id)
        .bind(r.epoch)
        .bind(r.state)
        .bind(r.class)
        .bind(r.message)
        .bind(r.has_output)
        .bind(r.inline)
        .bind(r.bytes)
        .bind(r.parts)
        .bind(r.fuel)
        .bind(r.memory)
        .bind(r.wall)
        .bind(r.terminal)
        .bind(r.failures)
        .bind(r.not_before)
        .bind(hour)
        .bind(r.host_failures)
        .bind(r.host_error);
    if !starting.is_empty() {
        let (ids, epochs) = keys(wave, starting);
        query = query.bind(ids).bind(epochs);
    }
    let rows = query.fetch_all(conn).await?;
    let both: Vec<usize> = at.iter().chain(starting).copied().collect();
    jobs_or_stale(wave, &both, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_hold_each_job_once_and_keep_the_order() {
        let (a, b) = (JobId::new(), JobId::new());
        let u = |job_id| FencedUpdate { job_id, epoch: 1, update: JobUpdate::Running };
        let list = [u(a), u(b), u(a), u(a), u(b)];
        let lens: Vec<usize> = waves(&list).iter().map(|w| w.len()).collect();
        assert_eq!(lens, [2, 1, 2]);
        assert!(waves(&[]).is_empty());
    }

    #[test]
    fn starts_and_results_of_distinct_jobs_take_one_statement() {
        let (a, b) = (JobId::new(), JobId::new());
        let running = |job_id| FencedUpdate { job_id, epoch: 1, update: JobUpdate::Running };
        let result = |job_id, class| FencedUpdate {
            job_id,
            epoch: 1,
            update: JobUpdate::Finish {
                outcome: Outcome::Failed { class, message: "x".into(), output: crate::state::OutputRef::default() },
                usage: crate::state::Usage::default(),
            },
        };
        assert!(single_statement(&[running(a), result(b, FailureClass::Trap)]));
        assert!(!single_statement(&[running(a), result(a, FailureClass::Trap)]), "one job twice: two waves");
        assert!(!single_statement(&[running(a), result(b, FailureClass::Retryable)]), "retries are read first");
        let progress = FencedUpdate { job_id: b, epoch: 1, update: JobUpdate::Logs(Vec::new()) };
        assert!(!single_statement(&[running(a), progress]));
    }
}
