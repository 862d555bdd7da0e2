//! Segment naming, the registry of open segments, and the take path's record reads.
//!
//! Takes read events back by pointer. Put records hold a batch of events, and consumers
//! usually take the events of one batch one after another, so decoded put records are
//! kept in a small cache bounded in bytes. Freshly committed batches enter the cache at
//! commit, so a consumer that keeps up with producers never reads the disk.
//!
//! Each registered segment keeps its decoded header, so a read picks the key its
//! records were sealed with from the header's key id (keys rotate per segment).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::crypto::KeyRing;
use crate::event::Event;
use crate::record::{
    decode_put_record, EventPointer, SegmentHeader, MAX_RECORD_BYTES, RECORD_HEADER_BYTES,
};
use crate::storage::StorageFile;

/// The largest put record a never-blocking take reads and decodes itself: reading,
/// checking and decoding this much takes tens of microseconds. Larger records are read
/// by a take that may block.
const MAX_RECORD_BYTES_WITHOUT_BLOCKING: u32 = 256 * 1024;

/// How a record read may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadMode {
    /// Waits for the device as long as it takes.
    MayBlock,
    /// Reads only what the page cache holds.
    WithoutBlocking,
}

/// The name of a channel's lock file in each of its directories.
pub(crate) const LOCK_FILE_NAME: &str = "millrace.lock";
const SEGMENT_FILE_PREFIX: &str = "segment-";
const SEGMENT_FILE_SUFFIX: &str = ".log";
/// Decoded put records kept for takes, in bytes of memory they hold (see
/// [`cached_event_bytes`]). Large enough to hold many batches of every producer, small
/// beside the machine's memory.
pub(crate) const RECORD_CACHE_BUDGET_BYTES: usize = 64 * 1024 * 1024;
/// Entries in one node of the standard library's B-tree (`2 * B - 1` with `B = 6`): an
/// event's header map allocates one node per this many headers. An estimate for the
/// cache's accounting, not something the code relies on.
const HEADER_MAP_NODE_ENTRIES: usize = 11;
/// A header map node's slots for keys and values, filled or not.
const HEADER_MAP_NODE_BYTES: usize = HEADER_MAP_NODE_ENTRIES * 2 * std::mem::size_of::<String>();
/// What one cached record costs besides its events: the shared vector, its entries in the
/// cache's map and eviction order.
const CACHED_RECORD_OVERHEAD_BYTES: usize = std::mem::size_of::<Arc<Vec<Event>>>()
    + 2 * std::mem::size_of::<usize>()
    + std::mem::size_of::<Vec<Event>>()
    + std::mem::size_of::<(RecordKey, CachedRecord)>()
    + std::mem::size_of::<RecordKey>();

/// `segment-0000000042.log`: zero-padded so that names sort by id.
pub(crate) fn segment_file_name(segment_id: u32) -> String {
    format!("{SEGMENT_FILE_PREFIX}{segment_id:010}{SEGMENT_FILE_SUFFIX}")
}

/// The id in a segment file name, or `None` for any other file.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u32> {
    let digits = name
        .strip_prefix(SEGMENT_FILE_PREFIX)?
        .strip_suffix(SEGMENT_FILE_SUFFIX)?;
    if digits.len() != 10 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// An open segment that takes can read from.
#[derive(Debug, Clone)]
pub(crate) struct SegmentHandle {
    pub(crate) path: PathBuf,
    pub(crate) file: Arc<dyn StorageFile>,
    pub(crate) meta: Arc<SegmentMeta>,
    /// The segment's header: its cipher and the key its records need.
    pub(crate) header: Arc<SegmentHeader>,
}

/// What checkpoints and cleanup need to know about a segment. The writer publishes
/// `max_write_order_id` before `closed` (release), so a reader that sees `closed` (acquire)
/// sees the final maximum.
#[derive(Debug, Default)]
pub(crate) struct SegmentMeta {
    pub(crate) max_write_order_id: AtomicU64,
    pub(crate) closed: AtomicBool,
    pub(crate) closed_at_ms: AtomicU64,
    pub(crate) size_bytes: AtomicU64,
}

