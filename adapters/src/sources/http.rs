//! The `http` source: events POSTed as JSON, Flume's `JSONHandler` format.
//!
//! A request's body is a JSON array of events, each `{"headers": {"k": "v"}, "body":
//! "text"}` (both optional; header values may also be numbers or booleans, taken as
//! their text; the body is stored as UTF-8). All events of one request are delivered
//! together, in one transaction per required channel, all or none, and the answer says
//! which:
//!
//! | status | when |
//! |---|---|
//! | 200 | every event committed |
//! | 400 | the body is not such an array (the message says what is wrong) |
//! | 405 | the method is not POST |
//! | 408 | the body did not arrive within `requestTimeout` |
//! | 413 | the body is over `maxBodyBytes` (refused from `Content-Length` before it is read), parsing it would take more than `maxBytesInFlight`, or it holds more events than a channel's `transactionCapacity` (header `Millrace-Max-Events` names the limit) |
//! | 415 | a `charset` other than UTF-8 |
//! | 500 | the channel refused the events for what they are (too large, …) |
//! | 503 | the channel is full or unreachable, or the source is at `maxConcurrentRequests` or `maxBytesInFlight` for longer than `requestTimeout`: try again later |
//!
//! Flume also treats GET as POST; Millrace answers 405.
//!
//! ## Bounds (the peer may be hostile)
//!
//! - At most `maxConnections` connections; more are closed as they arrive. A connection
//!   silent for `ServerConnector.idleTimeout` between requests is closed, and one whose
//!   headers and body take longer than `requestTimeout` gets 408 and is closed.
//! - At most `maxConcurrentRequests` requests are read, parsed and delivered at once;
//!   others wait (up to `requestTimeout`) before their body is read.
//! - Memory: a request reserves its body (`Content-Length`, or `maxBodyBytes` when
//!   chunked) from a budget of `maxBytesInFlight` before reading it, then what its parsed
//!   events will take before building them. The body is parsed straight into events
//!   (no intermediate JSON tree): a first pass only counts events and text bytes, so
//!   the reservation is exact-ish before anything is built.
//! - When the last request in flight ends after at least 8 MiB of bodies, freed memory
//!   is handed back to the system (`malloc_trim`; glibc may keep it otherwise), so a
//!   burst does not leave the agent large.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use millrace_client::Event;
use millrace_config::values::{self, Expected};
use millrace_config::ComponentSettings;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::Deserializer as _;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::{host_port, listen_tcp, refuse_tls, ProcessorFactory, SourceError, ACCEPT_RETRY_DELAY};
use crate::connection::StopSignal;
use crate::counters::{self, SourceCounters};
use crate::delivery::DeliveryError;

/// Flume's default `bind`.
pub const DEFAULT_BIND: &str = "0.0.0.0";
/// Flume's only built-in handler, the one Millrace implements.
pub const JSON_HANDLER_CLASS: &str = "org.apache.flume.source.http.JSONHandler";
/// Default `maxConnections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default `ServerConnector.idleTimeout` (Jetty's, which Flume's HTTP source uses).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_millis(30_000);
/// Default `requestTimeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_millis(30_000);
/// Default `maxBodyBytes` (the limit Millrace always had).
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Default `maxConcurrentRequests`.
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 8;
/// Default `maxBytesInFlight`.
pub const DEFAULT_MAX_BYTES_IN_FLIGHT: usize = 64 * 1024 * 1024;
/// What one parsed event costs besides its text: the `Event` (headers vector and body
/// handle), its slot in the batch vector (which may be half empty), the allocator's
/// overhead for its body, and its copy in the encoded put.
pub const PARSED_EVENT_OVERHEAD_BYTES: usize = 192;
/// The memory budget counts in KiB (a semaphore's permits are `u32`).
const BUDGET_UNIT_BYTES: usize = 1024;
/// Body bytes read after which the end of the last request in flight hands freed memory
/// back (`malloc_trim` walks the whole heap: not after every small request).
const TRIM_AFTER_BODY_BYTES: usize = 8 * 1024 * 1024;
/// How often a connection's idleness is checked.
const IDLE_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// Header naming a channel's transaction limit on a 413 for too many events.
pub const MAX_EVENTS_HEADER: &str = "millrace-max-events";

