//! The protocol listener: accepts connections under `maxConnections` and runs one
//! [`Session`] task per connection.
//!
//! A connection over the limit is still accepted, answered with a
//! `TOO_MANY_CONNECTIONS` handshake rejection and closed (a refusal the client can read,
//! rather than a connection left waiting in the kernel's backlog). The refusal task is
//! bounded by the session's close linger.
//!
//! The listener never holds more than `maxConnections` sessions plus
//! [`REFUSALS_IN_FLIGHT`] refusals: it takes a place under that bound *before* it
//! accepts, so a flood waits in the kernel's backlog instead of taking the descriptors
//! the channels need for their segments and checkpoints (`crate::descriptors`).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::descriptors::{semaphore_permits as permits, REFUSALS_IN_FLIGHT};
use crate::registry::{ChannelRegistry, ConnectionId};
use crate::session::{refuse_connection, Session, SessionSettings};
use crate::shutdown::{ShutdownPhase, ShutdownWatcher};

/// After a failed `accept` (typically EMFILE: out of file descriptors), wait this long
/// before the next, so the loop does not spin while descriptors are short.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Everything the accept loop hands to sessions.
pub struct ProtocolListener {
    /// The bound socket.
    pub listener: TcpListener,
    /// The channels.
    pub registry: Arc<ChannelRegistry>,
    /// Limits and identity every session shares.
    pub settings: Arc<SessionSettings>,
    /// `server.maxConnections`.
    pub max_connections: u32,
    /// The stop phase.
    pub shutdown: ShutdownWatcher,
}

/// Waits for a place under the socket bound, then accepts. Cancel-safe: a place taken
/// but not used is given back when the future is dropped.
async fn accept_within_bound(
    listener: &TcpListener,
    sockets: &Arc<Semaphore>,
) -> (
    std::io::Result<(TcpStream, std::net::SocketAddr)>,
    OwnedSemaphorePermit,
) {
    let place = Arc::clone(sockets)
        .acquire_owned()
        .await
        .expect("the socket semaphore is never closed");
    (listener.accept().await, place)
}

impl ProtocolListener {
    /// Accepts connections until the server starts draining; returns the sessions still
    /// running, for the shutdown sequence to wait on.
    pub async fn accept_until_draining(self) -> JoinSet<()> {
        let ProtocolListener {
            listener,
            registry,
            settings,
            max_connections,
            mut shutdown,
        } = self;
        let session_places = Arc::new(Semaphore::new(permits(u64::from(max_connections))));
        let socket_places = Arc::new(Semaphore::new(permits(
            u64::from(max_connections) + REFUSALS_IN_FLIGHT,
        )));
        let mut next_connection_id: ConnectionId = 1;
        let mut sessions = JoinSet::new();
        loop {
            tokio::select! {
                (accepted, socket_place) = accept_within_bound(&listener, &socket_places) => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        match Arc::clone(&session_places).try_acquire_owned() {
                            Ok(session_place) => {
                                let session = Session::new(
                                    stream,
                                    peer,
                                    next_connection_id,
                                    Arc::clone(&registry),
                                    Arc::clone(&settings),
                                    shutdown.clone(),
                                );
                                next_connection_id += 1;
                                sessions.spawn(session.run((session_place, socket_place)));
                            }
                            Err(_) => {
                                sessions.spawn(async move {
                                    refuse_connection(stream, peer, max_connections).await;
                                    drop(socket_place);
                                });
                            }
                        }
                    }
                    Err(error) => {
                        drop(socket_place);
                        warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    }
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                () = shutdown.reached(ShutdownPhase::Draining) => {
                    debug!(open_sessions = sessions.len(), "no longer accepting connections");
                    return sessions;
                }
            }
        }
    }
}
