//! `niyanta job submit|get|watch|cancel|redrive|output|list|logs`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use futures::StreamExt;
use reqwest::Method;

use super::sse::events;
use super::{Client, Remote, print_json};
use crate::api::views::{JobPage, JobView, SubmitJob};
use crate::state::{JobState, LogLine, Progress};

#[derive(Debug, clap::Subcommand)]
pub enum JobCmd {
    /// Submit a job.
    Submit {
        /// Workload name.
        workload: String,
        /// Params: a JSON object, e.g. '{"top": 10}'.
        #[arg(long)]
        params: Option<String>,
        /// Input file (uploaded first when larger than 64 KiB).
        #[arg(long)]
        input_file: Option<PathBuf>,
        /// Priority within the tier, -100 to 100.
        #[arg(long, default_value_t = 0)]
        priority: i32,
        /// Idempotency key: submitting again with it returns the first job.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Wait for the end: a progress bar on a terminal, the output on stdout, exit status 1
        /// when the job does not succeed.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        options: Box<JobOptions>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show a job.
    Get {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Follow a job's progress and state until it ends (exit status 1 unless it succeeded).
    Watch {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Cancel a job.
    Cancel {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Queue a dead job again (its retries are reset; it resumes from its last checkpoint).
    Redrive {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Write a finished job's output to stdout (or a file).
    Output {
        id: String,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        out: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List jobs, newest first.
    List {
        /// Only jobs in this state (scheduled, queued, assigned, running, succeeded, failed,
        /// cancelled, dead).
        #[arg(long)]
        state: Option<String>,
        /// Only jobs of this workload.
        #[arg(long)]
        workload: Option<String>,
        /// At most this many, 1 to 1000.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        remote: Remote,
    },
    /// Print a job's log.
    Logs {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// When and where a job runs, and how it is retried.
#[derive(Debug, Default, clap::Args)]
pub struct JobOptions {
    /// Start no earlier than this RFC 3339 UTC time, e.g. 2026-11-21T10:00:00Z.
    #[arg(long, conflicts_with = "delay")]
    not_before: Option<String>,
    /// Start no earlier than this long from now, e.g. 90s, 15m, 2h.
    #[arg(long)]
    delay: Option<humantime::Duration>,
    /// Attempts that may fail retryably before the job is dead, 1 to 100 (default 3).
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Backoff before the first retry, e.g. 1s (default 1s); doubles on each retry.
    #[arg(long)]
    backoff: Option<humantime::Duration>,
    /// Longest backoff, e.g. 1m (default 1m).
    #[arg(long)]
    max_backoff: Option<humantime::Duration>,
    /// Run only on workers with this label, KEY=VALUE (repeatable).
    #[arg(long = "require", value_name = "KEY=VALUE")]
    require: Vec<String>,
    /// Rather run on workers with this label, KEY=VALUE (repeatable).
    #[arg(long = "prefer", value_name = "KEY=VALUE")]
    prefer: Vec<String>,
    /// Do not run on a worker that runs a job of this workload (repeatable).
    #[arg(long = "avoid", value_name = "WORKLOAD")]
    avoid: Vec<String>,
}

impl JobOptions {
    fn apply(self, body: &mut SubmitJob) -> anyhow::Result<()> {
        let ms = |d: humantime::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        body.not_before = self.not_before;
        body.delay_ms = self.delay.map(ms);
        if self.max_attempts.is_some() || self.backoff.is_some() || self.max_backoff.is_some() {
            let d = crate::state::RetryPolicy::default();
            let retry = crate::state::RetryPolicy {
                max_attempts: self.max_attempts.unwrap_or(d.max_attempts),
                initial_backoff_ms: self.backoff.map_or(d.initial_backoff_ms, ms),
                max_backoff_ms: self.max_backoff.map_or(d.max_backoff_ms, ms),
            };
            body.retry = Some(retry);
        }
        let placement = crate::state::Placement {
            require: crate::config::cluster::parse_labels(&self.require).context("--require")?,
            prefer: crate::config::cluster::parse_labels(&self.prefer).context("--prefer")?,
            avoid_workloads: self.avoid,
        };
        if !placement.is_empty() {
            body.placement = Some(placement);
        }
        Ok(())
    }
}

fn show(j: &JobView) {
    println!("job {} ({})", j.id, j.workload);
    println!("  state      {}", j.state_str());
    println!("  attempt    {}", j.attempt);
    if let Some(reason) = &j.waiting_reason {
        println!("  waiting    {reason}");
    }
    if let Some(t) = &j.not_before {
        println!("  not before {t}");
    }
    if j.failures > 0 {
        println!("  failures   {} of {} attempts allowed", j.failures, j.retry.max_attempts);
    }
    if j.progress.total > 0 || !j.progress.message.is_empty() {
        println!("  progress   {}/{} {}", j.progress.done, j.progress.total, j.progress.message);
    }
    println!("  fuel used  {}", j.fuel_used);
    println!("  memory     {} bytes peak", j.memory_peak_bytes);
    println!("  checkpoints {} (this attempt resumed from {})", j.checkpoints, j.resumed_from_checkpoint);
    if let Some(f) = &j.failure {
        println!("  failure    {}: {}", f.class, f.message);
    }
    println!("  output     {} bytes", j.output_bytes);
    println!("  created    {}", j.created_at);
    if let Some(t) = &j.started_at {
        println!("  started    {t}");
    }
    if let Some(t) = &j.finished_at {
        println!("  finished   {t}");
    }
}

impl JobView {
    fn state_str(&self) -> &'static str {
        self.state.as_str()
    }
}

fn exit_for(state: JobState) -> ExitCode {
    if state == JobState::Succeeded { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

async fn submit_body(
    client: &Client,
    workload: String,
    params: Option<String>,
    input_file: Option<PathBuf>,
    priority: i32,
    idempotency_key: Option<String>,
) -> anyhow::Result<SubmitJob> {
    let params = params
        .map(|p| {
            serde_json::value::RawValue::from_string(p.clone())
                .with_context(|| format!("--params is not valid JSON: {p}"))
        })
        .transpose()?;
    let mut body = SubmitJob { workload, params, priority, idempotency_key, ..SubmitJob::default() };
    if let Some(file) = input_file {
        let open = tokio::fs::File::open(&file).await.with_context(|| format!("opening {}", file.display()))?;
        let size = open.metadata().await.with_context(|| format!("reading {}", file.display()))?.len();
        if size <= crate::state::INLINE_LIMIT as u64 {
            use base64::Engine as _;
            let bytes = tokio::fs::read(&file).await.with_context(|| format!("reading {}", file.display()))?;
            body.input_base64 = Some(base64::engine::general_purpose::STANDARD.encode(&bytes));
        } else {
            // Streamed from the file, never read whole into memory.
            let rb = client.request(Method::POST, "/v1/inputs").body(reqwest::Body::from(open));
            let input: crate::api::views::InputView =
                client.json(rb).await.with_context(|| format!("uploading {}", file.display()))?;
            body.input_digest = Some(input.digest);
        }
    }
    Ok(body)
}

/// Follows a job to its end; shows a progress bar when stderr is a terminal. Returns the final job.
async fn follow(client: &Client, id: &str, quiet: bool) -> anyhow::Result<JobView> {
    let resp = client.send(client.request(Method::GET, &format!("/v1/jobs/{id}/events"))).await?;
    let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut stream = Box::pin(events(resp.bytes_stream()));
    while let Some(ev) = stream.next().await {
        let ev = ev?;
        match ev.event.as_str() {
            "progress" => {
                if let (Some(bar), Ok(v)) = (&bar, serde_json::from_str::<serde_json::Value>(&ev.data))
                    && let Ok(p) = serde_json::from_value::<Progress>(v)
                {
                    bar.set_length(p.total);
                    bar.set_position(p.done);
                    bar.set_message(p.message);
                }
            }
            "state" | "job" => {
                let state = serde_json::from_str::<serde_json::Value>(&ev.data)
                    .ok()
                    .and_then(|v| v.get("state").cloned())
                    .and_then(|s| serde_json::from_value::<JobState>(s).ok());
                if let Some(bar) = &bar
                    && let Some(s) = state
                {
                    bar.set_message(s.as_str().to_owned());
                }
                if state.is_some_and(JobState::is_terminal) {
                    break;
                }
            }
            _ => {}
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    client.json(client.request(Method::GET, &format!("/v1/jobs/{id}"))).await
}

async fn write_output(client: &Client, id: &str, out: Option<PathBuf>) -> anyhow::Result<()> {
    let resp = client.send(client.request(Method::GET, &format!("/v1/jobs/{id}/output"))).await?;
    let mut stream = resp.bytes_stream();
    let mut sink: Box<dyn Write> = match out {
        Some(path) => Box::new(std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    while let Some(chunk) = stream.next().await {
        sink.write_all(&chunk.context("reading the output")?)?;
    }
    sink.flush()?;
    Ok(())
}

pub async fn run(cmd: JobCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        JobCmd::Submit { workload, params, input_file, priority, idempotency_key, wait, options, remote } => {
            let client = Client::from_remote(&remote)?;
            let mut body = submit_body(&client, workload, params, input_file, priority, idempotency_key).await?;
            (*options).apply(&mut body)?;
            let job: JobView = client.json(client.request(Method::POST, "/v1/jobs").json(&body)).await?;
            if !wait {
                if remote.json {
                    print_json(&job)?
                } else {
                    println!("{}", job.id)
                }
                return Ok(ExitCode::SUCCESS);
            }
            let done = follow(&client, &job.id, remote.json).await?;
            if remote.json {
                print_json(&done)?;
            } else if done.state == JobState::Succeeded {
                write_output(&client, &done.id, None).await?;
            } else {
                let why = done.failure.as_ref().map(|f| format!("{}: {}", f.class, f.message)).unwrap_or_default();
                eprintln!("job {} {}: {why}", done.id, done.state.as_str());
            }
            return Ok(exit_for(done.state));
        }
        JobCmd::Get { id, remote } => {
            let client = Client::from_remote(&remote)?;
            let job: JobView = client.json(client.request(Method::GET, &format!("/v1/jobs/{id}"))).await?;
            if remote.json { print_json(&job)? } else { show(&job) }
        }
        JobCmd::Watch { id, remote } => {
            let client = Client::from_remote(&remote)?;
            let job = follow(&client, &id, remote.json).await?;
            if remote.json {
                print_json(&job)?
            } else {
                show(&job)
            }
            return Ok(exit_for(job.state));
        }
        JobCmd::Cancel { id, remote } => {
            let client = Client::from_remote(&remote)?;
            let job: JobView = client.json(client.request(Method::POST, &format!("/v1/jobs/{id}/cancel"))).await?;
            if remote.json {
                print_json(&job)?
            } else {
                println!(
                    "job {} is {}{}",
                    job.id,
                    job.state.as_str(),
                    if job.cancel_requested && !job.state.is_terminal() { " (cancel requested)" } else { "" }
                );
            }
        }
        JobCmd::Redrive { id, remote } => {
            let client = Client::from_remote(&remote)?;
            let job: JobView = client.json(client.request(Method::POST, &format!("/v1/jobs/{id}/redrive"))).await?;
            if remote.json { print_json(&job)? } else { println!("job {} is {}", job.id, job.state.as_str()) }
        }
        JobCmd::Output { id, out, remote } => {
            let client = Client::from_remote(&remote)?;
            write_output(&client, &id, out).await?;
        }
        JobCmd::List { state, workload, limit, remote } => {
            let client = Client::from_remote(&remote)?;
            let mut q: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            if let Some(s) = state {
                q.push(("state", s));
            }
            if let Some(w) = workload {
                q.push(("workload", w));
            }
            let page: JobPage = client.json(client.request(Method::GET, "/v1/jobs").query(&q)).await?;
            if remote.json {
                print_json(&page)?;
            } else {
                for j in &page.jobs {
                    println!("{}\t{}\t{}\tattempt {}\t{}", j.id, j.workload, j.state.as_str(), j.attempt, j.created_at);
                }
            }
        }
        JobCmd::Logs { id, remote } => {
            let client = Client::from_remote(&remote)?;
            let lines: Vec<LogLine> = client.json(client.request(Method::GET, &format!("/v1/jobs/{id}/logs"))).await?;
            if remote.json {
                print_json(&lines)?;
            } else {
                for l in &lines {
                    println!("{} [{}] #{} {}", crate::ids::rfc3339(l.at_ms), l.level, l.attempt, l.message);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