/// The bounds of an HTTP source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// `maxConnections`.
    pub max_connections: usize,
    /// `ServerConnector.idleTimeout`: silence between requests before a connection is
    /// closed.
    pub idle_timeout: Duration,
    /// `requestTimeout`: time for a request's headers and body to arrive.
    pub request_timeout: Duration,
    /// `maxBodyBytes`.
    pub max_body_bytes: usize,
    /// `maxConcurrentRequests`.
    pub max_concurrent_requests: usize,
    /// `maxBytesInFlight`.
    pub max_bytes_in_flight: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            max_bytes_in_flight: DEFAULT_MAX_BYTES_IN_FLIGHT,
        }
    }
}

/// How an HTTP source is configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// `bind`.
    pub bind: String,
    /// `port`.
    pub port: u16,
    /// Its bounds.
    pub limits: HttpLimits,
}

/// The http source also reads the older names of two of Flume's TLS settings, and hands
/// the keys under `SslContextFactory.` to Jetty's TLS object.
const EXTRA_TLS_SETTINGS: &[&str] = &["keystorePassword", "excludeProtocols", "SslContextFactory."];

/// Flume's Jetty key for the idle timeout of an HTTP connection, the one Jetty key the
/// http source honours.
const IDLE_TIMEOUT_KEY: &str = "ServerConnector.idleTimeout";

/// Flume's http source hands the keys under these prefixes to the Jetty objects they
/// are named after (`FlumeBeanConfigurator`).
const JETTY_SETTING_PREFIXES: &[&str] = &[
    "QueuedThreadPool.",
    "HttpConfiguration.",
    "ServerConnector.",
];

impl HttpSettings {
    /// Reads an http source's keys (Flume's `HTTPSource` with its `JSONHandler`).
    pub(crate) fn read(keys: &mut ComponentSettings<'_>) -> Option<HttpSettings> {
        let bind = keys.text_or("bind", DEFAULT_BIND);
        let port = keys.port("port");
        keys.parsed_or("handler", (), |value| {
            if value.trim() == JSON_HANDLER_CLASS {
                Ok(())
            } else {
                Err(Expected::new(format!(
                    "{JSON_HANDLER_CLASS} (the only handler Millrace has; it runs no Java \
                     classes)"
                )))
            }
        });
        for (rest, _, _) in keys.with_prefix("handler.") {
            keys.conflict(
                &format!("handler.{rest}"),
                "the JSON handler takes no settings; remove this key",
            );
        }
        refuse_tls(keys, &["ssl", "enableSSL"], EXTRA_TLS_SETTINGS);
        let as_usize = |value: u64| usize::try_from(value).unwrap_or(usize::MAX);
        let max_connections = keys.count_or("maxConnections", DEFAULT_MAX_CONNECTIONS as u64);
        let idle_timeout = keys.parsed_or(
            IDLE_TIMEOUT_KEY,
            DEFAULT_IDLE_TIMEOUT,
            values::positive_milliseconds,
        );
        let request_timeout = keys.parsed_or(
            "requestTimeout",
            DEFAULT_REQUEST_TIMEOUT,
            values::positive_milliseconds,
        );
        let max_body_bytes = keys.count_or("maxBodyBytes", DEFAULT_MAX_BODY_BYTES as u64);
        let max_concurrent_requests = keys.count_or(
            "maxConcurrentRequests",
            DEFAULT_MAX_CONCURRENT_REQUESTS as u64,
        );
        let max_bytes_in_flight = keys.parsed_or(
            "maxBytesInFlight",
            DEFAULT_MAX_BYTES_IN_FLIGHT as u64,
            |value| {
                let bytes = values::positive_integer(value)?;
                if bytes > u64::from(u32::MAX) {
                    return Err(Expected::new("a positive number of bytes up to 4294967295"));
                }
                Ok(bytes)
            },
        );
        if max_body_bytes > max_bytes_in_flight {
            keys.conflict(
                "maxBodyBytes",
                format!(
                    "expected at most maxBytesInFlight ({max_bytes_in_flight}), got \
                     {max_body_bytes}"
                ),
            );
        }
        for jetty_part in JETTY_SETTING_PREFIXES {
            for (rest, _, _) in keys.with_prefix(jetty_part) {
                let key = format!("{jetty_part}{rest}");
                if key != IDLE_TIMEOUT_KEY {
                    keys.accept_with_warning(
                        &key,
                        "tunes Flume's Jetty server; Millrace's http source is not Jetty, so \
                         it has no effect",
                    );
                }
            }
        }
        Some(HttpSettings {
            bind,
            port: port?,
            limits: HttpLimits {
                max_connections: as_usize(max_connections),
                idle_timeout,
                request_timeout,
                max_body_bytes: as_usize(max_body_bytes),
                max_concurrent_requests: as_usize(max_concurrent_requests),
                max_bytes_in_flight: as_usize(max_bytes_in_flight),
            },
        })
    }
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

/// One JSON value where text is expected, as Gson reads it into a string.
enum Scalar<'de> {
    Null,
    Text(Cow<'de, str>),
    /// An array or an object: its JSON type.
    Composite(&'static str),
}

impl<'de> Scalar<'de> {
    /// The text; `Err(json type)` for an array or object.
    fn text(self) -> Result<Option<Cow<'de, str>>, &'static str> {
        match self {
            Scalar::Null => Ok(None),
            Scalar::Text(text) => Ok(Some(text)),
            Scalar::Composite(found) => Err(found),
        }
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, value: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Owned(value.to_string())))
    }
    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Owned(value.to_string())))
    }
    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Owned(value.to_string())))
    }
    fn visit_f64<E>(self, value: f64) -> Result<Self::Value, E> {
        let text = serde_json::Number::from_f64(value)
            .map_or_else(|| value.to_string(), |n| n.to_string());
        Ok(Scalar::Text(Cow::Owned(text)))
    }
    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Borrowed(value)))
    }
    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Owned(value.to_string())))
    }
    fn visit_string<E>(self, value: String) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Owned(value)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(Scalar::Composite("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Scalar::Composite("an object"))
    }
}

struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// A map key, borrowed when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        match deserializer.deserialize_str(ScalarVisitor)? {
            Scalar::Text(text) => Ok(text),
            _ => Err(de::Error::custom("a key that is not a string")),
        }
    }
}

/// Header names and values as parsed, borrowed from the body where they can be.
type ParsedHeaders<'de> = Vec<(Cow<'de, str>, Cow<'de, str>)>;

/// One event as parsed, its text borrowed from the body where it can be.
struct ParsedEvent<'de> {
    headers: ParsedHeaders<'de>,
    body: Cow<'de, str>,
}

/// Receives each parsed event: counts them, or builds [`Event`]s.
trait EventSink {
    fn accept(&mut self, event: ParsedEvent<'_>);
}

/// What a body holds, from a counting pass: the events and their text bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BodySurvey {
    /// Events in the array.
    pub events: usize,
    /// Bytes of their bodies, header names and values once decoded.
    pub text_bytes: usize,
}

impl BodySurvey {
    /// The memory the parsed events take, estimated from above.
    pub fn parsed_bytes(&self) -> usize {
        self.text_bytes
            .saturating_add(self.events.saturating_mul(PARSED_EVENT_OVERHEAD_BYTES))
    }
}

impl EventSink for BodySurvey {
    fn accept(&mut self, event: ParsedEvent<'_>) {
        self.events += 1;
        let header_bytes: usize = event
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        self.text_bytes += event.body.len() + header_bytes;
    }
}

impl EventSink for Vec<Event> {
    fn accept(&mut self, event: ParsedEvent<'_>) {
        let mut built = Event::new(Bytes::from(event.body.into_owned()));
        built.headers = event
            .headers
            .into_iter()
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        self.push(built);
    }
}

/// A visitor that reads arrays, objects and null, and names the JSON type of anything
/// else; [`ByJsonType`] turns it into a serde visitor.
trait JsonTypeVisitor<'de>: Sized {
    type Value;
    /// An array.
    fn array<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error>;
    /// An object.
    fn object<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error>;
    /// Any other JSON type (`null`, `a boolean`, …).
    fn other<E: de::Error>(self, found: &'static str) -> Result<Self::Value, E>;
    /// `null`: another type unless the visitor says otherwise.
    fn null<E: de::Error>(self) -> Result<Self::Value, E> {
        self.other("null")
    }
}

struct ByJsonType<V>(V);

