//! systemd's readiness protocol (`Type=notify`, `deploy/systemd/channeld.service`).
//!
//! When `$NOTIFY_SOCKET` is set, channeld sends `READY=1` once it serves (its channels
//! opened or failed, the protocol listener bound: the moment it writes `--ready-file`)
//! and `STOPPING=1` when a signal starts its stop, each with a `STATUS=` line that
//! `systemctl status` shows. Without `$NOTIFY_SOCKET` these do nothing. A failed send
//! is logged and otherwise ignored: readiness is a courtesy to the supervisor, never a
//! reason to stop serving.

use sd_notify::NotifyState;
use tracing::{debug, warn};

/// The environment variable systemd sets for a `Type=notify` service.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

fn notify(states: &[NotifyState]) {
    if std::env::var_os(NOTIFY_SOCKET_ENV).is_none() {
        return;
    }
    // `false`: NOTIFY_SOCKET stays set (changing the environment of a running,
    // multi-threaded process is not safe); systemd takes notifications from the main
    // process only, so the adapters channeld starts cannot speak for it.
    match sd_notify::notify(false, states) {
        Ok(()) => debug!(?states, "told systemd"),
        Err(error) => warn!(%error, "cannot notify systemd through $NOTIFY_SOCKET"),
    }
}

/// `READY=1`: channeld serves.
pub fn notify_ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `STOPPING=1`: channeld drains and stops.
pub fn notify_stopping(status: &str) {
    notify(&[NotifyState::Stopping, NotifyState::Status(status)]);
}
