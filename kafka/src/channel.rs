//! Flume's Kafka channel (`type = org.apache.flume.channel.kafka.KafkaChannel`, alias
//! `kafka`): a channel whose storage is one Kafka topic, shared by every channeld (and
//! Flume agent) configured with the same topic and consumer group.
//!
//! # The delivery rules
//!
//! - **Put.** Puts are held in the transaction; its commit sends them all and returns
//!   only once Kafka acknowledged every record (`acks = all` and librdkafka's idempotent
//!   producer by default). Any record not acknowledged fails the commit (the client sees
//!   the error and retries); records Kafka did acknowledge stay in the topic, so the
//!   retry duplicates them, as in Flume.
//! - **Take.** Takes read through this channeld's one consumer in the channel's group
//!   (created at the first take, so a channeld that only puts never joins the group and
//!   holds no partitions). A take commit commits, per partition, the offset below which
//!   every record read is finished: taken by a committed transaction, or skipped as
//!   undecodable. Records still held by open transactions (or returned by a rollback)
//!   hold the offset back, so concurrent transactions committing out of order never
//!   commit past a record that is not done.
//! - **Rollback** returns the transaction's events to a head buffer that later takes on
//!   this channeld serve first, in their original order; their offsets stay uncommitted
//!   until they are taken again and committed.
//! - **Crash.** Nothing not committed is committed in Kafka: when a channeld dies
//!   (`kill -9`), the group gives its partitions to the others, which read its
//!   uncommitted records again from the committed offsets. Duplicates, never loss.
//! - **Rebalance.** When partitions are revoked, the offsets finished so far are
//!   committed, the head buffer drops the revoked partitions' records, and open
//!   transactions' records of those partitions no longer move offsets: whoever owns the
//!   partitions next reads them again (duplicates, counted in the log).
//!
//! The value of a record is the bare `AvroFlumeEvent` datum with `parseAsFlumeEvent`
//! (Flume's default), else the body alone ([`crate::record`]); the `key` header becomes
//! the record key, and a record key comes back as the `key` header.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use millrace_engine::config::KafkaChannelConfig;
use millrace_engine::{
    Channel, ChannelCounters, ChannelError, ChannelHealth, ChannelStats, CommitAttempt, Event,
    OpenError, PendingCommit, PutAttempt, TakeStop, Transaction,
};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, warn};

use crate::producer::KEY_HEADER;
use crate::properties::check_property;
use crate::record::decode_value;

/// How long to wait before queueing again when librdkafka's local queue is full.
const QUEUE_FULL_RETRY_DELAY: Duration = Duration::from_millis(10);
/// How often the health watcher asks the cluster for the topic's metadata.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How long one metadata request may take before the cluster counts as unreachable.
const HEALTH_METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one poll holds the consumer, so that waiting takers take turns.
const POLL_SLICE: Duration = Duration::from_millis(100);
/// How long a clean stop waits for records still in flight.
const FLUSH_ON_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// librdkafka reports every queued record within `message.timeout.ms` (300 s by
/// default); a put commit waits that long plus this margin before giving up on a report.
const DELIVERY_REPORT_MARGIN: Duration = Duration::from_secs(30);
/// librdkafka's default `message.timeout.ms`.
const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(300);

/// `ChannelCapacity` of a Kafka channel without a configured `capacity`: Java's
/// `Long.MAX_VALUE`, so that `ChannelFillPercentage` reads about 0 (a capacity of 0 would
/// read as full, and fire every fill alert) while nothing bounds the topic.
const UNBOUNDED_CAPACITY: u64 = i64::MAX as u64;

/// Locks `mutex`, carrying on with the data if a holder panicked (every update here
/// leaves the data consistent between statements).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Flume's channel counters (the engine's, shared by every channel type) and the Kafka
/// channel's own.
#[derive(Debug)]
struct Counters {
    flume: ChannelCounters,
    rollbacks: AtomicU64,
    offset_commit_errors: AtomicU64,
}

fn add(counter: &AtomicU64, amount: u64) {
    counter.fetch_add(amount, Ordering::Relaxed);
}

/// One record read from Kafka and handed to (or held for) a take.
#[derive(Debug, Clone)]
struct TakenRecord {
    partition: i32,
    offset: i64,
    /// The assignment the record was read under (see [`TakeBook::epoch`]).
    epoch: u64,
    event: Event,
}