impl<'de, V: JsonTypeVisitor<'de>> Visitor<'de> for ByJsonType<V> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("JSON")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.array(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.object(map)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.0.null()
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        self.0.other("a boolean")
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        self.0.other("a number")
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        self.0.other("a number")
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        self.0.other("a number")
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        self.0.other("a string")
    }
}

/// Reads the top-level array, handing each event to the sink; a typed problem found on
/// the way is kept in `problem` (serde's error only carries text).
struct EventsVisitor<'sink, S> {
    sink: &'sink mut S,
    problem: &'sink mut Option<JsonEventsError>,
}

fn abort<E: de::Error>(problem: &mut Option<JsonEventsError>, found: JsonEventsError) -> E {
    *problem = Some(found);
    E::custom("invalid event")
}

impl<'de, S: EventSink> JsonTypeVisitor<'de> for EventsVisitor<'_, S> {
    type Value = ();

    fn array<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while let Some(event) = seq.next_element_seed(EventSeed {
            index,
            problem: &mut *self.problem,
        })? {
            self.sink.accept(event);
            index += 1;
        }
        Ok(())
    }

    fn object<A: MapAccess<'de>>(self, _map: A) -> Result<(), A::Error> {
        self.other("an object")
    }

    fn other<E: de::Error>(self, found: &'static str) -> Result<(), E> {
        Err(abort(self.problem, JsonEventsError::NotAnArray { found }))
    }
}

struct EventSeed<'problem> {
    index: usize,
    problem: &'problem mut Option<JsonEventsError>,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = ParsedEvent<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(ByJsonType(self))
    }
}

impl<'de> JsonTypeVisitor<'de> for EventSeed<'_> {
    type Value = ParsedEvent<'de>;

    fn object<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let index = self.index;
        let mut event = ParsedEvent {
            headers: Vec::new(),
            body: Cow::Borrowed(""),
        };
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key.as_ref() {
                "body" => {
                    event.body = match map.next_value_seed(ScalarSeed)?.text() {
                        Ok(text) => text.unwrap_or_default(),
                        Err(found) => {
                            return Err(abort(
                                self.problem,
                                JsonEventsError::BadBody { index, found },
                            ))
                        }
                    };
                }
                "headers" => {
                    event.headers = map.next_value_seed(HeadersSeed {
                        index,
                        problem: &mut *self.problem,
                    })?;
                }
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(event)
    }

    fn array<A: SeqAccess<'de>>(self, _seq: A) -> Result<Self::Value, A::Error> {
        self.other("an array")
    }

    fn other<E: de::Error>(self, found: &'static str) -> Result<Self::Value, E> {
        let index = self.index;
        Err(abort(
            self.problem,
            JsonEventsError::EventNotAnObject { index, found },
        ))
    }
}

/// An event's `headers`: an object of scalars (null values left out; a repeated name
/// keeps its last value), or null.
struct HeadersSeed<'problem> {
    index: usize,
    problem: &'problem mut Option<JsonEventsError>,
}

impl<'de> DeserializeSeed<'de> for HeadersSeed<'_> {
    type Value = ParsedHeaders<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(ByJsonType(self))
    }
}

impl<'de> JsonTypeVisitor<'de> for HeadersSeed<'_> {
    type Value = ParsedHeaders<'de>;

    fn null<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn object<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut headers: ParsedHeaders<'de> = Vec::new();
        while let Some(name) = map.next_key_seed(KeySeed)? {
            let value = match map.next_value_seed(ScalarSeed)?.text() {
                Ok(value) => value,
                Err(found) => {
                    let index = self.index;
                    return Err(abort(
                        self.problem,
                        JsonEventsError::BadHeaderValue {
                            index,
                            name: name.into_owned(),
                            found,
                        },
                    ));
                }
            };
            headers.retain(|(existing, _)| *existing != name);
            if let Some(value) = value {
                headers.push((name, value));
            }
        }
        Ok(headers)
    }

    fn array<A: SeqAccess<'de>>(self, _seq: A) -> Result<Self::Value, A::Error> {
        self.other("an array")
    }

    fn other<E: de::Error>(self, found: &'static str) -> Result<Self::Value, E> {
        let index = self.index;
        Err(abort(
            self.problem,
            JsonEventsError::BadHeaderValue {
                index,
                name: String::new(),
                found,
            },
        ))
    }
}

