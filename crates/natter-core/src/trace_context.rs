//! W3C trace context: a caller's `traceparent`, and the parent a turn's span continues.
//!
//! Natter's spans are plain `tracing` spans; `natter serve --otlp-endpoint` exports them over
//! OTLP (natter-server's `otel.rs`). Without that, parenting a span is a no-op and
//! [`SpanParent::current`] returns `None` at once: nothing here costs a turn anything.
//!
//! The wire rule (docs/protocol.md): a payload without `traceId` sent over a connection or
//! request that carried a valid `traceparent` gets that traceparent's trace id (32 lowercase
//! hex digits) as its `traceId`. An invalid `traceparent` is ignored, as W3C says.

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header (and handshake field) name.
pub const TRACEPARENT: &str = "traceparent";

/// A span of someone else's (a caller's, or the request that queued a turn) that a span of
/// ours continues.
#[derive(Clone, Debug)]
pub struct SpanParent {
    context: Context,
    trace_id: String,
}

impl SpanParent {
    /// A `traceparent` value; `None` if it is not a valid W3C traceparent.
    pub fn from_traceparent(value: &str) -> Option<Self> {
        // Longer than any valid version-00 value allows, with room for future versions.
        if value.len() > 512 || !well_formed(value) {
            return None;
        }
        let carrier = HashMap::from([(TRACEPARENT.to_owned(), value.to_owned())]);
        let context = TraceContextPropagator::new().extract(&carrier);
        Self::from_context(context)
    }

    /// The exported span the current `tracing` span is, so work that runs later in another
    /// task can continue it. `None` when traces are not exported.
    pub fn current() -> Option<Self> {
        Self::from_context(tracing::Span::current().context())
    }

    /// A span in trace `trace_id` (32 hex digits) whose span is not known here: a turn run
    /// by a node other than the one its request reached. Its span id is derived from `key`,
    /// so the turn's span lands in the caller's trace under a stable (missing) parent.
    pub fn in_trace(trace_id: &str, key: &str) -> Option<Self> {
        if trace_id.len() != 32 {
            return None;
        }
        let trace = TraceId::from_hex(trace_id).ok()?;
        if trace == TraceId::INVALID {
            return None;
        }
        // FNV-1a: stable across processes (std's hasher is randomly seeded).
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let span = SpanId::from_bytes(hash.max(1).to_be_bytes());
        let context = Context::new().with_remote_span_context(SpanContext::new(
            trace,
            span,
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ));
        Self::from_context(context)
    }

    fn from_context(context: Context) -> Option<Self> {
        let trace_id = {
            let span = context.span();
            let span_context = span.span_context();
            if !span_context.is_valid() {
                return None;
            }
            span_context.trace_id().to_string()
        };
        Some(Self { context, trace_id })
    }

    /// The trace id, as 32 lowercase hex digits (what goes on the wire as `traceId`).
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// Makes `span` (not entered yet) a child of this one. A no-op when traces are not
    /// exported.
    pub fn adopt(&self, span: &tracing::Span) {
        // Err only when no OpenTelemetry layer is installed (or the span is disabled or
        // already started): then there is nothing to parent.
        let _ = span.set_parent(self.context.clone());
    }
}

/// The W3C shape, which the propagator checks only loosely (it takes a 31-digit trace id):
/// `version-traceid-parentid-flags` in lowercase hex of 2, 32, 16 and 2 digits; version `ff` is
/// invalid, version `00` has exactly these four parts, later versions may append `-…`.
fn well_formed(value: &str) -> bool {
    let mut parts = value.split('-');
    let hex = |part: Option<&str>, len: usize| {
        part.is_some_and(|p| {
            p.len() == len
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
    };
    let version = parts.next();
    if !hex(version, 2) || version == Some("ff") {
        return false;
    }
    if !(hex(parts.next(), 32) && hex(parts.next(), 16) && hex(parts.next(), 2)) {
        return false;
    }
    version != Some("00") || parts.next().is_none()
}

/// The `traceId` a payload gets: its own, else the trace id of the connection's or
/// request's `traceparent`.
pub fn trace_id_or(own: Option<String>, parent: Option<&SpanParent>) -> Option<String> {
    own.or_else(|| parent.map(|p| p.trace_id().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_gives_its_trace_id() {
        let p = SpanParent::from_traceparent(VALID).expect("valid");
        assert_eq!(p.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        for bad in [
            "",
            "garbage",
            // all-zero trace id and span id are invalid
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // upper case is not allowed
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            // version ff is forbidden, version 00 has exactly four parts
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(SpanParent::from_traceparent(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_payloads_own_trace_id_wins() {
        let p = SpanParent::from_traceparent(VALID);
        assert_eq!(
            trace_id_or(Some("mine".into()), p.as_ref()).as_deref(),
            Some("mine")
        );
        assert_eq!(
            trace_id_or(None, p.as_ref()).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id_or(None, None), None);
    }

    #[test]
    fn a_trace_id_alone_makes_a_parent_in_that_trace() {
        let p = SpanParent::in_trace("4bf92f3577b34da6a3ce929d0e0e4736", "r1").expect("hex");
        assert_eq!(p.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(SpanParent::in_trace("trace-1", "r1").is_none());
        assert!(SpanParent::in_trace("00000000000000000000000000000000", "r1").is_none());
    }

    #[test]
    fn without_an_exporter_there_is_no_current_parent() {
        let span = tracing::info_span!("x");
        let _entered = span.enter();
        assert!(SpanParent::current().is_none());
    }
}
