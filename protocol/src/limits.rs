//! Protocol versions, the limits a peer enforces with their defaults, and the longest
//! names, tokens and handshake the layouts allow.
//!
//! The codec itself enforces only [`DecodeLimits::max_frame_bytes`]; every other number the
//! decoder relies on is a width on the wire (a `u8` or `u16` length). The timeouts and caps
//! at the bottom are enforced by the server's connection loop; they live here so the
//! server, the client and `docs/protocol.md` share one set of numbers.

use thiserror::Error;

use crate::error::EncodeError;
use crate::frame::FRAME_HEADER_BYTES;
use crate::wire::{
    check_length, LONGEST_SHORT_STRING_BYTES, MAX_SHORT_STRING_BYTES, MAX_STRING_BYTES,
    STRING_LENGTH_BYTES,
};

/// The protocol version this crate speaks. Bumped for any change to a frame's layout or
/// meaning after the handshake; the handshake itself (magic, `Hello`, the reply) is frozen
/// so that every version can read it.
pub const PROTOCOL_VERSION: u16 = 1;
/// The oldest version this crate can speak. Version 0 is never valid, so a zeroed field is
/// caught.
pub const OLDEST_SUPPORTED_VERSION: u16 = 1;
/// The newest version this crate can speak.
pub const NEWEST_SUPPORTED_VERSION: u16 = PROTOCOL_VERSION;

/// Picks the version both sides speak: the newest one inside the client's offered range
/// `[offered_oldest, offered_newest]` that this crate supports, or `None` when the ranges do
/// not overlap (answer with `ErrorCode::UnsupportedVersion`).
pub fn negotiate_version(offered_oldest: u16, offered_newest: u16) -> Option<u16> {
    let newest = offered_newest.min(NEWEST_SUPPORTED_VERSION);
    let oldest = offered_oldest.max(OLDEST_SUPPORTED_VERSION);
    (oldest <= newest).then_some(newest)
}

/// The longest channel name (its length is a `u8`).
pub const MAX_CHANNEL_NAME_BYTES: usize = MAX_SHORT_STRING_BYTES;
/// The longest client or server name in the handshake.
pub const MAX_PEER_NAME_BYTES: usize = MAX_SHORT_STRING_BYTES;
/// The longest auth token (its length is a `u16`).
pub const MAX_AUTH_TOKEN_BYTES: usize = MAX_STRING_BYTES;

/// The largest `Hello` frame but for its token's bytes: the header, both versions,
/// `max_frame_bytes`, the longest client name, the token flag and the token's length
/// field (276 bytes).
pub const HELLO_FRAME_BYTES_BEFORE_TOKEN: usize =
    FRAME_HEADER_BYTES + 2 + 2 + 4 + LONGEST_SHORT_STRING_BYTES + 1 + STRING_LENGTH_BYTES;
/// The largest `Hello` frame the protocol can carry: longest client name and auth token
/// (65 811 bytes).
pub const LARGEST_HELLO_FRAME_BYTES: usize = HELLO_FRAME_BYTES_BEFORE_TOKEN + MAX_STRING_BYTES;

/// Checks a channel name: 1 to [`MAX_CHANNEL_NAME_BYTES`] bytes of UTF-8.
pub fn validate_channel_name(channel: &str) -> Result<(), EncodeError> {
    if channel.is_empty() {
        return Err(EncodeError::InvalidValue {
            field: "channel length",
            value: 0,
            expected: "a channel name of 1 to 255 bytes",
        });
    }
    check_length("channel", channel, MAX_CHANNEL_NAME_BYTES)
}

const KIB: u32 = 1024;
const MIB: u32 = 1024 * KIB;

/// Default for the largest frame (length prefix included) a peer accepts: 16 MiB. A put of
/// 10 000 events of 1 KiB each (Flume's batch sizes are usually 100 to 1 000) fits with
/// room to spare, and a garbage length prefix can never make a peer buffer more than this.
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 16 * MIB;

