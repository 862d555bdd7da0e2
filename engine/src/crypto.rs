//! Keys and the record cipher for encryption at rest.
//!
//! Constraints:
//! - each put record is sealed with an authenticated cipher, AES-256-GCM (`ring`, with
//!   the CPU's AES and carry-less multiply instructions), so a record that was altered,
//!   moved under a different header, or written with another key fails to open instead
//!   of yielding garbage;
//! - a nonce never repeats under one key: every channel open draws a fresh 128-bit
//!   random prefix from the operating system and seals under its own subkey derived
//!   from the configured key and that prefix, with a 64-bit counter as the GCM nonce (see
//!   [`Sealer`] and `docs/design.md`, "Encryption at rest");
//! - keys come from files and are loaded once, at open; key bytes are wiped from memory
//!   when dropped and never appear in `Debug` output or messages;
//! - a segment header stores the id of the key its records were sealed with and a
//!   16-byte *key check* (a keyed BLAKE2b of a fixed label), so opening a channel with
//!   a missing or wrong key fails with the key id and the segment file before any event
//!   is served.
//!
//! ```text
//! stored nonce (24 bytes) = prefix (16 random bytes, drawn per channel open) ‖ counter (u64 LE)
//! subkey (32 bytes)       = BLAKE2b-256(key = record key, message = "millrace aes-256-gcm subkey v1" ‖ prefix)
//! GCM nonce (12 bytes)    = 00 00 00 00 ‖ counter (u64 LE)
//! sealed body ‖ tag       = AES-256-GCM(subkey, GCM nonce, associated data, body)
//! key check (16 bytes)    = BLAKE2b-128(key = record key, message = "millrace key check v1")
//! password key (32 bytes) = Argon2id(password, salt = "millrace.passwordKey." ‖ key id,
//!                                    m = 19 MiB, t = 2, p = 1)
//! ```
//!
//! The labels, the Argon2id parameters and the salt rule are part of the on-disk
//! contract: changing them changes what a file's bytes mean. Do not change them.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, Version};
use blake2::digest::consts::{U16, U32};
use blake2::digest::{KeyInit, Mac};
use blake2::Blake2bMac;
use rand::rngs::OsRng;
use rand::TryRngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_256_GCM};
use zeroize::Zeroizing;

/// Encryption at rest: the key new segments are written with, and every key older
/// segments may still need (Flume's `encryption.activeKey` and
/// `encryption.keyProvider.keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionConfig {
    /// `encryption.activeKey`: the id of the key that encrypts new segments. Rotating
    /// keys means changing this and keeping the old id in `keys` while segments written
    /// with it remain.
    pub active_key_id: String,
    /// `encryption.keyProvider.keys` with each key's source: every key id a segment on
    /// disk may name, the active one included.
    pub keys: BTreeMap<String, KeySource>,
}

/// Where a key's 32 bytes come from. Key material never appears in the configuration
/// itself, only the file that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Millrace extension `encryption.keyProvider.keys.<id>.keyFile`: a file holding the
    /// key itself, as 32 raw bytes or 64 hexadecimal digits (surrounding whitespace
    /// ignored).
    KeyFile(PathBuf),
    /// Flume's `encryption.keyProvider.keys.<id>.passwordFile`: a file holding a
    /// password (trimmed); the key is derived from it with Argon2id (see
    /// `docs/design.md`, "Encryption at rest").
    PasswordFile(PathBuf),
}

impl KeySource {
    /// The file the key is read from.
    pub fn path(&self) -> &std::path::Path {
        match self {
            KeySource::KeyFile(path) | KeySource::PasswordFile(path) => path,
        }
    }
}

