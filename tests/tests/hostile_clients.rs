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
use std::time::{Duration, Instant};

use millrace_client::{Client, ClientOptions, Event};
use millrace_e2e::{
    drain_channel, require, skip, wait_until, Missing, RawConnection, Server, ServerSetup,
};
use millrace_protocol::{
    DecodeLimits, Encoder, ErrorCode, EventBatch, FrameType, Hello, Request, RequestId, Response,
    ResponseDecoder, MAGIC,
};
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
/// Events the well-behaved producer must have had acknowledged for a run to count.
const MIN_ACKNOWLEDGED_EVENTS: usize = 100;
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
    options: ClientOptions,
}

impl WellBehaved {
    /// Starts both; the producer pauses `pause` between commits.
    fn start(address: &str, pause: Duration) -> WellBehaved {
        WellBehaved::start_with(ClientOptions::new(address), pause)
    }

    /// Starts both with these client options (a server's token, say).
    fn start_with(options: ClientOptions, pause: Duration) -> WellBehaved {
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
            let producer = Client::connect(options.clone()).await.unwrap();
            let consumer = Client::connect(options.clone()).await.unwrap();
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
            options,
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

    /// Stops both (once the producer has had more than [`MIN_ACKNOWLEDGED_EVENTS`]
    /// acknowledged, so that the check afterwards judges real work), drains what is left
    /// and returns the log.
    fn finish(mut self) -> GoodLog {
        wait_until(PROGRESS_DEADLINE, || {
            self.log.lock().unwrap().acknowledged.len() > MIN_ACKNOWLEDGED_EVENTS
        });
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let leftover = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let mut client = Client::connect(self.options.clone()).await.unwrap();
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
        acknowledged.len() > MIN_ACKNOWLEDGED_EVENTS,
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

// Resource limits before and around authentication: huge and trickled Hellos, silent
// connection floods under a small open-file limit, idle HTTP floods, counter reports
// for the server's own objects, control characters in client-supplied names, and
// hundreds of takes waiting on an empty channel.

/// The shared token of the servers in the authentication tests.
const TOKEN: &str = "hostile-clients-token";

/// Unauthenticated connections in the huge-Hello attack.
const HUGE_HELLO_CONNECTIONS: usize = 64;
/// What each announces: the server's whole default frame limit (64 MiB), less the prefix.
const HUGE_HELLO_LENGTH_PREFIX: u32 = 64 * 1024 * 1024 - 4;
/// Zeros each sends after the header, as far as the server lets them in. A server that
/// buffered them would grow by 64 × 4 MiB = 256 MiB.
const HUGE_HELLO_BODY_BYTES: usize = 4 * 1024 * 1024;
/// The bound on channeld's resident memory growth across the attack.
const HUGE_HELLO_RSS_GROWTH_LIMIT_BYTES: u64 = 16 * MIB;
/// The largest first frame a server with a short token accepts
/// (`millrace_protocol::DEFAULT_MAX_HELLO_FRAME_BYTES`).
const MAX_HELLO_FRAME_BYTES: u64 = millrace_protocol::DEFAULT_MAX_HELLO_FRAME_BYTES as u64;

/// Sends `bytes` in pieces of at most `chunk_bytes` until the server stops taking them;
/// returns how many went out.
fn send_until_refused(stream: &TcpStream, total_bytes: usize, chunk_bytes: usize) -> usize {
    let chunk = vec![0u8; chunk_bytes];
    let mut sent = 0;
    let mut writer = stream;
    while sent < total_bytes {
        if writer.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    sent
}

#[test]
fn huge_hellos_from_64_unauthenticated_connections_are_refused_at_once_and_cost_under_16_mib() {
    let server = Server::start(
        ServerSetup::embedded_default()
            .arg("--auth-token")
            .arg(TOKEN),
    );
    let address = server.protocol_address().to_string();
    let good = WellBehaved::start_with(
        ClientOptions::new(address.clone()).with_auth_token(TOKEN),
        Duration::from_millis(10),
    );
    good.assert_still_working("before the huge Hellos");
    let resident_before = server.resident_memory_bytes();
    // The attack: the magic, a length prefix of 64 MiB - 4, the Hello type byte, then
    // zeros that never complete the frame.
    let header = [
        &MAGIC[..],
        &HUGE_HELLO_LENGTH_PREFIX.to_le_bytes(),
        &[FrameType::Hello.as_byte()],
    ]
    .concat();
    let attackers: Vec<_> = (0..HUGE_HELLO_CONNECTIONS)
        .map(|_| {
            let address = address.clone();
            let header = header.clone();
            thread::spawn(move || {
                let mut connection = RawConnection::connect(&address);
                connection.send_bytes(&header);
                let sent =
                    send_until_refused(connection.stream(), HUGE_HELLO_BODY_BYTES, 64 * 1024);
                let answer = connection.try_receive().map(|frame| frame.response);
                (answer, sent, connection)
            })
        })
        .collect();
    let outcomes: Vec<_> = attackers
        .into_iter()
        .map(|attacker| attacker.join().unwrap())
        .collect();
    // Measured while every attacker still holds its connection open.
    let resident_during = server.resident_memory_bytes();
    let most_sent = outcomes.iter().map(|(_, sent, _)| *sent).max().unwrap_or(0);
    for (answer, _, _) in &outcomes {
        match answer {
            Ok(Response::HandshakeRejected(error)) => {
                assert_eq!(error.code, ErrorCode::FrameTooLarge, "{error}");
                assert_eq!(
                    error.field(millrace_protocol::fields::MAX_FRAME_BYTES),
                    Some(MAX_HELLO_FRAME_BYTES),
                    "{error}"
                );
            }
            other => panic!("a huge Hello was answered {other:?}"),
        }
    }
    good.assert_still_working("after the huge Hellos");
    drop(outcomes);
    let log = good.finish();
    println!(
        "huge Hellos: {HUGE_HELLO_CONNECTIONS} unauthenticated connections each announcing a \
         {} MiB Hello, each refused with FRAME_TOO_LARGE (max {MAX_HELLO_FRAME_BYTES} bytes \
         before authentication); at most {most_sent} bytes of zeros got out per connection; \
         resident memory {:.1} MiB before, {:.1} MiB during (growth {:.1} MiB, bound {} MiB)",
        (u64::from(HUGE_HELLO_LENGTH_PREFIX) + 4) / MIB,
        resident_before as f64 / MIB as f64,
        resident_during as f64 / MIB as f64,
        resident_during.saturating_sub(resident_before) as f64 / MIB as f64,
        HUGE_HELLO_RSS_GROWTH_LIMIT_BYTES / MIB,
    );
    assert!(
        resident_during < resident_before + HUGE_HELLO_RSS_GROWTH_LIMIT_BYTES,
        "resident memory grew from {resident_before} to {resident_during} bytes"
    );
    assert_exactly_once(&log);
}

/// The handshake deadline of the slow-Hello test.
const SHORT_HANDSHAKE_DEADLINE: Duration = Duration::from_millis(1_000);
/// How long the slow client waits between the bytes of its Hello.
const TRICKLE_PAUSE: Duration = Duration::from_millis(300);

#[test]
fn a_hello_trickled_byte_by_byte_is_cut_off_at_the_handshake_deadline() {
    let server = Server::start(
        ServerSetup::embedded_default()
            .arg("--handshake-deadline-ms")
            .arg(SHORT_HANDSHAKE_DEADLINE.as_millis().to_string()),
    );
    let mut connection = server.connect_raw();
    let hello = encoded(&Request::Hello(Hello::new("slow-loris")));
    let trickle_time = TRICKLE_PAUSE * hello.len() as u32;
    let started = Instant::now();
    let writer = connection.stream().try_clone().unwrap();
    let trickler = thread::spawn(move || {
        let mut writer = writer;
        for byte in hello {
            if writer.write_all(&[byte]).is_err() {
                break;
            }
            thread::sleep(TRICKLE_PAUSE);
        }
    });
    let answer = connection.try_receive().map(|frame| frame.response);
    let elapsed = started.elapsed();
    match answer {
        Ok(Response::HandshakeRejected(error)) => {
            assert_eq!(error.code, ErrorCode::TimedOut, "{error}");
            assert!(error.message.contains("handshake deadline"), "{error}");
            assert_eq!(
                error.field(millrace_protocol::fields::LIMIT_MS),
                Some(SHORT_HANDSHAKE_DEADLINE.as_millis() as u64)
            );
        }
        other => panic!("a trickled Hello was answered {other:?}"),
    }
    trickler.join().unwrap();
    println!(
        "trickled Hello (one byte every {} ms, {} ms in all): refused after {} ms (handshake \
         deadline {} ms)",
        TRICKLE_PAUSE.as_millis(),
        trickle_time.as_millis(),
        elapsed.as_millis(),
        SHORT_HANDSHAKE_DEADLINE.as_millis()
    );
    assert!(
        elapsed >= SHORT_HANDSHAKE_DEADLINE,
        "refused before the deadline"
    );
    assert!(
        elapsed < trickle_time,
        "the server waited for the whole trickled Hello ({elapsed:?})"
    );
}

/// The open-file limit (soft and hard) channeld runs under in the silent flood.
const LOWERED_OPEN_FILE_LIMIT: u64 = 1_024;
/// Its `maxConnections`: what fits 1 024 descriptors beside 16 HTTP connections and one
/// file channel (channeld refuses to start with the default 1 024; see the test below).
const SILENT_FLOOD_MAX_CONNECTIONS: u64 = 700;
const SILENT_FLOOD_HTTP_MAX_CONNECTIONS: u64 = 16;
/// Connections that never send a byte.
const SILENT_FLOOD_CONNECTIONS: usize = 2_000;
const SILENT_FLOOD_THREADS: usize = 8;
/// The handshake deadline of the silent flood.
const SILENT_FLOOD_HANDSHAKE_DEADLINE: Duration = Duration::from_millis(2_000);
/// How long a flood connection may wait for the kernel's backlog to let it in.
const FLOOD_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest any flood connection may stay open: the deadline, plus the backlog's
/// turn, plus the refusal linger, on a loaded machine.
const FLOOD_CLOSE_DEADLINE: Duration = Duration::from_secs(120);
/// Checkpoints and health checks made while the flood holds every place.
const CHECKS_DURING_THE_FLOOD: usize = 5;

/// Descriptors this test process needs beside the sockets of a flood: the servers'
/// pipes and logs, the well-behaved clients, the test harness.
const TEST_PROCESS_DESCRIPTORS: u64 = 256;

/// True when this process may hold `sockets` more descriptors (raising its own soft
/// limit first); otherwise the test is skipped, or fails under `CI=true`.
fn can_hold_sockets(sockets: usize) -> bool {
    let limit = millrace_e2e::raise_own_open_file_limit();
    let needed = sockets as u64 + TEST_PROCESS_DESCRIPTORS;
    let room = if limit >= needed {
        Ok(())
    } else {
        Err(Missing::new(
            format!(
                "{needed} open files to hold {sockets} sockets (the hard limit here is {limit})"
            ),
            format!("raise it with `ulimit -Hn {needed}` as root"),
        ))
    };
    require(room).is_some()
}

/// A thread with a small stack, for the thousands that each wait on one socket.
fn spawn_small<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    const SOCKET_WAITER_STACK_BYTES: usize = 128 * 1024;
    thread::Builder::new()
        .stack_size(SOCKET_WAITER_STACK_BYTES)
        .spawn(work)
        .expect("spawn a socket waiter")
}

/// `SegmentsCreatedCount` of the channel's first data directory.
fn segments_created(server: &Server) -> u64 {
    let (_, metrics) = server.http_json("/metrics");
    metrics["DATADIR.default.0"]["SegmentsCreatedCount"]
        .as_str()
        .and_then(|count| count.parse().ok())
        .expect("a SegmentsCreatedCount")
}

/// Reads what the server sends on a flood connection until it closes it; returns the
/// answer's error code and when the close came.
fn closing_answer(mut stream: TcpStream) -> (Option<ErrorCode>, Instant) {
    stream
        .set_read_timeout(Some(FLOOD_CLOSE_DEADLINE))
        .expect("read timeout");
    let mut bytes = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut bytes);
    let closed_at = Instant::now();
    let code = ResponseDecoder::new(DecodeLimits::default())
        .decode_slice(&bytes)
        .ok()
        .flatten()
        .and_then(|(frame, _)| match frame.response {
            Response::HandshakeRejected(error) => Some(error.code),
            _ => None,
        });
    (code, closed_at)
}

#[test]
fn a_silent_flood_under_a_1024_file_limit_cannot_fail_commits_checkpoints_or_health() {
    if !can_hold_sockets(SILENT_FLOOD_CONNECTIONS) {
        return;
    }
    let config = millrace_e2e::file_channels_config(
        &["default"],
        // Small segments, so commits keep creating files while the flood lasts.
        "a1.channels.default.maxFileSize = 32768\n",
    );
    let server = Server::start(
        ServerSetup::with_config(config)
            .open_file_limit(LOWERED_OPEN_FILE_LIMIT, LOWERED_OPEN_FILE_LIMIT)
            .arg("--max-connections")
            .arg(SILENT_FLOOD_MAX_CONNECTIONS.to_string())
            .arg("--http-max-connections")
            .arg(SILENT_FLOOD_HTTP_MAX_CONNECTIONS.to_string())
            .arg("--handshake-deadline-ms")
            .arg(SILENT_FLOOD_HANDSHAKE_DEADLINE.as_millis().to_string()),
    );
    assert_eq!(
        server.open_file_limits(),
        (LOWERED_OPEN_FILE_LIMIT, LOWERED_OPEN_FILE_LIMIT)
    );
    let address = server.protocol_address().to_string();
    let good = WellBehaved::start(&address, Duration::from_millis(5));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut operator = runtime
        .block_on(Client::connect(ClientOptions::new(address.clone())))
        .unwrap();
    good.assert_still_working("before the flood");
    let segments_before = segments_created(&server);

    let socket_address: std::net::SocketAddr = address.parse().unwrap();
    let flooders: Vec<_> = (0..SILENT_FLOOD_THREADS)
        .map(|_| {
            thread::spawn(move || {
                (0..SILENT_FLOOD_CONNECTIONS / SILENT_FLOOD_THREADS)
                    .filter_map(|_| {
                        // Timed from before the connect: channeld's deadline starts at its
                        // accept, which comes before connect returns here (a thread
                        // preempted after the handshake would otherwise see the close
                        // early by the time it lost).
                        let connecting_at = Instant::now();
                        TcpStream::connect_timeout(&socket_address, FLOOD_CONNECT_TIMEOUT)
                            .ok()
                            .map(|stream| (connecting_at, stream))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let flood: Vec<(Instant, TcpStream)> = flooders
        .into_iter()
        .flat_map(|flooder| flooder.join().unwrap())
        .collect();
    let flood_held_at = Instant::now();
    let most_open_descriptors = server.open_fd_count();

    // While the flood holds every place: checkpoints, health, and the producer's commits
    // (which create segments) all keep working.
    let mut checkpoint_ms = Vec::new();
    let mut health_statuses = Vec::new();
    for _ in 0..CHECKS_DURING_THE_FLOOD {
        let started = Instant::now();
        runtime
            .block_on(operator.checkpoint("default"))
            .expect("a checkpoint during the flood");
        checkpoint_ms.push(started.elapsed().as_millis());
        health_statuses.push(server.http_get("/health").status);
    }
    good.assert_still_working("during the flood");
    let segments_during = segments_created(&server);

    // Every flood connection is closed by the server: at the handshake deadline (a
    // silent session), or at once with TOO_MANY_CONNECTIONS (over the cap).
    let readers: Vec<_> = flood
        .into_iter()
        .map(|(connected_at, stream)| {
            spawn_small(move || {
                let (code, closed_at) = closing_answer(stream);
                (code, closed_at.duration_since(connected_at))
            })
        })
        .collect();
    let closes: Vec<(Option<ErrorCode>, Duration)> = readers
        .into_iter()
        .map(|reader| reader.join().unwrap())
        .collect();
    let timed_out: Vec<Duration> = closes
        .iter()
        .filter(|(code, _)| *code == Some(ErrorCode::TimedOut))
        .map(|(_, open_for)| *open_for)
        .collect();
    let refused = closes
        .iter()
        .filter(|(code, _)| *code == Some(ErrorCode::TooManyConnections))
        .count();
    let unexplained: Vec<_> = closes
        .iter()
        .filter(|(code, _)| {
            !matches!(
                code,
                Some(ErrorCode::TimedOut | ErrorCode::TooManyConnections)
            )
        })
        .collect();
    let shortest_timed_out = timed_out.iter().min().copied().unwrap_or_default();
    let longest_open = closes
        .iter()
        .map(|(_, open_for)| *open_for)
        .max()
        .unwrap_or_default();

    good.assert_still_working("after the flood");
    runtime
        .block_on(operator.checkpoint("default"))
        .expect("a checkpoint after the flood");
    assert_eq!(server.http_get("/health").status, 200);
    let log = good.finish();
    let stderr = server.stderr();
    println!(
        "silent flood under RLIMIT_NOFILE {LOWERED_OPEN_FILE_LIMIT}: {} of \
         {SILENT_FLOOD_CONNECTIONS} connections established (maxConnections \
         {SILENT_FLOOD_MAX_CONNECTIONS}); channeld held at most {most_open_descriptors} \
         descriptors; {} closed at the handshake deadline ({} ms; the first after {} ms), \
         {refused} refused with TOO_MANY_CONNECTIONS, the last closed {} ms after its \
         connect; during the flood {CHECKS_DURING_THE_FLOOD} checkpoints took {checkpoint_ms:?} \
         ms, /health answered {health_statuses:?}, segments created {} -> {}",
        closes.len(),
        timed_out.len(),
        SILENT_FLOOD_HANDSHAKE_DEADLINE.as_millis(),
        shortest_timed_out.as_millis(),
        longest_open.as_millis(),
        segments_before,
        segments_during,
    );
    assert!(
        unexplained.is_empty(),
        "{} flood connections closed without a handshake rejection: {:?}",
        unexplained.len(),
        &unexplained[..unexplained.len().min(5)]
    );
    assert!(
        !timed_out.is_empty() && shortest_timed_out >= SILENT_FLOOD_HANDSHAKE_DEADLINE,
        "a silent connection was closed before the handshake deadline ({shortest_timed_out:?})"
    );
    assert!(health_statuses.iter().all(|status| *status == 200));
    assert!(
        segments_during > segments_before,
        "commits created segments while the flood lasted"
    );
    assert!(
        !stderr.contains("Too many open files"),
        "channeld ran out of descriptors:\n{stderr}"
    );
    assert!(most_open_descriptors as u64 <= LOWERED_OPEN_FILE_LIMIT);
    assert_exactly_once(&log);
    let _ = flood_held_at;
}

#[test]
fn channeld_refuses_to_start_when_its_connections_cannot_fit_the_open_file_limit() {
    // The default maxConnections (1 024) cannot fit a hard limit of 1 024 beside the
    // HTTP connections and the channel's files.
    let refused = Server::try_start(
        ServerSetup::embedded_default()
            .open_file_limit(LOWERED_OPEN_FILE_LIMIT, LOWERED_OPEN_FILE_LIMIT),
    )
    .err()
    .expect("channeld refuses to start");
    assert!(refused.contains("exit status: 78"), "{refused}");
    for words in [
        "RLIMIT_NOFILE",
        "is 1024",
        "maxConnections 1024",
        "Lower server.maxConnections to at most",
    ] {
        assert!(refused.contains(words), "{words:?} missing: {refused}");
    }
}

#[test]
fn channeld_raises_its_soft_open_file_limit_to_the_hard_limit() {
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX)
        .min(1 << 20);
    let needed = 4 * LOWERED_OPEN_FILE_LIMIT;
    if hard < needed {
        skip(&Missing::new(
            format!("a hard open-file limit of at least {needed} to raise to (it is {hard})"),
            format!("raise it with `ulimit -Hn {needed}` as root"),
        ));
        return;
    }
    let server = Server::start(
        ServerSetup::embedded_default().open_file_limit(LOWERED_OPEN_FILE_LIMIT, hard),
    );
    assert_eq!(server.open_file_limits(), (hard, hard));
    assert!(
        server.stderr().contains("open-file limit"),
        "{}",
        server.stderr()
    );
}

/// Idle HTTP connections in the HTTP flood.
const IDLE_HTTP_CONNECTIONS: usize = 2_000;
/// How fast `/health` must answer with the flood holding its connections.
const HEALTH_ANSWER_LIMIT: Duration = Duration::from_secs(1);
/// `/health` requests made during the HTTP flood.
const HEALTH_CHECKS_DURING_HTTP_FLOOD: usize = 3;
/// The default `server.httpMaxConnections`.
const DEFAULT_HTTP_MAX_CONNECTIONS: usize = 64;

#[test]
fn idle_http_connections_cannot_keep_health_from_answering_within_a_second() {
    if !can_hold_sockets(IDLE_HTTP_CONNECTIONS) {
        return;
    }
    let server = Server::start(ServerSetup::embedded_default());
    let address = server.protocol_address().to_string();
    let good = WellBehaved::start(&address, Duration::from_millis(10));
    good.assert_still_working("before the HTTP flood");
    let descriptors_before = server.open_fd_count();
    let http: std::net::SocketAddr = server.http_address().parse().unwrap();
    // Half say nothing, half start a request and never finish its head.
    let flood: Vec<TcpStream> = (0..IDLE_HTTP_CONNECTIONS)
        .filter_map(|index| {
            let mut stream = TcpStream::connect_timeout(&http, FLOOD_CONNECT_TIMEOUT).ok()?;
            if index % 2 == 1 {
                let _ = stream.write_all(b"GET /metr");
            }
            Some(stream)
        })
        .collect();
    let descriptors_during = server.open_fd_count();
    let mut answers = Vec::new();
    for _ in 0..HEALTH_CHECKS_DURING_HTTP_FLOOD {
        let started = Instant::now();
        let status = server.http_get("/health").status;
        answers.push((status, started.elapsed()));
    }
    good.assert_still_working("during the HTTP flood");
    // Every flood connection is closed by the server (evicted, or at the header timeout).
    let readers: Vec<_> = flood
        .into_iter()
        .map(|mut stream| {
            spawn_small(move || {
                stream.set_read_timeout(Some(FLOOD_CLOSE_DEADLINE)).unwrap();
                let mut sink = Vec::new();
                match std::io::Read::read_to_end(&mut stream, &mut sink) {
                    Ok(_) => true,
                    // Closed with a reset is closed; a read timeout is not.
                    Err(error) => !matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                }
            })
        })
        .collect();
    let closed = readers
        .into_iter()
        .map(|reader| reader.join().unwrap())
        .filter(|closed| *closed)
        .count();
    let log = good.finish();
    println!(
        "HTTP flood: {IDLE_HTTP_CONNECTIONS} idle connections (half with a request head cut \
         short); channeld held {descriptors_before} descriptors before, {descriptors_during} \
         during (cap {DEFAULT_HTTP_MAX_CONNECTIONS}); /health answered {:?}; {closed} flood \
         connections closed by the server",
        answers
            .iter()
            .map(|(status, took)| format!("{status} in {} ms", took.as_millis()))
            .collect::<Vec<_>>()
    );
    for (status, took) in &answers {
        assert_eq!(*status, 200);
        assert!(*took < HEALTH_ANSWER_LIMIT, "/health took {took:?}");
    }
    assert!(
        descriptors_during <= descriptors_before + DEFAULT_HTTP_MAX_CONNECTIONS + 1,
        "the HTTP flood took {descriptors_during} descriptors (from {descriptors_before})"
    );
    assert_eq!(
        closed, IDLE_HTTP_CONNECTIONS,
        "every flood connection was closed"
    );
    assert_exactly_once(&log);
}

/// The header timeout of the slow-head test.
const SHORT_HEADER_TIMEOUT: Duration = Duration::from_millis(1_000);

#[test]
fn an_http_request_head_left_unfinished_is_closed_at_the_header_timeout() {
    let server = Server::start(
        ServerSetup::embedded_default()
            .arg("--http-header-timeout-ms")
            .arg(SHORT_HEADER_TIMEOUT.as_millis().to_string()),
    );
    let mut stream = TcpStream::connect(server.http_address()).unwrap();
    let started = Instant::now();
    stream.write_all(b"GET /metr").unwrap();
    stream.set_read_timeout(Some(FLOOD_CLOSE_DEADLINE)).unwrap();
    let mut answer = Vec::new();
    let closed = std::io::Read::read_to_end(&mut stream, &mut answer).is_ok();
    let elapsed = started.elapsed();
    println!(
        "unfinished HTTP request head: closed after {} ms (header timeout {} ms)",
        elapsed.as_millis(),
        SHORT_HEADER_TIMEOUT.as_millis()
    );
    assert!(closed, "the server closed the connection");
    assert!(elapsed >= SHORT_HEADER_TIMEOUT, "closed before the timeout");
    assert!(elapsed < FLOOD_CLOSE_DEADLINE);
    assert_eq!(server.http_get("/health").status, 200);
}

/// Sends a `ReportCounters` and returns the answer.
fn report(
    connection: &mut RawConnection,
    component_type: &str,
    component: &str,
    counters: &[(&str, u64)],
) -> Response {
    connection.call(&Request::ReportCounters {
        component_type: component_type.into(),
        component: component.into(),
        counters: millrace_protocol::ChannelStats {
            counters: counters
                .iter()
                .map(|(name, value)| (name.to_string(), *value))
                .collect(),
        },
    })
}

fn refusal_code(response: &Response) -> Option<ErrorCode> {
    match response {
        Response::Error(error) => Some(error.code),
        _ => None,
    }
}

#[test]
fn counter_reports_cannot_overwrite_a_channel_or_another_connections_component() {
    let server = Server::start(ServerSetup::embedded_default());
    let address = server.protocol_address().to_string();
    let good = WellBehaved::start(&address, Duration::from_millis(10));
    good.assert_still_working("before the reports");
    let mut hostile = RawConnection::open(&address);
    // The attack of the issue: a CHANNEL report with a real channel's name.
    let forged = report(
        &mut hostile,
        "CHANNEL",
        "default",
        &[
            ("Unhealthy", 0),
            ("ChannelSize", 999_999),
            ("EventPutSuccessCount", 0),
        ],
    );
    assert_eq!(
        refusal_code(&forged),
        Some(ErrorCode::ReportRefused),
        "{forged:?}"
    );
    for (component_type, component) in [
        ("DATADIR", "default"),
        ("SOURCE", "a.b"),
        ("SINK", "k1\nforged"),
    ] {
        let answer = report(&mut hostile, component_type, component, &[]);
        assert_eq!(
            refusal_code(&answer),
            Some(ErrorCode::ReportRefused),
            "{answer:?}"
        );
    }
    good.assert_still_working("after the forged reports");
    let (_, metrics) = server.http_json("/metrics");
    let channel = &metrics["CHANNEL.default"];
    assert_eq!(channel["Type"], "CHANNEL");
    assert_ne!(channel["ChannelSize"], "999999", "{channel}");
    assert_ne!(channel["EventPutSuccessCount"], "0", "{channel}");
    assert_eq!(channel["Unhealthy"], "0");

    // A component belongs to the connection reporting it while that one is open.
    let mut owner = RawConnection::open(&address);
    assert_eq!(
        report(&mut owner, "SOURCE", "r1", &[("EventReceivedCount", 5)]),
        Response::Ok
    );
    let stolen = report(&mut hostile, "SOURCE", "r1", &[("EventReceivedCount", 0)]);
    assert_eq!(
        refusal_code(&stolen),
        Some(ErrorCode::ReportRefused),
        "{stolen:?}"
    );
    let (_, metrics) = server.http_json("/metrics");
    assert_eq!(metrics["SOURCE.r1"]["EventReceivedCount"], "5");
    // Once it closes, a reconnected adapter takes the component over.
    owner.disconnect();
    let taken_over = wait_until(PROGRESS_DEADLINE, || {
        report(&mut hostile, "SOURCE", "r1", &[("EventReceivedCount", 6)]) == Response::Ok
    });
    assert!(
        taken_over,
        "the component was released when its connection closed"
    );
    let log = good.finish();
    assert_exactly_once(&log);
}

#[test]
fn control_characters_in_client_supplied_names_are_escaped_in_the_log() {
    let server = Server::start(
        ServerSetup::embedded_default()
            .arg("--auth-token")
            .arg(TOKEN),
    );
    let forged_line = "WARN millrace_server: forged";
    let evil_name = format!("evil\n{forged_line}\r\u{1b}[31mred\u{202e}");
    // Refused for a wrong token: the warning names the client.
    let mut wrong_token = server.connect_raw();
    let answer = wrong_token.handshake_with(Hello::new(evil_name.clone()).with_auth_token("wrong"));
    assert!(
        matches!(&answer, Response::HandshakeRejected(error) if error.code == ErrorCode::Unauthorized),
        "{answer:?}"
    );
    // Accepted, then a protocol violation: the closing log line names the client too.
    let mut violator = server.connect_raw();
    let answer = violator.handshake_with(Hello::new(evil_name).with_auth_token(TOKEN));
    assert!(matches!(answer, Response::HelloAccepted(_)), "{answer:?}");
    violator.send_bytes(&[5, 0, 0, 0, 0x7E, 9, 0, 0, 0]);
    let _ = violator.read_until_closed();
    let escaped = "evil\\nWARN millrace_server: forged\\r\\u{1b}[31mred\\u{202e}";
    let logged = wait_until(PROGRESS_DEADLINE, || {
        server.stderr().matches(escaped).count() >= 2
    });
    let stderr = server.stderr();
    assert!(logged, "both log lines show the escaped name:\n{stderr}");
    assert!(
        !stderr.lines().any(|line| line.starts_with(forged_line)),
        "a client forged a log line:\n{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "a raw ESC reached the log");
    assert!(
        !stderr.contains('\u{202e}'),
        "a raw bidi override reached the log"
    );
}

/// Takes that wait on an empty channel in the checkpoint test: more than tokio's default
/// 512 blocking threads.
const WAITING_TAKES: usize = 600;
/// How long each of them waits.
const WAITING_TAKE_WAIT: Duration = Duration::from_secs(30);
/// After the checkpoint's answer: long enough for a take answered just before it to
/// arrive too.
const ANSWER_IN_FLIGHT_PAUSE: Duration = Duration::from_millis(500);

#[test]
fn six_hundred_takes_waiting_on_an_empty_channel_do_not_delay_a_checkpoint() {
    if !can_hold_sockets(WAITING_TAKES) {
        return;
    }
    let server = Server::start(ServerSetup::with_config(
        millrace_e2e::file_channels_config(&["default", "idle"], ""),
    ));
    let address = server.protocol_address().to_string();
    let good = WellBehaved::start(&address, Duration::from_millis(10));
    good.assert_still_working("before the waiting takes");
    let waiting: Vec<RawConnection> = (0..WAITING_TAKES)
        .map(|_| {
            let mut connection = RawConnection::open(&address);
            connection.send_pipelined(&[
                Request::Begin {
                    channel: "idle".into(),
                },
                Request::Take {
                    max_events: 1,
                    wait_ms: WAITING_TAKE_WAIT.as_millis() as u32,
                },
            ]);
            assert_eq!(
                connection.receive().response,
                Response::Ok,
                "Begin answered"
            );
            connection
        })
        .collect();
    let takes_started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let checkpoint_took = runtime.block_on(async {
        let mut operator = Client::connect(ClientOptions::new(address.clone()))
            .await
            .unwrap();
        let started = Instant::now();
        operator.checkpoint("default").await.expect("checkpoint");
        started.elapsed()
    });
    // The ordering that matters: no waiting take had been answered when the checkpoint
    // was (a take whose wait ended would have freed the thread a starved checkpoint
    // waited for; its answer follows within moments, hence the short pause).
    thread::sleep(ANSWER_IN_FLIGHT_PAUSE);
    let answered_takes = waiting
        .iter()
        .filter(|connection| {
            let stream = connection.stream();
            stream.set_nonblocking(true).unwrap();
            let answered = stream.peek(&mut [0u8; 1]).is_ok();
            stream.set_nonblocking(false).unwrap();
            answered
        })
        .count();
    let takes_still_waiting = takes_started.elapsed() < WAITING_TAKE_WAIT;
    good.assert_still_working("while the takes wait");
    let threads = std::fs::read_dir(format!("/proc/{}/task", server.pid().as_raw_nonzero()))
        .map(|tasks| tasks.count())
        .unwrap_or_default();
    println!(
        "{WAITING_TAKES} takes waiting {} s on an empty channel: a checkpoint of another \
         channel took {} ms; channeld ran {threads} threads",
        WAITING_TAKE_WAIT.as_secs(),
        checkpoint_took.as_millis()
    );
    assert_eq!(
        answered_takes, 0,
        "the checkpoint ({checkpoint_took:?}) finished only after waiting takes were answered"
    );
    assert!(
        takes_still_waiting && checkpoint_took < WAITING_TAKE_WAIT / 2,
        "the checkpoint took {checkpoint_took:?}"
    );
    assert!(
        threads < WAITING_TAKES / 2,
        "the waiting takes hold {threads} threads"
    );
    for connection in waiting {
        connection.disconnect();
    }
    let log = good.finish();
    assert_exactly_once(&log);
}
