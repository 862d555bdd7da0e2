//! A channel's fail-stop flag: once an fsync fails or corruption is read, the channel
//! acknowledges nothing more until it is reopened, and says why.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tracing::error;

/// Shared by the channel and its writer threads.
#[derive(Debug, Default)]
pub(crate) struct Health {
    failed: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Health {
    /// Marks the channel failed. The first reason is kept; later ones are only logged.
    pub(crate) fn fail(&self, reason: String) {
        let mut slot = self.reason.lock();
        if slot.is_none() {
            error!(%reason, "channel failed; it acknowledges nothing more until reopened");
            *slot = Some(reason);
            self.failed.store(true, Ordering::Release);
        }
    }

    /// The failure, if the channel has failed.
    pub(crate) fn failure(&self) -> Option<String> {
        if self.failed.load(Ordering::Acquire) {
            self.reason.lock().clone()
        } else {
            None
        }
    }
}
