//! Flume's channel metrics: the protocol's stats counters, `GET /metrics` in Flume's JSON
//! shape, and `GET /metrics/prometheus`.
//!
//! Flume's HTTP monitor answers one JSON object keyed `TYPE.name` whose values map JMX
//! attribute names to **strings** (`shared/reference/flume.md` §5):
//!
//! ```text
//! {"CHANNEL.c1":{"ChannelSize":"42","ChannelCapacity":"1000000","ChannelFillPercentage":"0.0042",
//!                "EventPutAttemptCount":"…","Type":"CHANNEL","StartTime":"1700000000000",
//!                "StopTime":"0","Open":"true","Closed":"0","Unhealthy":"0",
//!                "EventPutErrorCount":"0",…}}
//! ```
//!
//! `Open`, `Closed`, `Unhealthy` and the four error counters are file-channel attributes
//! in Flume and are reported for durable channels only. Millrace adds one object per data
//! directory, keyed `DATADIR.<channel>.<index>`, with the directory's write figures.
//! The Prometheus text carries the same numbers under `millrace_channel_*` and
//! `millrace_data_dir_*` names, labelled by channel (and directory).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use millrace_engine::{ChannelHealth, ChannelStats};
use millrace_protocol::counters;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::{Map, Value};

use crate::registry::{ChannelRegistry, ChannelState};

/// Flume's `Type` attribute of a channel.
const FLUME_CHANNEL_TYPE: &str = "CHANNEL";
/// Key prefix of a channel object in the JSON.
const CHANNEL_KEY_PREFIX: &str = "CHANNEL.";
/// Key prefix of a data directory object in the JSON (a Millrace addition).
const DATA_DIR_KEY_PREFIX: &str = "DATADIR.";
const MICROS_PER_SECOND: f64 = 1_000_000.0;
const MILLIS_PER_SECOND: f64 = 1_000.0;
/// Java's `Double.toString` writes plain decimals in `[10^-3, 10^7)` and scientific
/// notation outside.
const JAVA_PLAIN_DECIMAL_MIN: f64 = 1e-3;
const JAVA_PLAIN_DECIMAL_MAX: f64 = 1e7;

/// Flume attribute names beyond the protocol's six counters.
mod attributes {
    pub const CHANNEL_FILL_PERCENTAGE: &str = "ChannelFillPercentage";
    pub const EVENT_PUT_ERROR_COUNT: &str = "EventPutErrorCount";
    pub const EVENT_TAKE_ERROR_COUNT: &str = "EventTakeErrorCount";
    pub const CHECKPOINT_WRITE_ERROR_COUNT: &str = "CheckpointWriteErrorCount";
    pub const CHECKPOINT_BACKUP_WRITE_ERROR_COUNT: &str = "CheckpointBackupWriteErrorCount";
    pub const START_TIME: &str = "StartTime";
    pub const STOP_TIME: &str = "StopTime";
    pub const TYPE: &str = "Type";
    pub const OPEN: &str = "Open";
    pub const CLOSED: &str = "Closed";
    pub const UNHEALTHY: &str = "Unhealthy";
}

/// Flume's numeric channel counters, in the order the stats reply lists them: the
/// protocol's six, then the file channel's error counters, then start and stop times.
pub fn flume_counters(stats: &ChannelStats) -> Vec<(&'static str, u64)> {
    vec![
        (counters::CHANNEL_SIZE, stats.channel_size),
        (counters::CHANNEL_CAPACITY, stats.channel_capacity),
        (
            counters::EVENT_PUT_ATTEMPT_COUNT,
            stats.event_put_attempt_count,
        ),
        (
            counters::EVENT_PUT_SUCCESS_COUNT,
            stats.event_put_success_count,
        ),
        (
            counters::EVENT_TAKE_ATTEMPT_COUNT,
            stats.event_take_attempt_count,
        ),
        (
            counters::EVENT_TAKE_SUCCESS_COUNT,
            stats.event_take_success_count,
        ),
        (
            attributes::EVENT_PUT_ERROR_COUNT,
            stats.event_put_error_count,
        ),
        (
            attributes::EVENT_TAKE_ERROR_COUNT,
            stats.event_take_error_count,
        ),
        (
            attributes::CHECKPOINT_WRITE_ERROR_COUNT,
            stats.checkpoint_write_error_count,
        ),
        (
            attributes::CHECKPOINT_BACKUP_WRITE_ERROR_COUNT,
            stats.checkpoint_backup_write_error_count,
        ),
        (attributes::START_TIME, stats.start_time_ms),
        (attributes::STOP_TIME, stats.stop_time_ms),
    ]
}

