//! The operator requests' payloads: a replay (rewind) of a channel, planned or executed,
//! and an inspect report of a live channel.
//!
//! ```text
//! replay point     kind: u8 (1 = last_ms, 2 = from_unix_ms, 3 = from_write_order_id)
//!                  | value: u64
//!
//! 0x0B Replay          channel: str8 | point | execute: u8 (0 or 1)
//! 0x0C Inspect         channel: str8
//!
//! 0x86 ReplayReport    point (kind 2 or 3: the server resolves last_ms against its clock)
//!                      | take_transactions: u64 | events: u64
//!                      | has_put_range: u8 | [first_put_write_order_id: u64
//!                                             | last_put_write_order_id: u64]
//!                      | segment_count: u64 | listed_segments: u16
//!                      | segment_id: u32 × listed_segments
//!                      | not_retained_events: u64 | listed_not_retained: u16
//!                      | (segment_id: u32 | record_offset: u32 | event_index: u32)
//!                        × listed_not_retained
//!                      | has_oldest_retained_commit: u8 | [write_order_id: u64
//!                                                         | committed_unix_ms: u64]
//!                      | history_truncated: u8
//!                      | executed: u8 | [events_replayed: u64 | transactions: u64]
//! 0x87 InspectReport   report: str32 (JSON text, UTF-8; shape in docs/inspect.md)
//! ```
//!
//! The replay report's two lists are capped ([`MAX_LISTED_REPLAY_SEGMENTS`],
//! [`MAX_LISTED_NOT_RETAINED_EVENTS`]) and carry their full counts beside them, so the
//! largest report fits the smallest frame limit a peer may announce: a replay that has
//! already run can always be reported.
//!
//! The inspect report is the one self-describing payload in the protocol: it is a
//! diagnostic document for people and scripts, with dozens of optional, nested fields
//! that grow with the engine, printed as it comes by `channelctl inspect --json`.
//! Freezing it into a byte layout would buy nothing a reader needs; the frame around it,
//! its length and its UTF-8 are checked like every other.

use crate::error::{EncodeError, Malformation};
use crate::frame::FRAME_HEADER_BYTES;
use crate::limits::{MAX_CHANNEL_NAME_BYTES, MIN_MAX_FRAME_BYTES};
use crate::wire::{put_long_string, put_u16, put_u32, put_u64, put_u8, OutputBuffer, Reader};

/// The most segment ids a replay report lists (it counts them all).
pub const MAX_LISTED_REPLAY_SEGMENTS: usize = 1024;
/// The most not-retained events a replay report lists (it counts them all).
pub const MAX_LISTED_NOT_RETAINED_EVENTS: usize = 8192;

const POINT_LAST_MS: u8 = 1;
const POINT_FROM_UNIX_MS: u8 = 2;
const POINT_FROM_WRITE_ORDER_ID: u8 = 3;

/// Bytes of one listed event location: segment id, record offset, event index.
const EVENT_LOCATION_BYTES: usize = 4 + 4 + 4;
/// Bytes of a replay report with both lists empty and every optional part present.
const REPLAY_REPORT_FIXED_BYTES: usize = (1 + 8) // point
    + 8 + 8 // take_transactions, events
    + 1 + 8 + 8 // put range
    + 8 + 2 // segment_count, listed_segments
    + 8 + 2 // not_retained_events, listed_not_retained
    + 1 + 8 + 8 // oldest retained commit
    + 1 // history_truncated
    + 1 + 8 + 8; // execution
/// The largest `ReplayReport` frame: both lists at their caps.
const LARGEST_REPLAY_REPORT_FRAME_BYTES: usize = FRAME_HEADER_BYTES
    + REPLAY_REPORT_FIXED_BYTES
    + MAX_LISTED_REPLAY_SEGMENTS * 4
    + MAX_LISTED_NOT_RETAINED_EVENTS * EVENT_LOCATION_BYTES;
