//! Hostile clients against a real channeld while a well-behaved producer and consumer
//! keep working beside them: connection floods beyond `maxConnections` (held, and opened
//! and closed as fast as possible, with and without handshakes, with garbage and with
//! frames cut short), and many clients that disconnect in the middle of a transaction
//! (puts begun and never committed, takes taken and never committed, frames cut short).
//!
//! Afterwards the server is still up and accepts connections, its resident memory grew
//! by less than [`RSS_GROWTH_LIMIT_BYTES`] in the first flood (and by less than
//! [`REPEATED_FLOOD_GROWTH_LIMIT_BYTES`] in the four identical ones after it), every
//! event the well-behaved producer had
//! acknowledged was delivered exactly once to acknowledged takes, no event of an
//! uncommitted put was ever delivered, and every event a disconnected client had taken
//! came back and was delivered. (Oversized and garbage frames one at a time, slow
//! senders, idle connections and the plain connection cap are in `limits_and_auth.rs`.)

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use millrace_client::{Client, ClientOptions, Event};
use millrace_e2e::{drain_channel, wait_until, RawConnection, Server, ServerSetup};
use millrace_protocol::{Encoder, ErrorCode, EventBatch, Hello, Request, RequestId, Response};
use rand::{Rng, SeedableRng};

const MIB: u64 = 1024 * 1024;
/// How much channeld's resident memory may grow across a flood or a storm of
/// disconnects. Each connection costs its buffers (tens of KiB) only while it is open;
/// a leak of even 10 KiB per connection would pass this after 2,000 connections, so the
/// bound is about memory that stays, not about peaks.
const RSS_GROWTH_LIMIT_BYTES: u64 = 32 * MIB;
/// Rounds of the flood (each: held, then churned).
const FLOOD_ROUNDS: usize = 5;
/// How much more memory all rounds after the first may take together. The allocator
/// keeps what a round freed and now and then grows by a step of a few MiB (a new
/// thread arena); a leak grows every round: 2 KiB per connection would be 18 MiB over
/// the 4 repeated rounds' 9,200 connections.
const REPEATED_FLOOD_GROWTH_LIMIT_BYTES: u64 = 16 * MIB;
/// The connection cap of the flood test.
const MAX_CONNECTIONS: usize = 40;
/// Connections the flood opens at once and holds.
const HELD_FLOOD_CONNECTIONS: usize = 300;
/// Connections opened and closed in the churn, by each of [`CHURN_THREADS`].
const CHURN_CONNECTIONS_PER_THREAD: usize = 500;
const CHURN_THREADS: usize = 4;
/// Clients that disconnect mid-transaction, each this many times.
const DISCONNECTING_THREADS: usize = 8;
const DISCONNECTS_PER_THREAD: usize = 100;
/// Longest wait for the well-behaved clients to make progress, or for a freed slot.
const PROGRESS_DEADLINE: Duration = Duration::from_secs(30);

/// What the well-behaved producer and consumer saw.
#[derive(Default)]
struct GoodLog {
    acknowledged: Vec<String>,
    /// Bodies returned by acknowledged takes (and the final drain), with repeats.
    delivered: Vec<String>,
    errors: Vec<String>,
}

/// A producer and a consumer that keep committing and taking until stopped.
struct WellBehaved {
    stop: Arc<AtomicBool>,
    commits: Arc<AtomicU64>,
    takes: Arc<AtomicU64>,
    log: Arc<Mutex<GoodLog>>,
    thread: Option<thread::JoinHandle<()>>,
    address: String,
}

