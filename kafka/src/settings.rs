//! The keys of Flume's `KafkaSink` and `KafkaSource`, read with the names and defaults
//! of Flume's code (see `docs/configuration.md`), and the client properties they make.
//!
//! Where Millrace differs from Flume, on purpose and documented:
//! - the sink's `kafka.producer.acks` defaults to `all` with librdkafka's idempotent
//!   producer (Flume: `1`, which can lose acknowledged records on a leader failover);
//!   a configured `acks` other than `all`/`-1` turns idempotence off unless
//!   `kafka.producer.enable.idempotence` is set;
//! - the User Guide's spelling `kafka.flumeBatchSize` is accepted beside the code's
//!   `flumeBatchSize` (with a warning), as are the deprecated keys Flume 1.11 still
//!   reads (`brokerList`, `topic`, `batchSize`, `requiredAcks`);
//! - `kafka.producer.transactional.id` is accepted with a warning and not used: the
//!   idempotent producer already removes the duplicates a retried send would make, and
//!   Flume's transactional ids (rewritten with the host and thread name) do not survive a
//!   restart anyway.

use std::time::Duration;

use millrace_config::values;
use millrace_config::ComponentSettings;

use crate::properties::ClientProperties;

/// Flume's `kafka.topic` default (sink).
pub const DEFAULT_SINK_TOPIC: &str = "default-flume-topic";
/// Flume's `flumeBatchSize` default.
pub const DEFAULT_SINK_BATCH_SIZE: u64 = 100;
/// Millrace's `kafka.producer.acks` default (Flume's is `1`).
pub const DEFAULT_SINK_ACKS: &str = "all";
/// Flume's `topicHeader` default (sink and source).
pub const DEFAULT_TOPIC_HEADER: &str = "topic";
/// Flume's `kafka.consumer.group.id` default.
pub const DEFAULT_GROUP_ID: &str = "flume";
/// Flume's `batchSize` default (source).
pub const DEFAULT_SOURCE_BATCH_SIZE: u64 = 1000;
/// Flume's `batchDurationMillis` default (source).
pub const DEFAULT_BATCH_DURATION: Duration = Duration::from_millis(1000);

/// Producer properties Millrace sets itself, whatever `kafka.producer.*` says.
const FORCED_PRODUCER_PROPERTIES: &[&str] = &["bootstrap.servers"];
/// Consumer properties Millrace sets itself: the source commits offsets only after the
/// channel commit, so automatic commits and offset stores would lose events.
const FORCED_CONSUMER_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "enable.auto.commit",
    "enable.auto.offset.store",
];
/// Kafka transactions are not used (see the module documentation).
const TRANSACTIONAL_ID_PROPERTY: &str = "transactional.id";
/// A source reads `kafka.consumer.group.id` as its own key (Flume's `flume` default).
const GROUP_ID_PROPERTY: &str = "group.id";

/// The Flume headers copied to Kafka record headers (sink), or Kafka record headers
/// copied to Flume headers (source): `header.<flumeHeader> = <kafkaHeader>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMapping {
    /// (Flume header, Kafka header) pairs, in file order.
    pub pairs: Vec<(String, String)>,
}

impl HeaderMapping {
    fn read(keys: &mut ComponentSettings<'_>) -> HeaderMapping {
        let pairs = keys
            .with_prefix("header.")
            .into_iter()
            .map(|(flume, kafka, _line)| (flume.to_string(), kafka.to_string()))
            .collect();
        HeaderMapping { pairs }
    }
}

/// A configured Kafka sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSinkSettings {
    /// `kafka.bootstrap.servers`.
    pub bootstrap_servers: String,
    /// `kafka.topic`, possibly with `%{header}` escapes.
    pub topic: String,
    /// `flumeBatchSize`: events per take.
    pub batch_size: u64,
    /// `useFlumeEventFormat`.
    pub use_flume_event_format: bool,
    /// `defaultPartitionId`.
    pub default_partition_id: Option<i32>,
    /// `partitionIdHeader`.
    pub partition_id_header: Option<String>,
    /// `allowTopicOverride`.
    pub allow_topic_override: bool,
    /// `topicHeader`.
    pub topic_header: String,
    /// `timestampHeader`.
    pub timestamp_header: Option<String>,
    /// `header.*`.
    pub headers: HeaderMapping,
    /// The producer's properties: defaults, `kafka.producer.*`, forced values.
    pub producer: ClientProperties,
}

/// `key`, else the deprecated `old_key` (with a warning naming the new key).
fn text_or_deprecated(
    keys: &mut ComponentSettings<'_>,
    key: &str,
    old_key: &str,
) -> Option<String> {
    let current = keys.text(key);
    let old = keys.text(old_key);
    if old.is_some() {
        let message = if current.is_some() {
            format!("deprecated and overridden by {key}")
        } else {
            format!("deprecated (removed after Flume 1.11): use {key}")
        };
        keys.warn(old_key, message);
    }
    current.or(old)
}

