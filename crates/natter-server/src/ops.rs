//! Operations endpoints: `/healthz`, `/readyz`, `/metrics`, and `/openapi.json`, the OpenAPI
//! document of every HTTP route (these and natter-http's).

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use natter_core::ChatCore;
use natter_core::bus::Bus;
use natter_core::telemetry;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Clone)]
pub struct Ops {
    core: ChatCore,
    bus: Arc<dyn Bus>,
    metrics: PrometheusHandle,
    /// The whole server's OpenAPI document, serialized once the routers are assembled.
    document: Arc<OnceLock<Bytes>>,
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
        .set_buckets_for_metric(
            Matcher::Full(natter_store_sqlite::telemetry::APPENDS_PER_COMMIT.into()),
            natter_store_sqlite::telemetry::BUCKETS,
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
            document: Arc::default(),
        })
    }

    /// The routes and their part of the OpenAPI document (from the same `routes!` lists).
    pub fn routes(self) -> (Router, OpenApi) {
        let (router, doc) = OpenApiRouter::new()
            .routes(routes!(healthz))
            .routes(routes!(readyz))
            .routes(routes!(metrics_text))
            .routes(routes!(openapi_json))
            .split_for_parts();
        (router.with_state(self), doc)
    }

    /// What `/openapi.json` serves: the document of every route the server mounts.
    pub fn set_document(&self, doc: &OpenApi) -> anyhow::Result<()> {
        let bytes = Bytes::from(doc.to_pretty_json()?);
        // A second call (none today) keeps the first document.
        let _ = self.document.set(bytes);
        Ok(())
    }
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    operation_id = "ops_healthz",
    summary = "Liveness: the process serves",
    responses((status = 200, description = "Alive", body = natter_http::openapi::Health)),
)]

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// 200 when the store, the bus and the coordinator all answer, else 503; either way the
/// body says which backend failed, so an operator sees whether it is the database or Redis.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "ops",
    operation_id = "ops_readyz",
    summary = "Readiness: the store, the bus and the coordinator answer",
    responses(
        (status = 200, description = "Ready", body = natter_http::openapi::Readiness),
        (status = 503, description = "A backend is not reachable; `error` says which", body = natter_http::openapi::Readiness),
    ),
)]
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

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    operation_id = "ops_metrics",
    summary = "Prometheus metrics (text format 0.0.4)",
    responses((status = 200, description = "The metrics", content_type = "text/plain", body = String)),
)]
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

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    operation_id = "ops_openapi",
    summary = "This OpenAPI 3.1 document",
    responses((status = 200, description = "The document", content_type = "application/json", body = serde_json::Value)),
)]
async fn openapi_json(State(ops): State<Ops>) -> Response {
    match ops.document.get() {
        Some(bytes) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            bytes.clone(),
        )
            .into_response(),
        // Only a router used before `Server::build` finished could get here.
        None => natter_http::error::ApiError::new(
            natter_protocol::ErrorCode::Unavailable,
            "the OpenAPI document is not ready",
        )
        .into_response(),
    }
}
