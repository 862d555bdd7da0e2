//! Zeroing ahead of the writer, off the commit path.
//!
//! A segment's space is reserved with `fallocate`, which leaves *unwritten* extents: the
//! first write to such a page makes its `fdatasync` also persist the extent's conversion
//! to written, which on this project's disks makes a small round's sync about half again
//! to twice as slow as a rewrite of written blocks (`docs/perf.md`, "Segments zeroed
//! ahead"). So a helper thread per directory writer overwrites the reserved space ahead
//! of the write position with zeros (direct I/O, then `fdatasync`), and the writer's
//! rounds land on blocks already written. Recovery is unchanged: what follows the valid
//! records is zeros either way.
//!
//! The helper only zeroes space the writer has already reserved, so the space guard's
//! figures and the segment's size do not change; and it never touches a byte at or
//! below the writer's claim: before each write the writer raises its claim to the end of
//! what it writes, waiting if a zeroing write in flight overlaps that range. A segment is
//! handed over when the writer rolls to it and taken back (waiting for any write in
//! flight) before it is closed and trimmed.
//!
//! Zeroing writes every byte twice, so it only pays where syncs are small: the writer
//! hands over new reservations only while its rounds average at most
//! [`ZERO_AHEAD_MAX_BYTES_PER_SYNC`]; large rounds (4 KiB events in batches of 100) are
//! bound by bandwidth, and their syncs carry the conversion once per many pages.
//! Storage that does not zero ([`StorageFile::write_zeros_durably`] answers `Ok(false)`,
//! as the simulated disk does) turns the helper off for good; a failed zeroing write
//! turns it off for that segment, and the writer's rounds simply convert extents as
//! before.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use tracing::{debug, warn};

use crate::figures::DirStats;
use crate::storage::{StorageFile, ZEROING_ALIGNMENT_BYTES};

/// The most bytes one zeroing call covers: small enough that the writer rarely waits
/// behind one, large enough that its `fdatasync` is paid per megabytes.
const ZEROING_STEP_BYTES: u64 = 2 * 1024 * 1024;

/// Rounds larger than this on average (bytes per sync over the last reservation) are
/// bandwidth-bound: zeroing ahead of them would only double the bytes written.
pub(crate) const ZERO_AHEAD_MAX_BYTES_PER_SYNC: u64 = 256 * 1024;

/// The segment being zeroed and how far.
struct Target {
    file: Arc<dyn StorageFile>,
    path: PathBuf,
    /// The writer writes only below this (or waits for the zeroing write in flight).
    writer_claim: u64,
    /// Reserved space the helper may zero up to.
    zero_limit: u64,
    /// Zeros are written and synced from `writer_claim` (rounded up) to here.
    zeroed_end: u64,
    /// The range a zeroing write is working on right now.
    in_flight: Option<(u64, u64)>,
}

#[derive(Default)]
struct State {
    target: Option<Target>,
    /// The storage does not zero: nothing more to do, ever.
    unsupported: bool,
    shutdown: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the helper (new work, shutdown) and the writer (a write in flight done).
    changed: Condvar,
}

/// The writer's side of its zeroing helper.
pub(crate) struct ZeroAhead {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ZeroAhead {
    /// Starts the helper thread of one directory writer.
    pub(crate) fn spawn(channel: &str, stats: Arc<DirStats>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let helper_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("millrace-zero-{channel}"))
            .spawn(move || zero_loop(&helper_shared, &stats))?;
        Ok(ZeroAhead {
            shared,
            thread: Some(thread),
        })
    }

    /// Hands over the writer's new active segment: the writer writes from `position` on
    /// and has reserved up to `reserved_end`; the helper zeroes that space if `zero` says
    /// the rounds are small enough for it to pay.
    pub(crate) fn start_segment(
        &self,
        file: Arc<dyn StorageFile>,
        path: PathBuf,
        position: u64,
        reserved_end: u64,
        zero: bool,
    ) {
        let mut state = self.shared.state.lock();
        debug_assert!(
            state.target.is_none(),
            "a segment is handed back before the next"
        );
        if state.unsupported {
            return;
        }
        state.target = Some(Target {
            file,
            path,
            writer_claim: position,
            zero_limit: if zero { reserved_end } else { position },
            zeroed_end: position,
            in_flight: None,
        });
        self.shared.changed.notify_all();
    }

    /// The writer reserved space up to `reserved_end`; the helper may zero it if `zero`.
    pub(crate) fn reserved(&self, reserved_end: u64, zero: bool) {
        if !zero {
            return;
        }
        let mut state = self.shared.state.lock();
        if let Some(target) = state.target.as_mut() {
            target.zero_limit = target.zero_limit.max(reserved_end);
            self.shared.changed.notify_all();
        }
    }

    /// Called before the writer writes `[start, end)`: waits until no zeroing write
    /// overlaps the range and keeps the helper below `end` from now on.
    pub(crate) fn claim(&self, start: u64, end: u64) {
        let mut state = self.shared.state.lock();
        // Claimed at once, so that the helper's next step starts above the range even
        // while the writer waits for the step in flight.
        if let Some(target) = state.target.as_mut() {
            target.writer_claim = target.writer_claim.max(end);
        }
        while state.target.as_ref().is_some_and(|target| {
            target
                .in_flight
                .is_some_and(|(zero_start, zero_end)| zero_start < end && start < zero_end)
        }) {
            self.shared.changed.wait(&mut state);
        }
    }

    /// Takes the active segment back before the writer closes (trims) it: waits for a
    /// zeroing write in flight, after which the helper no longer touches the file.
    pub(crate) fn stop_segment(&self) {
        let mut state = self.shared.state.lock();
        while state
            .target
            .as_ref()
            .is_some_and(|target| target.in_flight.is_some())
        {
            self.shared.changed.wait(&mut state);
        }
        state.target = None;
    }
}

