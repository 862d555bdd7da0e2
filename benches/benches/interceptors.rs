//! Interceptor cost per event, on one source's thread: a script interceptor that sets one
//! header (the target of issue 22: at least 300,000 events/s per source), next to the
//! Flume `static` interceptor doing the same in Rust, so the Lua share is visible.
//!
//! One iteration runs a batch of 100 events (100-byte bodies, two headers, as a spooldir
//! or TAILDIR batch carries) through `intercept_all`; throughput is reported in events.
//! Cloning the batch each iteration is part of the figure for both (a source hands its
//! events over by value).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use millrace_adapters::interceptors::{intercept_all, plan_interceptors, Interceptor};
use millrace_config::{ComponentSettings, RawSetting};
use millrace_protocol::Event;

/// Events per batch.
const BATCH_EVENTS: usize = 100;
/// Body size of every event.
const BODY_BYTES: usize = 100;

fn interceptors(pairs: &[(&str, &str)]) -> Vec<Interceptor> {
    let settings: Vec<RawSetting> = pairs
        .iter()
        .map(|(key, value)| RawSetting {
            key: key.to_string(),
            value: value.to_string(),
            line: 1,
        })
        .collect();
    let mut keys = ComponentSettings::new("bench.conf", "a1.sources.r1", 1, &settings);
    let planned = plan_interceptors(&mut keys);
    let problems = keys.finish();
    assert!(problems.errors.is_empty(), "{:?}", problems.errors);
    planned
}

fn batch() -> Vec<Event> {
    let body = Bytes::from(vec![b'x'; BODY_BYTES]);
    (0..BATCH_EVENTS)
        .map(|index| {
            Event::new(body.clone())
                .with_header("file", "/var/log/app.log")
                .with_header("offset", index.to_string())
        })
        .collect()
}

fn one_header(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("interceptor_one_header");
    group.throughput(Throughput::Elements(BATCH_EVENTS as u64));
    let events = batch();
    let script = interceptors(&[
        ("interceptors", "i1"),
        ("interceptors.i1.type", "script"),
        (
            "interceptors.i1.script",
            "function intercept(e) e.headers.env = 'prod' return e end",
        ),
    ]);
    group.bench_function("script", |bencher| {
        bencher.iter(|| {
            let out = intercept_all(&script, events.clone());
            assert_eq!(out.events.len(), BATCH_EVENTS);
            out
        })
    });
    let static_header = interceptors(&[
        ("interceptors", "i1"),
        ("interceptors.i1.type", "static"),
        ("interceptors.i1.key", "env"),
        ("interceptors.i1.value", "prod"),
    ]);
    group.bench_function("static", |bencher| {
        bencher.iter(|| intercept_all(&static_header, events.clone()))
    });
    group.finish();
}

criterion_group!(benches, one_header);
criterion_main!(benches);
