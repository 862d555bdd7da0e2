//! Flume's channel metrics: the protocol's stats counters, `GET /metrics` in Flume's JSON
//! shape, and `GET /metrics/prometheus`.
//!
//! Flume's HTTP monitor answers one JSON object keyed `TYPE.name` whose values map JMX
//! attribute names to **strings** (`docs/contracts.md`, "Metrics and health"):
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

/// Registers a family of metrics labelled `Labels` under `name` and hands it back for
/// filling.
fn register_family<Labels, Metric>(
    metrics: &mut Registry,
    name: &str,
    help: &str,
) -> Family<Labels, Metric>
where
    Family<Labels, Metric>: prometheus_client::registry::Metric + Clone + Default,
{
    let family = Family::<Labels, Metric>::default();
    metrics.register(name, help, family.clone());
    family
}

/// The per-channel families: Flume's channel attributes as gauges and counters.
struct ChannelFamilies {
    size: Family<ChannelLabels, Gauge>,
    capacity: Family<ChannelLabels, Gauge>,
    fill: Family<ChannelLabels, FloatGauge>,
    open: Family<ChannelLabels, Gauge>,
    unhealthy: Family<ChannelLabels, Gauge>,
    start_time: Family<ChannelLabels, FloatGauge>,
    put_attempts: Family<ChannelLabels, Counter>,
    put_successes: Family<ChannelLabels, Counter>,
    take_attempts: Family<ChannelLabels, Counter>,
    take_successes: Family<ChannelLabels, Counter>,
    put_errors: Family<ChannelLabels, Counter>,
    take_errors: Family<ChannelLabels, Counter>,
    checkpoint_errors: Family<ChannelLabels, Counter>,
    backup_checkpoint_errors: Family<ChannelLabels, Counter>,
}

impl ChannelFamilies {
    /// Registers every family, in the order the text lists them.
    fn register(metrics: &mut Registry) -> Self {
        ChannelFamilies {
            size: register_family(
                metrics,
                "channel_size",
                "Events in the channel (Flume ChannelSize)",
            ),
            capacity: register_family(metrics, "channel_capacity", "Flume ChannelCapacity"),
            fill: register_family(
                metrics,
                "channel_fill_percentage",
                "Flume ChannelFillPercentage",
            ),
            open: register_family(
                metrics,
                "channel_open",
                "1 when the channel serves (Flume Open)",
            ),
            unhealthy: register_family(
                metrics,
                "channel_unhealthy",
                "1 when the channel failed (Flume Unhealthy)",
            ),
            start_time: register_family(
                metrics,
                "channel_start_time_seconds",
                "Unix time the channel started (Flume StartTime)",
            ),
            put_attempts: register_family(
                metrics,
                "channel_event_put_attempt",
                "Flume EventPutAttemptCount",
            ),
            put_successes: register_family(
                metrics,
                "channel_event_put_success",
                "Flume EventPutSuccessCount",
            ),
            take_attempts: register_family(
                metrics,
                "channel_event_take_attempt",
                "Flume EventTakeAttemptCount",
            ),
            take_successes: register_family(
                metrics,
                "channel_event_take_success",
                "Flume EventTakeSuccessCount",
            ),
            put_errors: register_family(
                metrics,
                "channel_event_put_error",
                "Flume EventPutErrorCount",
            ),
            take_errors: register_family(
                metrics,
                "channel_event_take_error",
                "Flume EventTakeErrorCount",
            ),
            checkpoint_errors: register_family(
                metrics,
                "channel_checkpoint_write_error",
                "Flume CheckpointWriteErrorCount",
            ),
            backup_checkpoint_errors: register_family(
                metrics,
                "channel_checkpoint_backup_write_error",
                "Flume CheckpointBackupWriteErrorCount",
            ),
        }
    }