impl WellBehaved {
    /// Starts both; the producer pauses `pause` between commits.
    fn start(address: &str, pause: Duration) -> WellBehaved {
        let stop = Arc::new(AtomicBool::new(false));
        let commits = Arc::new(AtomicU64::new(0));
        let takes = Arc::new(AtomicU64::new(0));
        let log = Arc::new(Mutex::new(GoodLog::default()));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Both connect before the test goes on, so they hold their places under the cap.
        let (mut producer, mut consumer) = runtime.block_on(async {
            let producer = Client::connect(ClientOptions::new(address)).await.unwrap();
            let consumer = Client::connect(ClientOptions::new(address)).await.unwrap();
            (producer, consumer)
        });
        let thread = {
            let (stop, commits, takes, log) = (
                Arc::clone(&stop),
                Arc::clone(&commits),
                Arc::clone(&takes),
                Arc::clone(&log),
            );
            thread::spawn(move || {
                runtime.block_on(async {
                    let producing = async {
                        let mut sequence = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            let bodies: Vec<String> = (0..5)
                                .map(|_| {
                                    sequence += 1;
                                    format!("good-{sequence:08}")
                                })
                                .collect();
                            let events: Vec<Event> = bodies
                                .iter()
                                .map(|body| Event::new(body.clone().into_bytes()))
                                .collect();
                            match producer.put_and_commit("default", &events).await {
                                Ok(()) => {
                                    log.lock().unwrap().acknowledged.extend(bodies);
                                    commits.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(error) => {
                                    log.lock().unwrap().errors.push(format!("put: {error}"));
                                    return;
                                }
                            }
                            tokio::time::sleep(pause).await;
                        }
                    };
                    let consuming = async {
                        while !stop.load(Ordering::Relaxed) {
                            let taken = async {
                                consumer.begin("default").await?;
                                let events = consumer.take(50, Duration::from_millis(20)).await?;
                                consumer.commit().await?;
                                Ok::<_, millrace_client::ClientError>(events)
                            }
                            .await;
                            match taken {
                                Ok(events) => {
                                    let mut log = log.lock().unwrap();
                                    log.delivered.extend(events.into_iter().map(|event| {
                                        String::from_utf8_lossy(&event.body).into_owned()
                                    }));
                                    takes.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(error) => {
                                    log.lock().unwrap().errors.push(format!("take: {error}"));
                                    return;
                                }
                            }
                        }
                    };
                    tokio::join!(producing, consuming);
                });
            })
        };
        WellBehaved {
            stop,
            commits,
            takes,
            log,
            thread: Some(thread),
            address: address.to_string(),
        }
    }

    /// Waits until both clients have committed again since now; panics with their
    /// errors if they do not.
    fn assert_still_working(&self, during: &str) {
        let commits = self.commits.load(Ordering::Relaxed);
        let takes = self.takes.load(Ordering::Relaxed);
        let progressed = wait_until(PROGRESS_DEADLINE, || {
            self.commits.load(Ordering::Relaxed) > commits
                && self.takes.load(Ordering::Relaxed) > takes
        });
        assert!(
            progressed,
            "the well-behaved clients stopped making progress {during}: {:?}",
            self.log.lock().unwrap().errors
        );
    }

    /// Stops both, drains what is left and returns the log.
    fn finish(mut self) -> GoodLog {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let leftover = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let mut client = Client::connect(ClientOptions::new(self.address.clone()))
                    .await
                    .unwrap();
                drain_channel(&mut client, "default", 1_000).await
            });
        let mut log = std::mem::take(&mut *self.log.lock().unwrap());
        log.delivered.extend(leftover);
        log
    }
}

/// Checks the well-behaved clients' log like total-queue: each acknowledged event
/// delivered exactly once, nothing else delivered. Returns the delivery counts.
fn assert_exactly_once(log: &GoodLog) -> HashMap<&str, usize> {
    assert!(
        log.errors.is_empty(),
        "well-behaved clients failed: {:?}",
        log.errors
    );
    let acknowledged: HashSet<&str> = log.acknowledged.iter().map(String::as_str).collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for body in &log.delivered {
        *counts.entry(body.as_str()).or_default() += 1;
    }
    let lost: Vec<&&str> = acknowledged
        .iter()
        .filter(|body| !counts.contains_key(**body))
        .collect();
    let unexpected: Vec<&&str> = counts
        .keys()
        .filter(|body| !acknowledged.contains(**body))
        .collect();
    let duplicated: Vec<(&&str, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "  well-behaved clients: {} events acknowledged, {} delivered; lost {}, unexpected {}, \
         duplicated {}",
        acknowledged.len(),
        log.delivered.len(),
        lost.len(),
        unexpected.len(),
        duplicated.len()
    );
    assert!(lost.is_empty(), "lost: {:?}", &lost[..lost.len().min(10)]);
    assert!(unexpected.is_empty(), "unexpected: {unexpected:?}");
    assert!(duplicated.is_empty(), "duplicated: {duplicated:?}");
    assert!(
        acknowledged.len() > 100,
        "the well-behaved producer did real work"
    );
    counts
}