/// What this channeld knows of one assigned partition.
#[derive(Debug)]
struct PartitionBook {
    epoch: u64,
    /// The offset after the last record read.
    next_offset: i64,
    /// Offsets read and not finished: held by open transactions or the head buffer.
    outstanding: BTreeSet<i64>,
    /// The offset last committed by this channeld.
    committed: i64,
}

impl PartitionBook {
    /// The offset below which every record read is finished.
    fn committable(&self) -> i64 {
        self.outstanding
            .first()
            .copied()
            .unwrap_or(self.next_offset)
    }
}

/// The take side's shared state.
#[derive(Debug, Default)]
struct TakeBook {
    /// Rolled-back records, served before anything new.
    head: VecDeque<TakenRecord>,
    partitions: HashMap<i32, PartitionBook>,
    /// Bumped at every revocation: a record read under an older epoch no longer moves
    /// its partition's offsets.
    epoch: u64,
    /// Events taken by open transactions (for `ChannelSize`).
    in_flight: u64,
}

impl TakeBook {
    /// Puts rolled-back `records` in front of the head buffer, in their order; those of
    /// partitions revoked since they were read are dropped (their next owner reads them
    /// again from the committed offset).
    fn return_to_head(&mut self, records: Vec<TakenRecord>) {
        self.in_flight = self.in_flight.saturating_sub(records.len() as u64);
        let current: Vec<TakenRecord> = records
            .into_iter()
            .filter(|record| {
                self.partitions
                    .get(&record.partition)
                    .is_some_and(|known| known.epoch == record.epoch)
            })
            .collect();
        for record in current.into_iter().rev() {
            self.head.push_front(record);
        }
    }
}

/// The consumer's context: commits what is finished when partitions are revoked.
struct TakeContext {
    topic: String,
    book: Arc<Mutex<TakeBook>>,
    counters: Arc<Counters>,
}

impl ClientContext for TakeContext {}

impl ConsumerContext for TakeContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        let mut offsets = TopicPartitionList::new();
        let mut dropped = 0_usize;
        {
            let mut book = lock(&self.book);
            book.epoch += 1;
            for element in revoked.elements() {
                if element.topic() != self.topic {
                    continue;
                }
                let partition = element.partition();
                if let Some(known) = book.partitions.remove(&partition) {
                    let committable = known.committable();
                    if committable > known.committed {
                        let _ = offsets.add_partition_offset(
                            &self.topic,
                            partition,
                            Offset::Offset(committable),
                        );
                    }
                }
                let before = book.head.len();
                book.head.retain(|record| record.partition != partition);
                dropped += before - book.head.len();
            }
        }
        if offsets.count() > 0 {
            if let Err(error) = consumer.commit(&offsets, CommitMode::Sync) {
                add(&self.counters.offset_commit_errors, 1);
                warn!(%error, "Kafka channel: committing finished offsets of revoked partitions failed; their records will be read again");
            }
        }
        info!(
            revoked = revoked.count(),
            dropped_rolled_back = dropped,
            "Kafka channel: partitions revoked; records held for them will be read again by their next owner"
        );
    }
}

/// One put transaction's delivery reports.
#[derive(Debug, Default)]
struct Deliveries {
    state: Mutex<DeliveryState>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct DeliveryState {
    pending: usize,
    acknowledged: usize,
    failed: usize,
    first_error: Option<String>,
}

impl Deliveries {
    fn finish_one(&self, outcome: Result<(), String>) {
        let mut state = lock(&self.state);
        state.pending = state.pending.saturating_sub(1);
        match outcome {
            Ok(()) => state.acknowledged += 1,
            Err(error) => {
                state.failed += 1;
                state.first_error.get_or_insert(error);
            }
        }
        if state.pending == 0 {
            self.done.notify_all();
        }
    }
}

/// The producer's context: delivery reports to their transaction, errors to health.
struct PutContext {
    health: Arc<Mutex<Option<String>>>,
    /// `Kafka at <brokers> (topic <topic>)`, for health reasons.
    cluster: String,
}

impl ClientContext for PutContext {
    fn error(&self, error: RdKafkaError, reason: &str) {
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown)
        ) {
            *lock(&self.health) = Some(format!(
                "{} is unreachable: every broker is down ({reason})",
                self.cluster
            ));
        }
        warn!(%error, reason, "Kafka channel producer error");
    }
}

