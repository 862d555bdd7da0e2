//! From engine errors to protocol error frames.
//!
//! Every failure a session reports goes through [`engine_error_response`], so a full
//! channel, a too-large transaction or a short disk reads the same way whichever request
//! met it. Messages come from the protocol crate's `ErrorResponse` constructors and name
//! the channel and the limit with its values.
//!
//! | engine `ChannelError`  | protocol code           |
//! |------------------------|-------------------------|
//! | `ChannelFull`          | `CHANNEL_FULL`          |
//! | `TransactionFull`      | `TRANSACTION_TOO_LARGE` |
//! | `EventTooLarge`        | `TRANSACTION_TOO_LARGE` (the protocol has no per-event code; the message and the `event_bytes`/`max_event_bytes` fields say what it is) |
//! | `InsufficientSpace`    | `INSUFFICIENT_SPACE`    |
//! | `Io` with ENOSPC or EDQUOT from a write, an allocation or a create (not a sync) | `INSUFFICIENT_SPACE` (the disk filled faster than the space guard saw; the writer rolled back and the channel still serves) |
//! | `Failed`, other `Io`, `Corruption`, `DirectoryLost`, `Closed` | `CHANNEL_UNHEALTHY` (any other I/O error, corruption or a directory removed under the channel fails it: `/health` says so too) |
//!
//! Online inspect and replay read the channel's files; their failures
//! ([`inspect_error_response`]) are the engine error's code when the channel refused
//! work, and `INTERNAL` naming the file when reading it failed.

use millrace_engine::inspect::InspectError;
use millrace_engine::ChannelError;
use millrace_protocol::{ErrorCode, ErrorResponse};

/// Field of an `EventTooLarge` error: the event's encoded size.
pub const EVENT_BYTES_FIELD: &str = "event_bytes";
/// Field of an `EventTooLarge` error: the largest event the channel stores.
pub const MAX_EVENT_BYTES_FIELD: &str = "max_event_bytes";
/// Field of an interrupted replay's error: events already put back (and kept).
pub const EVENTS_REPLAYED_FIELD: &str = "events_replayed";
/// Field of an interrupted replay's error: events the plan held.
pub const EVENTS_PLANNED_FIELD: &str = "events_planned";

/// The error frame for a failed online inspect or replay of `channel`.
pub fn inspect_error_response(channel: &str, error: &InspectError) -> ErrorResponse {
    match error {
        InspectError::Channel(source) => engine_error_response(source, 0),
        InspectError::ReplayInterrupted {
            events_replayed,
            events_planned,
            transactions,
            source,
        } => {
            let cause = engine_error_response(source, 0);
            ErrorResponse::new(
                cause.code,
                format!(
                    "replay of channel '{channel}' stopped after putting back {events_replayed} \
                     of {events_planned} events in {transactions} committed transactions; \
                     those copies stay, so running the same replay again would put them back \
                     twice. Cause: {}",
                    cause.message
                ),
            )
            .for_channel(channel)
            .with_field(EVENTS_REPLAYED_FIELD, *events_replayed)
            .with_field(EVENTS_PLANNED_FIELD, *events_planned)
        }
        InspectError::Io { .. }
        | InspectError::UnreadableEvent { .. }
        | InspectError::DestinationNotEmpty { .. }
        | InspectError::Open(_) => {
            ErrorResponse::internal(format!("reading channel '{channel}' failed: {error}"))
                .for_channel(channel)
        }
    }
}

