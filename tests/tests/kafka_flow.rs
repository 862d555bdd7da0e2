//! The Kafka sink and source against a real Kafka protocol implementation: librdkafka's
//! mock cluster (three brokers on loopback ports, replication, leader moves, injected
//! errors), started in this test process. channeld runs the real channel-agent with
//! Flume's keys and the mock cluster's bootstrap address.
//!
//! Sizes: `MILLRACE_KAFKA_EVENTS` (default 20,000) events per flow; the 100,000
//! is `MILLRACE_KAFKA_EVENTS=100000 cargo test -p millrace-e2e --test kafka_flow`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use millrace_client::{Client, ClientOptions, Event};
use millrace_e2e::{
    channelctl, file_channels_config, hex, kill_9_pid, unhex, wait_until, Server, ServerSetup,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

/// Brokers in the mock cluster (the three: a leader can move and one can fail).
const BROKERS: i32 = 3;
/// Partitions of each test topic.
const PARTITIONS: i32 = 3;
/// Replicas of each partition.
const REPLICATION: i32 = 3;
/// Longest wait for a flow to move every event.
const FLOW_TIMEOUT: Duration = Duration::from_secs(120);
/// Events per flow unless `MILLRACE_KAFKA_EVENTS` says otherwise.
const DEFAULT_EVENTS: usize = 20_000;
/// Events per put transaction when filling the channel.
const PUT_BATCH: usize = 1000;
/// The source's `batchSize` in these tests.
const SOURCE_BATCH: usize = 500;

fn event_count() -> usize {
    std::env::var("MILLRACE_KAFKA_EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(DEFAULT_EVENTS)
}

fn cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    MockCluster::new(BROKERS).expect("librdkafka's mock cluster")
}

fn create_topic<C: rdkafka::ClientContext>(cluster: &MockCluster<'_, C>, topic: &str) {
    cluster
        .create_topic(topic, PARTITIONS, REPLICATION)
        .expect("create a topic on the mock cluster");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn numbered(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("{prefix}-{n:07}")).collect()
}

/// The sequence number at the end of a numbered body.
fn sequence_of(body: &str) -> usize {
    body.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a numbered body")
}

fn put_events(server: &Server, channel: &str, events: &[Event]) {
    runtime().block_on(async {
        let mut client = Client::connect(ClientOptions::new(server.protocol_address()))
            .await
            .expect("connect");
        for chunk in events.chunks(PUT_BATCH) {
            client.put_and_commit(channel, chunk).await.expect("put");
        }
    });
}

/// A record read back from Kafka.
#[derive(Debug, Clone)]
struct Record {
    partition: i32,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
}

/// Reads every record of `topic` from the beginning until `expected` arrived and then
/// nothing more for a moment, or the flow timeout.
fn read_topic(bootstrap: &str, topic: &str, expected: usize) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "millrace-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a test consumer");
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&partitions).expect("assign");
    let mut records = Vec::new();
    let deadline = Instant::now() + FLOW_TIMEOUT;
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                quiet_since = Instant::now();
                records.push(Record {
                    partition: message.partition(),
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().unwrap_or_default().to_vec(),
                    headers: message
                        .headers()
                        .map(|headers| {
                            headers
                                .iter()
                                .map(|header| {
                                    (
                                        header.key.to_string(),
                                        header.value.unwrap_or_default().to_vec(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
            Some(Err(error)) => eprintln!("test reader: {error}"),
            None if records.len() >= expected
                && quiet_since.elapsed() > Duration::from_millis(500) =>
            {
                break
            }
            None => {}
        }
    }
    records
}

/// `SINK.<name>` or `SOURCE.<name>` counter `counter` from `/metrics`.
fn counter(server: &Server, component: &str, counter: &str) -> u64 {
    let (_, metrics) = server.http_json("/metrics");
    metrics[component][counter]
        .as_str()
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

fn sink_config(bootstrap: &str, topic: &str, extra: &str) -> String {
    format!(
        "a1.channels = c1\n\
         a1.sinks = k1\n\
         a1.channels.c1.type = file\n\
         a1.sinks.k1.type = org.apache.flume.sink.kafka.KafkaSink\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.kafka.bootstrap.servers = {bootstrap}\n\
         a1.sinks.k1.kafka.topic = {topic}\n\
         a1.sinks.k1.flumeBatchSize = 100\n\
         a1.sinks.k1.kafka.producer.linger.ms = 1\n\
         {extra}"
    )
}

fn source_config(bootstrap: &str, topic: &str, extra: &str) -> String {
    format!(
        "a1.channels = c1\n\
         a1.sources = r1\n\
         a1.channels.c1.type = file\n\
         a1.sources.r1.type = org.apache.flume.source.kafka.KafkaSource\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.kafka.bootstrap.servers = {bootstrap}\n\
         a1.sources.r1.kafka.topics = {topic}\n\
         a1.sources.r1.kafka.consumer.group.id = millrace-source\n\
         a1.sources.r1.kafka.consumer.auto.offset.reset = earliest\n\
         a1.sources.r1.batchSize = {SOURCE_BATCH}\n\
         a1.sources.r1.batchDurationMillis = 200\n\
         a1.sources.r1.kafka.consumer.session.timeout.ms = 6000\n\
         {extra}"
    )
}

/// Every record's value as a numbered body; asserts each of `count` arrived at least
/// once and each partition holds its records in the order they were put; returns how
/// many records were duplicates.
fn check_numbered_records(records: &[Record], prefix: &str, count: usize) -> usize {
    let mut seen = BTreeSet::new();
    let mut last_per_partition: BTreeMap<i32, usize> = BTreeMap::new();
    let mut out_of_order = 0;
    for record in records {
        let body = std::str::from_utf8(&record.value).expect("UTF-8 value");
        assert!(body.starts_with(prefix), "unexpected record {body:?}");
        let sequence = sequence_of(body);
        if let Some(last) = last_per_partition.insert(record.partition, sequence) {
            if sequence <= last && !seen.contains(&sequence) {
                out_of_order += 1;
            }
        }
        seen.insert(sequence);
    }
    let missing: Vec<usize> = (0..count).filter(|n| !seen.contains(n)).take(10).collect();
    assert!(missing.is_empty(), "lost events, first ones: {missing:?}");
    assert_eq!(
        out_of_order, 0,
        "records out of put order within a partition"
    );
    records.len() - count
}

#[test]
fn kafka_sink_puts_every_event_in_its_topic_exactly_once_in_order_and_drains_the_channel() {
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    create_topic(&cluster, "sunny");
    let count = event_count();
    let server = Server::start(ServerSetup::with_config(sink_config(
        &bootstrap, "sunny", "",
    )));
    let events: Vec<Event> = numbered("sunny", count)
        .into_iter()
        .map(Event::new)
        .collect();
    put_events(&server, "c1", &events);
    let records = read_topic(&bootstrap, "sunny", count);
    let duplicates = check_numbered_records(&records, "sunny", count);
    assert_eq!(duplicates, 0, "no failure, so no duplicate");
    assert!(
        wait_until(FLOW_TIMEOUT, || server.metrics_channel_size("c1") == 0),
        "the sink committed its takes"
    );
    assert!(
        wait_until(FLOW_TIMEOUT, || counter(
            &server,
            "SINK.k1",
            "EventDrainSuccessCount"
        ) == count as u64),
        "the sink counted every event delivered"
    );
    assert_eq!(counter(&server, "SINK.k1", "EventSentAgainCount"), 0);
}

#[test]
fn kafka_sink_loses_nothing_through_a_broker_down_a_leader_move_and_injected_errors() {
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    create_topic(&cluster, "stormy");
    let count = event_count();
    // A short delivery timeout, so a broker that is down fails batches (and rolls their
    // takes back) instead of holding them for librdkafka's default five minutes.
    let server = Server::start(ServerSetup::with_config(sink_config(
        &bootstrap,
        "stormy",
        "a1.sinks.k1.kafka.producer.message.timeout.ms = 1500\n",
    )));
    // Before the events arrive: every produce request fails for a while with an error
    // librdkafka does not retry, a leader moves, and every broker goes down, so the
    // first batches fail and their takes roll back.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD; 20],
    );
    cluster
        .partition_leader("stormy", 0, Some(2))
        .expect("move a leader");
    for broker in 1..=BROKERS {
        cluster.broker_down(broker).expect("take a broker down");
    }
    let events: Vec<Event> = numbered("stormy", count)
        .into_iter()
        .map(Event::new)
        .collect();
    put_events(&server, "c1", &events);
    assert!(
        wait_until(FLOW_TIMEOUT, || counter(
            &server,
            "SINK.k1",
            "EventWriteFail"
        ) > 0),
        "a batch failed while the brokers were down"
    );
    for broker in 2..=BROKERS {
        cluster.broker_up(broker).expect("bring a broker back");
    }
    cluster.broker_up(1).expect("bring broker 1 back");
    cluster.clear_request_errors(RDKafkaApiKey::Produce);
    assert!(
        wait_until(FLOW_TIMEOUT, || server.metrics_channel_size("c1") == 0
            && counter(&server, "SINK.k1", "EventDrainSuccessCount")
                >= count as u64),
        "the sink delivered everything after the failures"
    );
    let records = read_topic(&bootstrap, "stormy", count);
    let duplicates = check_numbered_records(&records, "stormy", count);
    let sent_again = counter(&server, "SINK.k1", "EventSentAgainCount");
    eprintln!(
        "stormy: {count} events, {} records, {duplicates} duplicates, EventSentAgainCount {sent_again}, EventWriteFail {}",
        records.len(),
        counter(&server, "SINK.k1", "EventWriteFail")
    );
}

/// Produces `count` numbered records (keyed by their number) into `topic`.
fn fill_topic(bootstrap: &str, topic: &str, prefix: &str, count: usize) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("a test producer");
    runtime().block_on(async {
        let mut pending = Vec::with_capacity(count);
        for body in numbered(prefix, count) {
            let key = body.clone();
            let delivery = producer
                .send_result(FutureRecord::to(topic).key(&key).payload(&body))
                .map_err(|(error, _)| error)
                .expect("queue a record");
            pending.push(delivery);
        }
        for delivery in pending {
            delivery.await.expect("delivery").expect("acknowledged");
        }
    });
    producer.flush(Duration::from_secs(10)).expect("flush");
}

#[test]
fn kafka_source_delivers_every_record_and_a_kill_9_mid_run_loses_none() {
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    create_topic(&cluster, "filled");
    let count = event_count();
    fill_topic(&bootstrap, "filled", "filled", count);
    // A short session timeout: after the kill -9, the restarted source rejoins the group
    // once the dead member's session expired (Kafka's default waits 45 s).
    let server = Server::start(ServerSetup::with_config(source_config(
        &bootstrap, "filled", "",
    )));
    assert!(
        wait_until(FLOW_TIMEOUT, || {
            let size = server.metrics_channel_size("c1");
            size != u64::MAX && size >= (count / 3) as u64
        }),
        "the source put a third of the records"
    );
    let pids = server.adapter_pids("r1");
    assert!(!pids.is_empty(), "the source runs as its own process");
    for pid in pids {
        kill_9_pid(pid);
    }
    assert!(
        wait_until(FLOW_TIMEOUT, || server.metrics_channel_size("c1")
            >= count as u64),
        "channeld restarted the source and it read on"
    );
    // Let the source finish what is in flight, then take everything.
    std::thread::sleep(Duration::from_secs(1));
    let events = server.drain_events("c1", 1000);
    let mut seen = BTreeSet::new();
    for event in &events {
        let body = std::str::from_utf8(&event.body).expect("UTF-8 body");
        assert_eq!(
            event.header("key"),
            Some(body),
            "the record key is the key header"
        );
        assert_eq!(event.header("topic"), Some("filled"));
        assert!(event.header("partition").is_some() && event.header("offset").is_some());
        assert!(event.header("timestamp").is_some());
        seen.insert(sequence_of(body));
    }
    let missing: Vec<usize> = (0..count).filter(|n| !seen.contains(n)).take(10).collect();
    assert!(missing.is_empty(), "lost records, first ones: {missing:?}");
    let duplicates = events.len() - count;
    assert!(
        duplicates <= SOURCE_BATCH * PARTITIONS as usize,
        "{duplicates} duplicates: more than one batch per partition"
    );
    eprintln!(
        "filled: {count} records, {} events, {duplicates} duplicates after kill -9",
        events.len()
    );
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs Apache Avro's Python (the interop venv) on `tests/interop/avro_peer.py`.
fn avro_peer(python: &Path, command: &str, input: &Value) -> Value {
    let mut child = Command::new(python)
        .arg(repository_root().join("tests/interop/avro_peer.py"))
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the avro peer");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write to the peer");
    let output = child.wait_with_output().expect("the peer's output");
    assert!(
        output.status.success(),
        "avro_peer {command}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from the peer")
}

/// Events with headers (one of them the record key `k<n>`, one with non-ASCII text) and
/// binary bodies, numbered by their `seq` header.
fn interop_events() -> Vec<Event> {
    (0..20_u8)
        .map(|n| {
            Event::new(vec![n, 0xff, 0x00, b'\n', n])
                .with_header("seq", n.to_string())
                .with_header("key", format!("k{n}"))
                .with_header("ünïcode", "välue")
        })
        .collect()
}

/// Decodes `records`' values with Apache Avro's Python and checks that each holds the
/// headers and body of the event of [`interop_events`] its `seq` names, keyed by the
/// event's `key` header; returns the records by `seq`.
fn check_records_decode_with_python<'r>(
    python: &Path,
    records: &'r [Record],
    events: &[Event],
) -> BTreeMap<u8, &'r Record> {
    assert_eq!(records.len(), events.len());
    let datums: Vec<Value> = records
        .iter()
        .map(|record| json!(hex(&record.value)))
        .collect();
    let decoded = avro_peer(python, "decode-datums", &Value::Array(datums));
    let mut by_seq = BTreeMap::new();
    for (record, decoded) in records.iter().zip(decoded.as_array().expect("a list")) {
        let n: u8 = decoded["headers"]["seq"]
            .as_str()
            .expect("seq")
            .parse()
            .expect("a number");
        let event = &events[n as usize];
        assert_eq!(
            unhex(decoded["body"].as_str().expect("body")),
            event.body.to_vec()
        );
        for (name, value) in &event.headers {
            assert_eq!(
                decoded["headers"][name].as_str(),
                Some(value.as_str()),
                "header {name}"
            );
        }
        assert_eq!(record.key.as_deref(), Some(format!("k{n}").as_bytes()));
        by_seq.insert(n, record);
    }
    assert_eq!(by_seq.len(), events.len(), "every event once");
    by_seq
}

/// Has Apache Avro's Python encode ten events (`origin = python`, `n`, and
/// `extra_headers`; body `from python <n>`) and produces each datum as a record value to
/// `topic`, with `record_headers` if given.
fn produce_python_datums(
    python: &Path,
    bootstrap: &str,
    topic: &str,
    extra_headers: &[(&str, &str)],
    record_headers: Option<OwnedHeaders>,
) {
    let python_events: Vec<Value> = (0..10)
        .map(|n| {
            let mut headers = serde_json::Map::new();
            headers.insert("origin".into(), json!("python"));
            headers.insert("n".into(), json!(n.to_string()));
            for (name, value) in extra_headers {
                headers.insert((*name).into(), json!(value));
            }
            json!({"headers": headers, "body": hex(format!("from python {n}").as_bytes())})
        })
        .collect();
    let encoded = avro_peer(python, "encode-datums", &Value::Array(python_events));
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("a test producer");
    runtime().block_on(async {
        for datum in encoded.as_array().expect("a list") {
            let value = unhex(datum.as_str().expect("hex"));
            let mut record = FutureRecord::<(), _>::to(topic).payload(&value);
            if let Some(headers) = &record_headers {
                record = record.headers(headers.clone());
            }
            producer
                .send(record, Duration::from_secs(10))
                .await
                .expect("produce a python datum");
        }
    });
}

#[test]
fn flume_event_format_records_decode_with_apache_avros_python_and_its_records_are_read_back() {
    let Some(python) = millrace_prerequisites::avro_python(&repository_root()) else {
        return;
    };
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    create_topic(&cluster, "avro-out");
    create_topic(&cluster, "avro-in");
    // Sink: events with headers (one of them the record key) and binary bodies.
    let events = interop_events();
    let config = format!(
        "{}{}",
        sink_config(
            &bootstrap,
            "avro-out",
            "a1.sinks.k1.useFlumeEventFormat = true\n\
             a1.sinks.k1.header.seq = flume-seq\n"
        ),
        "a1.sources = r1\n\
         a1.channels = c1 c2\n\
         a1.channels.c2.type = memory\n\
         a1.sources.r1.type = kafka\n\
         a1.sources.r1.channels = c2\n\
         a1.sources.r1.kafka.topics = avro-in\n\
         a1.sources.r1.useFlumeEventFormat = true\n\
         a1.sources.r1.kafka.consumer.auto.offset.reset = earliest\n\
         a1.sources.r1.batchDurationMillis = 100\n"
    )
    .replace("a1.channels = c1\n", "")
        + &format!("a1.sources.r1.kafka.bootstrap.servers = {bootstrap}\n");
    let server = Server::start(ServerSetup::with_config(config));
    put_events(&server, "c1", &events);
    let records = read_topic(&bootstrap, "avro-out", events.len());
    let by_seq = check_records_decode_with_python(python, &records, &events);
    for (n, record) in by_seq {
        assert_eq!(
            record.headers,
            [("flume-seq".to_string(), n.to_string().into_bytes())],
            "header.seq copies the seq header into a record header"
        );
    }

    // Source: datums encoded by Apache Avro's Python, read back with their headers (a
    // record header the source is not asked to copy is ignored).
    produce_python_datums(
        python,
        &bootstrap,
        "avro-in",
        &[("timestamp", "42")],
        Some(OwnedHeaders::new().insert(Header {
            key: "ignored",
            value: Some("x"),
        })),
    );
    assert!(wait_until(FLOW_TIMEOUT, || server
        .metrics_channel_size("c2")
        == 10));
    let taken = server.drain_events("c2", 100);
    assert_eq!(taken.len(), 10);
    for event in &taken {
        assert_eq!(event.header("origin"), Some("python"));
        let n = event.header("n").expect("n");
        assert_eq!(event.body, format!("from python {n}").as_bytes());
        assert_eq!(
            event.header("timestamp"),
            Some("42"),
            "the embedded timestamp survives"
        );
        assert_eq!(event.header("topic"), Some("avro-in"));
    }
}

#[test]
fn flume_kafka_configs_pass_validate_and_a_bad_pass_through_property_names_its_line() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let good = directory.path().join("good.properties");
    std::fs::write(
        &good,
        "a1.channels = c1\n\
         a1.sources = r1\n\
         a1.sinks = k1\n\
         a1.channels.c1.type = file\n\
         a1.sources.r1.type = org.apache.flume.source.kafka.KafkaSource\n\
         a1.sources.r1.channels = c1\n\
         a1.sources.r1.kafka.bootstrap.servers = kafka-1:9092,kafka-2:9092\n\
         a1.sources.r1.kafka.topics = app-logs, audit\n\
         a1.sources.r1.kafka.consumer.group.id = flume-ingest\n\
         a1.sources.r1.batchSize = 1000\n\
         a1.sources.r1.batchDurationMillis = 2000\n\
         a1.sources.r1.setTopicHeader = true\n\
         a1.sources.r1.topicHeader = topic\n\
         a1.sources.r1.useFlumeEventFormat = false\n\
         a1.sources.r1.kafka.consumer.security.protocol = SASL_SSL\n\
         a1.sources.r1.kafka.consumer.sasl.mechanism = SCRAM-SHA-512\n\
         a1.sources.r1.kafka.consumer.auto.offset.reset = earliest\n\
         a1.sinks.k1.type = org.apache.flume.sink.kafka.KafkaSink\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.kafka.bootstrap.servers = kafka-1:9092\n\
         a1.sinks.k1.kafka.topic = mytopic\n\
         a1.sinks.k1.flumeBatchSize = 20\n\
         a1.sinks.k1.kafka.producer.acks = 1\n\
         a1.sinks.k1.kafka.producer.linger.ms = 1\n\
         a1.sinks.k1.kafka.producer.compression.type = snappy\n\
         a1.sinks.k1.useFlumeEventFormat = true\n\
         a1.sinks.k1.partitionIdHeader = part\n\
         a1.sinks.k1.allowTopicOverride = false\n",
    )
    .expect("write a config");
    let good_path = good.to_str().expect("UTF-8 path");
    let output = channelctl(&["validate", "-f", good_path, "-n", "a1"], b"");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let bad = directory.path().join("bad.properties");
    std::fs::write(
        &bad,
        "a1.channels = c1\n\
         a1.sinks = k1\n\
         a1.channels.c1.type = memory\n\
         a1.sinks.k1.type = kafka\n\
         a1.sinks.k1.channel = c1\n\
         a1.sinks.k1.kafka.topic = t\n\
         a1.sinks.k1.kafka.producer.lingerr.ms = 1\n",
    )
    .expect("write a config");
    let output = channelctl(
        &[
            "validate",
            "-f",
            bad.to_str().expect("UTF-8 path"),
            "-n",
            "a1",
        ],
        b"",
    );
    assert_eq!(output.status.code(), Some(78), "EX_CONFIG");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains("bad.properties:7: a1.sinks.k1.kafka.producer.lingerr.ms"),
        "{said}"
    );
    assert!(
        said.contains("No such configuration property"),
        "librdkafka's reason: {said}"
    );
    assert!(
        said.contains("a1.sinks.k1.kafka.bootstrap.servers"),
        "the missing key: {said}"
    );
}