impl ProducerContext for PutContext {
    type DeliveryOpaque = Arc<Deliveries>;

    fn delivery(&self, result: &DeliveryResult<'_>, deliveries: Arc<Deliveries>) {
        deliveries.finish_one(match result {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(error.to_string()),
        });
    }
}

/// The health watcher's stop signal.
#[derive(Debug, Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

/// A Kafka channel.
pub struct KafkaChannel {
    shared: Arc<Shared>,
}

/// What the channel and its transactions share.
struct Shared {
    name: String,
    config: KafkaChannelConfig,
    producer: Arc<ThreadedProducer<PutContext>>,
    consumer: Mutex<Option<Arc<BaseConsumer<TakeContext>>>>,
    /// Held while polling, so that one poll at a time feeds the book.
    poll_lock: Mutex<()>,
    /// Held while computing and committing offsets, so commits never go backwards.
    commit_lock: Mutex<()>,
    book: Arc<Mutex<TakeBook>>,
    counters: Arc<Counters>,
    /// Why Kafka is unreachable, or `None`.
    unreachable: Arc<Mutex<Option<String>>>,
    closed: AtomicBool,
    stop: Arc<Stop>,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for KafkaChannel {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KafkaChannel")
            .field("name", &self.shared.name)
            .field("config", &self.shared.config)
            .finish()
    }
}

/// librdkafka's configuration of `properties`, each checked first so that a bad one
/// names itself.
fn client_config(
    channel: &str,
    role: &str,
    properties: &[(String, String)],
) -> Result<ClientConfig, OpenError> {
    let mut config = ClientConfig::new();
    for (name, value) in properties {
        check_property(name, value).map_err(|problem| OpenError::External {
            channel: channel.to_string(),
            reason: format!("kafka.{role}.{name} = {value:?} is refused by librdkafka: {problem}"),
        })?;
        config.set(name, value);
    }
    Ok(config)
}

impl KafkaChannel {
    /// Opens the channel: creates its producer (librdkafka connects in the background)
    /// and starts watching the cluster's reachability. The consumer is created at the
    /// first take.
    pub fn open(name: &str, config: KafkaChannelConfig) -> Result<KafkaChannel, OpenError> {
        let unreachable = Arc::new(Mutex::new(None));
        let producer: ThreadedProducer<PutContext> =
            client_config(name, "producer", &config.producer_properties)?
                .create_with_context(PutContext {
                    health: Arc::clone(&unreachable),
                    cluster: format!(
                        "Kafka at {} (topic {})",
                        config.bootstrap_servers, config.topic
                    ),
                })
                .map_err(|error| OpenError::External {
                    channel: name.to_string(),
                    reason: format!(
                        "cannot create the Kafka producer for {}: {error}",
                        config.bootstrap_servers
                    ),
                })?;
        // The consumer's properties are checked now, so a bad one fails the open rather
        // than the first take.
        client_config(name, "consumer", &config.consumer_properties)?;
        let counters = Arc::new(Counters {
            flume: ChannelCounters::started_now(),
            rollbacks: AtomicU64::new(0),
            offset_commit_errors: AtomicU64::new(0),
        });
        let producer = Arc::new(producer);
        let stop = Arc::new(Stop::default());
        let watcher = spawn_health_watcher(
            name,
            &config,
            Arc::clone(&producer),
            Arc::clone(&unreachable),
            Arc::clone(&stop),
        );
        info!(channel = name, bootstrap_servers = %config.bootstrap_servers, topic = %config.topic, group = %config.group_id, "Kafka channel opened");
        Ok(KafkaChannel {
            shared: Arc::new(Shared {
                name: name.to_string(),
                config,
                producer,
                consumer: Mutex::new(None),
                poll_lock: Mutex::new(()),
                commit_lock: Mutex::new(()),
                book: Arc::default(),
                counters,
                unreachable,
                closed: AtomicBool::new(false),
                stop,
                watcher: Mutex::new(Some(watcher)),
            }),
        })
    }

    /// Offset commits that failed (their records may be read again).
    pub fn offset_commit_errors(&self) -> u64 {
        self.shared
            .counters
            .offset_commit_errors
            .load(Ordering::Relaxed)
    }

