//! Keys and the record cipher for encryption at rest.
//!
//! Constraints:
//! - each put record is sealed with an authenticated cipher, XChaCha20-Poly1305, so a
//!   record that was altered, moved to another place in the log under a different
//!   header, or written with another key fails to open instead of yielding garbage;
//! - a nonce never repeats under one key: every channel open draws a fresh 128-bit
//!   random prefix from the operating system, and each record takes the next value of
//!   a 64-bit counter behind it (see [`NonceSequence`] and `docs/design.md`, "Encryption
//!   at rest");
//! - keys come from files and are loaded once, at open; key bytes are wiped from memory
//!   when dropped and never appear in `Debug` output or messages;
//! - a segment header stores the id of the key its records were sealed with and a
//!   16-byte *key check* (a keyed BLAKE2b of a fixed label), so opening a channel with
//!   a missing or wrong key fails with the key id and the segment file before any event
//!   is served.
//!
//! ```text
//! nonce (24 bytes) = prefix (16 random bytes, drawn per channel open) ‖ counter (u64 LE)
//! key check (16 bytes) = BLAKE2b-128(key = record key, message = "millrace key check v1")
//! password key (32 bytes) = Argon2id(password, salt = "millrace.passwordKey." ‖ key id,
//!                                    m = 19 MiB, t = 2, p = 1)
//! ```
//!
//! The Argon2id parameters and the salt rule are part of the on-disk contract: changing
//! them changes the key a password file yields. Do not change them.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, Version};
use blake2::digest::consts::U16;
use blake2::digest::{KeyInit, Mac};
use blake2::Blake2bMac;
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use rand::rngs::OsRng;
use rand::TryRngCore;
use zeroize::Zeroizing;

use crate::config::{EncryptionConfig, KeySource};

/// Bytes of a record key (XChaCha20-Poly1305 takes a 256-bit key).
pub const KEY_BYTES: usize = 32;
/// Bytes of an XChaCha20-Poly1305 nonce, stored in clear in each sealed record.
pub const NONCE_BYTES: usize = 24;
/// Bytes of the Poly1305 authentication tag that ends each sealed record.
pub const TAG_BYTES: usize = 16;
/// Bytes of the key check stored in a segment header.
pub const KEY_CHECK_BYTES: usize = 16;
/// Bytes of the random part of a nonce, drawn once per channel open.
pub const NONCE_PREFIX_BYTES: usize = NONCE_BYTES - COUNTER_BYTES;
const COUNTER_BYTES: usize = 8;

/// What the key check authenticates: a fixed label, so the check reveals nothing about
/// the key but tells two keys apart.
const KEY_CHECK_LABEL: &[u8] = b"millrace key check v1";
/// A password key's salt is this prefix followed by the key id: unique per key id, so
/// the same password under two ids yields two keys.
const PASSWORD_SALT_PREFIX: &str = "millrace.passwordKey.";
/// Argon2id memory cost in KiB (19 MiB: the OWASP baseline for Argon2id).
const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
/// Argon2id passes over memory.
const ARGON2_ITERATIONS: u32 = 2;
/// Argon2id lanes.
const ARGON2_LANES: u32 = 1;
/// Hexadecimal digits of a key written as text in a key file.
const KEY_HEX_DIGITS: usize = KEY_BYTES * 2;

/// Why a configured key could not be loaded. Every variant names the key id and the
/// file, and never the key's bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key or password file could not be read.
    #[error("key {key_id:?}: cannot read {file}: {source}")]
    Unreadable {
        /// The key id.
        key_id: String,
        /// The file named by `keyFile` or `passwordFile`.
        file: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A key file does not hold a key.
    #[error(
        "key {key_id:?}: key file {file} holds {found_bytes} bytes; expected exactly \
         {KEY_BYTES} raw bytes or {KEY_HEX_DIGITS} hexadecimal digits \
         (e.g. `head -c {KEY_BYTES} /dev/urandom > FILE`)"
    )]
    NotAKey {
        /// The key id.
        key_id: String,
        /// The key file.
        file: PathBuf,
        /// Its length.
        found_bytes: usize,
    },
    /// A password file is empty (after trimming).
    #[error("key {key_id:?}: password file {file} is empty")]
    EmptyPassword {
        /// The key id.
        key_id: String,
        /// The password file.
        file: PathBuf,
    },
    /// Argon2id refused the input (a password beyond its limits).
    #[error("key {key_id:?}: cannot derive a key from password file {file}: {detail}")]
    Derivation {
        /// The key id.
        key_id: String,
        /// The password file.
        file: PathBuf,
        /// Argon2's explanation.
        detail: String,
    },
}