/// Bytes of a record key (and of the AES-256 subkeys derived from it).
pub const KEY_BYTES: usize = 32;
/// Bytes of the nonce stored in clear in each sealed record: the open's prefix and the
/// record's counter.
pub const NONCE_BYTES: usize = NONCE_PREFIX_BYTES + COUNTER_BYTES;
/// Bytes of the GCM authentication tag that ends each sealed record.
pub const TAG_BYTES: usize = 16;
/// Bytes of the key check stored in a segment header.
pub const KEY_CHECK_BYTES: usize = 16;
/// Bytes of the random part of a nonce, drawn once per channel open.
pub const NONCE_PREFIX_BYTES: usize = 16;
const COUNTER_BYTES: usize = 8;
/// Bytes of a GCM nonce.
const GCM_NONCE_BYTES: usize = 12;
/// The GCM nonce is the counter behind this many zero bytes.
const GCM_NONCE_ZERO_BYTES: usize = GCM_NONCE_BYTES - COUNTER_BYTES;

/// What the key check authenticates: a fixed label, so the check reveals nothing about
/// the key but tells two keys apart.
const KEY_CHECK_LABEL: &[u8] = b"millrace key check v1";
/// What a subkey derivation authenticates before the open's prefix (a different label
/// from the key check's, so the two never coincide).
const SUBKEY_LABEL: &[u8] = b"millrace aes-256-gcm subkey v1";
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

/// One loaded key: its id, where it came from, its bytes and its check value.
pub struct RecordKey {
    id: String,
    source: PathBuf,
    key: Zeroizing<[u8; KEY_BYTES]>,
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
        RecordKey {
            id: id.to_string(),
            source: source.to_path_buf(),
            key: Zeroizing::new(*key),
            check: key_check(key),
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

    /// The AES-256-GCM key of the channel open that drew `prefix`.
    fn subkey(&self, prefix: &[u8]) -> LessSafeKey {
        let subkey = subkey_bytes(&self.key, prefix);
        LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, subkey.as_slice()).expect("AES-256 takes 32-byte keys"),
        )
    }

    /// Decrypts `buffer` in place if `tag` authenticates it with `associated_data` under
    /// the subkey and counter `nonce` names.
    pub(crate) fn open(
        &self,
        nonce: &[u8; NONCE_BYTES],
        associated_data: &[u8],
        buffer: &mut [u8],
        tag: &[u8],
    ) -> Result<(), AuthenticationFailed> {
        let tag = Tag::try_from(tag).map_err(|_| AuthenticationFailed)?;
        self.subkey(&nonce[..NONCE_PREFIX_BYTES])
            .open_in_place_separate_tag(
                gcm_nonce(nonce),
                Aad::from(associated_data),
                tag,
                buffer,
                0..,
            )
            .map(|_| ())
            .map_err(|_| AuthenticationFailed)
    }
}

/// The key check: BLAKE2b-128 keyed with the key over [`KEY_CHECK_LABEL`].
fn key_check(key: &[u8; KEY_BYTES]) -> [u8; KEY_CHECK_BYTES] {
    let mut mac =
        <Blake2bMac<U16> as KeyInit>::new_from_slice(key).expect("BLAKE2b accepts 32-byte keys");
    mac.update(KEY_CHECK_LABEL);
    mac.finalize().into_bytes().into()
}

