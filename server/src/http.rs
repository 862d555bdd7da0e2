//! The HTTP listener (`server.http`): `/metrics`, `/metrics/prometheus`, `/health`.
//!
//! Handlers read snapshots (atomics, a queue length under a short lock), so they run on
//! the runtime's threads without blocking it.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::adapters::AdapterStatuses;
use crate::health::health_report;
use crate::metrics::{metrics_json, prometheus_text};
use crate::registry::ChannelRegistry;
use crate::shutdown::{ShutdownPhase, ShutdownWatcher};

/// Flume's content type for `/metrics`.
const JSON_CONTENT_TYPE: &str = "application/json;charset=utf-8";
/// The exposition format prometheus-client writes.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
const INDEX_TEXT: &str = "channeld\n\
    GET /metrics             channel metrics, Flume's JSON shape\n\
    GET /metrics/prometheus  the same, Prometheus text\n\
    GET /health              200 when every channel is open, else 503 with the reasons\n";

/// What the handlers read.
pub struct HttpState {
    /// The channels.
    pub registry: Arc<ChannelRegistry>,
    /// The server's stop phase, for `/health`.
    pub shutdown: ShutdownWatcher,
    /// The supervised sources and sinks, for `/health`.
    pub adapters: Arc<AdapterStatuses>,
}

/// The routes.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/metrics/prometheus", get(prometheus))
        .route("/health", get(health))
        .with_state(state)
}

/// Serves until `stop` reaches [`ShutdownPhase::Aborting`], then finishes the requests in
/// flight.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>) -> std::io::Result<()> {
    let mut stop = state.shutdown.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { stop.reached(ShutdownPhase::Aborting).await })
        .await
}

async fn index() -> Response {
    ([(CONTENT_TYPE, TEXT_CONTENT_TYPE)], INDEX_TEXT).into_response()
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    let body = metrics_json(&state.registry).to_string();
    ([(CONTENT_TYPE, JSON_CONTENT_TYPE)], body).into_response()
}

async fn prometheus(State(state): State<Arc<HttpState>>) -> Response {
    match prometheus_text(&state.registry) {
        Ok(body) => ([(CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(CONTENT_TYPE, TEXT_CONTENT_TYPE)],
            format!("could not encode metrics: {error}\n"),
        )
            .into_response(),
    }
}

async fn health(State(state): State<Arc<HttpState>>) -> Response {
    let adapters = state.adapters.snapshot(Instant::now());
    let report = health_report(&state.registry, state.shutdown.phase(), &adapters);
    let status = if report.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(CONTENT_TYPE, JSON_CONTENT_TYPE)],
        report.body.to_string(),
    )
        .into_response()
}