    /// The health flags of every channel; for an open one also its figures.
    fn record(&self, labels: &ChannelLabels, state: &ChannelState) {
        let flags = health_flags(state);
        self.open.get_or_create(labels).set(i64::from(flags.open));
        self.unhealthy
            .get_or_create(labels)
            .set(i64::from(flags.unhealthy));
        let ChannelState::Ready(channel) = state else {
            return;
        };
        let stats = channel.stats();
        let as_gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.size
            .get_or_create(labels)
            .set(as_gauge(stats.channel_size));
        self.capacity
            .get_or_create(labels)
            .set(as_gauge(stats.channel_capacity));
        self.fill
            .get_or_create(labels)
            .set(stats.channel_fill_percentage());
        self.start_time
            .get_or_create(labels)
            .set(stats.start_time_ms as f64 / MILLIS_PER_SECOND);
        for (family, value) in [
            (&self.put_attempts, stats.event_put_attempt_count),
            (&self.put_successes, stats.event_put_success_count),
            (&self.take_attempts, stats.event_take_attempt_count),
            (&self.take_successes, stats.event_take_success_count),
            (&self.put_errors, stats.event_put_error_count),
            (&self.take_errors, stats.event_take_error_count),
            (&self.checkpoint_errors, stats.checkpoint_write_error_count),
            (
                &self.backup_checkpoint_errors,
                stats.checkpoint_backup_write_error_count,
            ),
        ] {
            family.get_or_create(labels).inc_by(value);
        }
    }
}

/// The per-data-directory families: a file channel's write figures (a Millrace
/// addition).
struct DataDirFamilies {
    written_bytes: Family<DataDirLabels, Counter>,
    syncs: Family<DataDirLabels, Counter>,
    rounds: Family<DataDirLabels, Counter>,
    transactions: Family<DataDirLabels, Counter>,
    segments: Family<DataDirLabels, Counter>,
    sync_seconds: Family<DataDirLabels, FloatCounter>,
}

impl DataDirFamilies {
    /// Registers every family, in the order the text lists them.
    fn register(metrics: &mut Registry) -> Self {
        DataDirFamilies {
            written_bytes: register_family(
                metrics,
                "data_dir_written_bytes",
                "Bytes of log records written to the data directory",
            ),
            syncs: register_family(
                metrics,
                "data_dir_syncs",
                "fdatasync calls on the data directory's segments",
            ),
            rounds: register_family(
                metrics,
                "data_dir_write_rounds",
                "Group-commit rounds (one write, at most one sync)",
            ),
            transactions: register_family(
                metrics,
                "data_dir_transactions",
                "Transactions committed through the data directory",
            ),
            segments: register_family(
                metrics,
                "data_dir_segments_created",
                "Segments created in the data directory",
            ),
            sync_seconds: register_family(
                metrics,
                "data_dir_sync_duration_seconds",
                "Time spent in fdatasync; divided by syncs it is the mean sync latency",
            ),
        }
    }

    /// The figures of each data directory of an open channel.
    fn record(&self, channel_name: &str, state: &ChannelState) {
        let ChannelState::Ready(channel) = state else {
            return;
        };
        for (path, dir_stats) in channel.dir_stats() {
            let labels = DataDirLabels {
                channel: channel_name.to_string(),
                dir: path.display().to_string(),
            };
            let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
            for (family, value) in [
                (&self.written_bytes, load(&dir_stats.bytes_written)),
                (&self.syncs, load(&dir_stats.syncs)),
                (&self.rounds, load(&dir_stats.rounds)),
                (&self.transactions, load(&dir_stats.transactions)),
                (&self.segments, load(&dir_stats.segments_created)),
            ] {
                family.get_or_create(&labels).inc_by(value);
            }
            self.sync_seconds
                .get_or_create(&labels)
                .inc_by(load(&dir_stats.sync_time_us) as f64 / MICROS_PER_SECOND);
        }
    }
}