/// The largest `Replay` request frame: the longest channel name.
const LARGEST_REPLAY_FRAME_BYTES: usize = FRAME_HEADER_BYTES + 1 + MAX_CHANNEL_NAME_BYTES + 9 + 1;

// A replay report always fits whatever frame limit the client announced (and the u16 list
// counts can describe the caps). Checked when the crate compiles.
const _: () = assert!(LARGEST_REPLAY_REPORT_FRAME_BYTES <= MIN_MAX_FRAME_BYTES as usize);
const _: () = assert!(LARGEST_REPLAY_FRAME_BYTES <= MIN_MAX_FRAME_BYTES as usize);
const _: () = assert!(MAX_LISTED_REPLAY_SEGMENTS <= u16::MAX as usize);
const _: () = assert!(MAX_LISTED_NOT_RETAINED_EVENTS <= u16::MAX as usize);

/// Where a replay rewinds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplayPoint {
    /// Takes committed within this many milliseconds before now, by the server's clock
    /// (the clock that stamped the commit records). Only in requests: the report gives
    /// the time it resolved to.
    LastMs(u64),
    /// Takes committed at or after this time, in Unix milliseconds.
    FromUnixMs(u64),
    /// Takes whose commit record's write-order id is at least this.
    FromWriteOrderId(u64),
}

impl ReplayPoint {
    fn write<O: OutputBuffer + ?Sized>(self, out: &mut O) {
        let (kind, value) = match self {
            ReplayPoint::LastMs(ms) => (POINT_LAST_MS, ms),
            ReplayPoint::FromUnixMs(unix_ms) => (POINT_FROM_UNIX_MS, unix_ms),
            ReplayPoint::FromWriteOrderId(id) => (POINT_FROM_WRITE_ORDER_ID, id),
        };
        put_u8(out, kind);
        put_u64(out, value);
    }

    fn parse(reader: &mut Reader<'_>) -> Result<Self, Malformation> {
        let kind = reader.u8("point kind")?;
        let value = reader.u64("point value")?;
        match kind {
            POINT_LAST_MS => Ok(ReplayPoint::LastMs(value)),
            POINT_FROM_UNIX_MS => Ok(ReplayPoint::FromUnixMs(value)),
            POINT_FROM_WRITE_ORDER_ID => Ok(ReplayPoint::FromWriteOrderId(value)),
            other => Err(Malformation::InvalidValue {
                field: "point kind",
                value: u64::from(other),
                expected: "1 (last_ms), 2 (from_unix_ms) or 3 (from_write_order_id)",
            }),
        }
    }

    /// Whether this is a point a report can carry (a time or an id, not a duration).
    fn is_resolved(self) -> bool {
        !matches!(self, ReplayPoint::LastMs(_))
    }
}

/// The `Replay` request's payload after its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayRequest {
    /// Where to rewind to.
    pub point: ReplayPoint,
    /// Put the events back; without it the server only plans and changes nothing.
    pub execute: bool,
}

impl ReplayRequest {
    pub(crate) fn write<O: OutputBuffer + ?Sized>(&self, out: &mut O) {
        self.point.write(out);
        put_u8(out, u8::from(self.execute));
    }

    pub(crate) fn parse(reader: &mut Reader<'_>) -> Result<Self, Malformation> {
        Ok(ReplayRequest {
            point: ReplayPoint::parse(reader)?,
            execute: reader.flag("execute")?,
        })
    }
}

/// Where an event's put record is: segment, byte offset, index in the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventLocation {
    /// The segment id.
    pub segment_id: u32,
    /// The put record's byte offset in the segment.
    pub record_offset: u32,
    /// The event's index in the put record.
    pub event_index: u32,
}

/// The earliest commit record still on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainedCommit {
    /// Its write-order id.
    pub write_order_id: u64,
    /// When it committed (Unix milliseconds, the server's clock).
    pub committed_unix_ms: u64,
}

/// What an executed replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayExecution {
    /// Events put back (as copies at the tail of the queue).
    pub events_replayed: u64,
    /// Transactions used to put them.
    pub transactions: u64,
}