/// CPU seconds (user + system) `pid` has used, from `/proc/<pid>/stat`.
fn cpu_seconds_of(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the command name (which is in parentheses): utime is the 12th, stime
    // the 13th of them.
    let after_name = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    /// The kernel's clock ticks per second on Linux (`getconf CLK_TCK`).
    const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
    ticks as f64 / CLOCK_TICKS_PER_SECOND
}

/// A benchmark, not a test (`docs/perf.md`): CPU per event the sink's channel-agent spends
/// delivering 256-byte events in batches of 100 through the Kafka sink to the mock
/// cluster, beside the same flow into the null sink.
///
/// `MILLRACE_KAFKA_EVENTS=100000 cargo test --release -p millrace-e2e --test kafka_flow -- --ignored --nocapture sink_cpu`
#[test]
#[ignore = "a benchmark; run it by name with --ignored"]
fn sink_cpu_per_event_kafka_beside_null() {
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    create_topic(&cluster, "bench");
    let count = event_count();
    let body = "x".repeat(256);
    for (label, sink) in [
        ("kafka", format!("a1.sinks.k1.type = kafka\na1.sinks.k1.kafka.bootstrap.servers = {bootstrap}\na1.sinks.k1.kafka.topic = bench\na1.sinks.k1.flumeBatchSize = 100\n")),
        ("null", "a1.sinks.k1.type = null\na1.sinks.k1.batchSize = 100\n".to_string()),
    ] {
        let config = format!(
            "a1.channels = c1\na1.sinks = k1\na1.channels.c1.type = file\na1.sinks.k1.channel = c1\n{sink}"
        );
        let server = Server::start(ServerSetup::with_config(config));
        assert!(wait_until(FLOW_TIMEOUT, || !server.adapter_pids("k1").is_empty()));
        let pid = server.adapter_pids("k1")[0];
        let before = cpu_seconds_of(pid);
        let started = Instant::now();
        let events: Vec<Event> = (0..count).map(|_| Event::new(body.clone())).collect();
        put_events(&server, "c1", &events);
        assert!(wait_until(FLOW_TIMEOUT, || counter(&server, "SINK.k1", "EventDrainSuccessCount")
            >= count as u64));
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds_of(pid) - before;
        eprintln!(
            "sink {label}: {count} events of 256 bytes in {elapsed:.2} s ({:.0} events/s end to end), channel-agent CPU {cpu:.2} s = {:.2} µs/event",
            count as f64 / elapsed,
            cpu * 1e6 / count as f64
        );
    }
}

