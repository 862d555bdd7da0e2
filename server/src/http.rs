//! The HTTP listener (`server.http`): `/metrics`, `/metrics/prometheus`, `/health`.
//!
//! Handlers read snapshots (atomics, a queue length under a short lock), so they run on
//! the runtime's threads without blocking it. The listener runs hyper's HTTP/1
//! connections itself ([`serve`]): it caps them, closes the oldest idle one when a new
//! connection needs a place, and times out request heads, so a flood of idle or
//! half-sent connections cannot keep `/health` from answering.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tower_service::Service;
use tracing::{debug, warn};

use crate::adapters::AdapterStatuses;
use crate::descriptors::{semaphore_permits as permits, HTTP_CONNECTIONS_OVER_THE_CAP};
use crate::health::health_report;
use crate::metrics::{metrics_json, prometheus_text};
use crate::registry::ChannelRegistry;
use crate::shutdown::{ShutdownPhase, ShutdownWatcher};
use crate::status::{join_openmetrics, operator_prometheus_text, status_json, STATUS_PAGE_HTML};

/// Flume's content type for `/metrics`.
const JSON_CONTENT_TYPE: &str = "application/json;charset=utf-8";
/// The exposition format prometheus-client writes.
const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
const HTML_CONTENT_TYPE_NAME: &str = "text/html";
const HTML_CONTENT_TYPE: &str = "text/html; charset=utf-8";
/// The page may load nothing from elsewhere and talk only to this listener; its own
/// inline script and style are allowed.
const STATUS_PAGE_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; \
    script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; \
    img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const INDEX_TEXT: &str = "channeld\n\
    GET /                    the status page (to a browser; this list to other clients)\n\
    GET /metrics             channel metrics, Flume's JSON shape\n\
    GET /metrics/prometheus  the same, Prometheus text\n\
    GET /health              200 when every channel is open, else 503 with the reasons\n\
    GET /status              commit latency and free space, for the status page\n";

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
        .route("/status", get(status))
        .with_state(state)
}

/// The HTTP listener's bounds (`server.httpMaxConnections`, `server.httpHeaderTimeoutMs`).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Most connections served at once.
    pub max_connections: u64,
    /// A request head must be complete within this time of the connection's accept (or
    /// of its previous answer, for a kept-alive connection); else the connection closes.
    pub header_timeout: Duration,
}

/// How long connections get to finish their requests once the server aborts.
const CONNECTION_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// After a failed `accept` (EMFILE), wait this long before the next.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// The open HTTP connections, for closing the oldest idle one when a new connection
/// needs its place.
#[derive(Default)]
struct Connections {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, OpenConnection>>,
}

struct OpenConnection {
    /// Since when it waits for a request (`None` while one is being answered).
    idle_since: Option<Instant>,
    /// Told to close, to make room.
    evict: Arc<Notify>,
}

impl Connections {
    fn register(&self) -> (u64, Arc<Notify>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let evict = Arc::new(Notify::new());
        self.open.lock().insert(
            id,
            OpenConnection {
                idle_since: Some(Instant::now()),
                evict: Arc::clone(&evict),
            },
        );
        (id, evict)
    }

    fn deregister(&self, id: u64) {
        self.open.lock().remove(&id);
    }

    fn set_idle(&self, id: u64, idle: bool) {
        if let Some(connection) = self.open.lock().get_mut(&id) {
            connection.idle_since = idle.then(Instant::now);
        }
    }

    /// Tells the connection that has waited longest for a request to close, and takes
    /// it off the candidates. False when every connection is answering a request.
    fn evict_oldest_idle(&self) -> bool {
        let mut open = self.open.lock();
        let oldest = open
            .iter()
            .filter_map(|(id, connection)| connection.idle_since.map(|since| (since, *id)))
            .min();
        let Some((_, id)) = oldest else {
            return false;
        };
        if let Some(connection) = open.get_mut(&id) {
            connection.idle_since = None;
            connection.evict.notify_one();
        }
        true
    }
}

/// Marks a connection busy while a request is answered.
struct Answering {
    connections: Arc<Connections>,
    id: u64,
}

impl Answering {
    fn start(connections: &Arc<Connections>, id: u64) -> Self {
        connections.set_idle(id, false);
        Answering {
            connections: Arc::clone(connections),
            id,
        }
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.connections.set_idle(self.id, true);
    }
}