/// A replay's plan, and what executing it did when it was executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// The point, resolved: [`ReplayPoint::FromUnixMs`] or
    /// [`ReplayPoint::FromWriteOrderId`].
    pub point: ReplayPoint,
    /// Committed transactions with takes at or after the point.
    pub take_transactions: u64,
    /// Events to put back (or put back), in their original put order.
    pub events: u64,
    /// Write-order ids of the first and last of those events' put records.
    pub put_write_order_range: Option<(u64, u64)>,
    /// How many segments hold those events.
    pub segment_count: u64,
    /// Their ids, ascending: all of them, or the first [`MAX_LISTED_REPLAY_SEGMENTS`].
    pub segments: Vec<u32>,
    /// Events taken since the point whose put records are no longer retained.
    pub not_retained_events: u64,
    /// Where they were: all of them, or the first [`MAX_LISTED_NOT_RETAINED_EVENTS`].
    pub not_retained: Vec<EventLocation>,
    /// The earliest commit still on disk.
    pub oldest_retained_commit: Option<RetainedCommit>,
    /// Older segments were deleted and the point lies before the oldest retained commit:
    /// takes in between cannot be seen and are not in the plan.
    pub history_truncated: bool,
    /// Present when the replay was executed.
    pub execution: Option<ReplayExecution>,
}

fn check_listed(
    field: &'static str,
    listed: usize,
    max_listed: usize,
    total: u64,
) -> Result<(), EncodeError> {
    if listed > max_listed {
        return Err(EncodeError::TooManyEntries {
            field,
            count: listed,
            max_count: max_listed,
        });
    }
    if (listed as u64) > total {
        return Err(EncodeError::InvalidValue {
            field,
            value: listed as u64,
            expected: "no more entries listed than counted",
        });
    }
    Ok(())
}

fn parse_listed_count(
    reader: &mut Reader<'_>,
    field: &'static str,
    max_listed: usize,
    total: u64,
) -> Result<usize, Malformation> {
    let listed = usize::from(reader.u16(field)?);
    if listed > max_listed || listed as u64 > total {
        return Err(Malformation::InvalidValue {
            field,
            value: listed as u64,
            expected: "at most the list's cap and at most its count",
        });
    }
    Ok(listed)
}

fn parse_optional_pair(
    reader: &mut Reader<'_>,
    flag: &'static str,
    first: &'static str,
    second: &'static str,
) -> Result<Option<(u64, u64)>, Malformation> {
    if reader.flag(flag)? {
        Ok(Some((reader.u64(first)?, reader.u64(second)?)))
    } else {
        Ok(None)
    }
}

fn put_optional_pair<O: OutputBuffer + ?Sized>(out: &mut O, pair: Option<(u64, u64)>) {
    match pair {
        None => put_u8(out, 0),
        Some((first, second)) => {
            put_u8(out, 1);
            put_u64(out, first);
            put_u64(out, second);
        }
    }
}

impl ReplayReport {
    pub(crate) fn write<O: OutputBuffer + ?Sized>(&self, out: &mut O) -> Result<(), EncodeError> {
        if !self.point.is_resolved() {
            return Err(EncodeError::InvalidValue {
                field: "point kind",
                value: u64::from(POINT_LAST_MS),
                expected: "a resolved point: 2 (from_unix_ms) or 3 (from_write_order_id)",
            });
        }
        check_listed(
            "segments",
            self.segments.len(),
            MAX_LISTED_REPLAY_SEGMENTS,
            self.segment_count,
        )?;
        check_listed(
            "not_retained",
            self.not_retained.len(),
            MAX_LISTED_NOT_RETAINED_EVENTS,
            self.not_retained_events,
        )?;
        self.point.write(out);
        put_u64(out, self.take_transactions);
        put_u64(out, self.events);
        put_optional_pair(out, self.put_write_order_range);
        put_u64(out, self.segment_count);
        put_u16(out, self.segments.len() as u16);
        for segment_id in &self.segments {
            put_u32(out, *segment_id);
        }
        put_u64(out, self.not_retained_events);
        put_u16(out, self.not_retained.len() as u16);
        for location in &self.not_retained {
            put_u32(out, location.segment_id);
            put_u32(out, location.record_offset);
            put_u32(out, location.event_index);
        }
        put_optional_pair(
            out,
            self.oldest_retained_commit
                .map(|commit| (commit.write_order_id, commit.committed_unix_ms)),
        );
        put_u8(out, u8::from(self.history_truncated));
        put_optional_pair(
            out,
            self.execution
                .map(|execution| (execution.events_replayed, execution.transactions)),
        );
        Ok(())
    }