// ---------------------------------------------------------------------------------------
// The Kafka channel (`type = org.apache.flume.channel.kafka.KafkaChannel`).

/// A channeld configuration holding one Kafka channel `c1` on `topic` in `group`. The
/// short session timeout lets the group hand a killed member's partitions to the others
/// within seconds (Kafka's default waits 45 s).
fn kafka_channel_config(bootstrap: &str, topic: &str, group: &str, extra: &str) -> String {
    format!(
        "a1.channels = c1\n\
         a1.channels.c1.type = org.apache.flume.channel.kafka.KafkaChannel\n\
         a1.channels.c1.kafka.bootstrap.servers = {bootstrap}\n\
         a1.channels.c1.kafka.topic = {topic}\n\
         a1.channels.c1.kafka.consumer.group.id = {group}\n\
         a1.channels.c1.kafka.consumer.session.timeout.ms = 6000\n\
         a1.channels.c1.kafka.consumer.heartbeat.interval.ms = 500\n\
         a1.channels.c1.kafka.producer.linger.ms = 1\n\
         {extra}"
    )
}

/// What the producers and consumers of the shared-channel test saw, per event body.
#[derive(Default)]
struct SharedHistory {
    offered: BTreeSet<String>,
    acknowledged_puts: BTreeSet<String>,
    /// Body → acknowledged takes that returned it.
    acknowledged_takes: BTreeMap<String, u64>,
    /// Bodies taken through the channeld that was killed (acknowledged or in doubt):
    /// the only takes whose offsets may not be committed when their member dies.
    taken_on_killed: BTreeSet<String>,
    /// Bodies of takes whose commit got no answer (the channeld died).
    in_doubt_takes: BTreeSet<String>,
}