    /// Take transactions rolled back.
    pub fn rollbacks(&self) -> u64 {
        self.shared.counters.rollbacks.load(Ordering::Relaxed)
    }
}

impl Shared {
    fn external(&self, operation: &'static str, reason: impl Into<String>) -> ChannelError {
        ChannelError::External {
            channel: self.name.clone(),
            operation,
            reason: reason.into(),
        }
    }

    fn check_open(&self) -> Result<(), ChannelError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ChannelError::Closed {
                channel: self.name.clone(),
            });
        }
        Ok(())
    }

    /// The consumer, created and subscribed at the first take.
    fn consumer(&self) -> Result<Arc<BaseConsumer<TakeContext>>, ChannelError> {
        let mut slot = lock(&self.consumer);
        if let Some(consumer) = slot.as_ref() {
            return Ok(Arc::clone(consumer));
        }
        let config = client_config(&self.name, "consumer", &self.config.consumer_properties)
            .map_err(|error| self.external("take", error.to_string()))?;
        let consumer: BaseConsumer<TakeContext> = config
            .create_with_context(TakeContext {
                topic: self.config.topic.clone(),
                book: Arc::clone(&self.book),
                counters: Arc::clone(&self.counters),
            })
            .map_err(|error| {
                self.external(
                    "take",
                    format!(
                        "cannot create the Kafka consumer for {}: {error}",
                        self.config.bootstrap_servers
                    ),
                )
            })?;
        consumer
            .subscribe(&[self.config.topic.as_str()])
            .map_err(|error| {
                self.external(
                    "take",
                    format!("cannot subscribe to {}: {error}", self.config.topic),
                )
            })?;
        info!(channel = %self.name, topic = %self.config.topic, group = %self.config.group_id, "Kafka channel consumer joined its group");
        let consumer = Arc::new(consumer);
        *slot = Some(Arc::clone(&consumer));
        Ok(consumer)
    }

    /// A rolled-back record, if any is waiting.
    fn pop_rolled_back(&self) -> Option<TakenRecord> {
        let mut book = lock(&self.book);
        let record = book.head.pop_front()?;
        book.in_flight += 1;
        Some(record)
    }

    /// Polls once (up to `timeout`) and books what came: `Some` record to take, or
    /// `None` when nothing takeable came (an undecodable record is skipped and counted).
    fn poll_once(
        &self,
        consumer: &BaseConsumer<TakeContext>,
        timeout: Duration,
    ) -> Option<TakenRecord> {
        match consumer.poll(timeout)? {
            Ok(message) => self.book_message(&message),
            Err(error) => {
                warn!(channel = %self.name, %error, "Kafka channel: reading failed; librdkafka retries");
                None
            }
        }
    }

    fn book_message(&self, message: &BorrowedMessage<'_>) -> Option<TakenRecord> {
        let value = Bytes::copy_from_slice(message.payload().unwrap_or_default());
        let decoded = decode_value(value, self.config.parse_as_flume_event);
        let partition = message.partition();
        let offset = message.offset();
        let mut book = lock(&self.book);
        let epoch = book.epoch;
        let known = book
            .partitions
            .entry(partition)
            .or_insert_with(|| PartitionBook {
                epoch,
                next_offset: offset,
                outstanding: BTreeSet::new(),
                committed: -1,
            });
        known.next_offset = known.next_offset.max(offset + 1);
        match decoded {
            Ok(protocol_event) => {
                known.outstanding.insert(offset);
                let record_epoch = known.epoch;
                let mut event = Event::from_body(protocol_event.body);
                event.headers.extend(protocol_event.headers);
                if let Some(key) = message.key() {
                    event.headers.insert(
                        KEY_HEADER.to_string(),
                        String::from_utf8_lossy(key).into_owned(),
                    );
                }
                book.in_flight += 1;
                Some(TakenRecord {
                    partition,
                    offset,
                    epoch: record_epoch,
                    event,
                })
            }
            Err(error) => {
                drop(book);
                self.counters.flume.count_take_errors(1);
                warn!(channel = %self.name, topic = %self.config.topic, partition, offset, %error, "Kafka channel: skipping a record that is not an AvroFlumeEvent (parseAsFlumeEvent = true); its offset is committed with the next take commit");
                None
            }
        }
    }

    /// Commits the offsets the finished `records` allow.
    fn finish_takes(&self, records: &[TakenRecord]) {
        if records.is_empty() {
            return;
        }
        let Some(consumer) = lock(&self.consumer).clone() else {
            return;
        };
        let _serialized = lock(&self.commit_lock);
        let mut offsets = TopicPartitionList::new();
        let mut planned = Vec::new();
        {
            let mut book = lock(&self.book);
            book.in_flight = book.in_flight.saturating_sub(records.len() as u64);
            let mut touched = BTreeSet::new();
            for record in records {
                if let Some(known) = book.partitions.get_mut(&record.partition) {
                    if known.epoch == record.epoch {
                        known.outstanding.remove(&record.offset);
                        touched.insert(record.partition);
                    }
                }
            }
            for partition in touched {
                let known = &book.partitions[&partition];
                let committable = known.committable();
                if committable > known.committed {
                    let _ = offsets.add_partition_offset(
                        &self.config.topic,
                        partition,
                        Offset::Offset(committable),
                    );
                    planned.push((partition, known.epoch, committable));
                }
            }
        }
        if planned.is_empty() {
            return;
        }
        match consumer.commit(&offsets, CommitMode::Sync) {
            Ok(()) => {
                let mut book = lock(&self.book);
                for (partition, epoch, committed) in planned {
                    if let Some(known) = book.partitions.get_mut(&partition) {
                        if known.epoch == epoch {
                            known.committed = known.committed.max(committed);
                        }
                    }
                }
            }
            Err(error) => {
                // As in Flume the take still commits: its events were delivered. The
                // next commit on the partition carries the offset further; until then a
                // crash reads them again (duplicates, never loss).
                add(&self.counters.offset_commit_errors, 1);
                warn!(channel = %self.name, %error, "Kafka channel: committing offsets failed; the records may be read again");
            }
        }
    }

    /// Returns `records` to the head buffer, in front, in their order.
    fn return_to_head(&self, records: Vec<TakenRecord>) {
        if records.is_empty() {
            return;
        }
        lock(&self.book).return_to_head(records);
    }

    /// The partition a put goes to: `partitionIdHeader`'s value, else
    /// `defaultPartitionId`, else the producer's partitioner.
    fn partition_of(&self, event: &Event) -> Result<Option<i32>, ChannelError> {
        let header_value = self
            .config
            .partition_id_header
            .as_deref()
            .and_then(|header| Some((header, event.headers.get(header)?)));
        match header_value {
            Some((header, value)) => value
                .trim()
                .parse::<i32>()
                .ok()
                .filter(|partition| *partition >= 0)
                .map(Some)
                .ok_or_else(|| {
                    self.external(
                        "put",
                        format!(
                            "header {header} (partitionIdHeader) is {value:?}, not a partition \
                             number"
                        ),
                    )
                }),
            None => Ok(self.config.default_partition_id),
        }
    }

    /// Sends `puts` and waits for every delivery report.
    fn send_puts(&self, puts: &[PlannedPut]) -> Result<(), ChannelError> {
        let deliveries = Arc::new(Deliveries::default());
        lock(&deliveries.state).pending = puts.len();
        for put in puts {
            loop {
                let mut record: BaseRecord<'_, str, [u8], Arc<Deliveries>> =
                    BaseRecord::with_opaque_to(&self.config.topic, Arc::clone(&deliveries))
                        .payload(put.value.as_slice());
                if let Some(key) = put.key.as_deref() {
                    record = record.key(key);
                }
                if let Some(partition) = put.partition {
                    record = record.partition(partition);
                }
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        std::thread::sleep(QUEUE_FULL_RETRY_DELAY);
                    }
                    Err((error, _)) => {
                        deliveries.finish_one(Err(error.to_string()));
                        break;
                    }
                }
            }
        }
        let deadline = Instant::now() + self.delivery_timeout() + DELIVERY_REPORT_MARGIN;
        let mut state = lock(&deliveries.state);
        while state.pending > 0 {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            state = deliveries
                .done
                .wait_timeout(state, remaining)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        if state.acknowledged == puts.len() {
            return Ok(());
        }
        Err(self.external(
            "commit",
            format!(
                "{} of {} records were not acknowledged by Kafka ({} were, and stay in topic \
                 {}: a retry duplicates them; {} had no report yet); first error: {}",
                puts.len() - state.acknowledged,
                puts.len(),
                state.acknowledged,
                self.config.topic,
                state.pending,
                state.first_error.clone().unwrap_or_else(|| "none".into())
            ),
        ))
    }

    /// `message.timeout.ms` (or `delivery.timeout.ms`) as configured, else librdkafka's
    /// default.
    fn delivery_timeout(&self) -> Duration {
        self.config
            .producer_properties
            .iter()
            .rev()
            .find(|(name, _)| name == "message.timeout.ms" || name == "delivery.timeout.ms")
            .and_then(|(_, value)| value.parse::<u64>().ok())
            .map_or(DEFAULT_MESSAGE_TIMEOUT, Duration::from_millis)
    }
}