/// The error frame for an engine error. `attempted_events` is how many events the
/// transaction would have held had the failing request succeeded (for
/// `TRANSACTION_TOO_LARGE`).
pub fn engine_error_response(error: &ChannelError, attempted_events: u64) -> ErrorResponse {
    match error {
        ChannelError::ChannelFull {
            channel,
            capacity,
            size,
            ..
        } => ErrorResponse::channel_full(channel, *capacity, *size),
        ChannelError::ByteCapacityFull {
            channel,
            body_limit_bytes,
            body_bytes_in_use,
            ..
        } => ErrorResponse::channel_bytes_full(channel, *body_limit_bytes, *body_bytes_in_use),
        ChannelError::TransactionFull {
            channel,
            transaction_capacity,
            ..
        } => ErrorResponse::transaction_too_large(channel, *transaction_capacity, attempted_events),
        ChannelError::EventTooLarge {
            channel,
            event_bytes,
            max_event_bytes,
        } => ErrorResponse::new(
            ErrorCode::TransactionTooLarge,
            format!(
                "event of {event_bytes} bytes is too large for channel '{channel}': at most \
                 {max_event_bytes} bytes fit in one log record (maxFileSize bounds it). The \
                 transaction was rolled back"
            ),
        )
        .for_channel(channel)
        .with_field(EVENT_BYTES_FIELD, *event_bytes)
        .with_field(MAX_EVENT_BYTES_FIELD, *max_event_bytes),
        ChannelError::InsufficientSpace {
            channel,
            dir,
            available_bytes,
            required_bytes,
        } => ErrorResponse::insufficient_space(
            channel,
            &dir.display().to_string(),
            *available_bytes,
            *required_bytes,
        ),
        ChannelError::Failed { channel, reason } => {
            ErrorResponse::channel_unhealthy(channel, reason)
        }
        ChannelError::Closed { channel } => {
            ErrorResponse::channel_unhealthy(channel, "the channel is closed")
        }
        ChannelError::Io {
            channel,
            file,
            operation,
            source,
        } if error.is_space_shortage() => {
            // A failed sync fails the channel whatever its errno; a write, allocation or
            // create that failed for space only fails its round (the writer removes a
            // segment it could not reserve), so this is as transient as the guard's own
            // refusal.
            ErrorResponse::new(
                ErrorCode::InsufficientSpace,
                format!(
                    "channel '{channel}' is out of disk space: {operation} of {} failed: \
                     {source}. The transaction was rolled back; the channel still serves, \
                     and writes succeed again once space is freed",
                    file.display()
                ),
            )
            .for_channel(channel)
        }
        ChannelError::External {
            channel,
            operation,
            reason,
        } => ErrorResponse::new(
            ErrorCode::ChannelUnhealthy,
            format!(
                "channel '{channel}': {operation} failed: {reason}. The transaction was \
                 rolled back; retry once the channel's Kafka cluster is reachable"
            ),
        )
        .for_channel(channel),
        ChannelError::Io { channel, .. }
        | ChannelError::Corruption { channel, .. }
        | ChannelError::DirectoryLost { channel, .. } => {
            ErrorResponse::channel_unhealthy(channel, &error.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::PathBuf;

    use millrace_protocol::{fields, ErrorClass};

    use super::*;

    #[test]
    fn channel_full_names_capacity_and_size() {
        let error = ChannelError::ChannelFull {
            channel: "c1".into(),
            capacity: 10,
            size: 10,
            waited_ms: 3000,
        };
        let response = engine_error_response(&error, 0);
        assert_eq!(response.code, ErrorCode::ChannelFull);
        assert_eq!(response.class(), ErrorClass::Retryable);
        assert_eq!(response.channel.as_deref(), Some("c1"));
        assert_eq!(response.field(fields::CAPACITY), Some(10));
        assert_eq!(response.field(fields::SIZE), Some(10));
        assert!(
            response.message.contains("capacity 10"),
            "{}",
            response.message
        );
    }

    #[test]
    fn an_interrupted_replay_keeps_its_causes_code_and_says_how_far_it_got() {
        let error = InspectError::ReplayInterrupted {
            events_replayed: 100,
            events_planned: 250,
            transactions: 1,
            source: ChannelError::ChannelFull {
                channel: "c1".into(),
                capacity: 150,
                size: 150,
                waited_ms: 3000,
            },
        };
        let response = inspect_error_response("c1", &error);
        assert_eq!(response.code, ErrorCode::ChannelFull);
        assert_eq!(response.field(EVENTS_REPLAYED_FIELD), Some(100));
        assert_eq!(response.field(EVENTS_PLANNED_FIELD), Some(250));
        assert!(
            response
                .message
                .contains("after putting back 100 of 250 events in 1 committed transactions"),
            "{}",
            response.message
        );
    }

    #[test]
    fn transaction_full_names_transaction_capacity_and_attempt() {
        let error = ChannelError::TransactionFull {
            channel: "c1".into(),
            transaction_capacity: 100,
            operation: "put",
        };
        let response = engine_error_response(&error, 150);
        assert_eq!(response.code, ErrorCode::TransactionTooLarge);
        assert_eq!(response.field(fields::TRANSACTION_CAPACITY), Some(100));
        assert_eq!(response.field(fields::ATTEMPTED_EVENTS), Some(150));
        assert!(response.message.contains("transactionCapacity 100"));
    }

    #[test]
    fn insufficient_space_names_directory_available_and_required() {
        let error = ChannelError::InsufficientSpace {
            channel: "c1".into(),
            dir: PathBuf::from("/data/c1"),
            available_bytes: 4096,
            required_bytes: 524_288_000,
        };
        let response = engine_error_response(&error, 0);
        assert_eq!(response.code, ErrorCode::InsufficientSpace);
        assert!(response.message.contains("/data/c1"));
        assert_eq!(response.field(fields::AVAILABLE_BYTES), Some(4096));
        assert_eq!(response.field(fields::REQUIRED_BYTES), Some(524_288_000));
    }

    #[test]
    fn a_failed_channel_is_unhealthy_with_its_reason() {
        let error = ChannelError::Failed {
            channel: "c1".into(),
            reason: "fdatasync of /data/c1/log-3 failed: EIO".into(),
        };
        let response = engine_error_response(&error, 0);
        assert_eq!(response.code, ErrorCode::ChannelUnhealthy);
        assert!(response.message.contains("EIO"), "{}", response.message);
    }

    #[test]
    fn enospc_from_an_allocation_is_a_retryable_space_error_naming_the_file() {
        let error = ChannelError::Io {
            channel: "c1".into(),
            file: PathBuf::from("/data/c1/segment-0000000003.log"),
            operation: "fallocate",
            source: io::Error::from_raw_os_error(28),
        };
        let response = engine_error_response(&error, 0);
        assert_eq!(response.code, ErrorCode::InsufficientSpace);
        assert_eq!(response.class(), ErrorClass::Retryable);
        assert!(
            response
                .message
                .contains("fallocate of /data/c1/segment-0000000003.log")
                && response.message.contains("os error 28"),
            "{}",
            response.message
        );
    }

    #[test]
    fn enospc_from_a_sync_is_still_unhealthy() {
        let error = ChannelError::Io {
            channel: "c1".into(),
            file: PathBuf::from("/data/c1/segment-0000000003.log"),
            operation: "fdatasync",
            source: io::Error::from_raw_os_error(28),
        };
        assert_eq!(
            engine_error_response(&error, 0).code,
            ErrorCode::ChannelUnhealthy
        );
    }

    #[test]
    fn a_segment_creation_fails_retryably_only_for_space() {
        let create_failure = |errno: i32| ChannelError::Io {
            channel: "c1".into(),
            file: PathBuf::from("/data/c1/segment-0000000003.log"),
            operation: "create",
            source: io::Error::from_raw_os_error(errno),
        };
        let (enospc, edquot, eacces, eexist) = (28, 122, 13, 17);
        for errno in [enospc, edquot] {
            let response = engine_error_response(&create_failure(errno), 0);
            assert_eq!(response.code, ErrorCode::InsufficientSpace, "errno {errno}");
            assert_eq!(response.class(), ErrorClass::Retryable);
        }
        for errno in [eacces, eexist] {
            let response = engine_error_response(&create_failure(errno), 0);
            assert_eq!(response.code, ErrorCode::ChannelUnhealthy, "errno {errno}");
            assert!(
                response.message.contains("segment-0000000003.log"),
                "{}",
                response.message
            );
        }
    }

    #[test]
    fn a_directory_lost_under_the_channel_is_unhealthy_naming_it() {
        let error = ChannelError::DirectoryLost {
            channel: "c1".into(),
            role: "checkpoint",
            dir: PathBuf::from("/data/c1/checkpoint"),
            detail: "it is no longer at its path".into(),
        };
        let response = engine_error_response(&error, 0);
        assert_eq!(response.code, ErrorCode::ChannelUnhealthy);
        assert!(
            response
                .message
                .contains("checkpoint directory /data/c1/checkpoint was removed or replaced"),
            "{}",
            response.message
        );
    }

    #[test]
    fn an_oversized_event_names_both_sizes() {
        let error = ChannelError::EventTooLarge {
            channel: "c1".into(),
            event_bytes: 5000,
            max_event_bytes: 900,
        };
        let response = engine_error_response(&error, 1);
        assert_eq!(response.class(), ErrorClass::RequestFailed);
        assert_eq!(response.field(EVENT_BYTES_FIELD), Some(5000));
        assert_eq!(response.field(MAX_EVENT_BYTES_FIELD), Some(900));
    }
}