fn encoded(request: &Request) -> Vec<u8> {
    let mut bytes = Vec::new();
    Encoder::default()
        .encode_request(RequestId(1), request, &mut bytes)
        .expect("encode");
    bytes
}

/// Writes and closes, ignoring errors (the server may have closed first).
fn send_and_drop(address: &str, bytes: &[u8]) {
    if let Ok(mut stream) = TcpStream::connect(address) {
        let _ = stream.write_all(bytes);
        let _ = stream.shutdown(Shutdown::Both);
    }
}

/// Holds [`HELD_FLOOD_CONNECTIONS`] at once (all saying hello), then opens and closes
/// [`CHURN_THREADS`] × [`CHURN_CONNECTIONS_PER_THREAD`] in every broken way, then checks
/// that every free place is usable again. Returns (accepted, refused) of the held ones.
fn flood_round(address: &str, round: u64) -> (usize, usize) {
    let address = address.to_string();
    // Held: far more connections than the cap, all at once, each saying hello.
    let mut accepted = Vec::new();
    let mut refused = 0;
    let mut other = Vec::new();
    let mut pending: Vec<RawConnection> = (0..HELD_FLOOD_CONNECTIONS)
        .map(|_| RawConnection::connect(&address))
        .collect();
    for connection in &mut pending {
        connection.send(&Request::Hello(Hello::new("flood")));
    }
    for mut connection in pending {
        match connection.try_receive().map(|frame| frame.response) {
            Ok(Response::HelloAccepted(_)) => accepted.push(connection),
            Ok(Response::HandshakeRejected(error))
                if error.code == ErrorCode::TooManyConnections =>
            {
                refused += 1;
                let (_, closed) = connection.read_until_closed();
                assert!(closed, "a refused connection is closed by the server");
            }
            outcome => other.push(format!("{outcome:?}")),
        }
    }
    assert!(
        other.is_empty(),
        "unexpected answers to the flood: {other:?}"
    );
    assert!(
        accepted.len() <= MAX_CONNECTIONS - 2,
        "{} flood connections accepted beside the 2 well-behaved ones, cap {MAX_CONNECTIONS}",
        accepted.len()
    );
    assert_eq!(accepted.len() + refused, HELD_FLOOD_CONNECTIONS);
    let held = accepted.len();
    for connection in accepted {
        connection.disconnect();
    }

    // Churn: connections opened and closed as fast as possible, in every broken way.
    let hello = encoded(&Request::Hello(Hello::new("churn")));
    let put = encoded(&Request::PutCommit {
        channel: "default".into(),
        events: EventBatch::from_events(&[Event::new(vec![b'h'; 512])]).unwrap(),
    });
    let churners: Vec<_> = (0..CHURN_THREADS)
        .map(|thread_index| {
            let address = address.clone();
            let hello = hello.clone();
            let put = put.clone();
            thread::spawn(move || {
                let mut rng =
                    rand::rngs::StdRng::seed_from_u64(round * 1_000 + thread_index as u64);
                for _ in 0..CHURN_CONNECTIONS_PER_THREAD {
                    match rng.random_range(0..5) {
                        // Connect and close at once.
                        0 => send_and_drop(&address, &[]),
                        // A whole hello, then close without reading the answer.
                        1 => send_and_drop(&address, &hello),
                        // Half a hello.
                        2 => send_and_drop(&address, &hello[..hello.len() / 2]),
                        // A hello, then a put cut off mid-frame: never committed.
                        3 => {
                            send_and_drop(&address, &[&hello[..], &put[..put.len() - 100]].concat())
                        }
                        // Garbage.
                        _ => {
                            let garbage: Vec<u8> = (0..rng.random_range(1..2_000))
                                .map(|_| rng.random())
                                .collect();
                            send_and_drop(&address, &garbage);
                        }
                    }
                }
            })
        })
        .collect();
    for churner in churners {
        churner.join().unwrap();
    }

    // Every place is free again.
    let accepting = wait_until(PROGRESS_DEADLINE, || {
        let mut connections: Vec<RawConnection> = (0..MAX_CONNECTIONS - 2)
            .map(|_| RawConnection::connect(&address))
            .collect();
        connections
            .iter_mut()
            .all(|connection| matches!(connection.handshake(None), Response::HelloAccepted(_)))
    });
    assert!(
        accepting,
        "all {} free places are usable again",
        MAX_CONNECTIONS - 2
    );
    (held, refused)
}

