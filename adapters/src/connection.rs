//! Reaching channeld: a connection that reconnects after failures, and the stop signal
//! every adapter loop watches.

use std::time::Duration;

use millrace_client::{Client, ClientError, ClientOptions, Event};
use tokio::sync::watch;
use tracing::{info, warn};

/// First wait before retrying a delivery the channel refused (full, unavailable).
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
/// Longest wait between retries (Flume's spooldir `maxBackoff`).
pub const MAX_RETRY_DELAY: Duration = Duration::from_millis(4_000);

/// Tells adapter loops to stop; cloned into every task.
#[derive(Debug, Clone)]
pub struct StopSignal {
    receiver: watch::Receiver<bool>,
}

/// Raises the [`StopSignal`].
#[derive(Debug)]
pub struct StopHandle {
    sender: watch::Sender<bool>,
}

/// A new signal, not raised, and its handle.
pub fn stop_signal() -> (StopHandle, StopSignal) {
    let (sender, receiver) = watch::channel(false);
    (StopHandle { sender }, StopSignal { receiver })
}

impl StopHandle {
    /// Asks every loop holding the signal to stop.
    pub fn stop(&self) {
        let _ = self.sender.send(true);
    }

    /// A signal tied to this handle.
    pub fn signal(&self) -> StopSignal {
        StopSignal {
            receiver: self.sender.subscribe(),
        }
    }
}

impl StopSignal {
    /// Whether a stop was asked for.
    pub fn is_raised(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Resolves once a stop is asked for (at once if it already was).
    pub async fn raised(&mut self) {
        let _ = self.receiver.wait_for(|stopped| *stopped).await;
    }

    /// Sleeps for `duration`; returns `false` when woken by a stop instead.
    pub async fn sleep(&mut self, duration: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(duration) => true,
            () = self.raised() => false,
        }
    }
}

/// The doubling delay between retries, from [`FIRST_RETRY_DELAY`] to a ceiling.
#[derive(Debug, Clone)]
pub struct RetryDelay {
    next: Duration,
    ceiling: Duration,
}

impl RetryDelay {
    /// Starts at [`FIRST_RETRY_DELAY`] and doubles up to `ceiling`.
    pub fn up_to(ceiling: Duration) -> Self {
        RetryDelay {
            next: FIRST_RETRY_DELAY.min(ceiling),
            ceiling,
        }
    }

    /// The delay to wait now; the next one is twice as long.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.ceiling);
        delay
    }

    /// Back to the first delay after a success.
    pub fn reset(&mut self) {
        self.next = FIRST_RETRY_DELAY.min(self.ceiling);
    }
}

/// A connection to one channeld, opened on first use and again after it breaks.
pub struct Connection {
    options: ClientOptions,
    client: Option<Box<Client>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Connection")
            .field("address", &self.options.address)
            .field("connected", &self.client.is_some())
            .finish()
    }
}

impl Connection {
    /// Not connected yet.
    pub fn new(options: ClientOptions) -> Self {
        Connection {
            options,
            client: None,
        }
    }

    /// The server's address.
    pub fn address(&self) -> &str {
        &self.options.address
    }

    /// Whether a connection is open now.
    pub fn is_connected(&self) -> bool {
        self.client.is_some()
    }

    /// The open client, connecting first if needed (one attempt; callers retry).
    pub async fn client(&mut self) -> Result<&mut Client, ClientError> {
        if self.client.is_none() {
            let client = Client::connect(self.options.clone()).await?;
            info!(server = %self.options.address, "connected to channeld");
            self.client = Some(Box::new(client));
        }
        Ok(self.client.as_mut().expect("connected above").as_mut())
    }

    /// After an error: drops the connection when the error left it unusable.
    pub fn forget_if_broken(&mut self, error: &ClientError) {
        if error.breaks_connection() && self.client.take().is_some() {
            warn!(server = %self.options.address, %error, "connection to channeld lost");
        }
    }

    /// Drops the connection (the server rolls back its open transaction).
    pub fn close(&mut self) {
        self.client = None;
    }

    /// Puts `events` on `channel` and commits them, all or none.
    pub async fn put_and_commit(
        &mut self,
        channel: &str,
        events: &[Event],
    ) -> Result<(), ClientError> {
        let outcome = match self.client().await {
            Ok(client) => client.put_and_commit(channel, events).await,
            Err(error) => Err(error),
        };
        if let Err(error) = &outcome {
            self.forget_if_broken(error);
        }
        outcome
    }
}