fn spawn_health_watcher(
    name: &str,
    config: &KafkaChannelConfig,
    producer: Arc<ThreadedProducer<PutContext>>,
    unreachable: Arc<Mutex<Option<String>>>,
    stop: Arc<Stop>,
) -> JoinHandle<()> {
    let topic = config.topic.clone();
    let bootstrap_servers = config.bootstrap_servers.clone();
    let thread_name = format!("kafka-health-{name}");
    let spawned = std::thread::Builder::new()
        .name(thread_name.chars().take(15).collect())
        .spawn(move || loop {
            let reason = match producer
                .client()
                .fetch_metadata(Some(&topic), HEALTH_METADATA_TIMEOUT)
            {
                Ok(metadata) => metadata
                    .topics()
                    .iter()
                    .find(|known| known.name() == topic)
                    .and_then(|known| known.error())
                    .map(|error| {
                        format!(
                            "Kafka at {bootstrap_servers} reports topic {topic} as unusable: \
                             {:?}",
                            RDKafkaErrorCode::from(error)
                        )
                    }),
                Err(error) => Some(format!(
                    "Kafka at {bootstrap_servers} is unreachable: no metadata for topic \
                     {topic} within {} ms: {error}",
                    HEALTH_METADATA_TIMEOUT.as_millis()
                )),
            };
            *lock(&unreachable) = reason;
            let stopped = lock(&stop.stopped);
            let (stopped, _) = stop
                .wake
                .wait_timeout_while(stopped, HEALTH_CHECK_INTERVAL, |stopped| !*stopped)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *stopped {
                return;
            }
        });
    spawned.expect("the OS starts a thread for the Kafka channel's health watcher")
}