impl Drop for ZeroAhead {
    fn drop(&mut self) {
        self.stop_segment();
        self.shared.state.lock().shutdown = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                warn!("a segment zeroing thread panicked");
            }
        }
    }
}

fn zero_loop(shared: &Shared, stats: &DirStats) {
    let mut state = shared.state.lock();
    loop {
        if state.shutdown {
            return;
        }
        let work = state.target.as_mut().and_then(|target| {
            let start = align_up(target.zeroed_end.max(target.writer_claim));
            let end = (start + ZEROING_STEP_BYTES).min(align_down(target.zero_limit));
            (start < end).then(|| {
                target.in_flight = Some((start, end));
                (Arc::clone(&target.file), target.path.clone(), start, end)
            })
        });
        let Some((file, path, start, end)) = work else {
            shared.changed.wait(&mut state);
            continue;
        };
        let outcome = parking_lot::MutexGuard::unlocked(&mut state, || {
            file.write_zeros_durably(start, end - start)
        });
        let target = state
            .target
            .as_mut()
            .expect("the writer waits for the write in flight before taking its segment");
        target.in_flight = None;
        match outcome {
            Ok(true) => {
                target.zeroed_end = end;
                stats
                    .bytes_zeroed_ahead
                    .fetch_add(end - start, Ordering::Relaxed);
            }
            Ok(false) => {
                debug!("the storage does not zero ahead; segments keep their reserved extents");
                state.unsupported = true;
                state.target = None;
            }
            Err(error) => {
                warn!(
                    segment = %path.display(),
                    offset = start,
                    bytes = end - start,
                    %error,
                    "could not zero a segment's reserved space ahead of the writer; \
                     its later syncs convert the reserved extents instead"
                );
                target.zero_limit = target.writer_claim;
            }
        }
        shared.changed.notify_all();
    }
}

fn align_up(offset: u64) -> u64 {
    offset.next_multiple_of(ZEROING_ALIGNMENT_BYTES)
}

fn align_down(offset: u64) -> u64 {
    offset - offset % ZEROING_ALIGNMENT_BYTES
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::mpsc;

    use super::*;

    const MIB: u64 = 1024 * 1024;

    /// A file whose zeroing calls report their range and then wait for a go-ahead.
    #[derive(Debug)]
    struct GatedFile {
        zeroing: Mutex<mpsc::Sender<(u64, u64)>>,
        go_ahead: Mutex<mpsc::Receiver<()>>,
    }

    impl StorageFile for GatedFile {
        fn write_all_at(&self, _buf: &[u8], _offset: u64) -> io::Result<()> {
            Ok(())
        }
        fn read_at(&self, _buf: &mut [u8], _offset: u64) -> io::Result<usize> {
            Ok(0)
        }
        fn len_bytes(&self) -> io::Result<u64> {
            Ok(0)
        }
        fn set_len(&self, _len: u64) -> io::Result<()> {
            Ok(())
        }
        fn allocate(&self, _len: u64) -> io::Result<()> {
            Ok(())
        }
        fn sync_data(&self) -> io::Result<()> {
            Ok(())
        }
        fn sync_all(&self) -> io::Result<()> {
            Ok(())
        }
        fn write_zeros_durably(&self, offset: u64, len: u64) -> io::Result<bool> {
            let _ = self.zeroing.lock().send((offset, offset + len));
            let _ = self.go_ahead.lock().recv();
            Ok(true)
        }
    }

    #[test]
    fn the_writer_waits_for_an_overlapping_zeroing_write_and_the_helper_stays_above_its_claim() {
        let (zeroing_sender, zeroing) = mpsc::channel();
        let (go_ahead, go_ahead_receiver) = mpsc::channel();
        let file = Arc::new(GatedFile {
            zeroing: Mutex::new(zeroing_sender),
            go_ahead: Mutex::new(go_ahead_receiver),
        });
        let stats = Arc::new(DirStats::default());
        let zero_ahead = Arc::new(ZeroAhead::spawn("c1", Arc::clone(&stats)).unwrap());
        zero_ahead.start_segment(file, PathBuf::from("segment"), 100, 8 * MIB, true);

        // The first step starts at the writer's position, rounded up to a block.
        let first = zeroing.recv().unwrap();
        assert_eq!(
            first,
            (ZEROING_ALIGNMENT_BYTES, ZEROING_ALIGNMENT_BYTES + 2 * MIB)
        );

        // A write into the range being zeroed waits until that zeroing is done.
        let (claimed_sender, claimed) = mpsc::channel();
        let writer = {
            let zero_ahead = Arc::clone(&zero_ahead);
            std::thread::spawn(move || {
                zero_ahead.claim(100, 5 * MIB);
                claimed_sender.send(()).unwrap();
            })
        };
        assert!(
            claimed
                .recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "the writer must not write where zeros are being written"
        );
        go_ahead.send(()).unwrap();
        claimed
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the claim returns once the zeroing step it overlaps is done");
        writer.join().unwrap();

        // The next step starts above everything the writer claimed.
        let second = zeroing
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap();
        assert_eq!(second, (5 * MIB, 7 * MIB));
        go_ahead.send(()).unwrap();
        let third = zeroing.recv().unwrap();
        assert_eq!(third, (7 * MIB, 8 * MIB));
        go_ahead.send(()).unwrap();

        zero_ahead.stop_segment();
        assert_eq!(
            stats.bytes_zeroed_ahead.load(Ordering::Relaxed),
            2 * MIB + 2 * MIB + MIB
        );
    }
}