/// Registers the adapters' reported counters (`SOURCE.r1`, `SINK.k1`) as one gauge
/// family labelled by type, component and counter, and fills it.
fn register_adapter_counters(metrics: &mut Registry, registry: &ChannelRegistry) {
    let components: Family<ComponentLabels, Gauge> = register_family(
        metrics,
        "adapter_counter",
        "A source's or sink's Flume counter, as its adapter last reported it",
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
}

/// The registry as OpenMetrics text, ending in a newline.
fn encode_text(metrics: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    encode(&mut text, metrics)?;
    // encode() ends with the OpenMetrics "# EOF" line; keep the text ending in a newline.
    if !text.ends_with('\n') {
        writeln!(text)?;
    }
    Ok(text)
}

/// `GET /metrics/prometheus`: the same figures as Prometheus text (OpenMetrics).
pub fn prometheus_text(registry: &ChannelRegistry) -> Result<String, std::fmt::Error> {
    let mut metrics = Registry::with_prefix("millrace");
    let channel_families = ChannelFamilies::register(&mut metrics);
    let data_dir_families = DataDirFamilies::register(&mut metrics);
    for entry in registry.entries() {
        let labels = ChannelLabels {
            channel: entry.name().to_string(),
            r#type: entry.type_name().to_string(),
        };
        let state = entry.state();
        channel_families.record(&labels, &state);
        data_dir_families.record(entry.name(), &state);
    }
    register_adapter_counters(&mut metrics, registry);
    encode_text(&metrics)
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

    /// A registry with a memory and a file channel holding figures, and one adapter's
    /// counters.
    fn busy_registry(base: &std::path::Path) -> ChannelRegistry {
        use millrace_engine::config::{ChannelConfig, FileChannelConfig, MemoryChannelConfig};
        let channels = [
            (
                "m1".to_string(),
                ChannelConfig::Memory(MemoryChannelConfig {
                    byte_capacity_bytes: Some(1 << 20),
                    ..MemoryChannelConfig::default()
                }),
            ),
            (
                "f1".to_string(),
                ChannelConfig::File(FileChannelConfig::with_default_dirs(base, "f1")),
            ),
        ];
        let (registry, openers) = ChannelRegistry::plan(&channels);
        registry.open_all(openers).unwrap();
        for entry in registry.entries() {
            let channel = entry.channel().unwrap();
            let mut transaction = channel.begin().unwrap();
            transaction
                .put(millrace_engine::Event::from_body("figure"))
                .unwrap();
            transaction.commit().unwrap();
        }
        registry
            .record_component_counters(1, "SOURCE", "r1", vec![("EventReceivedCount".into(), 7)])
            .unwrap();
        registry
    }

    #[test]
    fn prometheus_text_lists_every_family_in_order_with_each_channels_figures() {
        let base = tempfile::tempdir().unwrap();
        let registry = busy_registry(base.path());
        let text = prometheus_text(&registry).unwrap();
        let families: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE millrace_"))
            .collect();
        assert_eq!(
            families,
            [
                "channel_size gauge",
                "channel_capacity gauge",
                "channel_fill_percentage gauge",
                "channel_open gauge",
                "channel_unhealthy gauge",
                "channel_start_time_seconds gauge",
                "channel_event_put_attempt counter",
                "channel_event_put_success counter",
                "channel_event_take_attempt counter",
                "channel_event_take_success counter",
                "channel_event_put_error counter",
                "channel_event_take_error counter",
                "channel_checkpoint_write_error counter",
                "channel_checkpoint_backup_write_error counter",
                "data_dir_written_bytes counter",
                "data_dir_syncs counter",
                "data_dir_write_rounds counter",
                "data_dir_transactions counter",
                "data_dir_segments_created counter",
                "data_dir_sync_duration_seconds counter",
                "adapter_counter gauge",
            ]
        );
        let data_dir = base.path().join("f1").join("data");
        let data_dir = data_dir.display();
        for expected in [
            r#"millrace_channel_size{channel="m1",type="memory"} 1"#.to_string(),
            r#"millrace_channel_size{channel="f1",type="file"} 1"#.to_string(),
            r#"millrace_channel_capacity{channel="f1",type="file"} 1000000"#.to_string(),
            r#"millrace_channel_open{channel="f1",type="file"} 1"#.to_string(),
            r#"millrace_channel_unhealthy{channel="m1",type="memory"} 0"#.to_string(),
            r#"millrace_channel_event_put_success_total{channel="m1",type="memory"} 1"#
                .to_string(),
            r#"millrace_channel_event_take_success_total{channel="f1",type="file"} 0"#
                .to_string(),
            format!(r#"millrace_data_dir_transactions_total{{channel="f1",dir="{data_dir}"}} 1"#),
            format!(r#"millrace_data_dir_syncs_total{{channel="f1",dir="{data_dir}"}} 1"#),
            r#"millrace_adapter_counter{type="SOURCE",component="r1",counter="EventReceivedCount"} 7"#
                .to_string(),
        ] {
            assert!(
                text.lines().any(|line| line == expected),
                "missing {expected:?} in\n{text}"
            );
        }
        assert!(
            !text.contains(r#"channel="m1",dir="#),
            "a memory channel has no data directories:\n{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