/// The smallest `max_frame_bytes` a peer may configure or announce: 256 KiB. Every frame
/// whose size the protocol bounds (a `Hello` with the longest names and token, an error
/// with the longest message and 255 fields, a stats reply with 255 counters) fits below
/// it, so a handshake or an error can always be delivered, and a sender that does not yet
/// know its peer's limit can always send frames up to this size.
pub const MIN_MAX_FRAME_BYTES: u32 = 256 * KIB;

/// How many token bytes a server's handshake limit leaves room for by default: 4 KiB,
/// far more than any generated secret needs. A server whose configured token is longer
/// raises its limit to fit it ([`DecodeLimits::with_auth_token_bytes`]).
pub const DEFAULT_HELLO_TOKEN_ALLOWANCE_BYTES: u32 = 4 * KIB;

/// Default for the largest first frame (the `Hello`) a server accepts before the
/// handshake: the longest client name plus [`DEFAULT_HELLO_TOKEN_ALLOWANCE_BYTES`] of
/// token, 4 372 bytes. Until a connection has authenticated it may make the server
/// buffer no more than this, whatever `max_frame_bytes` allows afterwards.
pub const DEFAULT_MAX_HELLO_FRAME_BYTES: u32 =
    HELLO_FRAME_BYTES_BEFORE_TOKEN as u32 + DEFAULT_HELLO_TOKEN_ALLOWANCE_BYTES;

/// Limits a decoder enforces on untrusted input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    max_frame_bytes: u32,
    /// The largest first frame of a [`RequestDecoder`](crate::RequestDecoder), at most
    /// `max_frame_bytes`.
    max_hello_frame_bytes: u32,
}

impl DecodeLimits {
    /// Limits with the given largest accepted frame, length prefix included.
    ///
    /// Fails when `max_frame_bytes` is below [`MIN_MAX_FRAME_BYTES`], because such a peer
    /// could not receive a handshake or an error frame.
    pub fn new(max_frame_bytes: u32) -> Result<Self, InvalidLimit> {
        if max_frame_bytes < MIN_MAX_FRAME_BYTES {
            return Err(InvalidLimit::MaxFrameBytesTooSmall {
                max_frame_bytes,
                min_max_frame_bytes: MIN_MAX_FRAME_BYTES,
            });
        }
        Ok(DecodeLimits {
            max_frame_bytes,
            max_hello_frame_bytes: DEFAULT_MAX_HELLO_FRAME_BYTES.min(max_frame_bytes),
        })
    }

    /// The same limits with room in the `Hello` for a token of `token_bytes` (a server
    /// whose configured token is longer than [`DEFAULT_HELLO_TOKEN_ALLOWANCE_BYTES`]).
    /// Never below the default, never above the largest `Hello` the protocol can carry.
    pub fn with_auth_token_bytes(self, token_bytes: usize) -> Self {
        let token_room = token_bytes
            .min(MAX_AUTH_TOKEN_BYTES)
            .max(DEFAULT_HELLO_TOKEN_ALLOWANCE_BYTES as usize);
        // At most LARGEST_HELLO_FRAME_BYTES (65 811), so it fits a u32.
        let hello_bytes = (HELLO_FRAME_BYTES_BEFORE_TOKEN + token_room) as u32;
        DecodeLimits {
            max_hello_frame_bytes: hello_bytes.min(self.max_frame_bytes),
            ..self
        }
    }

    /// The largest accepted frame, length prefix included.
    pub fn max_frame_bytes(&self) -> u32 {
        self.max_frame_bytes
    }

    /// The largest accepted first frame (the client's `Hello`), length prefix included:
    /// what an unauthenticated connection can make a server buffer.
    pub fn max_hello_frame_bytes(&self) -> u32 {
        self.max_hello_frame_bytes
    }
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_hello_frame_bytes: DEFAULT_MAX_HELLO_FRAME_BYTES,
        }
    }
}

