//! Logging and tracing flags of the long-running commands (`serve`, `coordinator`, `worker`).

use tracing_subscriber::fmt::MakeWriter;

/// Logging and tracing flags shared by the long-running commands.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// Log filter, e.g. `info` or `niyanta=debug` (tracing's EnvFilter syntax). It filters log
    /// lines only: trace spans are kept whatever it says.
    #[arg(long, env = "NIYANTA_LOG", default_value = "info")]
    log: String,
    /// Log lines as JSON objects instead of text.
    #[arg(long, env = "NIYANTA_LOG_JSON")]
    log_json: bool,
    /// Export job traces (spans) to this OpenTelemetry collector, OTLP over HTTP with JSON
    /// (e.g. `http://127.0.0.1:4318`; spans go to `/v1/traces`). Batching follows the
    /// `OTEL_BSP_*` variables. Without it, trace ids are still made, propagated and logged.
    #[arg(long, env = "NIYANTA_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

impl LogArgs {
    /// Installs [`LogArgs::subscriber`] writing to stderr as the process's subscriber. Errors: a
    /// bad filter or endpoint, or a subscriber already installed.
    pub(super) fn init(&self, service: &'static str) -> anyhow::Result<crate::trace::Telemetry> {
        use tracing_subscriber::util::SubscriberInitExt as _;
        let (subscriber, telemetry) = self.subscriber(service, std::io::stderr)?;
        subscriber.try_init().map_err(|e| anyhow::anyhow!("cannot initialise logging: {e}"))?;
        Ok(telemetry)
    }

    /// Log lines to `writer` at the `--log` level (`--log-json`: one JSON object per line, the
    /// event's fields at the top level and the fields of the span it happened in, such as a job's
    /// `job_id`, `tenant_id`, `worker_id`, `attempt` and `trace_id`, under `span`), and traces of
    /// `service` (see [`crate::trace`]). `--log` filters the log lines only: the spans the trace
    /// layer records (`info` spans of `niyanta` targets) pass whatever it says, so `--log warn`
    /// quietens the logs without ending the traces. Errors: a bad filter or endpoint.
    fn subscriber<W>(
        &self,
        service: &'static str,
        writer: W,
    ) -> anyhow::Result<(impl tracing::Subscriber + Send + Sync + 'static, crate::trace::Telemetry)>
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        let logs = tracing_subscriber::EnvFilter::try_new(&self.log)
            .map_err(|e| anyhow::anyhow!("--log {:?} is not a valid filter: {e}", self.log))?;
        let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
        let fmt = if self.log_json {
            fmt.json().flatten_event(true).with_current_span(true).with_span_list(false).boxed()
        } else {
            fmt.boxed()
        };
        let (traces, telemetry) = crate::trace::layer(self.otlp_endpoint.as_deref(), service)?;
        let subscriber = tracing_subscriber::registry().with(LogsAndTraceSpans { logs }).with(fmt).with(traces);
        Ok((subscriber, telemetry))
    }
}

/// The process's global filter: what `--log` enables, and the spans the trace layer needs
/// ([`crate::trace::layer`]: `info` spans of `niyanta` targets) whatever `--log` says. The log
/// layer writes events only, so a span let through for the traces adds no log line.
///
/// A global filter rather than a per-layer one on the log layer: with a per-layer filter, the
/// submission's span in a coordinator got no trace context (the job's `trace_id` was missing).
/// Installed without the `log` crate bridge that `try_init` adds (tracing-log's `LogTracer`),
/// the same subscriber worked; the bridge asks the subscriber whether a record is enabled
/// without always sending it, which likely leaves per-layer filter state behind on the thread.
struct LogsAndTraceSpans {
    logs: tracing_subscriber::EnvFilter,
}

/// Whether `meta` is a span the trace layer records.
fn is_trace_span(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && meta.target().starts_with("niyanta") && *meta.level() <= tracing::Level::INFO
}

impl<S> tracing_subscriber::Layer<S> for LogsAndTraceSpans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn register_callsite(&self, meta: &'static tracing::Metadata<'static>) -> tracing::subscriber::Interest {
        // The log filter registers every callsite (it keeps its span-field directives per callsite).
        let logs = tracing_subscriber::Layer::<S>::register_callsite(&self.logs, meta);
        if is_trace_span(meta) { tracing::subscriber::Interest::always() } else { logs }
    }

    fn enabled(&self, meta: &tracing::Metadata<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) -> bool {
        is_trace_span(meta) || self.logs.enabled(meta, ctx)
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        let logs = tracing_subscriber::Layer::<S>::max_level_hint(&self.logs);
        logs.map(|l| l.max(tracing::level_filters::LevelFilter::INFO))
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.logs.on_new_span(attrs, id, ctx);
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.logs.on_record(id, values, ctx);
    }

    fn on_enter(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.logs.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.logs.on_exit(id, ctx);
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.logs.on_close(id, ctx);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Log lines written to memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lines").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn args(log: &str) -> LogArgs {
        LogArgs { log: log.to_owned(), log_json: false, otlp_endpoint: None }
    }

    #[test]
    fn a_quiet_log_filter_keeps_the_trace_spans() {
        let lines = Lines::default();
        let sink = lines.clone();
        let (subscriber, _telemetry) = args("warn").subscriber("test", move || sink.clone()).expect("subscriber");
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("submit", trace_id = tracing::field::Empty);
            crate::trace::continue_from(&span, None);
            let _entered = span.enter();
            tracing::info!("an info line");
            tracing::warn!("a warning");
            assert!(crate::trace::current().is_some(), "the span has a trace context under --log warn");
        });
        let text = String::from_utf8(lines.0.lock().expect("lines").clone()).expect("utf-8");
        assert!(text.contains("a warning"), "warnings are logged: {text}");
        assert!(!text.contains("an info line"), "info lines are filtered out: {text}");
    }

    #[test]
    fn a_bad_filter_is_named() {
        let e = args("niyanta=loud").subscriber("test", std::io::sink).err().expect("an error");
        assert!(e.to_string().contains("--log \"niyanta=loud\" is not a valid filter"), "{e}");
    }
}