impl Channel for KafkaChannel {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn begin(&self) -> Result<Box<dyn Transaction>, ChannelError> {
        self.shared.check_open()?;
        Ok(Box::new(KafkaTransaction {
            channel: Arc::clone(&self.shared),
            puts: Vec::new(),
            taken: Vec::new(),
        }))
    }

    fn stats(&self) -> ChannelStats {
        let channel_size = {
            let book = lock(&self.shared.book);
            book.head.len() as u64 + book.in_flight
        };
        let channel_capacity = match self.shared.config.capacity {
            0 => UNBOUNDED_CAPACITY,
            configured => configured,
        };
        self.shared
            .counters
            .flume
            .snapshot(channel_size, channel_capacity)
    }

    fn health(&self) -> ChannelHealth {
        if self.shared.closed.load(Ordering::Acquire) {
            return ChannelHealth::Closed;
        }
        match lock(&self.shared.unreachable).clone() {
            Some(reason) => ChannelHealth::Failed { reason },
            None => ChannelHealth::Open,
        }
    }

    fn close(&self) -> Result<(), ChannelError> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        *lock(&self.shared.stop.stopped) = true;
        self.shared.stop.wake.notify_all();
        if let Some(watcher) = lock(&self.shared.watcher).take() {
            let _ = watcher.join();
        }
        if let Err(error) = self.shared.producer.flush(FLUSH_ON_CLOSE_TIMEOUT) {
            warn!(channel = %self.shared.name, %error, "Kafka channel: records still in flight at close");
        }
        if let Some(consumer) = lock(&self.shared.consumer).take() {
            consumer.unsubscribe();
        }
        self.shared.counters.flume.mark_stopped();
        Ok(())
    }
}

/// A put waiting for its transaction's commit.
struct PlannedPut {
    key: Option<String>,
    partition: Option<i32>,
    value: Vec<u8>,
}

/// A Kafka channel transaction.
pub struct KafkaTransaction {
    channel: Arc<Shared>,
    puts: Vec<PlannedPut>,
    taken: Vec<TakenRecord>,
}

