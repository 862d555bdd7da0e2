//! One reading of channeld's HTTP endpoints (`/metrics`, `/health`, `/status`), the
//! same three the status page reads, and what two readings give: rates and interval
//! means.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{ACCEPT, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use thiserror::Error;
use tokio::net::TcpStream;

/// Longest one request may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response body read: far above what a server with thousands of channels sends,
/// small enough that a hostile listener cannot make `top` hold much.
const MAX_BODY_BYTES: usize = 16 << 20;

/// Why a reading failed.
#[derive(Debug, Error)]
pub enum ReadingError {
    /// No connection, or it broke.
    #[error("GET http://{address}{path}: {reason}")]
    Http {
        /// The listener.
        address: String,
        /// The endpoint.
        path: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The endpoint did not answer within [`REQUEST_TIMEOUT`].
    #[error("GET http://{address}{path}: no answer within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout {
        /// The listener.
        address: String,
        /// The endpoint.
        path: &'static str,
    },
    /// The answer is not the JSON expected (not channeld's HTTP listener?).
    #[error("GET http://{address}{path}: status {status}, not channeld's JSON: {reason}")]
    NotJson {
        /// The listener.
        address: String,
        /// The endpoint.
        path: &'static str,
        /// The HTTP status.
        status: u16,
        /// The parser's complaint.
        reason: String,
    },
}

/// A channel as one reading saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelReading {
    /// Its name.
    pub name: String,
    /// `file`, `memory`, `spillablememory`.
    pub kind: String,
    /// `open`, `read-only`, `unhealthy`, `recovering`, `closed`.
    pub state: String,
    /// Why it is not open.
    pub reason: Option<String>,
    /// `ChannelSize`.
    pub size: u64,
    /// `ChannelCapacity`.
    pub capacity: u64,
    /// `EventPutSuccessCount`.
    pub puts: u64,
    /// `EventTakeSuccessCount`.
    pub takes: u64,
    /// Commits timed since start, and their total duration.
    pub commits: u64,
    /// In microseconds.
    pub commit_total_us: u64,
    /// How the last start recovered (durable channels).
    pub recovery: Option<String>,
}

/// A data directory as one reading saw it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirReading {
    /// Its channel.
    pub channel: String,
    /// Its path, as configured.
    pub path: String,
    /// Bytes of records written.
    pub bytes_written: u64,
    /// `fdatasync` calls.
    pub syncs: u64,
    /// Their total time, microseconds.
    pub sync_time_us: u64,
    /// Usable space of its filesystem (`None`: unreadable).
    pub usable_bytes: Option<u64>,
    /// The channel's `minimumRequiredSpace`.
    pub guard_bytes: Option<u64>,
}

/// A supervised source or sink.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdapterReading {
    /// The component's name.
    pub name: String,
    /// `running` or `failing`.
    pub state: String,
    /// Restarts after failures.
    pub restarts: u64,
    /// Why it last failed.
    pub last_error: Option<String>,
}

/// Everything one poll read.
#[derive(Debug, Clone)]
pub struct Reading {
    /// When (for rates).
    pub at: Instant,
    /// When (for people).
    pub wall: SystemTime,
    /// `ok`, `degraded`, `unavailable`.
    pub status: String,
    /// `running`, `draining`, `stopping`.
    pub phase: String,
    /// channeld's version.
    pub version: String,
    /// Why the status is not `ok`.
    pub reasons: Vec<String>,
    /// In configuration order.
    pub channels: Vec<ChannelReading>,
    /// Per channel, in its order.
    pub dirs: Vec<DirReading>,
    /// By name.
    pub adapters: Vec<AdapterReading>,
}

/// GETs `path` from `address` and parses its JSON (whatever the status: `/health`
/// answers 503 with a body).
async fn get_json(address: &str, path: &'static str) -> Result<Value, ReadingError> {
    let http_error = |reason: String| ReadingError::Http {
        address: address.to_string(),
        path,
        reason,
    };
    let exchange = async {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|error| http_error(error.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| http_error(error.to_string()))?;
        tokio::spawn(connection);
        let request = Request::get(path)
            .header(HOST, address)
            .header(ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|error| http_error(error.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| http_error(error.to_string()))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|error| http_error(error.to_string()))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|error| ReadingError::NotJson {
            address: address.to_string(),
            path,
            status,
            reason: error.to_string(),
        })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| ReadingError::Timeout {
            address: address.to_string(),
            path,
        })?
}