/// A limit that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidLimit {
    /// `max_frame_bytes` is below [`MIN_MAX_FRAME_BYTES`].
    #[error(
        "max_frame_bytes {max_frame_bytes} is below the protocol minimum of \
         {min_max_frame_bytes} bytes needed to carry a handshake or an error frame"
    )]
    MaxFrameBytesTooSmall {
        /// The value asked for.
        max_frame_bytes: u32,
        /// [`MIN_MAX_FRAME_BYTES`].
        min_max_frame_bytes: u32,
    },
}

/// Server default: a frame whose first byte has arrived must be complete within 30 s, or
/// the connection is closed with `ErrorCode::TimedOut` (defence against a slow-loris
/// client that trickles one byte at a time; an idle timeout alone would never fire).
/// (`server.frameDeadlineMs`.)
pub const DEFAULT_FRAME_COMPLETION_DEADLINE_MS: u64 = 30_000;

/// Server default: a connection on which no request is being read or served for 5
/// minutes (300 000 ms) is closed, and its open transaction, if any, rolled back, so an
/// abandoned transaction cannot hold taken events forever. (`server.idleTimeoutMs`.)
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 5 * 60 * 1_000;

/// Server default: a connection must have sent a complete `Hello` within 5 s of being
/// accepted, or it is refused with `ErrorCode::TimedOut` and closed, so a connection
/// that never speaks cannot hold one of the `maxConnections` places for the whole idle
/// timeout. (`server.handshakeDeadlineMs`.)
pub const DEFAULT_HANDSHAKE_DEADLINE_MS: u64 = 5_000;

/// Server default: connections beyond 1 024 are answered with a handshake rejection
/// (`ErrorCode::TooManyConnections`) and closed. (`server.maxConnections`.)
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1_024;

/// Server default: the longest a `Take` may wait for an event; a longer `wait_ms` is
/// clamped to it. One minute keeps a waiting connection well inside the idle timeout, and
/// a client that wants to follow a channel simply takes again.
pub const DEFAULT_MAX_TAKE_WAIT_MS: u32 = 60_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_newest_common_version() {
        assert_eq!(negotiate_version(1, 1), Some(1));
        assert_eq!(negotiate_version(1, 7), Some(NEWEST_SUPPORTED_VERSION));
    }

    #[test]
    fn negotiation_fails_when_ranges_do_not_overlap() {
        assert_eq!(
            negotiate_version(NEWEST_SUPPORTED_VERSION + 1, u16::MAX),
            None
        );
        assert_eq!(negotiate_version(0, 0), None);
        assert_eq!(negotiate_version(5, 2), None);
    }

    #[test]
    fn max_frame_bytes_below_the_protocol_minimum_is_refused() {
        assert!(DecodeLimits::new(MIN_MAX_FRAME_BYTES - 1).is_err());
        assert_eq!(
            DecodeLimits::new(MIN_MAX_FRAME_BYTES).map(|limits| limits.max_frame_bytes()),
            Ok(MIN_MAX_FRAME_BYTES)
        );
    }

    #[test]
    fn a_hello_may_carry_the_longest_name_and_a_four_kib_token_by_default() {
        assert_eq!(DEFAULT_MAX_HELLO_FRAME_BYTES, 276 + 4_096);
        assert_eq!(
            DecodeLimits::default().max_hello_frame_bytes(),
            DEFAULT_MAX_HELLO_FRAME_BYTES
        );
    }

    #[test]
    fn a_longer_configured_token_widens_the_hello_limit_up_to_the_largest_hello() {
        let limits = DecodeLimits::default();
        assert_eq!(
            limits.with_auth_token_bytes(32).max_hello_frame_bytes(),
            DEFAULT_MAX_HELLO_FRAME_BYTES
        );
        assert_eq!(
            limits.with_auth_token_bytes(10_000).max_hello_frame_bytes(),
            276 + 10_000
        );
        assert_eq!(
            limits
                .with_auth_token_bytes(usize::MAX)
                .max_hello_frame_bytes() as usize,
            LARGEST_HELLO_FRAME_BYTES
        );
    }

    #[test]
    fn default_max_frame_is_sixteen_mebibytes() {
        assert_eq!(DecodeLimits::default().max_frame_bytes(), 16 * 1024 * 1024);
    }
}
