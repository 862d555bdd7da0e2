//! Progress of long offline work, for a terminal's progress bar.

/// Receives progress of long offline work (a terminal progress bar, or nothing).
/// Units are bytes of segment read unless the phase says otherwise.
pub trait Progress: Sync {
    /// A phase begins with `total` units of work.
    fn begin(&self, _phase: &str, _total: u64) {}
    /// `units` more are done.
    fn advance(&self, _units: u64) {}
    /// The phase is over.
    fn finish(&self) {}
}

/// Reports no progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