/// Reads the three endpoints at once.
pub async fn read(address: &str) -> Result<Reading, ReadingError> {
    let (metrics, health, status) = tokio::try_join!(
        get_json(address, "/metrics"),
        get_json(address, "/health"),
        get_json(address, "/status"),
    )?;
    Ok(parse(
        &metrics,
        &health,
        &status,
        Instant::now(),
        SystemTime::now(),
    ))
}

/// A Flume attribute (a string holding a number) as a number; 0 when absent.
fn flume_number(object: &Value, attribute: &str) -> u64 {
    object[attribute]
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0)
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_string)
}

/// Joins the three answers into a reading.
pub fn parse(
    metrics: &Value,
    health: &Value,
    status: &Value,
    at: Instant,
    wall: SystemTime,
) -> Reading {
    let empty = serde_json::Map::new();
    let health_channels = health["channels"].as_object().unwrap_or(&empty);
    let mut names: Vec<String> = health_channels.keys().cloned().collect();
    if let Some(metrics) = metrics.as_object() {
        for key in metrics.keys() {
            if let Some(name) = key.strip_prefix("CHANNEL.") {
                if !names.iter().any(|known| known == name) {
                    names.push(name.to_string());
                }
            }
        }
    }
    let channels = names
        .iter()
        .map(|name| {
            let metric = &metrics[format!("CHANNEL.{name}")];
            let channel_health = &health["channels"][name];
            let commits = &status["channels"][name]["commits"];
            ChannelReading {
                name: name.clone(),
                kind: text(&channel_health["type"]).unwrap_or_else(|| "?".to_string()),
                state: text(&channel_health["state"]).unwrap_or_else(|| "unknown".to_string()),
                reason: text(&channel_health["reason"]),
                size: flume_number(metric, "ChannelSize"),
                capacity: flume_number(metric, "ChannelCapacity"),
                puts: flume_number(metric, "EventPutSuccessCount"),
                takes: flume_number(metric, "EventTakeSuccessCount"),
                commits: commits["count"].as_u64().unwrap_or(0),
                commit_total_us: commits["total_us"].as_u64().unwrap_or(0),
                recovery: text(&channel_health["recovery"]["path"]),
            }
        })
        .collect();
    // DATADIR.<channel>.<index>, sorted by channel order and index.
    let mut dirs: BTreeMap<(usize, u64), DirReading> = BTreeMap::new();
    for (key, dir) in metrics.as_object().unwrap_or(&empty) {
        let Some(rest) = key.strip_prefix("DATADIR.") else {
            continue;
        };
        let Some((_, index)) = rest.rsplit_once('.') else {
            continue;
        };
        let index: u64 = index.parse().unwrap_or(0);
        let channel = text(&dir["Channel"]).unwrap_or_default();
        let order = names
            .iter()
            .position(|name| *name == channel)
            .unwrap_or(usize::MAX);
        let channel_status = &status["channels"][&channel];
        dirs.insert(
            (order, index),
            DirReading {
                path: text(&dir["Path"]).unwrap_or_default(),
                bytes_written: flume_number(dir, "BytesWritten"),
                syncs: flume_number(dir, "SyncCount"),
                sync_time_us: flume_number(dir, "SyncTimeMicros"),
                usable_bytes: channel_status["data_dirs"][index as usize]["usable_bytes"].as_u64(),
                guard_bytes: channel_status["minimum_required_space_bytes"].as_u64(),
                channel,
            },
        );
    }
    let adapters = health["adapters"]
        .as_object()
        .unwrap_or(&empty)
        .iter()
        .map(|(name, adapter)| AdapterReading {
            name: name.clone(),
            state: text(&adapter["state"]).unwrap_or_default(),
            restarts: adapter["restarts"].as_u64().unwrap_or(0),
            last_error: text(&adapter["last_error"]),
        })
        .collect();
    Reading {
        at,
        wall,
        status: text(&health["status"]).unwrap_or_else(|| "unknown".to_string()),
        phase: text(&health["phase"]).unwrap_or_else(|| "unknown".to_string()),
        version: text(&status["version"]).unwrap_or_default(),
        reasons: health["reasons"]
            .as_array()
            .map(|reasons| reasons.iter().filter_map(text).collect())
            .unwrap_or_default(),
        channels,
        dirs: dirs.into_values().collect(),
        adapters,
    }
}

/// What two readings of a channel give.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChannelRates {
    /// Events committed by puts per second (`None` on the first reading).
    pub put_per_second: Option<f64>,
    /// Events committed by takes per second.
    pub take_per_second: Option<f64>,
    /// Mean commit time over the interval; the mean since start when no commit happened
    /// in it (`None` when there never was one).
    pub commit_mean_us: Option<f64>,
}