impl KafkaSinkSettings {
    /// Reads a Kafka sink's keys; `None` when a required one is missing or bad.
    pub fn read(keys: &mut ComponentSettings<'_>) -> Option<KafkaSinkSettings> {
        let bootstrap_servers = text_or_deprecated(keys, "kafka.bootstrap.servers", "brokerList");
        if bootstrap_servers.is_none() {
            keys.missing(
                "kafka.bootstrap.servers",
                "the Kafka brokers to start from, host:port[,host:port…]",
            );
        }
        let topic = text_or_deprecated(keys, "kafka.topic", "topic")
            .unwrap_or_else(|| DEFAULT_SINK_TOPIC.to_string());
        let batch_size = Self::read_batch_size(keys);
        let use_flume_event_format = keys.boolean_or("useFlumeEventFormat", false);
        let default_partition_id = keys.parsed("defaultPartitionId", values::partition_number);
        let partition_id_header = keys.text("partitionIdHeader");
        let allow_topic_override = keys.boolean_or("allowTopicOverride", true);
        let topic_header = keys.text_or("topicHeader", DEFAULT_TOPIC_HEADER);
        let timestamp_header = keys.text("timestampHeader");
        let headers = HeaderMapping::read(keys);

        let mut producer = ClientProperties::default();
        producer.set("acks", DEFAULT_SINK_ACKS);
        if let Some(acks) = keys.text("requiredAcks") {
            keys.warn(
                "requiredAcks",
                "deprecated (removed after Flume 1.11): use kafka.producer.acks",
            );
            producer.set("acks", acks);
        }
        if keys
            .text(&format!("kafka.producer.{TRANSACTIONAL_ID_PROPERTY}"))
            .is_some()
        {
            keys.warn(
                &format!("kafka.producer.{TRANSACTIONAL_ID_PROPERTY}"),
                "accepted but not used: Millrace's Kafka sink uses the idempotent producer, \
                 which removes the duplicates of retried sends without Kafka transactions",
            );
        }
        producer.read_pass_through(
            keys,
            "kafka.producer.",
            FORCED_PRODUCER_PROPERTIES,
            &[TRANSACTIONAL_ID_PROPERTY],
        );
        let acks_all = matches!(producer.get("acks"), Some("all" | "-1"));
        if producer.get("enable.idempotence").is_none() {
            producer.set(
                "enable.idempotence",
                if acks_all { "true" } else { "false" },
            );
        }
        let bootstrap_servers = bootstrap_servers?;
        producer.set("bootstrap.servers", &bootstrap_servers);
        if keys.error_count() > 0 {
            return None;
        }
        Some(KafkaSinkSettings {
            bootstrap_servers,
            topic,
            batch_size,
            use_flume_event_format,
            default_partition_id,
            partition_id_header,
            allow_topic_override,
            topic_header,
            timestamp_header,
            headers,
            producer,
        })
    }

    /// `flumeBatchSize`, or the User Guide's `kafka.flumeBatchSize`, or the deprecated
    /// `batchSize`.
    fn read_batch_size(keys: &mut ComponentSettings<'_>) -> u64 {
        let code_spelling = keys.parsed("flumeBatchSize", values::positive_integer);
        let guide_spelling = keys.parsed("kafka.flumeBatchSize", values::positive_integer);
        if guide_spelling.is_some() {
            keys.warn(
                "kafka.flumeBatchSize",
                "the Flume User Guide's spelling, which Flume itself ignores; Millrace reads \
                 it as flumeBatchSize",
            );
        }
        let deprecated = keys.parsed("batchSize", values::positive_integer);
        if deprecated.is_some() {
            keys.warn(
                "batchSize",
                "deprecated (removed after Flume 1.11): use flumeBatchSize",
            );
        }
        code_spelling
            .or(guide_spelling)
            .or(deprecated)
            .unwrap_or(DEFAULT_SINK_BATCH_SIZE)
    }
}

/// What a Kafka source subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicSelection {
    /// `kafka.topics`: these topics.
    Names(Vec<String>),
    /// `kafka.topics.regex`: every topic matching this pattern.
    Pattern(String),
}

impl TopicSelection {
    /// The subscription librdkafka takes: names, or a pattern marked by a leading `^`.
    pub fn subscription(&self) -> Vec<String> {
        match self {
            TopicSelection::Names(names) => names.clone(),
            TopicSelection::Pattern(pattern) if pattern.starts_with('^') => vec![pattern.clone()],
            TopicSelection::Pattern(pattern) => vec![format!("^{pattern}")],
        }
    }
}