impl Drop for KafkaChannel {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

impl KafkaTransaction {
    fn transaction_full(&self, operation: &'static str) -> ChannelError {
        ChannelError::TransactionFull {
            channel: self.channel.name.clone(),
            transaction_capacity: self.channel.config.transaction_capacity,
            operation,
        }
    }

    /// Whether one more take fits, counting a refused one as an attempt.
    fn take_room(&self, max_events: usize) -> Result<usize, ChannelError> {
        let capacity = self.channel.config.transaction_capacity;
        let room = capacity.saturating_sub(self.taken.len() as u64);
        if room == 0 {
            self.channel.counters.flume.count_take_attempts(1);
            return Err(self.transaction_full("take"));
        }
        Ok(usize::try_from(room).unwrap_or(usize::MAX).min(max_events))
    }

    fn hand_out(&mut self, record: TakenRecord) -> Event {
        self.channel.counters.flume.count_take_attempts(1);
        let event = record.event.clone();
        self.taken.push(record);
        event
    }

    fn put_event(&mut self, event: Event) -> Result<(), ChannelError> {
        let shared = &self.channel;
        shared.counters.flume.count_put_attempts(1);
        shared.check_open()?;
        if self.puts.len() as u64 >= shared.config.transaction_capacity {
            return Err(self.transaction_full("put"));
        }
        let partition = shared.partition_of(&event)?;
        let mut value = Vec::new();
        if shared.config.parse_as_flume_event {
            millrace_avro::encode_event(
                event
                    .headers
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str())),
                &event.body,
                &mut value,
            );
        } else {
            value.extend_from_slice(&event.body);
        }
        self.puts.push(PlannedPut {
            key: event.headers.get(KEY_HEADER).cloned(),
            partition,
            value,
        });
        Ok(())
    }

    fn take_blocking(&mut self, wait: Duration) -> Result<Option<Event>, ChannelError> {
        self.take_room(1)?;
        let shared = Arc::clone(&self.channel);
        shared.check_open()?;
        if let Some(record) = shared.pop_rolled_back() {
            return Ok(Some(self.hand_out(record)));
        }
        let consumer = shared.consumer()?;
        let deadline = Instant::now() + wait;
        loop {
            {
                let _polling = lock(&shared.poll_lock);
                if let Some(record) = shared.pop_rolled_back() {
                    return Ok(Some(self.hand_out(record)));
                }
                let remaining = deadline.saturating_duration_since(Instant::now());
                let slice = remaining.min(POLL_SLICE).min(shared.config.poll_timeout);
                if let Some(record) = shared.poll_once(&consumer, slice) {
                    return Ok(Some(self.hand_out(record)));
                }
            }
            if Instant::now() >= deadline {
                shared.counters.flume.count_take_attempts(1);
                return Ok(None);
            }
        }
    }

    fn finish(mut self, commit: bool) -> Result<(), ChannelError> {
        let channel = Arc::clone(&self.channel);
        let puts = std::mem::take(&mut self.puts);
        let taken = std::mem::take(&mut self.taken);
        drop(self);
        if !commit {
            if !taken.is_empty() {
                add(&channel.counters.rollbacks, 1);
            }
            channel.return_to_head(taken);
            return Ok(());
        }
        if !puts.is_empty() {
            if let Err(error) = channel.send_puts(&puts) {
                channel.counters.flume.count_put_errors(puts.len() as u64);
                add(&channel.counters.rollbacks, u64::from(!taken.is_empty()));
                channel.return_to_head(taken);
                return Err(error);
            }
            channel
                .counters
                .flume
                .count_put_successes(puts.len() as u64);
        }
        channel.finish_takes(&taken);
        channel
            .counters
            .flume
            .count_take_successes(taken.len() as u64);
        Ok(())
    }
}

impl Transaction for KafkaTransaction {
    fn put(&mut self, event: Event) -> Result<(), ChannelError> {
        self.put_event(event)
    }

    fn take(&mut self) -> Result<Option<Event>, ChannelError> {
        self.take_blocking(Duration::ZERO)
    }

    fn take_waiting(&mut self, wait: Duration) -> Result<Option<Event>, ChannelError> {
        self.take_blocking(wait)
    }

    fn commit(self: Box<Self>) -> Result<(), ChannelError> {
        (*self).finish(true)
    }