impl SegmentMeta {
    /// Marks the segment finished: it will receive no more records.
    pub(crate) fn close(&self, size_bytes: u64, closed_at_ms: u64) {
        self.size_bytes.store(size_bytes, Ordering::Relaxed);
        self.closed_at_ms.store(closed_at_ms, Ordering::Relaxed);
        self.closed.store(true, Ordering::Release);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Why a take could not read its event.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// The I/O failed.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The bytes are not the put record the pointer promised.
    Corrupt {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
}

/// All segments of a channel by id, the keys their records need, and the cache of
/// decoded put records.
#[derive(Debug, Default)]
pub(crate) struct SegmentRegistry {
    segments: RwLock<HashMap<u32, SegmentHandle>>,
    keys: Option<Arc<KeyRing>>,
    cache: Mutex<RecordCache>,
}

impl SegmentRegistry {
    /// A registry whose encrypted segments are opened with `keys`.
    pub(crate) fn with_keys(keys: Option<Arc<KeyRing>>) -> Self {
        SegmentRegistry {
            keys,
            ..SegmentRegistry::default()
        }
    }

    pub(crate) fn insert(&self, segment_id: u32, handle: SegmentHandle) {
        self.segments.write().insert(segment_id, handle);
    }

    pub(crate) fn remove(&self, segment_id: u32) -> Option<SegmentHandle> {
        self.segments.write().remove(&segment_id)
    }

    /// Every registered segment with its handle, by id.
    pub(crate) fn handles(&self) -> Vec<(u32, SegmentHandle)> {
        let mut handles: Vec<(u32, SegmentHandle)> = self
            .segments
            .read()
            .iter()
            .map(|(&id, handle)| (id, handle.clone()))
            .collect();
        handles.sort_by_key(|(id, _)| *id);
        handles
    }

    pub(crate) fn path_of(&self, segment_id: u32) -> Option<PathBuf> {
        self.segments
            .read()
            .get(&segment_id)
            .map(|handle| handle.path.clone())
    }

    /// Remembers the events of a freshly committed put record, queued behind
    /// `queued_events` others — unless those others alone would fill the cache: the cache
    /// evicts oldest first, so by the time takes reach this record, records committed
    /// after it would have pushed it out, and caching it would only cost time.
    pub(crate) fn cache_put_record(
        &self,
        segment_id: u32,
        record_offset: u32,
        events: Vec<Event>,
        queued_events: usize,
    ) {
        let record_bytes = record_memory_bytes(&events);
        if !caching_pays(queued_events, record_bytes, events.len()) {
            return;
        }
        self.cache.lock().insert_weighed(
            (segment_id, record_offset),
            Arc::new(events),
            record_bytes,
        );
    }

    /// The event a pointer designates: from the cache, else read and verified from disk.
    pub(crate) fn read_event(&self, pointer: EventPointer) -> Result<Event, ReadFailure> {
        let events = match self.cached_record(pointer) {
            Some(events) => events,
            None => {
                let events = self
                    .read_put_record(pointer, ReadMode::MayBlock)?
                    .expect("a read that may block always reads");
                self.cache_record(pointer, events)
            }
        };
        events
            .get(pointer.event_index as usize)
            .cloned()
            .ok_or_else(|| self.event_index_out_of_range(pointer, events.len()))
    }

    /// Reads, verifies and caches the put record a pointer points into, if that needs no
    /// wait for the device (its bytes are in the page cache) and it is small enough to
    /// decode in a moment ([`MAX_RECORD_BYTES_WITHOUT_BLOCKING`]). `Ok(None)` otherwise.
    pub(crate) fn load_record_without_blocking(
        &self,
        pointer: EventPointer,
    ) -> Result<Option<Arc<Vec<Event>>>, ReadFailure> {
        if let Some(events) = self.cached_record(pointer) {
            return Ok(Some(events));
        }
        Ok(self
            .read_put_record(pointer, ReadMode::WithoutBlocking)?
            .map(|events| self.cache_record(pointer, events)))
    }

    fn cache_record(&self, pointer: EventPointer, events: Vec<Event>) -> Arc<Vec<Event>> {
        let events = Arc::new(events);
        let key = (pointer.segment_id, pointer.record_offset);
        self.cache.lock().insert(key, Arc::clone(&events));
        events
    }

    /// The decoded put record a pointer points into, if the cache holds it (no I/O).
    pub(crate) fn cached_record(&self, pointer: EventPointer) -> Option<Arc<Vec<Event>>> {
        self.cache
            .lock()
            .get(&(pointer.segment_id, pointer.record_offset))
    }

    /// The failure of a pointer past the end of its put record's `record_events` events.
    pub(crate) fn event_index_out_of_range(
        &self,
        pointer: EventPointer,
        record_events: usize,
    ) -> ReadFailure {
        ReadFailure::Corrupt {
            path: self.path_of(pointer.segment_id).unwrap_or_default(),
            offset: u64::from(pointer.record_offset),
            detail: format!(
                "put record holds {record_events} events, pointer asks for index {}",
                pointer.event_index
            ),
        }
    }

    /// Reads and verifies a put record. `Ok(None)` only with [`ReadMode::WithoutBlocking`],
    /// when reading would wait for the device or the record is too large.
    fn read_put_record(
        &self,
        pointer: EventPointer,
        mode: ReadMode,
    ) -> Result<Option<Vec<Event>>, ReadFailure> {
        let handle = self
            .segments
            .read()
            .get(&pointer.segment_id)
            .cloned()
            .ok_or_else(|| ReadFailure::Corrupt {
                path: PathBuf::from(segment_file_name(pointer.segment_id)),
                offset: u64::from(pointer.record_offset),
                detail: "the segment holding this event is missing".into(),
            })?;
        let offset = u64::from(pointer.record_offset);
        let io_failure = |source| ReadFailure::Io {
            path: handle.path.clone(),
            source,
        };
        let corrupt = |detail: String| ReadFailure::Corrupt {
            path: handle.path.clone(),
            offset,
            detail,
        };
        // True when the bytes were read; false when reading them would wait.
        let read = |buf: &mut [u8], past_the_end: &dyn Fn() -> String| {
            let outcome = match mode {
                ReadMode::MayBlock => handle.file.read_exact_at(buf, offset).map(|()| true),
                ReadMode::WithoutBlocking => handle.file.read_exact_cached_at(buf, offset),
            };
            outcome.map_err(|source| {
                // A length that runs past the end of the file is damage, not an I/O fault.
                if source.kind() == std::io::ErrorKind::UnexpectedEof {
                    corrupt(past_the_end())
                } else {
                    io_failure(source)
                }
            })
        };
        let mut header = [0u8; RECORD_HEADER_BYTES];
        if !read(&mut header, &|| {
            "the record header runs past the end of the segment".into()
        })? {
            return Ok(None);
        }
        let record_bytes = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        if (record_bytes as usize) < RECORD_HEADER_BYTES || record_bytes > MAX_RECORD_BYTES {
            return Err(corrupt(format!(
                "record length {record_bytes} is impossible"
            )));
        }
        if mode == ReadMode::WithoutBlocking && record_bytes > MAX_RECORD_BYTES_WITHOUT_BLOCKING {
            return Ok(None);
        }
        let mut record = vec![0u8; record_bytes as usize];
        if !read(&mut record, &|| {
            format!("record length {record_bytes} runs past the end of the segment")
        })? {
            return Ok(None);
        }
        decode_put_record(record, &handle.header, self.keys.as_deref())
            .map(Some)
            .map_err(|error| corrupt(error.to_string()))
    }

    /// Paths of all registered segments, by id.
    pub(crate) fn segment_paths(&self) -> Vec<(u32, PathBuf)> {
        let mut paths: Vec<(u32, PathBuf)> = self
            .segments
            .read()
            .iter()
            .map(|(&id, handle)| (id, handle.path.clone()))
            .collect();
        paths.sort();
        paths
    }
}

/// A put record's place: segment id and byte offset.
pub(crate) type RecordKey = (u32, u32);

/// A put record's events, decoded, as the record cache shares them.
pub(crate) type DecodedRecord = Arc<Vec<Event>>;

/// A decoded put record and the bytes it counts against the cache budget.
#[derive(Debug)]
struct CachedRecord {
    events: Arc<Vec<Event>>,
    memory_bytes: usize,
}

/// The memory a decoded event holds while cached: the event itself, its body, and its
/// headers with the map nodes that hold them. Counting only the content would let a cache
/// of small events, or of events with a few headers, hold many times its budget.
/// Whether a fresh record of `event_count` events holding `record_bytes` is worth caching
/// behind `queued_events` others: not when events like it, as many as are queued ahead,
/// would already fill the cache.
fn caching_pays(queued_events: usize, record_bytes: usize, event_count: usize) -> bool {
    let per_event_bytes = record_bytes / event_count.max(1);
    queued_events.saturating_mul(per_event_bytes) <= RECORD_CACHE_BUDGET_BYTES
}

/// The memory a decoded record holds in the cache.
fn record_memory_bytes(events: &[Event]) -> usize {
    CACHED_RECORD_OVERHEAD_BYTES + events.iter().map(cached_event_bytes).sum::<usize>()
}

fn cached_event_bytes(event: &Event) -> usize {
    let header_nodes = event.headers.len().div_ceil(HEADER_MAP_NODE_ENTRIES);
    std::mem::size_of::<Event>() + event.content_bytes() + header_nodes * HEADER_MAP_NODE_BYTES
}

/// Decoded put records, evicted oldest first once the memory they hold exceeds the
/// budget.
#[derive(Debug, Default)]
struct RecordCache {
    entries: HashMap<RecordKey, CachedRecord>,
    order: VecDeque<RecordKey>,
    memory_bytes: usize,
}

impl RecordCache {
    fn get(&self, key: &RecordKey) -> Option<Arc<Vec<Event>>> {
        self.entries
            .get(key)
            .map(|cached| Arc::clone(&cached.events))
    }

    fn insert(&mut self, key: RecordKey, events: Arc<Vec<Event>>) {
        let memory_bytes = record_memory_bytes(&events);
        self.insert_weighed(key, events, memory_bytes);
    }

    /// [`insert`](Self::insert) for a record whose [`record_memory_bytes`] are known.
    fn insert_weighed(&mut self, key: RecordKey, events: Arc<Vec<Event>>, memory_bytes: usize) {
        let cached = CachedRecord {
            events,
            memory_bytes,
        };
        match self.entries.insert(key, cached) {
            None => self.order.push_back(key),
            Some(replaced) => self.memory_bytes -= replaced.memory_bytes,
        }
        self.memory_bytes += memory_bytes;
        while self.memory_bytes > RECORD_CACHE_BUDGET_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(evicted) = self.entries.remove(&oldest) {
                self.memory_bytes -= evicted.memory_bytes;
            }
        }
    }
}

/// The path of a segment in a directory.
pub(crate) fn segment_path(dir: &Path, segment_id: u32) -> PathBuf {
    dir.join(segment_file_name(segment_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_events_with_headers(count: usize) -> Arc<Vec<Event>> {
        Arc::new(
            (0..count)
                .map(|_| Event::from_body(vec![b'e'; 16]).with_header("host", "h1"))
                .collect(),
        )
    }

    #[test]
    fn a_cached_event_counts_its_struct_and_header_nodes_beside_its_content() {
        let event = Event::from_body(vec![b'e'; 16]).with_header("host", "h1");
        assert_eq!(
            cached_event_bytes(&event),
            std::mem::size_of::<Event>() + event.content_bytes() + HEADER_MAP_NODE_BYTES
        );
        let bare = Event::from_body(vec![b'e'; 16]);
        assert_eq!(
            cached_event_bytes(&bare),
            std::mem::size_of::<Event>() + bare.content_bytes()
        );
    }

    #[test]
    fn the_record_cache_holds_no_more_memory_than_its_budget() {
        let events_per_record = 100;
        let record_bytes = CACHED_RECORD_OVERHEAD_BYTES
            + small_events_with_headers(events_per_record)
                .iter()
                .map(cached_event_bytes)
                .sum::<usize>();
        let mut cache = RecordCache::default();
        let records = 2 * RECORD_CACHE_BUDGET_BYTES / record_bytes;
        for offset in 0..records as u32 {
            cache.insert((1, offset), small_events_with_headers(events_per_record));
        }
        assert!(cache.memory_bytes <= RECORD_CACHE_BUDGET_BYTES);
        assert_eq!(cache.memory_bytes, cache.entries.len() * record_bytes);
        assert_eq!(
            cache.entries.len(),
            RECORD_CACHE_BUDGET_BYTES / record_bytes
        );
    }

    #[test]
    fn a_record_queued_behind_more_than_the_cache_holds_is_not_cached() {
        let events = small_events_with_headers(100);
        let record_bytes = record_memory_bytes(&events);
        let per_event_bytes = record_bytes / events.len();
        let events_the_cache_holds = RECORD_CACHE_BUDGET_BYTES / per_event_bytes;
        assert!(caching_pays(0, record_bytes, events.len()));
        assert!(caching_pays(
            events_the_cache_holds,
            record_bytes,
            events.len()
        ));
        assert!(!caching_pays(
            events_the_cache_holds + 1,
            record_bytes,
            events.len()
        ));
    }

    #[test]
    fn caching_a_record_twice_counts_it_once() {
        let mut cache = RecordCache::default();
        cache.insert((1, 0), small_events_with_headers(3));
        let once = cache.memory_bytes;
        cache.insert((1, 0), small_events_with_headers(3));
        assert_eq!(cache.memory_bytes, once);
        assert_eq!(cache.order.len(), 1);
    }

    #[test]
    fn segment_names_round_trip_and_sort_by_id() {
        assert_eq!(segment_file_name(42), "segment-0000000042.log");
        assert_eq!(parse_segment_file_name("segment-0000000042.log"), Some(42));
        assert_eq!(parse_segment_file_name("segment-42.log"), None);
        assert_eq!(parse_segment_file_name("millrace.lock"), None);
        assert!(segment_file_name(9) < segment_file_name(10));
    }
}