/// The subkey of one channel open: BLAKE2b-256 keyed with the key over
/// [`SUBKEY_LABEL`] and the open's nonce prefix.
fn subkey_bytes(key: &[u8; KEY_BYTES], prefix: &[u8]) -> Zeroizing<[u8; KEY_BYTES]> {
    let mut mac =
        <Blake2bMac<U32> as KeyInit>::new_from_slice(key).expect("BLAKE2b accepts 32-byte keys");
    mac.update(SUBKEY_LABEL);
    mac.update(prefix);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// The GCM nonce of a stored nonce: its counter behind zero bytes.
fn gcm_nonce(nonce: &[u8; NONCE_BYTES]) -> Nonce {
    let mut gcm = [0u8; GCM_NONCE_BYTES];
    gcm[GCM_NONCE_ZERO_BYTES..].copy_from_slice(&nonce[NONCE_PREFIX_BYTES..]);
    Nonce::assume_unique_for_key(gcm)
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

/// What one channel open seals put records with: the active key, a random prefix, the
/// subkey derived from both, and a counter.
///
/// Why a nonce never repeats under one key: the stored nonce is `prefix ‖ counter`, and
/// AES-GCM runs under the subkey of `(key, prefix)` with the counter as its nonce.
/// Within one open, the counter hands out each value once (it refuses to wrap, see
/// [`Sealer::next_nonce`]), so the subkey never sees a GCM nonce twice. Two opens share
/// a subkey only if two independent 128-bit draws from the operating system's generator
/// collide, which for a billion opens has a probability below 2⁻⁶⁸. Nothing about the
/// nonce depends on the log's contents, so a crash that truncates a torn tail and a
/// restart that reuses write-order ids cannot make one repeat. Several channels may
/// share a key: each open has its own prefix.
pub struct Sealer {
    key: Arc<RecordKey>,
    prefix: [u8; NONCE_PREFIX_BYTES],
    subkey: LessSafeKey,
    next_counter: AtomicU64,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Sealer")
            .field("key", &self.key)
            .field("next_counter", &self.next_counter)
            .finish_non_exhaustive()
    }
}

/// A channel open sealed 2⁶⁴ records and has no unused nonce left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the nonce counter is exhausted (2^64 records sealed since the channel opened); reopen the channel")]
pub struct NoncesExhausted;

impl Sealer {
    /// A sealer for `key` with a fresh prefix from the operating system's random
    /// generator.
    pub fn from_os_random(key: Arc<RecordKey>) -> io::Result<Self> {
        let mut prefix = [0u8; NONCE_PREFIX_BYTES];
        OsRng
            .try_fill_bytes(&mut prefix)
            .map_err(|error| io::Error::other(format!("operating system randomness: {error}")))?;
        Ok(Self::with_prefix(key, prefix))
    }

    /// A sealer with a given prefix. Only for tests and benchmarks: two sealers with one
    /// prefix and key would reuse nonces.
    pub fn with_prefix(key: Arc<RecordKey>, prefix: [u8; NONCE_PREFIX_BYTES]) -> Self {
        Sealer {
            subkey: key.subkey(&prefix),
            key,
            prefix,
            next_counter: AtomicU64::new(0),
        }
    }

    /// The key records are sealed with.
    pub fn key(&self) -> &RecordKey {
        &self.key
    }

    /// The next nonce. Never returns the same value twice.
    pub fn next_nonce(&self) -> Result<[u8; NONCE_BYTES], NoncesExhausted> {
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

    /// Encrypts `buffer` in place under `nonce` (from [`Sealer::next_nonce`] of this
    /// sealer, used once) and returns the tag.
    pub(crate) fn seal(
        &self,
        nonce: &[u8; NONCE_BYTES],
        associated_data: &[u8],
        buffer: &mut [u8],
    ) -> [u8; TAG_BYTES] {
        debug_assert_eq!(nonce[..NONCE_PREFIX_BYTES], self.prefix);
        let tag = self
            .subkey
            .seal_in_place_separate_tag(gcm_nonce(nonce), Aad::from(associated_data), buffer)
            .expect("a record is far below AES-GCM's 64 GiB message limit");
        tag.as_ref().try_into().expect("GCM tags are 16 bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, fill: u8) -> RecordKey {
        RecordKey::from_bytes(id, Path::new("test.key"), &[fill; KEY_BYTES])
    }

    fn sealer(key: RecordKey, prefix_fill: u8) -> Sealer {
        Sealer::with_prefix(Arc::new(key), [prefix_fill; NONCE_PREFIX_BYTES])
    }

    #[test]
    fn sealed_bytes_open_only_with_the_same_key_nonce_and_associated_data() {
        let sealing = sealer(key("k1", 7), 1);
        let nonce = sealing.next_nonce().unwrap();
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
            sealing
                .key()
                .open(&nonce, b"other header", &mut attempt, &tag),
            Err(AuthenticationFailed)
        );
        let mut attempt = buffer.clone();
        assert_eq!(
            sealing.key().open(
                &sealing.next_nonce().unwrap(),
                b"header",
                &mut attempt,
                &tag
            ),
            Err(AuthenticationFailed)
        );
        let mut other_prefix = nonce;
        other_prefix[0] ^= 1;
        let mut attempt = buffer.clone();
        assert_eq!(
            sealing
                .key()
                .open(&other_prefix, b"header", &mut attempt, &tag),
            Err(AuthenticationFailed)
        );
        sealing
            .key()
            .open(&nonce, b"header", &mut buffer, &tag)
            .unwrap();
        assert_eq!(buffer, plaintext);
    }

    #[test]
    fn nonces_count_up_behind_the_prefix_and_refuse_to_wrap() {
        let nonces = sealer(key("k1", 7), 9);
        let first = nonces.next_nonce().unwrap();
        let second = nonces.next_nonce().unwrap();
        assert_eq!(first[..NONCE_PREFIX_BYTES], [9; NONCE_PREFIX_BYTES]);
        assert_eq!(first[NONCE_PREFIX_BYTES..], 0u64.to_le_bytes());
        assert_eq!(second[NONCE_PREFIX_BYTES..], 1u64.to_le_bytes());
        nonces.next_counter.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(nonces.next_nonce(), Err(NoncesExhausted));
        assert_eq!(nonces.next_nonce(), Err(NoncesExhausted));
    }

    #[test]
    fn the_same_plaintext_sealed_by_two_opens_gives_unrelated_ciphertexts() {
        let plaintext = vec![0u8; 64];
        let mut first = plaintext.clone();
        let mut second = plaintext.clone();
        let one = sealer(key("k1", 7), 1);
        let other = sealer(key("k1", 7), 2);
        one.seal(&one.next_nonce().unwrap(), b"", &mut first);
        other.seal(&other.next_nonce().unwrap(), b"", &mut second);
        // Same key, same counter, different prefix: different subkeys, so the
        // keystreams share nothing.
        assert_ne!(first, second);
    }

    /// Pins the derivations that are part of the on-disk format: if one of these
    /// changes, existing segments and password keys stop opening. The expected values
    /// were computed independently, with Python's `hashlib.blake2b`, `cryptography`'s
    /// `AESGCM` and `argon2-cffi`'s `hash_secret_raw`.
    #[test]
    fn the_key_check_subkey_and_password_derivations_are_pinned() {
        let record_key = key("k1", 7);
        assert_eq!(hex(&record_key.check()), PINNED_KEY_CHECK);
        let sealing = sealer(record_key, 1);
        let mut buffer = b"pinned".to_vec();
        let tag = sealing.seal(&sealing.next_nonce().unwrap(), b"ad", &mut buffer);
        assert_eq!(hex(&buffer) + &hex(&tag), PINNED_CIPHERTEXT_AND_TAG);
        let password_key = derive_password_key("k1", Path::new("p"), b"correct horse").unwrap();
        assert_eq!(hex(password_key.as_slice()), PINNED_PASSWORD_KEY);
    }

    const PINNED_KEY_CHECK: &str = "81693063c90429822f171bcea08b7d33";
    const PINNED_CIPHERTEXT_AND_TAG: &str = "b52aea60419bf8e01b4467afde635f7aadd2b9777bbf";
    const PINNED_PASSWORD_KEY: &str =
        "ad0a2fed3a1daf20e57988ac797d2ff70e4b50dba5e200ad3e4cb048560907f4";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    #[test]
    fn two_channel_opens_draw_different_nonce_prefixes() {
        let record_key = Arc::new(key("k1", 7));
        let first = Sealer::from_os_random(Arc::clone(&record_key))
            .unwrap()
            .next_nonce()
            .unwrap();
        let second = Sealer::from_os_random(record_key)
            .unwrap()
            .next_nonce()
            .unwrap();
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