/// The counters that Flume reports for file channels only.
fn is_file_channel_attribute(name: &str) -> bool {
    matches!(
        name,
        attributes::EVENT_PUT_ERROR_COUNT
            | attributes::EVENT_TAKE_ERROR_COUNT
            | attributes::CHECKPOINT_WRITE_ERROR_COUNT
            | attributes::CHECKPOINT_BACKUP_WRITE_ERROR_COUNT
    )
}

/// A double as Java's `Double.toString` writes it (`0.0`, `42.5`, `1.0E-4`,
/// `1.7976931348623157E308`), as Flume's JSON carries `ChannelFillPercentage`.
pub fn java_double_string(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 || (JAVA_PLAIN_DECIMAL_MIN..JAVA_PLAIN_DECIMAL_MAX).contains(&magnitude) {
        // Rust's Debug form is the shortest round-trip decimal and keeps ".0".
        return format!("{value:?}");
    }
    let scientific = format!("{value:E}");
    match scientific.split_once('E') {
        Some((mantissa, exponent)) if !mantissa.contains('.') => {
            format!("{mantissa}.0E{exponent}")
        }
        _ => scientific,
    }
}

/// What a channel that is not open reports: its health flags.
struct HealthFlags {
    open: bool,
    closed: bool,
    unhealthy: bool,
}

fn health_flags(state: &ChannelState) -> HealthFlags {
    match state {
        ChannelState::Opening => HealthFlags {
            open: false,
            closed: false,
            unhealthy: false,
        },
        ChannelState::FailedToOpen { .. } => HealthFlags {
            open: false,
            closed: true,
            unhealthy: true,
        },
        ChannelState::Ready(channel) => match channel.health() {
            ChannelHealth::Open | ChannelHealth::ReadOnly { .. } => HealthFlags {
                open: true,
                closed: false,
                unhealthy: false,
            },
            ChannelHealth::Failed { .. } => HealthFlags {
                open: false,
                closed: false,
                unhealthy: true,
            },
            ChannelHealth::Closed => HealthFlags {
                open: false,
                closed: true,
                unhealthy: false,
            },
        },
    }
}