/// One loaded key: its id, where it came from, its cipher and its check value.
pub struct RecordKey {
    id: String,
    source: PathBuf,
    cipher: XChaCha20Poly1305,
    check: [u8; KEY_CHECK_BYTES],
}

impl fmt::Debug for RecordKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RecordKey")
            .field("id", &self.id)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The AEAD refused to open a sealed record: it was altered, or sealed with another key
/// or other associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthenticationFailed;

impl RecordKey {
    /// A key from its 32 bytes (which the caller should wipe after).
    pub fn from_bytes(id: &str, source: &Path, key: &[u8; KEY_BYTES]) -> Self {
        let mut mac = <Blake2bMac<U16> as KeyInit>::new_from_slice(key)
            .expect("BLAKE2b accepts 32-byte keys");
        mac.update(KEY_CHECK_LABEL);
        let check: [u8; KEY_CHECK_BYTES] = mac.finalize().into_bytes().into();
        RecordKey {
            id: id.to_string(),
            source: source.to_path_buf(),
            cipher: XChaCha20Poly1305::new(key.into()),
            check,
        }
    }

    /// Loads a key from its configured source.
    pub fn load(id: &str, source: &KeySource) -> Result<Self, KeyError> {
        let file = source.path();
        let contents =
            Zeroizing::new(std::fs::read(file).map_err(|error| KeyError::Unreadable {
                key_id: id.to_string(),
                file: file.to_path_buf(),
                source: error,
            })?);
        let key = match source {
            KeySource::KeyFile(_) => parse_key_file(&contents).ok_or(KeyError::NotAKey {
                key_id: id.to_string(),
                file: file.to_path_buf(),
                found_bytes: contents.len(),
            })?,
            KeySource::PasswordFile(_) => derive_password_key(id, file, &contents)?,
        };
        Ok(Self::from_bytes(id, file, &key))
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The file the key was read from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The check value stored in the headers of segments sealed with this key.
    pub fn check(&self) -> [u8; KEY_CHECK_BYTES] {
        self.check
    }

    /// Encrypts `buffer` in place and returns the tag.
    pub(crate) fn seal(
        &self,
        nonce: &[u8; NONCE_BYTES],
        associated_data: &[u8],
        buffer: &mut [u8],
    ) -> [u8; TAG_BYTES] {
        self.cipher
            .encrypt_in_place_detached(XNonce::from_slice(nonce), associated_data, buffer)
            .expect("a record is far below XChaCha20's 256 GiB message limit")
            .into()
    }

    /// Decrypts `buffer` in place if the tag authenticates it with `associated_data`.
    pub(crate) fn open(
        &self,
        nonce: &[u8],
        associated_data: &[u8],
        buffer: &mut [u8],
        tag: &[u8],
    ) -> Result<(), AuthenticationFailed> {
        self.cipher
            .decrypt_in_place_detached(
                XNonce::from_slice(nonce),
                associated_data,
                buffer,
                Tag::from_slice(tag),
            )
            .map_err(|_| AuthenticationFailed)
    }
}

/// A key file holds 32 raw bytes, or 64 hex digits with optional surrounding whitespace.
fn parse_key_file(contents: &[u8]) -> Option<Zeroizing<[u8; KEY_BYTES]>> {
    let mut key = Zeroizing::new([0u8; KEY_BYTES]);
    if contents.len() == KEY_BYTES {
        key.copy_from_slice(contents);
        return Some(key);
    }
    let text = contents.trim_ascii();
    if text.len() != KEY_HEX_DIGITS {
        return None;
    }
    for (byte, pair) in key.iter_mut().zip(text.chunks_exact(2)) {
        let high = hex_digit(pair[0])?;
        let low = hex_digit(pair[1])?;
        *byte = (high << 4) | low;
    }
    Some(key)
}

fn hex_digit(character: u8) -> Option<u8> {
    (character as char).to_digit(16).map(|digit| digit as u8)
}

fn derive_password_key(
    id: &str,
    file: &Path,
    contents: &[u8],
) -> Result<Zeroizing<[u8; KEY_BYTES]>, KeyError> {
    let password = contents.trim_ascii();
    if password.is_empty() {
        return Err(KeyError::EmptyPassword {
            key_id: id.to_string(),
            file: file.to_path_buf(),
        });
    }
    let derivation_error = |detail: String| KeyError::Derivation {
        key_id: id.to_string(),
        file: file.to_path_buf(),
        detail,
    };
    let params = Params::new(
        ARGON2_MEMORY_KIB,
        ARGON2_ITERATIONS,
        ARGON2_LANES,
        Some(KEY_BYTES),
    )
    .map_err(|error| derivation_error(error.to_string()))?;
    let salt = format!("{PASSWORD_SALT_PREFIX}{id}");
    let mut key = Zeroizing::new([0u8; KEY_BYTES]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password, salt.as_bytes(), key.as_mut())
        .map_err(|error| derivation_error(error.to_string()))?;
    Ok(key)
}

/// Every configured key by id, and which one seals new records.
#[derive(Debug)]
pub struct KeyRing {
    active_key_id: String,
    keys: BTreeMap<String, Arc<RecordKey>>,
}

/// A segment header names a key the key ring cannot provide as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentKeyProblem {
    /// No key with the segment's key id is configured.
    Missing,
    /// A key with that id is configured, but it is not the key the segment was sealed
    /// with (its check value differs): the key file was replaced.
    Mismatch {
        /// The file the configured key came from.
        key_file: PathBuf,
    },
}