/// Events per put in the shared-channel test (at most).
const SHARED_PUT_BATCH: usize = 50;
/// Events per take in the shared-channel test (at most).
const SHARED_TAKE_BATCH: u32 = 50;

async fn shared_producer(
    address: String,
    name: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    history: std::sync::Arc<std::sync::Mutex<SharedHistory>>,
) {
    let Ok(mut client) = Client::connect(ClientOptions::new(address)).await else {
        return;
    };
    let mut sequence = 0_usize;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let bodies: Vec<String> = (0..SHARED_PUT_BATCH)
            .map(|_| {
                sequence += 1;
                format!("{name}-{sequence:07}")
            })
            .collect();
        history
            .lock()
            .unwrap()
            .offered
            .extend(bodies.iter().cloned());
        let events: Vec<Event> = bodies.iter().map(|body| Event::new(body.clone())).collect();
        match client.put_and_commit("c1", &events).await {
            Ok(()) => history.lock().unwrap().acknowledged_puts.extend(bodies),
            Err(_) => return,
        }
    }
}

async fn shared_consumer(
    address: String,
    on_killed: bool,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    history: std::sync::Arc<std::sync::Mutex<SharedHistory>>,
) {
    let Ok(mut client) = Client::connect(ClientOptions::new(address)).await else {
        return;
    };
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if client.begin("c1").await.is_err() {
            return;
        }
        let Ok(events) = client
            .take(SHARED_TAKE_BATCH, Duration::from_millis(100))
            .await
        else {
            return;
        };
        let bodies: Vec<String> = events
            .iter()
            .map(|event| String::from_utf8(event.body.to_vec()).expect("a text body"))
            .collect();
        let committed = client.commit().await.is_ok();
        let mut history = history.lock().unwrap();
        if on_killed {
            history.taken_on_killed.extend(bodies.iter().cloned());
        }
        if !committed {
            history.in_doubt_takes.extend(bodies);
            return;
        }
        for body in bodies {
            *history.acknowledged_takes.entry(body).or_default() += 1;
        }
    }
}

