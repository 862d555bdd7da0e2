//! A small, bounded pool of connections to channeld, shared by every client a source
//! serves.
//!
//! ## Constraints
//!
//! - **Bounded whatever the source's own clients do.** 200 syslog senders or 32
//!   concurrent HTTP requests must not become 200 or 32 channeld connections: channeld's
//!   connection slots are shared with every other producer and consumer. A source opens
//!   at most `channeldConnections` connections (default
//!   [`DEFAULT_CHANNELD_CONNECTIONS`]); a delivery that finds them all busy waits for
//!   one, which slows the source's clients down (TCP back-pressure) instead of locking
//!   other clients out of channeld.
//! - **Held only for a transaction.** A delivery checks a connection out for one
//!   put-and-commit and gives it back at once, also between retries, so a client
//!   waiting for a full channel does not hold a connection others could use.
//! - **Shrinks when idle.** A connection unused for [`POOL_IDLE_TIMEOUT`] is closed (a
//!   background task checks every [`IDLE_CHECK_INTERVAL`]), so a burst leaves no
//!   connections behind; and one idle for more than [`PING_AFTER_IDLE`] is pinged
//!   before use, so a connection channeld closed meanwhile (its own idle timeout, a
//!   restart) is replaced before a put is sent on it, not after.
//! - **Learns the channels' transaction limits.** A channel's `transactionCapacity`
//!   reported in a `TRANSACTION_TOO_LARGE` refusal is remembered here for every client
//!   of the source (see [`crate::delivery`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use millrace_client::{Client, ClientError, ClientOptions};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info};

/// Connections to channeld a source opens at most, by default.
pub const DEFAULT_CHANNELD_CONNECTIONS: usize = 4;
/// A pooled connection unused this long is closed.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often idle connections are looked for.
pub const IDLE_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// A connection unused this long is pinged before it carries a put.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(5);

struct IdleClient {
    client: Box<Client>,
    idle_since: Instant,
}

/// The pool. Cheap to share: clone the `Arc`.
pub struct ServerPool {
    options: ClientOptions,
    max_connections: usize,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<IdleClient>>,
    transaction_limits: Mutex<HashMap<String, usize>>,
    reaper_started: std::sync::Once,
}

impl std::fmt::Debug for ServerPool {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ServerPool")
            .field("address", &self.options.address)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ServerPool {
    /// At most `max_connections` (at least 1) connections to the server `options` names.
    pub fn new(options: ClientOptions, max_connections: usize) -> Arc<Self> {
        let max_connections = max_connections.max(1);
        Arc::new(ServerPool {
            options,
            max_connections,
            permits: Arc::new(Semaphore::new(max_connections)),
            idle: Mutex::new(Vec::new()),
            transaction_limits: Mutex::new(HashMap::new()),
            reaper_started: std::sync::Once::new(),
        })
    }

    /// The server's address.
    pub fn address(&self) -> &str {
        &self.options.address
    }

    /// The most connections this pool opens.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Connections open now (in use or idle).
    pub fn open_connections(&self) -> usize {
        let in_use = self.max_connections - self.permits.available_permits();
        in_use + lock(&self.idle).len()
    }

    /// The most events one transaction on `channel` may hold, once learned.
    pub fn transaction_limit(&self, channel: &str) -> Option<usize> {
        lock(&self.transaction_limits).get(channel).copied()
    }

    /// Remembers `channel`'s transaction limit.
    pub fn learn_transaction_limit(&self, channel: &str, limit: usize) {
        let previous = lock(&self.transaction_limits).insert(channel.to_string(), limit.max(1));
        if previous != Some(limit) {
            info!(%channel, transaction_capacity = limit, "channel takes at most this many events per transaction; deliveries are split to fit");
        }
    }

    /// A connection for one transaction: an idle one (pinged first when it has been
    /// idle a while), else a new one. Waits while all `max_connections` are in use.
    pub async fn checkout(self: &Arc<Self>) -> Result<PooledClient, ClientError> {
        self.start_reaper();
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .expect("the pool's semaphore is never closed");
        loop {
            let idle = lock(&self.idle).pop();
            let Some(IdleClient {
                mut client,
                idle_since,
            }) = idle
            else {
                break;
            };
            if idle_since.elapsed() < PING_AFTER_IDLE {
                return Ok(self.lend(client, permit));
            }
            match client.ping().await {
                Ok(()) => return Ok(self.lend(client, permit)),
                Err(error) => {
                    debug!(server = %self.options.address, %error, "an idle connection to channeld was gone; replacing it");
                }
            }
        }
        let client = Client::connect(self.options.clone()).await?;
        debug!(server = %self.options.address, open = self.open_connections() + 1, "opened a pooled connection to channeld");
        Ok(self.lend(Box::new(client), permit))
    }

    fn lend(self: &Arc<Self>, client: Box<Client>, permit: OwnedSemaphorePermit) -> PooledClient {
        PooledClient {
            client: Some(client),
            pool: Arc::clone(self),
            _permit: permit,
        }
    }

    fn give_back(&self, client: Box<Client>) {
        lock(&self.idle).push(IdleClient {
            client,
            idle_since: Instant::now(),
        });
    }

    /// Closes idle connections unused for `idle_timeout` or longer.
    pub fn close_idle(&self, idle_timeout: Duration) {
        lock(&self.idle).retain(|idle| idle.idle_since.elapsed() < idle_timeout);
    }

    /// Closes every idle connection (the source is stopping).
    pub fn close_all_idle(&self) {
        lock(&self.idle).clear();
    }

    fn start_reaper(self: &Arc<Self>) {
        self.reaper_started.call_once(|| {
            let pool: Weak<ServerPool> = Arc::downgrade(self);
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(IDLE_CHECK_INTERVAL);
                loop {
                    ticks.tick().await;
                    let Some(pool) = pool.upgrade() else {
                        return;
                    };
                    pool.close_idle(POOL_IDLE_TIMEOUT);
                }
            });
        });
    }
}

/// A connection checked out of a [`ServerPool`]; goes back when dropped, unless a
/// failure left it unusable.
pub struct PooledClient {
    client: Option<Box<Client>>,
    pool: Arc<ServerPool>,
    _permit: OwnedSemaphorePermit,
}

impl PooledClient {
    /// The connection.
    pub fn client(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until dropped")
    }

    /// After an error: closes the connection instead of returning it when the error
    /// left it unusable.
    pub fn forget_if_broken(&mut self, error: &ClientError) {
        if error.breaks_connection() {
            self.client = None;
        }
    }
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            self.pool.give_back(client);
        }
    }
}
