//! The `http` source: events POSTed as JSON, Flume's `JSONHandler` format.
//!
//! A request's body is a JSON array of events, each `{"headers": {"k": "v"}, "body":
//! "text"}` (both optional; header values may also be numbers or booleans, taken as
//! their text; the body is stored as UTF-8). All events of one request are delivered
//! together, to every required channel or none, and the answer says which:
//!
//! | status | when |
//! |---|---|
//! | 200 | every event committed |
//! | 400 | the body is not such an array (the message says what is wrong) |
//! | 405 | the method is not POST |
//! | 413 | the body is over 2 MiB |
//! | 415 | a `charset` other than UTF-8 |
//! | 500 | the channel refused the events for what they are (too large, …) |
//! | 503 | the channel is full or unreachable: try again later |
//!
//! Flume also treats GET as POST; Millrace answers 405.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use millrace_client::Event;
use serde_json::Value;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tracing::warn;

use super::{bind_failure, host_port, listen_tcp, ProcessorFactory, SourceError};
use crate::connection::StopSignal;
use crate::counters::{self, SourceCounters};
use crate::delivery::ChannelProcessor;

/// Flume's default `bind`.
pub const DEFAULT_BIND: &str = "0.0.0.0";
/// Flume's only built-in handler, the one Millrace implements.
pub const JSON_HANDLER_CLASS: &str = "org.apache.flume.source.http.JSONHandler";
/// Pause after a failed `accept` (out of file descriptors, …) before the next one.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// How an HTTP source is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// `bind`.
    pub bind: String,
    /// `port`.
    pub port: u16,
}

/// Why a request's body is not a list of events.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum JsonEventsError {
    /// Not JSON at all.
    #[error("Request has invalid JSON Syntax: {0}")]
    Syntax(String),
    /// JSON, but not an array.
    #[error("expected a JSON array of events, got {found}")]
    NotAnArray {
        /// The JSON type found.
        found: &'static str,
    },
    /// An element of the array is not an object.
    #[error("event {index}: expected an object with \"headers\" and \"body\", got {found}")]
    EventNotAnObject {
        /// Its position, from 0.
        index: usize,
        /// The JSON type found.
        found: &'static str,
    },
    /// `headers` is not an object of strings.
    #[error("event {index}: header {name:?} must be a string, got {found}")]
    BadHeaderValue {
        /// The event's position, from 0.
        index: usize,
        /// The header name (empty when `headers` itself is not an object).
        name: String,
        /// The JSON type found.
        found: &'static str,
    },
    /// `body` is not a string.
    #[error("event {index}: \"body\" must be a string, got {found}")]
    BadBody {
        /// The event's position, from 0.
        index: usize,
        /// The JSON type found.
        found: &'static str,
    },
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The text of a scalar, as Gson reads it into a string; `None` for null.
fn scalar_text(value: &Value) -> Result<Option<String>, &'static str> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(text.clone())),
        Value::Number(number) => Ok(Some(number.to_string())),
        Value::Bool(flag) => Ok(Some(flag.to_string())),
        other => Err(json_type(other)),
    }
}

/// Reads a request body in Flume's `JSONHandler` format.
pub fn parse_json_events(body: &[u8]) -> Result<Vec<Event>, JsonEventsError> {
    let document: Value =
        serde_json::from_slice(body).map_err(|error| JsonEventsError::Syntax(error.to_string()))?;
    let Value::Array(items) = document else {
        return Err(JsonEventsError::NotAnArray {
            found: json_type(&document),
        });
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| json_event(index, item))
        .collect()
}