#[test]
fn a_connection_flood_beyond_the_cap_leaves_the_server_up_bounded_and_serving() {
    let server = Server::start(
        ServerSetup::embedded_default()
            .arg("--max-connections")
            .arg(MAX_CONNECTIONS.to_string()),
    );
    let address = server.protocol_address().to_string();
    // Slow enough that the events it keeps queued and cached add little to the memory
    // the floods are judged by.
    let good = WellBehaved::start(&address, Duration::from_millis(10));
    good.assert_still_working("before the flood");
    let resident_before = server.resident_memory_bytes();
    // The same abuse twice: memory freed after the first may stay with the allocator, but
    // the second must not need more.
    let mut resident_after_round = Vec::new();
    let mut held = 0;
    let mut refused = 0;
    for round in 0..FLOOD_ROUNDS {
        let (round_held, round_refused) = flood_round(&address, round as u64);
        held += round_held;
        refused += round_refused;
        good.assert_still_working("after a flood");
        resident_after_round.push(server.resident_memory_bytes());
    }
    let log = good.finish();
    let after: Vec<String> = resident_after_round
        .iter()
        .map(|bytes| format!("{:.1}", *bytes as f64 / MIB as f64))
        .collect();
    println!(
        "connection flood (cap {MAX_CONNECTIONS}), {FLOOD_ROUNDS} rounds: each held \
         {HELD_FLOOD_CONNECTIONS} at once ({held} accepted, {refused} refused with \
         TOO_MANY_CONNECTIONS over the rounds), then opened and closed {} (empty, hello, half \
         a hello, a put cut short, garbage); resident memory {:.1} MiB before, after each \
         round {} MiB",
        CHURN_THREADS * CHURN_CONNECTIONS_PER_THREAD,
        resident_before as f64 / MIB as f64,
        after.join(", "),
    );
    let counts = assert_exactly_once(&log);
    assert!(
        counts.keys().all(|body| body.starts_with("good-")),
        "a put cut short was delivered"
    );
    let first = resident_after_round[0];
    let last = *resident_after_round.last().unwrap();
    assert!(
        first < resident_before + RSS_GROWTH_LIMIT_BYTES,
        "resident memory grew from {resident_before} to {first} bytes in the first flood"
    );
    assert!(
        last < first + REPEATED_FLOOD_GROWTH_LIMIT_BYTES,
        "resident memory grew from {first} to {last} bytes over the {} repeated floods",
        FLOOD_ROUNDS - 1
    );
}

/// One way to leave in the middle of a transaction.
#[derive(Debug, Clone, Copy)]
enum Walkout {
    /// Begin, put events, disconnect.
    AfterPut,
    /// Begin, take events, disconnect (they must come back).
    AfterTake,
    /// Begin, take events, send half of the commit frame, disconnect.
    DuringTakeCommit,
    /// Begin, put events, send half of the commit frame, disconnect.
    DuringPutCommit,
    /// Begin, take, put, disconnect.
    AfterTakeAndPut,
}

const WALKOUTS: [Walkout; 5] = [
    Walkout::AfterPut,
    Walkout::AfterTake,
    Walkout::DuringTakeCommit,
    Walkout::DuringPutCommit,
    Walkout::AfterTakeAndPut,
];

