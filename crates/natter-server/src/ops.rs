//! Operations endpoints: `/healthz`, `/readyz`, `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use natter_core::ChatCore;
use natter_core::bus::Bus;
use natter_core::telemetry;

#[derive(Clone)]
pub struct Ops {
    core: ChatCore,
    bus: Arc<dyn Bus>,
    metrics: PrometheusHandle,
}

/// One recorder per process; a second server in the same process shares it.
fn recorder() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let seconds = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)?
        // CSAT ratings are 1 to 5: one bucket per rating, a real histogram.
        .set_buckets_for_metric(
            Matcher::Full(natter_core::telemetry::CSAT_RATING.into()),
            &[1.0, 2.0, 3.0, 4.0, 5.0],
        )?
        .install_recorder()?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

impl Ops {
    pub fn new(core: ChatCore, bus: Arc<dyn Bus>) -> anyhow::Result<Self> {
        Ok(Self {
            core,
            bus,
            metrics: recorder()?,
        })
    }

    pub fn router(self) -> axum::Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics_text))
            .with_state(self)
    }
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// 200 when the store, the bus and the coordinator all answer, else 503; either way the
/// body says which backend failed, so an operator sees whether it is the database or Redis.
async fn readyz(State(ops): State<Ops>) -> impl IntoResponse {
    let checks = ops.core.readiness().await;
    let ready = checks.iter().all(|(_, r)| r.is_ok());
    let backends: serde_json::Map<String, serde_json::Value> = checks
        .into_iter()
        .map(|(name, r)| {
            let v = match r {
                Ok(()) => serde_json::json!({"status": "ok"}),
                Err(e) => serde_json::json!({"status": "unavailable", "message": e.to_string()}),
            };
            (name.to_owned(), v)
        })
        .collect();
    if ready {
        (
            StatusCode::OK,
            Json(serde_json::json!({"status": "ready", "backends": backends})),
        )
    } else {
        let failed: Vec<&str> = backends
            .iter()
            .filter(|(_, v)| v["status"] != "ok")
            .map(|(k, _)| k.as_str())
            .collect();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "status": "unavailable",
                "backends": backends,
                "error": {"code": "unavailable", "message": format!("not reachable: {}", failed.join(", "))},
            })),
        )
    }
}

async fn metrics_text(State(ops): State<Ops>) -> impl IntoResponse {
    metrics::gauge!(telemetry::CHATS_ACTIVE).set(ops.bus.local_channels() as f64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        ops.metrics.render(),
    )
}