/// Rates of `now` against `before` (the same channel in the previous reading).
pub fn channel_rates(
    now: &ChannelReading,
    before: Option<&ChannelReading>,
    seconds: f64,
) -> ChannelRates {
    let per_second =
        |current: u64, previous: u64| current.saturating_sub(previous) as f64 / seconds;
    let (put_per_second, take_per_second) = match before {
        Some(before) if seconds > 0.0 => (
            Some(per_second(now.puts, before.puts)),
            Some(per_second(now.takes, before.takes)),
        ),
        _ => (None, None),
    };
    let interval_commits = before.map_or(0, |before| now.commits.saturating_sub(before.commits));
    let commit_mean_us = if interval_commits > 0 {
        let before_total = before.map_or(0, |before| before.commit_total_us);
        Some(now.commit_total_us.saturating_sub(before_total) as f64 / interval_commits as f64)
    } else if now.commits > 0 {
        Some(now.commit_total_us as f64 / now.commits as f64)
    } else {
        None
    };
    ChannelRates {
        put_per_second,
        take_per_second,
        commit_mean_us,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> Reading {
        let metrics = json!({
            "CHANNEL.c1": {"ChannelSize": "3", "ChannelCapacity": "100",
                           "EventPutSuccessCount": "10", "EventTakeSuccessCount": "7"},
            "CHANNEL.m1": {"ChannelSize": "0", "ChannelCapacity": "50"},
            "DATADIR.c1.1": {"Channel": "c1", "Path": "c1/data2", "BytesWritten": "5",
                             "SyncCount": "1", "SyncTimeMicros": "100"},
            "DATADIR.c1.0": {"Channel": "c1", "Path": "c1/data", "BytesWritten": "9",
                             "SyncCount": "2", "SyncTimeMicros": "300"},
            "SOURCE.r1": {"EventReceivedCount": "4"},
        });
        let health = json!({
            "status": "degraded", "phase": "running", "reasons": ["adapter 'r1' is failing"],
            "channels": {
                "c1": {"type": "file", "state": "open", "recovery": {"path": "checkpoint"}},
                "m1": {"type": "memory", "state": "open"},
            },
            "adapters": {"r1": {"state": "failing", "restarts": 2, "last_error": "boom"}},
        });
        let status = json!({
            "version": "0.1.0",
            "channels": {"c1": {"commits": {"count": 4, "total_us": 800, "max_us": 400},
                                "minimum_required_space_bytes": 1000,
                                "data_dirs": [{"path": "c1/data", "usable_bytes": 5000},
                                              {"path": "c1/data2", "usable_bytes": null}]}},
        });
        parse(
            &metrics,
            &health,
            &status,
            Instant::now(),
            SystemTime::now(),
        )
    }

    #[test]
    fn a_reading_joins_metrics_health_and_status() {
        let reading = sample();
        assert_eq!(reading.status, "degraded");
        assert_eq!(reading.version, "0.1.0");
        let c1 = &reading.channels[0];
        assert_eq!(
            (
                c1.name.as_str(),
                c1.kind.as_str(),
                c1.size,
                c1.capacity,
                c1.puts,
                c1.takes
            ),
            ("c1", "file", 3, 100, 10, 7)
        );
        assert_eq!(c1.recovery.as_deref(), Some("checkpoint"));
        assert_eq!((c1.commits, c1.commit_total_us), (4, 800));
        assert_eq!(reading.channels[1].name, "m1");
        let paths: Vec<&str> = reading.dirs.iter().map(|dir| dir.path.as_str()).collect();
        assert_eq!(paths, ["c1/data", "c1/data2"], "in index order");
        assert_eq!(reading.dirs[0].usable_bytes, Some(5000));
        assert_eq!(reading.dirs[1].usable_bytes, None);
        assert_eq!(reading.dirs[0].guard_bytes, Some(1000));
        assert_eq!(reading.adapters[0].restarts, 2);
        assert_eq!(reading.adapters[0].last_error.as_deref(), Some("boom"));
    }

    #[test]
    fn rates_come_from_two_readings_and_the_commit_mean_from_the_interval() {
        let before = sample().channels[0].clone();
        let mut now = before.clone();
        now.puts += 20;
        now.takes += 5;
        now.commits += 2;
        now.commit_total_us += 100;
        let rates = channel_rates(&now, Some(&before), 2.0);
        assert_eq!(rates.put_per_second, Some(10.0));
        assert_eq!(rates.take_per_second, Some(2.5));
        assert_eq!(rates.commit_mean_us, Some(50.0));
        let first = channel_rates(&before, None, 0.0);
        assert_eq!(first.put_per_second, None);
        assert_eq!(first.commit_mean_us, Some(200.0), "the mean since start");
    }
}