impl KeyRing {
    /// Loads every configured key. Fails on the first key that cannot be loaded.
    pub fn load(config: &EncryptionConfig) -> Result<Self, KeyError> {
        let mut keys = BTreeMap::new();
        for (id, source) in &config.keys {
            keys.insert(id.clone(), Arc::new(RecordKey::load(id, source)?));
        }
        Ok(KeyRing {
            active_key_id: config.active_key_id.clone(),
            keys,
        })
    }

    /// A key ring from keys already loaded; `active_key_id` must be one of them.
    pub fn from_keys(active_key_id: &str, keys: Vec<RecordKey>) -> Option<Self> {
        let keys: BTreeMap<String, Arc<RecordKey>> = keys
            .into_iter()
            .map(|key| (key.id.clone(), Arc::new(key)))
            .collect();
        keys.contains_key(active_key_id).then(|| KeyRing {
            active_key_id: active_key_id.to_string(),
            keys,
        })
    }

    /// The key that seals new records.
    pub fn active(&self) -> &Arc<RecordKey> {
        &self.keys[&self.active_key_id]
    }

    /// The key with this id, if configured.
    pub fn get(&self, key_id: &str) -> Option<&Arc<RecordKey>> {
        self.keys.get(key_id)
    }

    /// The configured key ids, sorted.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.keys().map(String::as_str).collect()
    }

    /// The key a segment sealed with `key_id` and `key_check` needs, if this ring holds
    /// that very key.
    pub fn key_for_segment(
        &self,
        key_id: &str,
        key_check: &[u8; KEY_CHECK_BYTES],
    ) -> Result<&Arc<RecordKey>, SegmentKeyProblem> {
        let key = self.keys.get(key_id).ok_or(SegmentKeyProblem::Missing)?;
        if key.check != *key_check {
            return Err(SegmentKeyProblem::Mismatch {
                key_file: key.source.clone(),
            });
        }
        Ok(key)
    }
}

/// The nonces of one channel open: a random prefix and a counter.
///
/// Why a nonce never repeats under one key: within one open, the counter hands out
/// each value once (it refuses to wrap, see [`NonceSequence::next`]); two opens share a
/// prefix only if two independent 128-bit draws from the operating system's generator
/// collide, which for a billion opens has a probability below 2⁻⁶⁸. Nothing about the
/// nonce depends on the log's contents, so a crash that truncates a torn tail and a
/// restart that reuses write-order ids cannot make one repeat. Several channels may
/// share a key: each open has its own prefix.
#[derive(Debug)]
pub struct NonceSequence {
    prefix: [u8; NONCE_PREFIX_BYTES],
    next_counter: AtomicU64,
}

/// A channel open sealed 2⁶⁴ records and has no unused nonce left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the nonce counter is exhausted (2^64 records sealed since the channel opened); reopen the channel")]
pub struct NoncesExhausted;

impl NonceSequence {
    /// A sequence with a fresh prefix from the operating system's random generator.
    pub fn from_os_random() -> io::Result<Self> {
        let mut prefix = [0u8; NONCE_PREFIX_BYTES];
        OsRng
            .try_fill_bytes(&mut prefix)
            .map_err(|error| io::Error::other(format!("operating system randomness: {error}")))?;
        Ok(Self::with_prefix(prefix))
    }

    /// A sequence with a given prefix (tests use it to show what a reused prefix would do).
    pub fn with_prefix(prefix: [u8; NONCE_PREFIX_BYTES]) -> Self {
        NonceSequence {
            prefix,
            next_counter: AtomicU64::new(0),
        }
    }