/// Streams the events of `body` into `sink`.
fn read_json_events<S: EventSink>(body: &[u8], sink: &mut S) -> Result<(), JsonEventsError> {
    let mut problem = None;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let outcome = deserializer
        .deserialize_any(ByJsonType(EventsVisitor {
            sink,
            problem: &mut problem,
        }))
        .and_then(|()| deserializer.end());
    match (outcome, problem) {
        (_, Some(problem)) => Err(problem),
        (Err(error), None) => Err(JsonEventsError::Syntax(error.to_string())),
        (Ok(()), None) => Ok(()),
    }
}

/// Counts the events of a body and their text bytes, checking it fully.
pub fn survey_json_events(body: &[u8]) -> Result<BodySurvey, JsonEventsError> {
    let mut survey = BodySurvey::default();
    read_json_events(body, &mut survey)?;
    Ok(survey)
}

/// Reads a request body in Flume's `JSONHandler` format.
pub fn parse_json_events(body: &[u8]) -> Result<Vec<Event>, JsonEventsError> {
    let mut events = Vec::new();
    read_json_events(body, &mut events)?;
    Ok(events)
}

/// Hands freed memory back to the system. glibc's allocator keeps the memory of freed
/// large blocks in its arenas for reuse; after a burst of requests that is tens of
/// megabytes the agent would hold for good.
#[allow(unsafe_code)]
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no
    // pointers and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What every request handler shares.
struct HttpSourceState {
    processors: ProcessorFactory,
    counters: Arc<SourceCounters>,
    limits: HttpLimits,
    /// `maxConcurrentRequests` permits.
    requests: Arc<Semaphore>,
    /// `maxBytesInFlight`, in [`BUDGET_UNIT_BYTES`].
    budget: Arc<Semaphore>,
    /// Requests being handled now.
    in_flight: AtomicUsize,
    /// Body bytes read since freed memory was last handed back.
    body_bytes_since_trim: AtomicUsize,
}

/// Ends a request's accounting when dropped (also when its connection goes away).
struct InFlight<'state> {
    state: &'state HttpSourceState,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let last = self.state.in_flight.fetch_sub(1, Ordering::AcqRel) == 1;
        if last && self.state.body_bytes_since_trim.load(Ordering::Acquire) >= TRIM_AFTER_BODY_BYTES
        {
            self.state.body_bytes_since_trim.store(0, Ordering::Release);
            release_freed_memory();
        }
    }
}

fn budget_units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(BUDGET_UNIT_BYTES)).unwrap_or(u32::MAX)
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
    let limits = settings.limits;
    let state = Arc::new(HttpSourceState {
        processors,
        counters: Arc::clone(&counters),
        limits,
        requests: Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
        budget: Arc::new(Semaphore::new(
            budget_units(limits.max_bytes_in_flight) as usize
        )),
        in_flight: AtomicUsize::new(0),
        body_bytes_since_trim: AtomicUsize::new(0),
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing_sender, closing) = tokio::sync::watch::channel(false);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.raised() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!(%error, "accepting an http connection failed");
                if !stop.sleep(ACCEPT_RETRY_DELAY).await {
                    break;
                }
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            debug!(%peer, max_connections = limits.max_connections, "http source at maxConnections; closed a new connection");
            drop(stream);
            continue;
        };
        let state = Arc::clone(&state);
        let closing = closing.clone();
        tokio::spawn(serve_connection(stream, state, slot, closing));
    }
    let _ = closing_sender.send(true);
    // Requests in flight finish; new ones are not read.
    let drained = Arc::clone(&slots)
        .acquire_many_owned(u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX));
    let _ = tokio::time::timeout(limits.request_timeout, drained).await;
    state.processors.pool.close_all_idle();
    Ok(())
}