fn json_event(index: usize, item: &Value) -> Result<Event, JsonEventsError> {
    let Value::Object(fields) = item else {
        return Err(JsonEventsError::EventNotAnObject {
            index,
            found: json_type(item),
        });
    };
    let body = match fields.get("body") {
        None => String::new(),
        Some(value) => scalar_text(value)
            .map_err(|found| JsonEventsError::BadBody { index, found })?
            .unwrap_or_default(),
    };
    let mut event = Event::new(body);
    match fields.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(headers)) => {
            for (name, value) in headers {
                let text = scalar_text(value).map_err(|found| JsonEventsError::BadHeaderValue {
                    index,
                    name: name.clone(),
                    found,
                })?;
                if let Some(text) = text {
                    event = event.with_header(name.clone(), text);
                }
            }
        }
        Some(other) => {
            return Err(JsonEventsError::BadHeaderValue {
                index,
                name: String::new(),
                found: json_type(other),
            })
        }
    }
    Ok(event)
}

/// What every request handler shares.
struct HttpSourceState {
    processors: ProcessorFactory,
    /// Processors not in use; a request takes one (or builds one) and puts it back.
    idle_processors: Mutex<Vec<ChannelProcessor>>,
    counters: Arc<SourceCounters>,
}

impl HttpSourceState {
    fn checkout(&self) -> ChannelProcessor {
        let idle = self
            .idle_processors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        idle.unwrap_or_else(|| self.processors.build())
    }

    fn give_back(&self, processor: ChannelProcessor) {
        self.idle_processors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(processor);
    }
}

/// Serves until `stop` is raised.
pub async fn run(
    settings: HttpSettings,
    processors: ProcessorFactory,
    counters: Arc<SourceCounters>,
    mut stop: StopSignal,
) -> Result<(), SourceError> {
    let address = host_port(&settings.bind, settings.port);
    let listener = listen_tcp(&address, "http").await?;
    let state = Arc::new(HttpSourceState {
        processors,
        idle_processors: Mutex::new(Vec::new()),
        counters: Arc::clone(&counters),
    });
    let router = Router::new()
        .fallback(receive)
        .with_state(Arc::clone(&state));
    let listener = CountingListener { listener, counters };
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move { stop.raised().await })
        .await;
    for mut processor in state
        .idle_processors
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .drain(..)
    {
        processor.close();
    }
    served.map_err(bind_failure(&address))
}

fn text_response(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

/// Whether the request names a charset other than UTF-8.
fn unsupported_charset(headers: &HeaderMap) -> Option<String> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let charset = content_type
        .split(';')
        .skip(1)
        .filter_map(|parameter| parameter.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, value)| value.trim().trim_matches('"').to_string())?;
    (!charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8"))
        .then_some(charset)
}

async fn receive(
    State(state): State<Arc<HttpSourceState>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let counters = &state.counters;
    if method != Method::POST {
        let mut response = text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not accepted: POST a JSON array of events\n"),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return response;
    }
    if let Some(charset) = unsupported_charset(&headers) {
        counters::increment(&counters.event_read_failures);
        return text_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("charset {charset:?} is not supported: send UTF-8\n"),
        );
    }
    let events = match parse_json_events(&body) {
        Ok(events) => events,
        Err(problem) => {
            counters::increment(&counters.event_read_failures);
            warn!(%problem, "bad request to the http source");
            return text_response(
                StatusCode::BAD_REQUEST,
                format!("Bad request from client. {problem}\n"),
            );
        }
    };
    counters::increment(&counters.append_batches_received);
    counters::add(&counters.events_received, events.len());
    let mut processor = state.checkout();
    let delivered = processor.deliver(&events).await;
    state.give_back(processor);
    match delivered {
        Ok(()) => {
            counters::increment(&counters.append_batches_accepted);
            StatusCode::OK.into_response()
        }
        Err(error) if error.is_transient() => {
            warn!(%error, "http source: the channel did not take the events; answered 503");
            text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("Error appending event to channel. Channel might be full. {error}\n"),
            )
        }
        Err(error) => {
            warn!(%error, "http source: the channel refused the events; answered 500");
            text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("The channel refused the events. {error}\n"),
            )
        }
    }
}

/// A TCP listener that keeps `OpenConnectionCount` up to date.
struct CountingListener {
    listener: TcpListener,
    counters: Arc<SourceCounters>,
}

