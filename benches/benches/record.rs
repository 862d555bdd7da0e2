//! Record encoding and checksumming: the work a committer does per transaction before it
//! reaches the writer, and the writer's sealing step.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use millrace_engine::record::{
    decode_record, encode_put_payload, encode_record, seal_record, RecordKind,
};
use millrace_engine::Event;

/// Event body sizes measured: the small-event shape and a 4 KiB shape.
const BODY_SIZES_BYTES: [usize; 2] = [256, 4096];
/// Events per put record, the common batch size of the performance targets.
const EVENTS_PER_RECORD: usize = 100;

fn events(body_bytes: usize) -> Vec<Event> {
    (0..EVENTS_PER_RECORD)
        .map(|index| Event::from_body(vec![index as u8; body_bytes]).with_header("host", "bench"))
        .collect()
}

fn encode_and_seal(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("record_encode_crc");
    for body_bytes in BODY_SIZES_BYTES {
        let events = events(body_bytes);
        let mut buffer = Vec::with_capacity(EVENTS_PER_RECORD * (body_bytes + 64));
        group.throughput(Throughput::Elements(EVENTS_PER_RECORD as u64));
        group.bench_with_input(
            BenchmarkId::new("put_record_100_events", body_bytes),
            &events,
            |bench, events| {
                bench.iter(|| {
                    buffer.clear();
                    encode_record(&mut buffer, RecordKind::Put, 1, 1, |buffer| {
                        encode_put_payload(buffer, events.iter())
                    });
                    seal_record(&mut buffer, 1, 7);
                    black_box(&buffer);
                })
            },
        );
        let mut sealed = Vec::new();
        encode_record(&mut sealed, RecordKind::Put, 1, 1, |buffer| {
            encode_put_payload(buffer, events.iter())
        });
        seal_record(&mut sealed, 1, 7);
        group.bench_with_input(
            BenchmarkId::new("verify_record_100_events", body_bytes),
            &sealed,
            |bench, sealed| bench.iter(|| black_box(decode_record(sealed, 7).unwrap())),
        );
    }
    group.finish();
}

criterion_group!(benches, encode_and_seal);
criterion_main!(benches);