/// `GET /metrics`: Flume's JSON shape, every value a string.
pub fn metrics_json(registry: &ChannelRegistry) -> Value {
    let mut root = Map::new();
    for entry in registry.entries() {
        let state = entry.state();
        let stats = match &state {
            ChannelState::Ready(channel) => channel.stats(),
            ChannelState::Opening | ChannelState::FailedToOpen { .. } => ChannelStats::default(),
        };
        let mut attributes = Map::new();
        for (name, value) in flume_counters(&stats) {
            if entry.is_durable() || !is_file_channel_attribute(name) {
                attributes.insert(name.to_string(), Value::String(value.to_string()));
            }
        }
        attributes.insert(
            attributes::CHANNEL_FILL_PERCENTAGE.to_string(),
            Value::String(java_double_string(stats.channel_fill_percentage())),
        );
        attributes.insert(
            attributes::TYPE.to_string(),
            Value::String(FLUME_CHANNEL_TYPE.to_string()),
        );
        if entry.is_durable() {
            let flags = health_flags(&state);
            let flag = |set: bool| Value::String(if set { "1" } else { "0" }.to_string());
            attributes.insert(
                attributes::OPEN.to_string(),
                Value::String(flags.open.to_string()),
            );
            attributes.insert(attributes::CLOSED.to_string(), flag(flags.closed));
            attributes.insert(attributes::UNHEALTHY.to_string(), flag(flags.unhealthy));
        }
        root.insert(
            format!("{CHANNEL_KEY_PREFIX}{}", entry.name()),
            Value::Object(attributes),
        );
        if let ChannelState::Ready(channel) = &state {
            for (index, (path, dir_stats)) in channel.dir_stats().iter().enumerate() {
                let load = |counter: &AtomicU64| {
                    Value::String(counter.load(Ordering::Relaxed).to_string())
                };
                let mut dir = Map::new();
                dir.insert("Channel".into(), Value::String(entry.name().to_string()));
                dir.insert("Path".into(), Value::String(path.display().to_string()));
                dir.insert("BytesWritten".into(), load(&dir_stats.bytes_written));
                dir.insert("SyncCount".into(), load(&dir_stats.syncs));
                dir.insert("SyncTimeMicros".into(), load(&dir_stats.sync_time_us));
                dir.insert("WriteRoundCount".into(), load(&dir_stats.rounds));
                dir.insert("TransactionCount".into(), load(&dir_stats.transactions));
                dir.insert(
                    "SegmentsCreatedCount".into(),
                    load(&dir_stats.segments_created),
                );
                root.insert(
                    format!("{DATA_DIR_KEY_PREFIX}{}.{index}", entry.name()),
                    Value::Object(dir),
                );
            }
        }
    }
    for (key, counters) in registry.component_counters() {
        let mut attributes: Map<String, Value> = counters
            .into_iter()
            .map(|(name, value)| (name, Value::String(value.to_string())))
            .collect();
        let component_type = key.split('.').next().unwrap_or_default().to_string();
        attributes.insert(attributes::TYPE.to_string(), Value::String(component_type));
        root.insert(key, Value::Object(attributes));
    }
    Value::Object(root)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    r#type: String,
    component: String,
    counter: String,
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

type FloatGauge = Gauge<f64, AtomicU64>;
type FloatCounter = Counter<f64, AtomicU64>;

/// `GET /metrics/prometheus`: the same figures as Prometheus text (OpenMetrics).
pub fn prometheus_text(registry: &ChannelRegistry) -> Result<String, std::fmt::Error> {
    let mut metrics = Registry::with_prefix("millrace");
    let gauge = |metrics: &mut Registry, name: &str, help: &str| {
        let family = Family::<ChannelLabels, Gauge>::default();
        metrics.register(name, help, family.clone());
        family
    };
    let counter = |metrics: &mut Registry, name: &str, help: &str| {
        let family = Family::<ChannelLabels, Counter>::default();
        metrics.register(name, help, family.clone());
        family
    };
    let size = gauge(
        &mut metrics,
        "channel_size",
        "Events in the channel (Flume ChannelSize)",
    );
    let capacity = gauge(&mut metrics, "channel_capacity", "Flume ChannelCapacity");
    let fill = Family::<ChannelLabels, FloatGauge>::default();
    metrics.register(
        "channel_fill_percentage",
        "Flume ChannelFillPercentage",
        fill.clone(),
    );
    let open = gauge(
        &mut metrics,
        "channel_open",
        "1 when the channel serves (Flume Open)",
    );
    let unhealthy = gauge(
        &mut metrics,
        "channel_unhealthy",
        "1 when the channel failed (Flume Unhealthy)",
    );
    let start_time = Family::<ChannelLabels, FloatGauge>::default();
    metrics.register(
        "channel_start_time_seconds",
        "Unix time the channel started (Flume StartTime)",
        start_time.clone(),
    );
    let put_attempts = counter(
        &mut metrics,
        "channel_event_put_attempt",
        "Flume EventPutAttemptCount",
    );
    let put_successes = counter(
        &mut metrics,
        "channel_event_put_success",
        "Flume EventPutSuccessCount",
    );
    let take_attempts = counter(
        &mut metrics,
        "channel_event_take_attempt",
        "Flume EventTakeAttemptCount",
    );
    let take_successes = counter(
        &mut metrics,
        "channel_event_take_success",
        "Flume EventTakeSuccessCount",
    );
    let put_errors = counter(
        &mut metrics,
        "channel_event_put_error",
        "Flume EventPutErrorCount",
    );
    let take_errors = counter(
        &mut metrics,
        "channel_event_take_error",
        "Flume EventTakeErrorCount",
    );
    let checkpoint_errors = counter(
        &mut metrics,
        "channel_checkpoint_write_error",
        "Flume CheckpointWriteErrorCount",
    );
    let backup_checkpoint_errors = counter(
        &mut metrics,
        "channel_checkpoint_backup_write_error",
        "Flume CheckpointBackupWriteErrorCount",
    );
    let dir_counter = |metrics: &mut Registry, name: &str, help: &str| {
        let family = Family::<DataDirLabels, Counter>::default();
        metrics.register(name, help, family.clone());
        family
    };
    let dir_bytes = dir_counter(
        &mut metrics,
        "data_dir_written_bytes",
        "Bytes of log records written to the data directory",
    );
    let dir_syncs = dir_counter(
        &mut metrics,
        "data_dir_syncs",
        "fdatasync calls on the data directory's segments",
    );
    let dir_rounds = dir_counter(
        &mut metrics,
        "data_dir_write_rounds",
        "Group-commit rounds (one write, at most one sync)",
    );
    let dir_transactions = dir_counter(
        &mut metrics,
        "data_dir_transactions",
        "Transactions committed through the data directory",
    );
    let dir_segments = dir_counter(
        &mut metrics,
        "data_dir_segments_created",
        "Segments created in the data directory",
    );
    let dir_sync_seconds = Family::<DataDirLabels, FloatCounter>::default();
    metrics.register(
        "data_dir_sync_duration_seconds",
        "Time spent in fdatasync; divided by syncs it is the mean sync latency",
        dir_sync_seconds.clone(),
    );

    for entry in registry.entries() {
        let labels = ChannelLabels {
            channel: entry.name().to_string(),
            r#type: entry.type_name().to_string(),
        };
        let state = entry.state();
        let flags = health_flags(&state);
        open.get_or_create(&labels).set(i64::from(flags.open));
        unhealthy
            .get_or_create(&labels)
            .set(i64::from(flags.unhealthy));
        let ChannelState::Ready(channel) = &state else {
            continue;
        };
        let stats = channel.stats();
        let as_gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        size.get_or_create(&labels)
            .set(as_gauge(stats.channel_size));
        capacity
            .get_or_create(&labels)
            .set(as_gauge(stats.channel_capacity));
        fill.get_or_create(&labels)
            .set(stats.channel_fill_percentage());
        start_time
            .get_or_create(&labels)
            .set(stats.start_time_ms as f64 / MILLIS_PER_SECOND);
        for (family, value) in [
            (&put_attempts, stats.event_put_attempt_count),
            (&put_successes, stats.event_put_success_count),
            (&take_attempts, stats.event_take_attempt_count),
            (&take_successes, stats.event_take_success_count),
            (&put_errors, stats.event_put_error_count),
            (&take_errors, stats.event_take_error_count),
            (&checkpoint_errors, stats.checkpoint_write_error_count),
            (
                &backup_checkpoint_errors,
                stats.checkpoint_backup_write_error_count,
            ),
        ] {
            family.get_or_create(&labels).inc_by(value);
        }
        for (path, dir_stats) in channel.dir_stats() {
            let dir_labels = DataDirLabels {
                channel: entry.name().to_string(),
                dir: path.display().to_string(),
            };
            let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
            for (family, value) in [
                (&dir_bytes, load(&dir_stats.bytes_written)),
                (&dir_syncs, load(&dir_stats.syncs)),
                (&dir_rounds, load(&dir_stats.rounds)),
                (&dir_transactions, load(&dir_stats.transactions)),
                (&dir_segments, load(&dir_stats.segments_created)),
            ] {
                family.get_or_create(&dir_labels).inc_by(value);
            }
            dir_sync_seconds
                .get_or_create(&dir_labels)
                .inc_by(load(&dir_stats.sync_time_us) as f64 / MICROS_PER_SECOND);
        }
    }
    let components = Family::<ComponentLabels, Gauge>::default();
    metrics.register(
        "adapter_counter",
        "A source's or sink's Flume counter, as its adapter last reported it",
        components.clone(),
    );
    for (key, counters) in registry.component_counters() {
        let (component_type, component) = key.split_once('.').unwrap_or((&key, ""));
        for (counter, value) in counters {
            let labels = ComponentLabels {
                r#type: component_type.to_string(),
                component: component.to_string(),
                counter,
            };
            components
                .get_or_create(&labels)
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }
    let mut text = String::new();
    encode(&mut text, &metrics)?;
    // encode() ends with the OpenMetrics "# EOF" line; keep the text ending in a newline.
    if !text.ends_with('\n') {
        writeln!(text)?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_as_java_prints_them() {
        assert_eq!(java_double_string(0.0), "0.0");
        assert_eq!(java_double_string(42.0), "42.0");
        assert_eq!(java_double_string(4.2), "4.2");
        assert_eq!(java_double_string(100.0), "100.0");
        assert_eq!(java_double_string(0.0001), "1.0E-4");
        assert_eq!(java_double_string(0.00042), "4.2E-4");
        assert_eq!(java_double_string(f64::MAX), "1.7976931348623157E308");
    }

    #[test]
    fn counters_start_with_the_six_the_protocol_promises() {
        let stats = ChannelStats {
            channel_size: 42,
            channel_capacity: 100,
            ..ChannelStats::default()
        };
        let names: Vec<&str> = flume_counters(&stats)
            .iter()
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(
            names[..6],
            [
                "ChannelSize",
                "ChannelCapacity",
                "EventPutAttemptCount",
                "EventPutSuccessCount",
                "EventTakeAttemptCount",
                "EventTakeSuccessCount"
            ]
        );
        assert_eq!(flume_counters(&stats)[0], ("ChannelSize", 42));
    }
}