    fn rollback(self: Box<Self>) -> Result<(), ChannelError> {
        (*self).finish(false)
    }

    fn try_put(&mut self, event: Event) -> Result<PutAttempt, ChannelError> {
        // A put only encodes into the transaction: it never waits.
        self.put_event(event)?;
        Ok(PutAttempt::Added)
    }

    fn try_take_many(
        &mut self,
        max_events: usize,
        accept: &mut dyn FnMut(&Event) -> bool,
        taken: &mut Vec<Event>,
    ) -> Result<TakeStop, ChannelError> {
        let room = self.take_room(max_events)?;
        let shared = Arc::clone(&self.channel);
        shared.check_open()?;
        let mut took = 0;
        while took < room {
            let record = match shared.pop_rolled_back() {
                Some(record) => record,
                None => {
                    let consumer = shared.consumer()?;
                    // Another taker is polling: what it gets is its own; nothing here
                    // without waiting.
                    let Ok(_polling) = shared.poll_lock.try_lock() else {
                        shared.counters.flume.count_take_attempts(1);
                        return Ok(TakeStop::Empty);
                    };
                    match shared.poll_once(&consumer, Duration::ZERO) {
                        Some(record) => record,
                        None => {
                            shared.counters.flume.count_take_attempts(1);
                            return Ok(TakeStop::Empty);
                        }
                    }
                }
            };
            if !accept(&record.event) {
                shared.return_to_head(vec![record]);
                return Ok(TakeStop::Limit);
            }
            taken.push(self.hand_out(record));
            took += 1;
        }
        Ok(TakeStop::Limit)
    }

    fn commit_pipelined(self: Box<Self>) -> Result<Box<dyn PendingCommit>, ChannelError> {
        (*self).finish(true)?;
        Ok(Box::new(Committed))
    }

    fn try_commit_pipelined(self: Box<Self>) -> Result<CommitAttempt, ChannelError> {
        if self.puts.is_empty() && self.taken.is_empty() {
            return Ok(CommitAttempt::Started(Box::new(Committed)));
        }
        // Waiting for Kafka's acknowledgements or the offset commit blocks.
        Ok(CommitAttempt::WouldBlock(self))
    }
}

impl Drop for KafkaTransaction {
    fn drop(&mut self) {
        // Dropped open (a session gone): its takes return to the head.
        let taken = std::mem::take(&mut self.taken);
        if !taken.is_empty() {
            add(&self.channel.counters.rollbacks, 1);
            self.channel.return_to_head(taken);
        }
    }
}

/// A commit that was complete when it was returned.
struct Committed;

impl PendingCommit for Committed {
    fn finish(self: Box<Self>) -> Result<(), ChannelError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(next_offset: i64, outstanding: &[i64]) -> PartitionBook {
        PartitionBook {
            epoch: 0,
            next_offset,
            outstanding: outstanding.iter().copied().collect(),
            committed: -1,
        }
    }

    #[test]
    fn the_committable_offset_stops_at_the_first_unfinished_record() {
        // Records 10..20 read; 12 and 15 still held by open transactions.
        assert_eq!(book(20, &[12, 15]).committable(), 12);
        // A later transaction finishing first moves nothing past 12.
        assert_eq!(book(20, &[12]).committable(), 12);
        // Everything read is finished: commit after the last record read.
        assert_eq!(book(20, &[]).committable(), 20);
    }

    #[test]
    fn a_rollback_puts_events_in_front_in_their_order_and_drops_revoked_ones() {
        let record = |offset: i64, epoch: u64| TakenRecord {
            partition: 0,
            offset,
            epoch,
            event: Event::from_body(offset.to_string()),
        };
        let mut take_book = TakeBook::default();
        take_book.partitions.insert(0, book(3, &[0, 1, 2]));
        take_book.in_flight = 3;
        // Record 2 was rolled back earlier; 0 and 1 now, with one read under an
        // assignment since revoked (epoch 7).
        take_book.head.push_back(record(2, 0));
        take_book.return_to_head(vec![record(0, 0), record(1, 0), record(9, 7)]);
        let offsets: Vec<i64> = take_book.head.iter().map(|taken| taken.offset).collect();
        assert_eq!(offsets, [0, 1, 2]);
        assert_eq!(take_book.in_flight, 0);
    }
}
