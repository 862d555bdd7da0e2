//! Inspecting a running file channel: the read-only scan of its files (segments, records,
//! checkpoint slots, free space) joined with what only the running channel knows — the
//! queue as it is now, the transactions open on it and what they hold.
//!
//! The channel's figures are taken first and the files scanned after, so every event the
//! figures name was committed before the scan began and the scan finds its records. What
//! commits in between shows in the scan (records, write-order ranges) but not in the
//! figures, which are the live truth for the queue.

use crate::channel::Channel;
use crate::file::{FileChannel, LiveFigures};

use super::channel_scan::{scan_channel, ChannelScan, DataDirReport, QueueSummary};
use super::error::InspectError;
use super::progress::NoProgress;

/// A running channel's scan and in-memory figures.
#[derive(Debug, Clone)]
pub struct LiveInspection {
    /// The read-only scan of the channel's files (its `log.queue` is what a restart
    /// would rebuild, which counts events in flight as queued).
    pub scan: ChannelScan,
    /// The channel's queue and open transactions, taken just before the scan.
    pub figures: LiveFigures,
    /// The data directories with their segments and usable space, read after the scan.
    pub data_dirs: Vec<DataDirReport>,
}

impl LiveInspection {
    /// The live queue: its depth now, and the commit times of its head (the oldest
    /// queued event) and tail, found in the scan.
    pub fn queue_summary(&self) -> QueueSummary {
        let committed_events = self.scan.log.committed_events();
        let committed_unix_ms = |pointer| {
            committed_events
                .get(&pointer)
                .map(|event| event.committed_unix_ms)
        };
        QueueSummary {
            depth: self.figures.queued_events,
            oldest_event_committed_unix_ms: self.figures.queue_head.and_then(committed_unix_ms),
            newest_event_committed_unix_ms: self.figures.queue_tail.and_then(committed_unix_ms),
        }
    }

    /// Queued and in-flight events pointing into a segment, by the channel's own count.
    pub fn live_events(&self, segment_id: u32) -> u64 {
        self.figures
            .live_events_by_segment
            .get(&segment_id)
            .copied()
            .unwrap_or(0)
    }
}

impl FileChannel {
    /// A read-only scan of this open channel's files, as inspect and replay plans make
    /// them (records of a write in progress read as a torn tail).
    pub(crate) fn scan_own_files(&self) -> Result<ChannelScan, InspectError> {
        scan_channel(
            self.storage().as_ref(),
            self.name(),
            self.config(),
            &NoProgress,
        )
    }

    /// Inspects this open channel: its in-memory figures, then a read-only scan of its
    /// files (see the module doc for why the order matters).
    pub fn inspect_live(&self) -> Result<LiveInspection, InspectError> {
        let figures = self.live_figures();
        let scan = self.scan_own_files()?;
        let data_dirs = scan.data_dirs(self.storage().as_ref());
        Ok(LiveInspection {
            scan,
            figures,
            data_dirs,
        })
    }
}