impl axum::serve::Listener for CountingListener {
    type Io = CountedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    counters::increment(&self.counters.open_connections);
                    let stream = CountedStream {
                        stream,
                        counters: Arc::clone(&self.counters),
                    };
                    return (stream, peer);
                }
                Err(error) => {
                    warn!(%error, "accepting an http connection failed");
                    tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A connection counted in `OpenConnectionCount` until dropped.
struct CountedStream {
    stream: TcpStream,
    counters: Arc<SourceCounters>,
}

impl Drop for CountedStream {
    fn drop(&mut self) {
        counters::decrement(&self.counters.open_connections);
    }
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(context, buffer)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(context, bytes)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(context)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(context)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies_and_headers(events: &[Event]) -> Vec<(String, Vec<(String, String)>)> {
        events
            .iter()
            .map(|event| {
                (
                    String::from_utf8(event.body.to_vec()).unwrap(),
                    event.headers.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn flume_json_events_become_events_with_their_headers_and_utf8_bodies() {
        let events = parse_json_events(
            br#"[{"headers": {"a": "b", "c": "d"}, "body": "random_body"},
                 {"headers": {"e": "f"}, "body": "random_body2 \u00e9"}]"#,
        )
        .unwrap();
        assert_eq!(
            bodies_and_headers(&events),
            [
                (
                    "random_body".to_string(),
                    vec![("a".into(), "b".into()), ("c".into(), "d".into())]
                ),
                ("random_body2 é".to_string(), vec![("e".into(), "f".into())]),
            ]
        );
    }

    #[test]
    fn missing_headers_and_body_give_an_empty_event_and_scalars_read_as_text() {
        let events = parse_json_events(
            br#"[{}, {"headers": {"n": 5, "ok": true, "gone": null}, "body": 12}]"#,
        )
        .unwrap();
        assert_eq!(
            bodies_and_headers(&events),
            [
                (String::new(), vec![]),
                (
                    "12".to_string(),
                    vec![("n".into(), "5".into()), ("ok".into(), "true".into())]
                ),
            ]
        );
        assert!(parse_json_events(b"[]").unwrap().is_empty());
    }

    #[test]
    fn malformed_requests_say_what_is_wrong_and_where() {
        assert!(matches!(
            parse_json_events(b"[{\"body\": "),
            Err(JsonEventsError::Syntax(_))
        ));
        assert!(matches!(
            parse_json_events(b""),
            Err(JsonEventsError::Syntax(_))
        ));
        assert_eq!(
            parse_json_events(br#"{"body": "x"}"#),
            Err(JsonEventsError::NotAnArray { found: "an object" })
        );
        assert_eq!(
            parse_json_events(br#"[{"body": "x"}, "y"]"#),
            Err(JsonEventsError::EventNotAnObject {
                index: 1,
                found: "a string"
            })
        );
        let nested = parse_json_events(br#"[{"headers": {"h": {"x": 1}}}]"#).unwrap_err();
        assert_eq!(
            nested.to_string(),
            "event 0: header \"h\" must be a string, got an object"
        );
        assert_eq!(
            parse_json_events(br#"[{"body": ["x"]}]"#),
            Err(JsonEventsError::BadBody {
                index: 0,
                found: "an array"
            })
        );
    }

    #[test]
    fn only_a_charset_other_than_utf8_is_refused() {
        let mut headers = HeaderMap::new();
        assert_eq!(unsupported_charset(&headers), None);
        headers.insert(
            header::CONTENT_TYPE,
            "application/json; charset=UTF-8".parse().unwrap(),
        );
        assert_eq!(unsupported_charset(&headers), None);
        headers.insert(
            header::CONTENT_TYPE,
            "application/json; charset=\"UTF-16\"".parse().unwrap(),
        );
        assert_eq!(unsupported_charset(&headers), Some("UTF-16".to_string()));
    }
}
