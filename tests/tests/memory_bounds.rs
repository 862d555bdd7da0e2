//! What the server keeps in memory for the events it holds.

use millrace_e2e::*;
use millrace_protocol::{Event, EventBatch, Request, Response};

/// One-event commits, each sent alone so that each arrives in a read of its own.
const SINGLE_EVENT_COMMITS: usize = 5_000;
/// The body of each event.
const BODY_BYTES: usize = 256;
/// Resident memory an event may add: its body, its struct and its place in the queue
/// take about 400 bytes here. An event that keeps its read buffer alive (64 KiB of
/// address space, of which the page it was written to is resident) adds over 4,000.
const MAX_GROWTH_PER_EVENT_BYTES: u64 = 1_500;

#[test]
fn queued_events_hold_their_own_bytes_not_the_read_buffers_they_arrived_in() {
    let server = Server::start(ServerSetup::with_config(format!(
        "{AGENT}.channels = c1\n\
         {AGENT}.channels.c1.type = memory\n\
         {AGENT}.channels.c1.capacity = 100000\n\
         {AGENT}.channels.c1.transactionCapacity = 100\n"
    )));
    let mut producer = RawConnection::open(server.protocol_address());
    let idle_bytes = server.resident_memory_bytes();
    let body = "b".repeat(BODY_BYTES);
    for _ in 0..SINGLE_EVENT_COMMITS {
        let events = EventBatch::from_events(&[Event::new(body.clone())]).unwrap();
        let response = producer.call(&Request::PutCommit {
            channel: "c1".into(),
            events,
        });
        assert_eq!(response, Response::Ok);
    }
    let growth_bytes = server.resident_memory_bytes().saturating_sub(idle_bytes);
    let per_event_bytes = growth_bytes / SINGLE_EVENT_COMMITS as u64;
    println!(
        "{SINGLE_EVENT_COMMITS} queued events of {BODY_BYTES} bytes: resident memory grew \
         {growth_bytes} bytes ({per_event_bytes} per event)"
    );
    assert!(
        per_event_bytes < MAX_GROWTH_PER_EVENT_BYTES,
        "resident memory grew {growth_bytes} bytes for {SINGLE_EVENT_COMMITS} events of \
         {BODY_BYTES} bytes: {per_event_bytes} per event (limit {MAX_GROWTH_PER_EVENT_BYTES})"
    );
}
