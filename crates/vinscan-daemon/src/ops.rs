//! The operations endpoint on `axum`: `GET /metrics` (Prometheus text), `/healthz` (the process
//! serves requests), `/readyz` (200 while [`Readiness::is_ready`], else 503 with the checks).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;
use crate::readiness::Readiness;

#[derive(Clone)]
struct Ops {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

/// The endpoint's routes.
pub fn router(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(Ops { metrics, readiness })
}

/// Serves the endpoint on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>, readiness: Arc<Readiness>) {
    if let Err(e) = axum::serve(listener, router(metrics, readiness)).await {
        tracing::error!(error = %e, "operations endpoint stopped");
    }
}

async fn metrics_text(State(ops): State<Ops>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ops.metrics.encode(),
    )
}

async fn ready(State(ops): State<Ops>) -> impl IntoResponse {
    let checks = ops.readiness.describe();
    if ops.readiness.is_ready() {
        (StatusCode::OK, format!("ready {checks}\n"))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready {checks}\n"))
    }
}
