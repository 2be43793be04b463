//! Traces that follow a job across processes.
//!
//! A job's trace starts at the API call that submits it (continuing the caller's trace when the
//! request carries a W3C `traceparent` header, <https://www.w3.org/TR/trace-context/>), and goes
//! on through the leader's assignment (`assign` span), the worker's attempt (`job` span) and the
//! coordinator's handling of each report (`report` span), back to the job's end:
//!
//! ```text
//! submit (coordinator A) ─ assign (leader) ─ job (worker) ─ report (leader) …
//! ```
//!
//! The context travels as a `traceparent` value: stored with the job (so a retry or a resume on
//! another worker stays in the trace), in the `traceparent` header of NATS messages (assignments
//! and reports), and alongside in-process messages in embedded mode. The spans are `tracing`
//! spans; their OpenTelemetry ids come from the `tracing-opentelemetry` layer this module builds,
//! and each of these spans records its `trace_id` as a field, so JSON log lines about a job carry
//! it. Spans are exported to an OTLP/HTTP collector only when an endpoint is configured
//! (`--otlp-endpoint`); without one, ids are still made and propagated.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The header (HTTP and NATS) carrying a trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The exporting part of tracing: flushes pending spans when shut down.
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Telemetry {
    /// Sends the spans not yet exported (waits at most 5 s, on a blocking thread). Call before
    /// the process exits.
    pub async fn shutdown(self) {
        if !self.exporting {
            return;
        }
        let provider = self.provider;
        let done =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(std::time::Duration::from_secs(5)))
                .await;
        if let Ok(Err(e)) = done {
            eprintln!("could not export the last spans: {e}");
        }
    }
}

/// The layer that gives Niyanta's spans OpenTelemetry ids, for the service named `service`
/// (`niyanta-coordinator`, `niyanta-worker`, `niyanta-serve`). With `otlp_endpoint` (the base URL
/// of an OTLP/HTTP collector, e.g. `http://127.0.0.1:4318`) spans are exported in batches to
/// `{otlp_endpoint}/v1/traces` as OTLP JSON; the batch settings follow the `OTEL_BSP_*`
/// environment variables (default: every 5 s). Only spans and events of Niyanta's own code
/// (target `niyanta…`) at `info` level or above are seen by this layer (it carries this filter
/// itself). A global filter in front of it must let those spans through, as `niyanta`'s `--log`
/// filter does; one that drops them drops the trace with them.
///
/// Errors: an endpoint that is not a valid URL.
pub fn layer<S>(otlp_endpoint: Option<&str>, service: &'static str) -> anyhow::Result<(impl Layer<S>, Telemetry)>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let resource = opentelemetry_sdk::Resource::builder_empty().with_service_name(service).build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = otlp_endpoint {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        reqwest::Url::parse(&url).map_err(|e| anyhow::anyhow!("--otlp-endpoint {endpoint:?} is not a URL: {e}"))?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(url)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the OTLP exporter for {endpoint}: {e}"))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer("niyanta");
    let own = tracing_subscriber::filter::Targets::new().with_target("niyanta", tracing::Level::INFO);
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(own);
    Ok((layer, Telemetry { provider, exporting: otlp_endpoint.is_some() }))
}

/// Makes `span` a child of the context in `traceparent` (when it is a valid one) and records the
/// span's trace id in its `trace_id` field. Call right after creating the span, before entering
/// it. Without a valid parent the span starts a new trace (when it has no parent span).
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(cx) = traceparent.and_then(extract) {
        let _ = span.set_parent(cx);
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        span.record("trace_id", tracing::field::display(sc.trace_id()));
    }
}

/// The `traceparent` value naming `span` (`00-{trace id}-{span id}-{flags}`), or `None` when
/// tracing is not set up.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The `traceparent` value naming the current span.
pub fn current() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// The context a `traceparent` value names, when it is a valid one. The propagator reads short
/// ids (`00-abc-…`) as zero-padded ones, so the shape W3C Trace Context requires is checked
/// first: version, trace id, parent id and flags of 2, 32, 16 and 2 lowercase hex digits.
fn extract(traceparent: &str) -> Option<opentelemetry::Context> {
    let lengths: Vec<usize> = traceparent.split('-').map(str::len).take(4).collect();
    let hex = traceparent.bytes().all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if lengths != [2, 32, 16, 2] || !hex {
        return None;
    }
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// The trace id (32 lowercase hex digits) of a `traceparent` value, when it is a valid one.
pub fn trace_id(traceparent: &str) -> Option<String> {
    extract(traceparent).map(|cx| cx.span().span_context().trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_span_continues_a_traceparent_and_names_itself_in_one() {
        let (layer, _t) = layer(None, "test").expect("layer");
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            // A malformed parent starts a new trace.
            let fresh = tracing::info_span!("submit", trace_id = tracing::field::Empty);
            continue_from(&fresh, Some("00-zz-00f067aa0ba902b7-01"));
            let tp = traceparent_of(&fresh).expect("a traceparent");
            assert_ne!(trace_id(&tp).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));

            let span = tracing::info_span!("assign", trace_id = tracing::field::Empty);
            continue_from(&span, Some(PARENT));
            let tp = traceparent_of(&span).expect("a traceparent");
            assert_eq!(trace_id(&tp).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
            assert!(!tp.contains("00f067aa0ba902b7"), "the span has its own id: {tp}");
            // A child span inherits the trace; `current` names the entered span.
            let _e = span.enter();
            let child = tracing::info_span!("report", trace_id = tracing::field::Empty);
            continue_from(&child, None);
            let inner = child.in_scope(current).expect("current");
            assert_eq!(trace_id(&inner).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
            assert_ne!(inner, tp);
        });
        // No layer installed: nothing to propagate.
        assert_eq!(current(), None);
    }

    #[test]
    fn trace_ids_are_read_from_well_formed_values_only() {
        assert_eq!(trace_id(PARENT).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(trace_id("00-abc-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id(""), None);
    }

    #[test]
    fn an_endpoint_must_be_a_url() {
        let r = layer::<tracing_subscriber::Registry>(Some("not a url"), "test");
        assert!(r.err().is_some_and(|e| e.to_string().contains("not a URL")));
    }
}