/// A configured Kafka source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSourceSettings {
    /// `kafka.bootstrap.servers`.
    pub bootstrap_servers: String,
    /// `kafka.topics` or `kafka.topics.regex`.
    pub topics: TopicSelection,
    /// `kafka.consumer.group.id`.
    pub group_id: String,
    /// `batchSize`: most events per channel transaction.
    pub batch_size: usize,
    /// `batchDurationMillis`: longest time spent assembling one batch.
    pub batch_duration: Duration,
    /// `useFlumeEventFormat`.
    pub use_flume_event_format: bool,
    /// `setTopicHeader`.
    pub set_topic_header: bool,
    /// `topicHeader`.
    pub topic_header: String,
    /// `header.*`: (Flume header, Kafka header).
    pub headers: HeaderMapping,
    /// The consumer's properties: defaults, `kafka.consumer.*`, forced values.
    pub consumer: ClientProperties,
}

/// Source keys Flume read up to 1.11.0 and then removed.
const REMOVED_SOURCE_KEYS: &[&str] = &[
    "migrateZookeeperOffsets",
    "zookeeperConnect",
    "topic",
    "groupId",
];

impl KafkaSourceSettings {
    /// Reads a Kafka source's keys; `None` when a required one is missing or bad.
    pub fn read(keys: &mut ComponentSettings<'_>) -> Option<KafkaSourceSettings> {
        let bootstrap_servers = keys.required_text(
            "kafka.bootstrap.servers",
            "the Kafka brokers to start from, host:port[,host:port…]",
        );
        let names = keys.text("kafka.topics");
        let pattern = keys.text("kafka.topics.regex");
        let topics = match (names, pattern) {
            (_, Some(pattern)) => {
                if keys.is_set("kafka.topics") {
                    keys.warn(
                        "kafka.topics",
                        "ignored: kafka.topics.regex is set and takes precedence (as in Flume)",
                    );
                }
                Some(TopicSelection::Pattern(pattern))
            }
            (Some(names), None) => {
                let names: Vec<String> = names
                    .split(',')
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .map(str::to_string)
                    .collect();
                if names.is_empty() {
                    keys.refuse("kafka.topics", "a comma-separated list of topic names", "");
                    None
                } else {
                    Some(TopicSelection::Names(names))
                }
            }
            (None, None) => {
                keys.missing(
                    "kafka.topics",
                    "the topics to read (or kafka.topics.regex, a pattern)",
                );
                None
            }
        };
        let group_id = keys.text_or("kafka.consumer.group.id", DEFAULT_GROUP_ID);
        let batch_size = keys.count_or("batchSize", DEFAULT_SOURCE_BATCH_SIZE);
        let batch_duration = keys.parsed_or(
            "batchDurationMillis",
            DEFAULT_BATCH_DURATION,
            values::positive_milliseconds,
        );
        let use_flume_event_format = keys.boolean_or("useFlumeEventFormat", false);
        let set_topic_header = keys.boolean_or("setTopicHeader", true);
        let topic_header = keys.text_or("topicHeader", DEFAULT_TOPIC_HEADER);
        let headers = HeaderMapping::read(keys);
        for key in ["backoffSleepIncrement", "maxBackoffSleep"] {
            if keys
                .parsed(key, values::non_negative_milliseconds)
                .is_some()
            {
                keys.warn(
                    key,
                    "accepted but not used: the source waits on Kafka for records (up to \
                     batchDurationMillis) instead of sleeping after an empty poll",
                );
            }
        }
        for key in REMOVED_SOURCE_KEYS {
            if keys.text(key).is_some() {
                keys.warn(
                    key,
                    "removed after Flume 1.11 and not used: offsets are read from Kafka only",
                );
            }
        }

        let mut consumer = ClientProperties::default();
        consumer.read_pass_through(
            keys,
            "kafka.consumer.",
            FORCED_CONSUMER_PROPERTIES,
            &[GROUP_ID_PROPERTY],
        );
        let bootstrap_servers = bootstrap_servers?;
        consumer.set("bootstrap.servers", &bootstrap_servers);
        consumer.set(GROUP_ID_PROPERTY, &group_id);
        consumer.set("enable.auto.commit", "false");
        consumer.set("enable.auto.offset.store", "false");
        let topics = topics?;
        if keys.error_count() > 0 {
            return None;
        }
        Some(KafkaSourceSettings {
            bootstrap_servers,
            topics,
            group_id,
            batch_size: usize::try_from(batch_size).unwrap_or(usize::MAX),
            batch_duration,
            use_flume_event_format,
            set_topic_header,
            topic_header,
            headers,
            consumer,
        })
    }
}
