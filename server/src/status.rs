//! What an operator looks at: the status page (`GET /`), the figures it needs beyond
//! `/metrics` and `/health` (`GET /status`), and the Prometheus families the shipped
//! alerts and dashboard need beyond [`prometheus_text`](crate::metrics::prometheus_text)
//! (appended to `/metrics/prometheus`).
//!
//! # Constraints
//!
//! - **Read-only and unauthenticated, like `/metrics` and `/health`.** The page reads
//!   `/metrics`, `/health` and `/status` only: counters, states and paths, never events,
//!   so it works unchanged when the protocol requires a token.
//! - **Self-contained.** The page is one HTML file with its CSS and JavaScript inline,
//!   compiled into the binary ([`STATUS_PAGE_HTML`]); it loads nothing else, so it works
//!   on a host without Internet access and cannot break with a CDN.
//! - **`/status` is small and cumulative.** Per channel the commit count, total and
//!   longest commit time since start, and per data dir its usable space and guard. The
//!   page derives rates and interval means from two readings, as Prometheus does.
//!
//! ```text
//! GET /status
//! {"version":"0.1.0",
//!  "channels":{"c1":{"commits":{"count":12,"total_us":4810,"max_us":1033},
//!                    "minimum_required_space_bytes":524288000,
//!                    "data_dirs":[{"path":"c1/data","usable_bytes":53687091200}]}}}
//! ```
//!
//! `data_dirs` lists a channel's data directories in the order of its `DATADIR.<channel>.<i>`
//! objects in `/metrics`; `usable_bytes` is what `statvfs` says an unprivileged writer may
//! still use (`f_bavail · f_frsize`, the figure the space guard compares), or `null` when
//! it cannot be read (the directory was removed, say).

use std::fmt::Write as _;

use millrace_engine::storage::{IoBackend, RealFs, Storage};
use millrace_engine::ChannelHealth;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use serde_json::{json, Map, Value};

use crate::adapters::{AdapterState, AdapterStatus};
use crate::registry::{ChannelRegistry, ChannelState};

/// The status page: HTML, CSS and JavaScript in one file (see `status_page.html`).
pub const STATUS_PAGE_HTML: &str = include_str!("status_page.html");

/// The last line of an OpenMetrics text.
const OPENMETRICS_EOF: &str = "# EOF\n";

/// What `statvfs` says an unprivileged writer may still use under `path` (the figure the
/// space guard compares), or `None` when it cannot be read. Only reads: the I/O backend
/// of the storage asked does not matter.
fn usable_space_bytes(path: &std::path::Path) -> Option<u64> {
    RealFs::new(IoBackend::Pwrite)
        .available_space_bytes(path)
        .ok()
}