/// Takes from `server`'s `c1` until every acknowledged put was delivered (acknowledged or
/// in doubt) and then nothing more comes for a few seconds, or the flow timeout.
fn drain_shared(server: &Server, history: &std::sync::Mutex<SharedHistory>) {
    runtime().block_on(async {
        let mut client = Client::connect(ClientOptions::new(server.protocol_address()))
            .await
            .expect("connect");
        let deadline = Instant::now() + FLOW_TIMEOUT;
        let mut quiet_since = Instant::now();
        while Instant::now() < deadline {
            client.begin("c1").await.expect("begin");
            let events = client
                .take(1000, Duration::from_millis(500))
                .await
                .expect("take");
            client.commit().await.expect("commit");
            let mut history = history.lock().unwrap();
            if events.is_empty() {
                let all_delivered = history.acknowledged_puts.iter().all(|body| {
                    history.acknowledged_takes.contains_key(body)
                        || history.in_doubt_takes.contains(body)
                });
                if all_delivered && quiet_since.elapsed() > Duration::from_secs(3) {
                    return;
                }
                continue;
            }
            quiet_since = Instant::now();
            for event in events {
                let body = String::from_utf8(event.body.to_vec()).expect("a text body");
                *history.acknowledged_takes.entry(body).or_default() += 1;
            }
        }
    });
}

#[test]
fn two_channelds_share_a_kafka_channel_and_a_kill_9_of_one_loses_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    create_topic(&cluster, "shared-channel");
    let config = kafka_channel_config(&bootstrap, "shared-channel", "millrace-shared", "");
    let mut doomed = Server::start(ServerSetup::with_config(config.clone()));
    let survivor = Server::start(ServerSetup::with_config(config));
    let history = Arc::new(Mutex::new(SharedHistory::default()));
    let stop_doomed = Arc::new(AtomicBool::new(false));
    let stop_all = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let tasks = vec![
        runtime.spawn(shared_producer(
            doomed.protocol_address().to_string(),
            "doomed",
            Arc::clone(&stop_doomed),
            Arc::clone(&history),
        )),
        runtime.spawn(shared_producer(
            survivor.protocol_address().to_string(),
            "survivor",
            Arc::clone(&stop_all),
            Arc::clone(&history),
        )),
        runtime.spawn(shared_consumer(
            doomed.protocol_address().to_string(),
            true,
            Arc::clone(&stop_doomed),
            Arc::clone(&history),
        )),
        runtime.spawn(shared_consumer(
            survivor.protocol_address().to_string(),
            false,
            Arc::clone(&stop_all),
            Arc::clone(&history),
        )),
    ];
    // Run until both channelds have taken events (both are in the group), then kill one.
    assert!(
        wait_until(FLOW_TIMEOUT, || {
            let history = history.lock().unwrap();
            history.taken_on_killed.len() >= 500 && history.acknowledged_takes.len() >= 1500
        }),
        "both channelds take from the shared topic"
    );
    doomed.kill_9();
    let killed_at = history.lock().unwrap().acknowledged_puts.len();
    // The survivor carries on alone for a while (the group gives it every partition).
    assert!(
        wait_until(FLOW_TIMEOUT, || history
            .lock()
            .unwrap()
            .acknowledged_puts
            .len()
            >= killed_at + 2000),
        "the survivor's producer carries on"
    );
    stop_doomed.store(true, Ordering::Relaxed);
    stop_all.store(true, Ordering::Relaxed);
    for task in tasks {
        runtime.block_on(task).expect("a client task");
    }
    drain_shared(&survivor, &history);

    let history = history.lock().unwrap();
    let delivered: BTreeSet<&String> = history
        .acknowledged_takes
        .keys()
        .chain(history.in_doubt_takes.iter())
        .collect();
    let lost: Vec<&String> = history
        .acknowledged_puts
        .iter()
        .filter(|body| !delivered.contains(body))
        .collect();
    let unexpected: Vec<&&String> = delivered
        .iter()
        .filter(|body| !history.offered.contains(**body))
        .collect();
    let duplicated: Vec<(&String, u64)> = history
        .acknowledged_takes
        .iter()
        .filter(|(_, count)| **count > 1)
        .map(|(body, count)| (body, *count))
        .collect();
    // A duplicate is a record whose offset was not committed when its member lost it:
    // taken through the killed channeld, or held by an open take of the survivor when
    // the group revoked its partitions (at most one take per rebalance: the join of the
    // second member and the departure of the killed one).
    let duplicates_from_survivor_revocations = duplicated
        .iter()
        .filter(|(body, _)| !history.taken_on_killed.contains(*body))
        .count();
    eprintln!(
        "shared Kafka channel: {} puts acknowledged, {} distinct events delivered, {} taken \
         through the killed channeld, {} in doubt, lost {}, unexpected {}, duplicated {} \
         ({} not taken through the killed channeld)",
        history.acknowledged_puts.len(),
        history.acknowledged_takes.len(),
        history.taken_on_killed.len(),
        history.in_doubt_takes.len(),
        lost.len(),
        unexpected.len(),
        duplicated.len(),
        duplicates_from_survivor_revocations
    );
    assert!(
        lost.is_empty(),
        "lost {} acknowledged events, first ones: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(unexpected.is_empty(), "unexpected: {unexpected:?}");
    const REBALANCES_WITH_OPEN_TAKES: usize = 2;
    assert!(
        duplicates_from_survivor_revocations
            <= REBALANCES_WITH_OPEN_TAKES * SHARED_TAKE_BATCH as usize,
        "{duplicates_from_survivor_revocations} duplicates not taken through the killed \
         channeld: more than one open take per rebalance"
    );
    assert!(
        duplicated.iter().all(|(_, count)| *count <= 2),
        "an event delivered more than twice: {:?}",
        duplicated.iter().find(|(_, count)| *count > 2)
    );
}