/// Does one walkout; returns the bodies it took (which must come back).
fn walk_out(address: &str, walkout: Walkout, tag: &str) -> Vec<String> {
    let mut connection = RawConnection::open(address);
    assert_eq!(
        connection.call(&Request::Begin {
            channel: "default".into()
        }),
        Response::Ok
    );
    let mut taken = Vec::new();
    let hostile_events = || {
        let events: Vec<Event> = (0..3)
            .map(|index| Event::new(format!("hostile-{tag}-{index}").into_bytes()))
            .collect();
        EventBatch::from_events(&events).unwrap()
    };
    let mut take = |connection: &mut RawConnection| match connection.call(&Request::Take {
        max_events: 7,
        wait_ms: 10,
    }) {
        Response::Events(events) => taken.extend(
            events
                .to_events()
                .into_iter()
                .map(|event| String::from_utf8_lossy(&event.body).into_owned()),
        ),
        other => panic!("a take answered {other:?}"),
    };
    match walkout {
        Walkout::AfterPut | Walkout::DuringPutCommit => {
            assert_eq!(
                connection.call(&Request::Put {
                    events: hostile_events()
                }),
                Response::Ok
            );
        }
        Walkout::AfterTake | Walkout::DuringTakeCommit => take(&mut connection),
        Walkout::AfterTakeAndPut => {
            take(&mut connection);
            assert_eq!(
                connection.call(&Request::Put {
                    events: hostile_events()
                }),
                Response::Ok
            );
        }
    }
    if matches!(
        walkout,
        Walkout::DuringPutCommit | Walkout::DuringTakeCommit
    ) {
        let commit = encoded(&Request::Commit);
        connection.send_bytes(&commit[..commit.len() / 2]);
    }
    connection.disconnect();
    taken
}

#[test]
fn clients_that_disconnect_mid_transaction_lose_nothing_and_their_takes_come_back() {
    let server = Server::start(ServerSetup::embedded_default());
    let address = server.protocol_address().to_string();
    // Fast, so the channel always has events for the walkouts to take.
    let good = WellBehaved::start(&address, Duration::from_millis(2));
    good.assert_still_working("before the walkouts");
    let resident_before = server.resident_memory_bytes();
    let walkers: Vec<_> = (0..DISCONNECTING_THREADS)
        .map(|thread_index| {
            let address = address.clone();
            thread::spawn(move || {
                let mut taken = Vec::new();
                let mut kinds: HashMap<String, usize> = HashMap::new();
                for round in 0..DISCONNECTS_PER_THREAD {
                    let walkout = WALKOUTS[(thread_index + round) % WALKOUTS.len()];
                    *kinds.entry(format!("{walkout:?}")).or_default() += 1;
                    taken.extend(walk_out(
                        &address,
                        walkout,
                        &format!("{thread_index}-{round}"),
                    ));
                }
                (taken, kinds)
            })
        })
        .collect();
    let mut taken_by_walkouts = Vec::new();
    let mut kinds: HashMap<String, usize> = HashMap::new();
    for walker in walkers {
        let (taken, walker_kinds) = walker.join().unwrap();
        taken_by_walkouts.extend(taken);
        for (kind, count) in walker_kinds {
            *kinds.entry(kind).or_default() += count;
        }
    }
    good.assert_still_working("after the walkouts");
    let resident_after = server.resident_memory_bytes();
    let log = good.finish();
    let mut kinds: Vec<(String, usize)> = kinds.into_iter().collect();
    kinds.sort();
    println!(
        "disconnects mid-transaction: {} walkouts ({kinds:?}), {} events taken by them and \
         never committed; resident memory {:.1} MiB before, {:.1} MiB after",
        DISCONNECTING_THREADS * DISCONNECTS_PER_THREAD,
        taken_by_walkouts.len(),
        resident_before as f64 / MIB as f64,
        resident_after as f64 / MIB as f64,
    );
    let counts = assert_exactly_once(&log);
    assert!(
        counts.keys().all(|body| body.starts_with("good-")),
        "an uncommitted put was delivered"
    );
    assert!(
        !taken_by_walkouts.is_empty(),
        "some walkouts took events (the well-behaved producer keeps the channel fed)"
    );
    let not_back: Vec<&String> = taken_by_walkouts
        .iter()
        .filter(|body| !counts.contains_key(body.as_str()))
        .collect();
    assert!(
        not_back.is_empty(),
        "events taken by a disconnected client never came back: {not_back:?}"
    );
    assert!(
        resident_after < resident_before + RSS_GROWTH_LIMIT_BYTES,
        "resident memory grew from {resident_before} to {resident_after} bytes"
    );
    // Nothing is left open: the channel is empty and no take is in flight.
    let mut probe = RawConnection::open(&address);
    match probe.call(&Request::Stats {
        channel: "default".into(),
    }) {
        Response::Stats(stats) => assert_eq!(stats.size(), Some(0), "nothing left in flight"),
        other => panic!("expected stats, got {other:?}"),
    }
}