    /// The next nonce. Never returns the same value twice.
    pub fn next(&self) -> Result<[u8; NONCE_BYTES], NoncesExhausted> {
        let counter = self
            .next_counter
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |counter| {
                counter.checked_add(1)
            })
            .map_err(|_| NoncesExhausted)?;
        let mut nonce = [0u8; NONCE_BYTES];
        nonce[..NONCE_PREFIX_BYTES].copy_from_slice(&self.prefix);
        nonce[NONCE_PREFIX_BYTES..].copy_from_slice(&counter.to_le_bytes());
        Ok(nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, fill: u8) -> RecordKey {
        RecordKey::from_bytes(id, Path::new("test.key"), &[fill; KEY_BYTES])
    }

    #[test]
    fn sealed_bytes_open_only_with_the_same_key_nonce_and_associated_data() {
        let sealing = key("k1", 7);
        let nonces = NonceSequence::with_prefix([1; NONCE_PREFIX_BYTES]);
        let nonce = nonces.next().unwrap();
        let plaintext = b"attack at dawn".to_vec();
        let mut buffer = plaintext.clone();
        let tag = sealing.seal(&nonce, b"header", &mut buffer);
        assert_ne!(buffer, plaintext);

        let mut attempt = buffer.clone();
        assert_eq!(
            key("k1", 8).open(&nonce, b"header", &mut attempt, &tag),
            Err(AuthenticationFailed)
        );
        let mut attempt = buffer.clone();
        assert_eq!(
            sealing.open(&nonce, b"other header", &mut attempt, &tag),
            Err(AuthenticationFailed)
        );
        let mut attempt = buffer.clone();
        assert_eq!(
            sealing.open(&nonces.next().unwrap(), b"header", &mut attempt, &tag),
            Err(AuthenticationFailed)
        );
        sealing.open(&nonce, b"header", &mut buffer, &tag).unwrap();
        assert_eq!(buffer, plaintext);
    }

    #[test]
    fn nonces_count_up_behind_the_prefix_and_refuse_to_wrap() {
        let nonces = NonceSequence::with_prefix([9; NONCE_PREFIX_BYTES]);
        let first = nonces.next().unwrap();
        let second = nonces.next().unwrap();
        assert_eq!(first[..NONCE_PREFIX_BYTES], [9; NONCE_PREFIX_BYTES]);
        assert_eq!(first[NONCE_PREFIX_BYTES..], 0u64.to_le_bytes());
        assert_eq!(second[NONCE_PREFIX_BYTES..], 1u64.to_le_bytes());
        nonces.next_counter.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(nonces.next(), Err(NoncesExhausted));
        assert_eq!(nonces.next(), Err(NoncesExhausted));
    }

    #[test]
    fn two_channel_opens_draw_different_nonce_prefixes() {
        let first = NonceSequence::from_os_random().unwrap().next().unwrap();
        let second = NonceSequence::from_os_random().unwrap().next().unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn key_files_hold_raw_bytes_or_hex_digits() {
        let raw = [0xabu8; KEY_BYTES];
        assert_eq!(*parse_key_file(&raw).unwrap(), raw);
        let hex = format!("{}\n", "ab".repeat(KEY_BYTES));
        assert_eq!(*parse_key_file(hex.as_bytes()).unwrap(), raw);
        assert!(parse_key_file(b"short").is_none());
        assert!(parse_key_file("zz".repeat(KEY_BYTES).as_bytes()).is_none());
    }

    #[test]
    fn a_password_yields_the_same_key_every_time_and_a_different_one_per_key_id() {
        let path = Path::new("password");
        let first = derive_password_key("k1", path, b"correct horse\n").unwrap();
        let again = derive_password_key("k1", path, b"correct horse").unwrap();
        let other_id = derive_password_key("k2", path, b"correct horse").unwrap();
        assert_eq!(*first, *again);
        assert_ne!(*first, *other_id);
        assert!(matches!(
            derive_password_key("k1", path, b" \n"),
            Err(KeyError::EmptyPassword { .. })
        ));
    }

    #[test]
    fn the_key_check_tells_keys_apart_and_a_ring_reports_missing_and_replaced_keys() {
        let ring = KeyRing::from_keys("k1", vec![key("k1", 1)]).unwrap();
        let check = ring.active().check();
        assert_ne!(check, key("k1", 2).check());
        assert!(ring.key_for_segment("k1", &check).is_ok());
        assert_eq!(
            ring.key_for_segment("k0", &check).unwrap_err(),
            SegmentKeyProblem::Missing
        );
        assert!(matches!(
            ring.key_for_segment("k1", &key("k1", 2).check()),
            Err(SegmentKeyProblem::Mismatch { .. })
        ));
    }
}
