//! The protocol listener: accepts connections under `maxConnections` and runs one
//! [`Session`] task per connection.
//!
//! A connection over the limit is still accepted, answered with a
//! `TOO_MANY_CONNECTIONS` handshake rejection and closed (a refusal the client can read,
//! rather than a connection left waiting in the kernel's backlog). The refusal task is
//! bounded by the session's close linger.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::registry::ChannelRegistry;
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
        let permits = Arc::new(Semaphore::new(
            usize::try_from(max_connections)
                .unwrap_or(usize::MAX)
                .min(Semaphore::MAX_PERMITS),
        ));
        let mut sessions = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        match Arc::clone(&permits).try_acquire_owned() {
                            Ok(permit) => {
                                let session = Session::new(
                                    stream,
                                    peer,
                                    Arc::clone(&registry),
                                    Arc::clone(&settings),
                                    shutdown.clone(),
                                );
                                sessions.spawn(session.run(permit));
                            }
                            Err(_) => {
                                sessions.spawn(refuse_connection(stream, peer, max_connections));
                            }
                        }
                    }
                    Err(error) => {
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