/// Takes up to `max` events from `server`'s `channel` in one transaction, trying for up
/// to `patience`, and ends it with a commit or a rollback; returns the bodies.
fn take_once(
    server: &Server,
    channel: &str,
    max: u32,
    patience: Duration,
    commit: bool,
) -> Vec<String> {
    runtime().block_on(async {
        let mut client = Client::connect(ClientOptions::new(server.protocol_address()))
            .await
            .expect("connect");
        client.begin(channel).await.expect("begin");
        let mut bodies = Vec::new();
        let deadline = Instant::now() + patience;
        while bodies.len() < max as usize && Instant::now() < deadline {
            let events = client
                .take(max - bodies.len() as u32, Duration::from_millis(500))
                .await
                .expect("take");
            bodies.extend(
                events
                    .iter()
                    .map(|event| String::from_utf8(event.body.to_vec()).expect("text")),
            );
        }
        if commit {
            client.commit().await.expect("commit");
        } else {
            client.rollback().await.expect("rollback");
        }
        bodies
    })
}

/// `/health`'s state of channel `c1`.
fn channel_state(server: &Server) -> (String, String) {
    let (_, health) = server.http_json("/health");
    let channel = &health["channels"]["c1"];
    (
        channel["state"].as_str().unwrap_or_default().to_string(),
        channel["reason"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn kafka_channel_rollback_returns_events_to_the_head_and_health_follows_the_cluster() {
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    // One partition: the channel's order is the topic's.
    cluster
        .create_topic("ordered-channel", 1, REPLICATION)
        .expect("create a topic");
    let server = Server::start(ServerSetup::with_config(kafka_channel_config(
        &bootstrap,
        "ordered-channel",
        "millrace-rollback",
        "",
    )));
    assert!(
        wait_until(FLOW_TIMEOUT, || channel_state(&server).0 == "open"),
        "the channel is open while the cluster is up: {:?}",
        channel_state(&server)
    );
    let bodies = numbered("ordered", 20);
    put_events(
        &server,
        "c1",
        &bodies
            .iter()
            .map(|body| Event::new(body.clone()))
            .collect::<Vec<_>>(),
    );
    let rolled_back = take_once(&server, "c1", 5, FLOW_TIMEOUT, false);
    assert_eq!(rolled_back, bodies[..5], "the first take sees the head");
    let again = take_once(&server, "c1", 20, FLOW_TIMEOUT, true);
    assert_eq!(
        again, bodies,
        "the rolled-back events come first, in their order, then the rest"
    );
    let (_, metrics) = server.http_json("/metrics");
    assert_eq!(metrics["CHANNEL.c1"]["EventTakeSuccessCount"], "20");
    assert_eq!(metrics["CHANNEL.c1"]["EventPutSuccessCount"], "20");
    assert_eq!(
        metrics["CHANNEL.c1"]["ChannelFillPercentage"], "0.0",
        "an unbounded channel is never full: {metrics}"
    );
    // Nothing more: the committed take committed the offsets.
    /// How long an empty channel is watched before it counts as empty.
    const EMPTY_FOR: Duration = Duration::from_secs(2);
    assert!(take_once(&server, "c1", 1, EMPTY_FOR, true).is_empty());

    drop(cluster);
    assert!(
        wait_until(FLOW_TIMEOUT, || channel_state(&server).0 == "unhealthy"),
        "the channel is unhealthy once its cluster is gone: {:?}",
        channel_state(&server)
    );
    let (_, reason) = channel_state(&server);
    assert!(
        reason.contains(&bootstrap) && reason.contains("ordered-channel"),
        "the reason names the brokers and the topic: {reason}"
    );
    let (status, _) = server.http_json("/health");
    assert_eq!(status, 503, "/health answers unhealthy");
}

#[test]
fn kafka_channel_records_decode_with_apache_avros_python_and_its_records_are_taken() {
    let Some(python) = millrace_prerequisites::avro_python(&repository_root()) else {
        return;
    };
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    create_topic(&cluster, "channel-out");
    create_topic(&cluster, "channel-in");
    create_topic(&cluster, "channel-raw");
    let config = format!(
        "{}\
         a1.channels = c1 c2 c3\n\
         a1.channels.c2.type = kafka\n\
         a1.channels.c2.kafka.bootstrap.servers = {bootstrap}\n\
         a1.channels.c2.kafka.topic = channel-in\n\
         a1.channels.c2.parseAsFlumeEvent = true\n\
         a1.channels.c2.kafka.consumer.group.id = millrace-interop-in\n\
         a1.channels.c3.type = kafka\n\
         a1.channels.c3.kafka.consumer.group.id = millrace-interop-raw\n\
         a1.channels.c3.kafka.bootstrap.servers = {bootstrap}\n\
         a1.channels.c3.kafka.topic = channel-raw\n\
         a1.channels.c3.parseAsFlumeEvent = false\n",
        kafka_channel_config(&bootstrap, "channel-out", "millrace-interop", "")
            .replace("a1.channels = c1\n", "")
    );
    let server = Server::start(ServerSetup::with_config(config));
    // Put through the channel: Flume-format records with every header, the key header
    // as the record key.
    let events = interop_events();
    put_events(&server, "c1", &events);
    let records = read_topic(&bootstrap, "channel-out", events.len());
    for record in check_records_decode_with_python(python, &records, &events).values() {
        assert!(record.headers.is_empty(), "no Kafka record headers");
    }

    // Take through the channel: datums Apache Avro's Python encoded.
    produce_python_datums(python, &bootstrap, "channel-in", &[], None);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("a test producer");
    runtime().block_on(async {
        producer
            .send(
                FutureRecord::to("channel-raw")
                    .key("raw-key")
                    .payload("raw body"),
                Duration::from_secs(10),
            )
            .await
            .expect("produce a raw value");
    });
    let taken = runtime().block_on(async {
        let mut client = Client::connect(ClientOptions::new(server.protocol_address()))
            .await
            .expect("connect");
        let mut taken = Vec::new();
        let deadline = Instant::now() + FLOW_TIMEOUT;
        while taken.len() < 10 && Instant::now() < deadline {
            client.begin("c2").await.expect("begin");
            taken.extend(
                client
                    .take(10, Duration::from_millis(500))
                    .await
                    .expect("take"),
            );
            client.commit().await.expect("commit");
        }
        taken
    });
    assert_eq!(taken.len(), 10);
    for event in &taken {
        assert_eq!(event.header("origin"), Some("python"));
        let n = event.header("n").expect("n");
        assert_eq!(event.body, format!("from python {n}").as_bytes());
        assert_eq!(
            event.headers.len(),
            2,
            "only the datum's headers: {event:?}"
        );
    }

    // parseAsFlumeEvent = false: a put is its body; a record's value is a body whose only
    // header is the record key.
    put_events(
        &server,
        "c3",
        &[Event::new("put body").with_header("dropped", "yes")],
    );
    let raw_records = read_topic(&bootstrap, "channel-raw", 2);
    let values: BTreeSet<Vec<u8>> = raw_records.iter().map(|r| r.value.clone()).collect();
    assert!(values.contains(b"put body".as_slice()), "{raw_records:?}");
    let mut raw_taken = Vec::new();
    let deadline = Instant::now() + FLOW_TIMEOUT;
    while raw_taken.len() < 2 && Instant::now() < deadline {
        raw_taken.extend(server.drain_events("c3", 10));
    }
    let raw_event = raw_taken
        .iter()
        .find(|event| event.body == "raw body".as_bytes())
        .expect("the raw record was taken");
    assert_eq!(raw_event.header("key"), Some("raw-key"));
    assert_eq!(raw_event.headers.len(), 1, "{raw_event:?}");
    let put_back = raw_taken
        .iter()
        .find(|event| event.body == "put body".as_bytes())
        .expect("the put was taken back");
    assert!(put_back.headers.is_empty(), "{put_back:?}");
}

#[test]
fn a_flume_kafka_channel_config_passes_validate_and_says_what_it_ignores() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let good = directory.path().join("kafka-channel.properties");
    std::fs::write(
        &good,
        "a1.channels = c1\n\
         a1.sources = r1\n\
         a1.sinks = k1\n\
         a1.channels.c1.type = org.apache.flume.channel.kafka.KafkaChannel\n\
         a1.channels.c1.kafka.bootstrap.servers = kafka-1:9092,kafka-2:9092,kafka-3:9092\n\
         a1.channels.c1.kafka.topic = channel1\n\
         a1.channels.c1.kafka.consumer.group.id = flume-consumer\n\
         a1.channels.c1.parseAsFlumeEvent = true\n\
         a1.channels.c1.pollTimeout = 500\n\
         a1.channels.c1.defaultPartitionId = 0\n\
         a1.channels.c1.partitionIdHeader = part\n\
         a1.channels.c1.migrateZookeeperOffsets = true\n\
         a1.channels.c1.kafka.producer.security.protocol = SASL_SSL\n\
         a1.channels.c1.kafka.producer.sasl.mechanism = PLAIN\n\
         a1.channels.c1.kafka.consumer.security.protocol = SASL_SSL\n\
         a1.channels.c1.kafka.consumer.auto.offset.reset = earliest\n\
         a1.sources.r1.type = seq\n\
         a1.sources.r1.channels = c1\n\
         a1.sinks.k1.type = null\n\
         a1.sinks.k1.channel = c1\n",
    )
    .expect("write a config");
    let output = channelctl(
        &["validate", "-f", good.to_str().expect("UTF-8"), "-n", "a1"],
        b"",
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains("a1.channels.c1.migrateZookeeperOffsets"),
        "the ignored key is named: {said}"
    );
    assert!(
        said.contains("a1.channels.c1.pollTimeout"),
        "the User Guide's spelling is named: {said}"
    );
}

/// The names of `pid`'s threads (`/proc/<pid>/task/*/comm`).
fn thread_names(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("list the threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

/// librdkafka names its threads `rdk:main`, `rdk:broker…`.
fn librdkafka_threads(pid: i32) -> usize {
    thread_names(pid)
        .iter()
        .filter(|name| name.starts_with("rdk:"))
        .count()
}

#[test]
fn channeld_starts_librdkafka_only_for_a_configured_kafka_channel() {
    let plain = Server::start(ServerSetup::with_config(file_channels_config(&["c1"], "")));
    plain.drain_events("c1", 10);
    assert_eq!(
        librdkafka_threads(plain.pid().as_raw_nonzero().get()),
        0,
        "threads of a channeld without Kafka: {:?}",
        thread_names(plain.pid().as_raw_nonzero().get())
    );
    let cluster = cluster();
    create_topic(&cluster, "threads");
    let with_kafka = Server::start(ServerSetup::with_config(kafka_channel_config(
        &cluster.bootstrap_servers(),
        "threads",
        "millrace-threads",
        "",
    )));
    assert!(
        wait_until(FLOW_TIMEOUT, || librdkafka_threads(
            with_kafka.pid().as_raw_nonzero().get()
        ) > 0),
        "a Kafka channel's producer runs librdkafka's threads"
    );
}

/// A benchmark, not a test (`docs/perf.md`): throughput and channeld CPU per event of
/// the Kafka channel against the mock cluster, beside the file channel in the same
/// sitting: 256-byte events put in batches of 100 by one client, then taken in batches
/// of 100 by one client, in rounds of 10,000 (the mock cluster keeps only 5 MB per
/// partition, so a backlog of 100,000 events would lose its oldest records).
///
/// `MILLRACE_KAFKA_EVENTS=100000 cargo test --release -p millrace-e2e --test kafka_flow -- --ignored --nocapture channel_cpu`
#[test]
#[ignore = "a benchmark; run it by name with --ignored"]
fn channel_cpu_per_event_kafka_beside_file() {
    /// Events per put and per take.
    const BATCH: usize = 100;
    /// Events put, then taken, per round.
    const ROUND: usize = 10_000;
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    create_topic(&cluster, "bench-channel");
    let count = event_count();
    let body = "x".repeat(256);
    for (label, config) in [
        (
            "kafka",
            kafka_channel_config(&bootstrap, "bench-channel", "millrace-bench", ""),
        ),
        ("file", file_channels_config(&["c1"], "")),
    ] {
        let server = Server::start(ServerSetup::with_config(config));
        let pid = server.pid().as_raw_nonzero().get();
        let events: Vec<Event> = (0..BATCH).map(|_| Event::new(body.clone())).collect();
        let (mut put_seconds, mut put_cpu, mut take_seconds, mut take_cpu) = (0.0, 0.0, 0.0, 0.0);
        let mut taken = 0;
        runtime().block_on(async {
            let mut producer = Client::connect(ClientOptions::new(server.protocol_address()))
                .await
                .expect("connect");
            let mut consumer = Client::connect(ClientOptions::new(server.protocol_address()))
                .await
                .expect("connect");
            for _ in 0..count / ROUND {
                let cpu_before = cpu_seconds_of(pid);
                let started = Instant::now();
                for _ in 0..ROUND / BATCH {
                    producer.put_and_commit("c1", &events).await.expect("put");
                }
                put_seconds += started.elapsed().as_secs_f64();
                put_cpu += cpu_seconds_of(pid) - cpu_before;
                let cpu_before = cpu_seconds_of(pid);
                let started = Instant::now();
                let mut taken_this_round = 0;
                while taken_this_round < ROUND {
                    consumer.begin("c1").await.expect("begin");
                    taken_this_round += consumer
                        .take(BATCH as u32, Duration::from_millis(500))
                        .await
                        .expect("take")
                        .len();
                    consumer.commit().await.expect("commit");
                }
                take_seconds += started.elapsed().as_secs_f64();
                take_cpu += cpu_seconds_of(pid) - cpu_before;
                taken += taken_this_round;
            }
        });
        let events_measured = (count / ROUND * ROUND) as f64;
        eprintln!(
            "channel {label}: {events_measured} events of 256 bytes, batches of {BATCH}: puts \
             {:.0} events/s (channeld CPU {:.2} µs/event), takes {:.0} events/s (channeld \
             CPU {:.2} µs/event); {taken} taken",
            events_measured / put_seconds,
            put_cpu * 1e6 / events_measured,
            events_measured / take_seconds,
            take_cpu * 1e6 / events_measured
        );
    }
}

#[test]
fn kafka_source_reads_every_topic_its_regex_matches_and_no_other() {
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    for topic in ["app-billing", "app-audit", "other-app"] {
        create_topic(&cluster, topic);
    }
    /// Records per topic.
    const PER_TOPIC: usize = 300;
    fill_topic(&bootstrap, "app-billing", "billing", PER_TOPIC);
    fill_topic(&bootstrap, "app-audit", "audit", PER_TOPIC);
    fill_topic(&bootstrap, "other-app", "other", PER_TOPIC);
    let config = source_config(
        &bootstrap,
        "unused",
        "a1.sources.r1.kafka.topics.regex = app-.*\n",
    );
    let server = Server::start(ServerSetup::with_config(config));
    assert!(
        wait_until(FLOW_TIMEOUT, || server.metrics_channel_size("c1")
            >= 2 * PER_TOPIC as u64),
        "the source read both matching topics"
    );
    // Give a wrongly matched topic time to arrive too, then take everything.
    std::thread::sleep(Duration::from_secs(2));
    let events = server.drain_events("c1", 1000);
    let mut per_topic: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for event in &events {
        per_topic
            .entry(event.header("topic").expect("a topic header").to_string())
            .or_default()
            .insert(String::from_utf8(event.body.to_vec()).expect("text"));
    }
    assert_eq!(
        per_topic.keys().map(String::as_str).collect::<Vec<_>>(),
        ["app-audit", "app-billing"],
        "only the topics the pattern matches (other-app does not start with app-)"
    );
    assert_eq!(per_topic["app-billing"].len(), PER_TOPIC);
    assert_eq!(per_topic["app-audit"].len(), PER_TOPIC);
}

#[test]
fn a_second_kafka_source_joining_the_group_loses_no_batch() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// Records produced per round while the sources read.
    const ROUND: usize = 500;
    /// Pause between rounds, so that records keep arriving while the group rebalances.
    const ROUND_PAUSE: Duration = Duration::from_millis(200);
    let cluster = cluster();
    let bootstrap = cluster.bootstrap_servers();
    create_topic(&cluster, "rebalanced");
    let config = source_config(&bootstrap, "rebalanced", "");
    let first = Server::start(ServerSetup::with_config(config.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let producer_bootstrap = bootstrap.clone();
    let producer_stop = Arc::clone(&stop);
    // Produces rounds of numbered records until told to stop; returns how many.
    let producing = std::thread::spawn(move || {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &producer_bootstrap)
            .create()
            .expect("a test producer");
        let mut produced = 0;
        runtime().block_on(async {
            while !producer_stop.load(Ordering::Relaxed) {
                let pending: Vec<_> = (produced..produced + ROUND)
                    .map(|n| {
                        let body = format!("rebalanced-{n:07}");
                        producer
                            .send_result(FutureRecord::to("rebalanced").key(&body).payload(&body))
                            .map_err(|(error, _)| error)
                            .expect("queue a record")
                    })
                    .collect();
                for delivery in pending {
                    delivery.await.expect("delivery").expect("acknowledged");
                }
                produced += ROUND;
                tokio::time::sleep(ROUND_PAUSE).await;
            }
        });
        produced
    });
    assert!(
        wait_until(FLOW_TIMEOUT, || {
            let size = first.metrics_channel_size("c1");
            size != u64::MAX && size >= (2 * ROUND) as u64
        }),
        "the first source is reading"
    );
    // The second member joins while records keep coming: the group revokes the first's
    // partitions (librdkafka's default eager protocol), batches in progress, and spreads
    // them over both.
    let second = Server::start(ServerSetup::with_config(config));
    assert!(
        wait_until(FLOW_TIMEOUT, || {
            let size = second.metrics_channel_size("c1");
            size != u64::MAX && size >= (2 * ROUND) as u64
        }),
        "the second member got partitions and read from them"
    );
    stop.store(true, Ordering::Relaxed);
    let count = producing.join().expect("the producer thread");
    assert!(
        wait_until(FLOW_TIMEOUT, || {
            first.metrics_channel_size("c1") + second.metrics_channel_size("c1") >= count as u64
        }),
        "the two sources read the whole topic between them"
    );
    std::thread::sleep(Duration::from_secs(1));
    let failed_commits = counter(&first, "SOURCE.r1", "GenericProcessingFail")
        + counter(&second, "SOURCE.r1", "GenericProcessingFail");
    let mut events = first.drain_events("c1", 1000);
    let from_first = events.len();
    events.extend(second.drain_events("c1", 1000));
    eprintln!(
        "rebalance: {from_first} events through the first source, {} through the second, \
         {failed_commits} failed offset commits",
        events.len() - from_first
    );
    let seen: BTreeSet<usize> = events
        .iter()
        .map(|event| sequence_of(std::str::from_utf8(&event.body).expect("text")))
        .collect();
    let missing: Vec<usize> = (0..count).filter(|n| !seen.contains(n)).take(10).collect();
    assert!(missing.is_empty(), "lost records, first ones: {missing:?}");
    let duplicates = events.len() - count;
    // Duplicates are counted, not bounded here: on the mock cluster a join makes the
    // first member's offset commits fail for a while (each failure is a batch read
    // again), which far exceeds one batch per partition (docs/kafka.md, "Kafka source").
    eprintln!(
        "rebalance: {count} records, {} events, {duplicates} duplicates",
        events.len()
    );
}