/// Serves one connection until the client closes it, it idles past the idle timeout, or
/// the source stops.
async fn serve_connection(
    stream: TcpStream,
    state: Arc<HttpSourceState>,
    _slot: OwnedSemaphorePermit,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    let last_activity = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let stream = CountedStream {
        stream,
        counters: Arc::clone(&state.counters),
        last_activity: Arc::clone(&last_activity),
        started,
    };
    counters::increment(&state.counters.open_connections);
    let requests_open = Arc::new(AtomicUsize::new(0));
    let service_state = Arc::clone(&state);
    let service_requests = Arc::clone(&requests_open);
    let service = hyper::service::service_fn(move |request| {
        let state = Arc::clone(&service_state);
        let requests_open = Arc::clone(&service_requests);
        async move {
            requests_open.fetch_add(1, Ordering::AcqRel);
            let response = receive(&state, request).await;
            requests_open.fetch_sub(1, Ordering::AcqRel);
            Ok::<_, Infallible>(response)
        }
    });
    let limits = state.limits;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.request_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut idle_checks = tokio::time::interval(IDLE_CHECK_INTERVAL);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    debug!(%error, "http connection ended with an error");
                }
                return;
            }
            _ = idle_checks.tick(), if !shutting_down => {
                let idle_for = started.elapsed().saturating_sub(Duration::from_millis(last_activity.load(Ordering::Acquire)));
                if requests_open.load(Ordering::Acquire) == 0 && idle_for >= limits.idle_timeout {
                    debug!(idle_ms = idle_for.as_millis() as u64, "http connection idle past ServerConnector.idleTimeout; closing");
                    connection.as_mut().graceful_shutdown();
                    shutting_down = true;
                }
            }
            _ = closing.wait_for(|closing| *closing), if !shutting_down => {
                connection.as_mut().graceful_shutdown();
                shutting_down = true;
            }
        }
    }
}

fn text_response(status: StatusCode, message: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn empty_response(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
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

/// The declared `Content-Length`; `Err` when it is not a number.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ()> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .map(Some)
            .ok_or(()),
    }
}

/// Why a body could not be read.
enum BodyProblem {
    TooLarge,
    TimedOut,
    Broken(hyper::Error),
}

/// Reads the body, at most `max_bytes`, before `deadline`.
async fn read_body(
    mut body: Incoming,
    max_bytes: usize,
    expected_bytes: usize,
    deadline: tokio::time::Instant,
) -> Result<Bytes, BodyProblem> {
    let mut collected = BytesMut::with_capacity(expected_bytes.min(max_bytes));
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_elapsed) => return Err(BodyProblem::TimedOut),
            Ok(None) => return Ok(collected.freeze()),
            Ok(Some(Err(error))) => return Err(BodyProblem::Broken(error)),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > max_bytes {
                return Err(BodyProblem::TooLarge);
            }
            collected.extend_from_slice(&data);
        }
    }
}

