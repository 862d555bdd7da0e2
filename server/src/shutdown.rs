//! The server's stop sequence, as a phase every task watches.
//!
//! ```text
//! Running ──SIGTERM/SIGINT──► Draining ──shutdownGraceMs or all sessions done──► Aborting
//! ```
//!
//! - **Draining**: the listener stops accepting. A session without an open transaction
//!   answers `SHUTTING_DOWN` and closes; one with a transaction keeps serving it, so a
//!   producer can commit, and closes once it ends.
//! - **Aborting**: every remaining session answers `SHUTTING_DOWN`, rolls its transaction
//!   back and closes. Then channels are closed (a file channel checkpoints first when
//!   `checkpointOnClose` is true).

use tokio::sync::watch;

/// Where the server is in its stop sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ShutdownPhase {
    /// Serving.
    Running,
    /// Stopping: no new transactions, open ones may finish.
    Draining,
    /// Stopping now: open transactions are rolled back.
    Aborting,
}

/// Moves the server through its phases.
#[derive(Debug)]
pub struct ShutdownController {
    sender: watch::Sender<ShutdownPhase>,
}

impl Default for ShutdownController {
    fn default() -> Self {
        ShutdownController::new()
    }
}

impl ShutdownController {
    /// A controller in [`ShutdownPhase::Running`].
    pub fn new() -> Self {
        let (sender, _) = watch::channel(ShutdownPhase::Running);
        ShutdownController { sender }
    }

    /// A handle for a task to watch the phase.
    pub fn watcher(&self) -> ShutdownWatcher {
        ShutdownWatcher {
            receiver: self.sender.subscribe(),
        }
    }

    /// Advances to `phase` (never backwards).
    pub fn advance(&self, phase: ShutdownPhase) {
        self.sender.send_if_modified(|current| {
            if phase > *current {
                *current = phase;
                true
            } else {
                false
            }
        });
    }
}

/// A task's view of the phase.
#[derive(Debug, Clone)]
pub struct ShutdownWatcher {
    receiver: watch::Receiver<ShutdownPhase>,
}

impl ShutdownWatcher {
    /// The current phase.
    pub fn phase(&self) -> ShutdownPhase {
        *self.receiver.borrow()
    }

    /// Waits until the phase is at least `phase`. Returns at once if it already is.
    pub async fn reached(&mut self, phase: ShutdownPhase) {
        // An error means the controller is gone, which only happens as the process ends:
        // treat it as the phase reached.
        let _ = self.receiver.wait_for(|current| *current >= phase).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn phases_only_move_forward_and_wake_watchers() {
        let controller = ShutdownController::new();
        let mut watcher = controller.watcher();
        assert_eq!(watcher.phase(), ShutdownPhase::Running);
        let waiting = tokio::spawn(async move {
            watcher.reached(ShutdownPhase::Draining).await;
            watcher.phase()
        });
        controller.advance(ShutdownPhase::Aborting);
        controller.advance(ShutdownPhase::Draining);
        assert_eq!(waiting.await.unwrap(), ShutdownPhase::Aborting);
        assert_eq!(controller.watcher().phase(), ShutdownPhase::Aborting);
    }
}