    pub(crate) fn parse(reader: &mut Reader<'_>) -> Result<Self, Malformation> {
        let point = ReplayPoint::parse(reader)?;
        if !point.is_resolved() {
            return Err(Malformation::InvalidValue {
                field: "point kind",
                value: u64::from(POINT_LAST_MS),
                expected: "2 (from_unix_ms) or 3 (from_write_order_id): the server resolves \
                           last_ms",
            });
        }
        let take_transactions = reader.u64("take_transactions")?;
        let events = reader.u64("events")?;
        let put_write_order_range = parse_optional_pair(
            reader,
            "has_put_range",
            "first_put_write_order_id",
            "last_put_write_order_id",
        )?;
        let segment_count = reader.u64("segment_count")?;
        let listed_segments = parse_listed_count(
            reader,
            "listed_segments",
            MAX_LISTED_REPLAY_SEGMENTS,
            segment_count,
        )?;
        // Bounded by the cap above, whatever the payload holds.
        let mut segments = Vec::with_capacity(listed_segments);
        for _ in 0..listed_segments {
            segments.push(reader.u32("segment_id")?);
        }
        let not_retained_events = reader.u64("not_retained_events")?;
        let listed_not_retained = parse_listed_count(
            reader,
            "listed_not_retained",
            MAX_LISTED_NOT_RETAINED_EVENTS,
            not_retained_events,
        )?;
        // Not sized from the count: each entry is read before it is stored.
        let mut not_retained = Vec::new();
        for _ in 0..listed_not_retained {
            not_retained.push(EventLocation {
                segment_id: reader.u32("not_retained segment_id")?,
                record_offset: reader.u32("not_retained record_offset")?,
                event_index: reader.u32("not_retained event_index")?,
            });
        }
        let oldest_retained_commit = parse_optional_pair(
            reader,
            "has_oldest_retained_commit",
            "oldest_retained write_order_id",
            "oldest_retained committed_unix_ms",
        )?
        .map(|(write_order_id, committed_unix_ms)| RetainedCommit {
            write_order_id,
            committed_unix_ms,
        });
        let history_truncated = reader.flag("history_truncated")?;
        let execution = parse_optional_pair(reader, "executed", "events_replayed", "transactions")?
            .map(|(events_replayed, transactions)| ReplayExecution {
                events_replayed,
                transactions,
            });
        Ok(ReplayReport {
            point,
            take_transactions,
            events,
            put_write_order_range,
            segment_count,
            segments,
            not_retained_events,
            not_retained,
            oldest_retained_commit,
            history_truncated,
            execution,
        })
    }
}

/// A live channel's inspect report: JSON text in the shape `docs/inspect.md` gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectReport {
    /// The report, JSON.
    pub json: String,
}

impl InspectReport {
    pub(crate) fn write<O: OutputBuffer + ?Sized>(&self, out: &mut O) {
        // The frame writer refuses a frame over the peer's limit, which is far below what
        // a u32 length describes.
        put_long_string(out, &self.json);
    }

    pub(crate) fn parse(reader: &mut Reader<'_>) -> Result<Self, Malformation> {
        Ok(InspectReport {
            json: reader.long_string("report")?.to_owned(),
        })
    }
}