fn busy(what: &str, limits: &HttpLimits) -> Response<Full<Bytes>> {
    let mut response = text_response(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "The source is busy: {what} stayed at its limit for {} ms. Try again later\n",
            limits.request_timeout.as_millis()
        ),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

async fn receive(state: &HttpSourceState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let counters = &state.counters;
    let limits = &state.limits;
    let deadline = tokio::time::Instant::now() + limits.request_timeout;
    state.in_flight.fetch_add(1, Ordering::AcqRel);
    let _in_flight = InFlight { state };
    let (parts, body) = request.into_parts();
    if parts.method != Method::POST {
        let mut response = text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "{} is not accepted: POST a JSON array of events\n",
                parts.method
            ),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    if let Some(charset) = unsupported_charset(&parts.headers) {
        counters::increment(&counters.event_read_failures);
        return text_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("charset {charset:?} is not supported: send UTF-8\n"),
        );
    }
    let declared_bytes = match content_length(&parts.headers) {
        Ok(declared) => declared,
        Err(()) => {
            counters::increment(&counters.event_read_failures);
            return text_response(
                StatusCode::BAD_REQUEST,
                "Content-Length is not a number\n".into(),
            );
        }
    };
    if declared_bytes.is_some_and(|declared| declared > limits.max_body_bytes as u64) {
        counters::increment(&counters.event_read_failures);
        warn!(
            content_length = declared_bytes,
            max_body_bytes = limits.max_body_bytes,
            "http source: body too large; answered 413 without reading it"
        );
        return text_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "The body is {} bytes, more than maxBodyBytes {}: send fewer events per request\n",
                declared_bytes.unwrap_or_default(),
                limits.max_body_bytes
            ),
        );
    }
    let Ok(Ok(_request_permit)) =
        tokio::time::timeout_at(deadline, Arc::clone(&state.requests).acquire_owned()).await
    else {
        return busy("maxConcurrentRequests", limits);
    };
    let body_reservation =
        declared_bytes.map_or(limits.max_body_bytes, |declared| declared as usize);
    let Ok(Ok(_body_budget)) = tokio::time::timeout_at(
        deadline,
        Arc::clone(&state.budget).acquire_many_owned(budget_units(body_reservation)),
    )
    .await
    else {
        return busy("maxBytesInFlight", limits);
    };
    let body = match read_body(body, limits.max_body_bytes, body_reservation, deadline).await {
        Ok(body) => body,
        Err(BodyProblem::TooLarge) => {
            counters::increment(&counters.event_read_failures);
            return text_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "The body is more than maxBodyBytes {}: send fewer events per request\n",
                    limits.max_body_bytes
                ),
            );
        }
        Err(BodyProblem::TimedOut) => {
            counters::increment(&counters.event_read_failures);
            let mut response = text_response(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "The body did not arrive within requestTimeout ({} ms)\n",
                    limits.request_timeout.as_millis()
                ),
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
        Err(BodyProblem::Broken(error)) => {
            counters::increment(&counters.event_read_failures);
            debug!(%error, "http source: reading a body failed");
            return empty_response(StatusCode::BAD_REQUEST);
        }
    };
    state
        .body_bytes_since_trim
        .fetch_add(body.len(), Ordering::AcqRel);
    let survey = match survey_json_events(&body) {
        Ok(survey) => survey,
        Err(problem) => {
            counters::increment(&counters.event_read_failures);
            warn!(%problem, "bad request to the http source");
            return text_response(
                StatusCode::BAD_REQUEST,
                format!("Bad request from client. {problem}\n"),
            );
        }
    };
    let parsed_bytes = survey.parsed_bytes();
    if parsed_bytes.saturating_add(body.len()) > limits.max_bytes_in_flight {
        counters::increment(&counters.event_read_failures);
        return text_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "The body's {} events would take about {parsed_bytes} bytes of memory, more \
                 than maxBytesInFlight {}: send fewer events per request\n",
                survey.events, limits.max_bytes_in_flight
            ),
        );
    }
    let Ok(Ok(_events_budget)) = tokio::time::timeout_at(
        deadline,
        Arc::clone(&state.budget).acquire_many_owned(budget_units(parsed_bytes)),
    )
    .await
    else {
        return busy("maxBytesInFlight", limits);
    };
    let events = match parse_json_events(&body) {
        Ok(events) => events,
        Err(problem) => {
            // The survey read the same bytes; kept for safety.
            return text_response(
                StatusCode::BAD_REQUEST,
                format!("Bad request from client. {problem}\n"),
            );
        }
    };
    drop(body);
    counters::increment(&counters.append_batches_received);
    counters::add(&counters.events_received, events.len());
    let mut processor = state.processors.build();
    match processor.deliver_whole(events).await {
        Ok(()) => {
            counters::increment(&counters.append_batches_accepted);
            empty_response(StatusCode::OK)
        }
        Err(DeliveryError::TooManyEvents {
            channel,
            transaction_capacity,
            events,
        }) => {
            warn!(%channel, transaction_capacity, events, "http source: a request holds more events than one transaction may; answered 413");
            let mut response = text_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "The request holds {events} events, more than channel {channel} takes in one \
                     transaction (transactionCapacity {transaction_capacity}). Nothing was \
                     committed: send at most {transaction_capacity} events per request\n"
                ),
            );
            response.headers_mut().insert(
                MAX_EVENTS_HEADER,
                HeaderValue::from(u64::try_from(transaction_capacity).unwrap_or(u64::MAX)),
            );
            response
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

/// A connection counted in `OpenConnectionCount` until dropped, noting when it last
/// moved bytes (milliseconds after `started`).
struct CountedStream {
    stream: TcpStream,
    counters: Arc<SourceCounters>,
    last_activity: Arc<AtomicU64>,
    started: Instant,
}

impl CountedStream {
    fn touch(&self) {
        let now_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity.store(now_ms, Ordering::Release);
    }
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
        let before = buffer.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(context, buffer);
        if buffer.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(context, bytes);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.touch();
        }
        polled
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
        let polled = Pin::new(&mut self.stream).poll_write_vectored(context, buffers);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.touch();
        }
        polled
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