/// Serves until `stop` reaches [`ShutdownPhase::Aborting`], then lets the requests in
/// flight finish (for at most `CONNECTION_STOP_TIMEOUT`).
///
/// Bounded against hostile clients: at most `max_connections` connections are served
/// (one more may wait, accepted, for a place); a new connection that finds every place
/// taken closes the one that has waited longest for a request (a connection answering
/// a request is never closed), so idle or half-sent connections cannot lock `/health`
/// out; and a request head must be complete within `header_timeout`.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    limits: HttpLimits,
) -> std::io::Result<()> {
    let mut stop = state.shutdown.clone();
    let routes = router(state);
    let connections = Arc::new(Connections::default());
    let places = Arc::new(Semaphore::new(permits(limits.max_connections)));
    let sockets = Arc::new(Semaphore::new(permits(
        limits.max_connections + HTTP_CONNECTIONS_OVER_THE_CAP,
    )));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.reached(ShutdownPhase::Aborting) => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            socket = Arc::clone(&sockets).acquire_owned() => {
                let socket = socket.expect("the socket semaphore is never closed");
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    () = stop.reached(ShutdownPhase::Aborting) => break,
                };
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(error) => {
                        warn!(%error, "accepting an HTTP connection failed");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                        continue;
                    }
                };
                let place = match Arc::clone(&places).try_acquire_owned() {
                    Ok(place) => place,
                    Err(_) => {
                        connections.evict_oldest_idle();
                        tokio::select! {
                            place = Arc::clone(&places).acquire_owned() => {
                                place.expect("the place semaphore is never closed")
                            }
                            () = stop.reached(ShutdownPhase::Aborting) => break,
                        }
                    }
                };
                tasks.spawn(serve_connection(
                    stream,
                    routes.clone(),
                    Arc::clone(&connections),
                    limits.header_timeout,
                    stop.clone(),
                    (place, socket),
                ));
            }
        }
    }
    let _ = tokio::time::timeout(CONNECTION_STOP_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// Serves one connection until it closes, times out, is evicted or the server aborts;
/// `places` are released when it ends.
async fn serve_connection<Places: Send>(
    stream: TcpStream,
    routes: Router,
    connections: Arc<Connections>,
    header_timeout: Duration,
    mut stop: ShutdownWatcher,
    places: Places,
) {
    let (id, evict) = connections.register();
    let service = {
        let connections = Arc::clone(&connections);
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let answering = Answering::start(&connections, id);
            let mut routes = routes.clone();
            async move {
                let response = routes.call(request).await;
                drop(answering);
                response
            }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        served = connection.as_mut() => {
            if let Err(error) = served {
                debug!(%error, "HTTP connection ended with an error");
            }
        }
        () = evict.notified() => debug!("closing an idle HTTP connection to make room"),
        () = stop.reached(ShutdownPhase::Aborting) => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(CONNECTION_STOP_TIMEOUT, connection).await;
        }
    }
    connections.deregister(id);
    drop(places);
}

/// The status page to a browser (it asks for HTML), the list of endpoints to others.
async fn index(headers: HeaderMap) -> Response {
    let wants_html = headers
        .get(ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains(HTML_CONTENT_TYPE_NAME));
    if wants_html {
        (
            [
                (CONTENT_TYPE, HTML_CONTENT_TYPE),
                (CONTENT_SECURITY_POLICY, STATUS_PAGE_CONTENT_SECURITY_POLICY),
            ],
            STATUS_PAGE_HTML,
        )
            .into_response()
    } else {
        ([(CONTENT_TYPE, TEXT_CONTENT_TYPE)], INDEX_TEXT).into_response()
    }
}

/// `statvfs` may block (a hung network filesystem): off the runtime's threads.
async fn status(State(state): State<Arc<HttpState>>) -> Response {
    let registry = Arc::clone(&state.registry);
    match tokio::task::spawn_blocking(move || status_json(&registry)).await {
        Ok(body) => ([(CONTENT_TYPE, JSON_CONTENT_TYPE)], body.to_string()).into_response(),
        Err(error) => internal_error(format!("could not read the status: {error}")),
    }
}

fn internal_error(message: String) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(CONTENT_TYPE, TEXT_CONTENT_TYPE)],
        format!("{message}\n"),
    )
        .into_response()
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    let body = metrics_json(&state.registry).to_string();
    ([(CONTENT_TYPE, JSON_CONTENT_TYPE)], body).into_response()
}

async fn prometheus(State(state): State<Arc<HttpState>>) -> Response {
    let adapters = state.adapters.snapshot(Instant::now());
    let registry = Arc::clone(&state.registry);
    let operator =
        tokio::task::spawn_blocking(move || operator_prometheus_text(&registry, &adapters)).await;
    let operator = match operator {
        Ok(Ok(text)) => text,
        Ok(Err(error)) => return internal_error(format!("could not encode metrics: {error}")),
        Err(error) => return internal_error(format!("could not read the metrics: {error}")),
    };
    match prometheus_text(&state.registry).map(|text| join_openmetrics(&text, &operator)) {
        Ok(body) => ([(CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body).into_response(),
        Err(error) => internal_error(format!("could not encode metrics: {error}")),
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