/// `GET /status`: per channel its commit figures and its data dirs' usable space
/// against the guard. Reads free space with `statvfs`: call it where blocking is
/// allowed.
pub fn status_json(registry: &ChannelRegistry) -> Value {
    let mut channels = Map::new();
    for entry in registry.entries() {
        let commits = entry.commit_times().snapshot();
        let data_dirs: Vec<Value> = entry
            .channel()
            .map(|channel| channel.dir_stats())
            .unwrap_or_default()
            .iter()
            .map(|(path, _)| {
                json!({
                    "path": path.display().to_string(),
                    "usable_bytes": usable_space_bytes(path),
                })
            })
            .collect();
        channels.insert(
            entry.name().to_string(),
            json!({
                "commits": {
                    "count": commits.count,
                    "total_us": commits.total_us,
                    "max_us": commits.max_us,
                },
                "minimum_required_space_bytes": entry.minimum_required_space_bytes(),
                "data_dirs": data_dirs,
            }),
        );
    }
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "channels": channels,
    })
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabels {
    channel: String,
    r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DataDirLabels {
    channel: String,
    dir: String,
}

/// A family of histograms that live elsewhere (each channel's lives as long as the
/// channel, in its [`CommitTimes`](crate::commit_timing::CommitTimes)), where
/// prometheus-client's `Family` would create its own.
#[derive(Debug, Default)]
struct LabelledHistograms(Vec<(ChannelLabels, Histogram)>);

impl EncodeMetric for LabelledHistograms {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, histogram) in &self.0 {
            histogram.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Histogram::TYPE
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdapterLabels {
    component: String,
}

/// The families the alerts and the dashboard in `deploy/` need beyond
/// [`prometheus_text`](crate::metrics::prometheus_text): commit latency, the space guard
/// (usable bytes, the guard, read-only channels) and the adapters' restarts and state.
/// Reads free space with `statvfs`.
pub fn operator_prometheus_text(
    registry: &ChannelRegistry,
    adapters: &[AdapterStatus],
) -> Result<String, std::fmt::Error> {
    let mut metrics = Registry::with_prefix("millrace");
    let mut commit_seconds = LabelledHistograms::default();
    let read_only = Family::<ChannelLabels, Gauge>::default();
    metrics.register(
        "channel_read_only",
        "1 while the channel refuses puts because a directory is below minimumRequiredSpace",
        read_only.clone(),
    );
    let usable = Family::<DataDirLabels, Gauge>::default();
    metrics.register(
        "data_dir_usable_bytes",
        "Space an unprivileged writer may still use on the data directory's filesystem",
        usable.clone(),
    );
    let guard = Family::<DataDirLabels, Gauge>::default();
    metrics.register(
        "data_dir_minimum_required_space_bytes",
        "The channel's minimumRequiredSpace: puts are refused below it",
        guard.clone(),
    );
    let restarts = Family::<AdapterLabels, Counter>::default();
    metrics.register(
        "adapter_restarts",
        "Times channeld restarted the adapter's process after it failed",
        restarts.clone(),
    );
    let failing = Family::<AdapterLabels, Gauge>::default();
    metrics.register(
        "adapter_failing",
        "1 while the adapter is failing (failed and not yet running a minute since)",
        failing.clone(),
    );

    for entry in registry.entries() {
        let labels = ChannelLabels {
            channel: entry.name().to_string(),
            r#type: entry.type_name().to_string(),
        };
        let ChannelState::Ready(channel) = entry.state() else {
            continue;
        };
        read_only.get_or_create(&labels).set(i64::from(matches!(
            channel.health(),
            ChannelHealth::ReadOnly { .. }
        )));
        commit_seconds
            .0
            .push((labels.clone(), entry.commit_times().histogram()));
        for (path, _) in channel.dir_stats() {
            let dir_labels = DataDirLabels {
                channel: entry.name().to_string(),
                dir: path.display().to_string(),
            };
            if let Some(bytes) = usable_space_bytes(&path) {
                usable
                    .get_or_create(&dir_labels)
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            if let Some(minimum) = entry.minimum_required_space_bytes() {
                guard
                    .get_or_create(&dir_labels)
                    .set(i64::try_from(minimum).unwrap_or(i64::MAX));
            }
        }
    }
    metrics.register(
        "channel_commit_duration_seconds",
        "Time from a commit request to its outcome, for commits that put or took events",
        commit_seconds,
    );
    for adapter in adapters {
        let labels = AdapterLabels {
            component: adapter.component.clone(),
        };
        restarts.get_or_create(&labels).inc_by(adapter.restarts);
        failing
            .get_or_create(&labels)
            .set(i64::from(adapter.state == AdapterState::Failing));
    }
    let mut text = String::new();
    encode(&mut text, &metrics)?;
    Ok(text)
}

/// Joins two OpenMetrics texts into one: the first without its `# EOF` line, then the
/// second (which ends with it).
pub fn join_openmetrics(first: &str, second: &str) -> String {
    let mut joined = String::with_capacity(first.len() + second.len());
    joined.push_str(first.strip_suffix(OPENMETRICS_EOF).unwrap_or(first));
    joined.push_str(second);
    if !joined.ends_with('\n') {
        let _ = writeln!(joined);
    }
    joined
}
