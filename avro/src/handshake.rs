//! The Avro IPC handshake records (`org.apache.avro.ipc.HandshakeRequest` and
//! `HandshakeResponse`), which open a connection's first request and its answer.
//!
//! ```text
//! HandshakeRequest                          HandshakeResponse
//!   fixed MD5(16)          clientHash         enum {BOTH,CLIENT,NONE}  match
//!   union{null,string}     clientProtocol     union{null,string}       serverProtocol
//!   MD5                    serverHash         union{null,MD5}          serverHash
//!   union{null,map<bytes>} meta               union{null,map<bytes>}   meta
//! ```
//!
//! Java sends `meta` as an empty map (`02 00`), Python as null (`00`); both are accepted.

use std::fmt;

use bytes::Bytes;
use md5::{Digest, Md5};

use crate::binary::{write_bytes_map, write_optional, write_str, Reader, ValueError};
use crate::limits::CallLimits;

/// Bytes of an MD5 hash, Avro's `fixed MD5(16)`.
pub const MD5_BYTES: usize = 16;

/// A protocol's identity in the handshake: the MD5 of its JSON text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Md5Hash(pub [u8; MD5_BYTES]);

impl Md5Hash {
    /// The MD5 of `text`'s UTF-8 bytes, as Avro Java's `Protocol.getMD5()` and Python's
    /// `Protocol.md5` compute it from their own renderings.
    pub fn of_text(text: &str) -> Md5Hash {
        Md5Hash(Md5::digest(text.as_bytes()).into())
    }

    /// Parses 32 hexadecimal digits.
    pub const fn from_hex(hex: &str) -> Option<Md5Hash> {
        let digits = hex.as_bytes();
        if digits.len() != 2 * MD5_BYTES {
            return None;
        }
        let mut bytes = [0u8; MD5_BYTES];
        let mut index = 0;
        while index < MD5_BYTES {
            let (Some(high), Some(low)) = (
                hex_digit(digits[2 * index]),
                hex_digit(digits[2 * index + 1]),
            ) else {
                return None;
            };
            bytes[index] = high << 4 | low;
            index += 1;
        }
        Some(Md5Hash(bytes))
    }
}

const fn hex_digit(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Md5Hash {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0
            .iter()
            .try_for_each(|byte| write!(formatter, "{byte:02x}"))
    }
}

impl fmt::Debug for Md5Hash {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Md5Hash({self})")
    }
}

/// A metadata map (`map<bytes>`), in the order received. Flume sends none.
pub type Meta = Vec<(String, Bytes)>;

/// What the client sends before its first call on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeRequest {
    /// The hash of the client's protocol.
    pub client_hash: Md5Hash,
    /// The client's protocol text, sent only after the server answered `NONE`.
    pub client_protocol: Option<String>,
    /// The client's guess of the server's hash (its own hash when it knows nothing).
    pub server_hash: Md5Hash,
    /// Plugin metadata.
    pub meta: Option<Meta>,
}

/// How far the server recognised the client, and so what follows the handshake answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeMatch {
    /// Both hashes known: the call follows, and nothing else is sent.
    Both,
    /// The client's protocol is known but its guess of the server's is wrong: the call
    /// follows, and the answer carries the server's protocol and hash.
    Client,
    /// The client's protocol is unknown: the call was not executed; the answer carries
    /// the server's protocol and hash and the client must resend with its protocol.
    None,
}

impl HandshakeMatch {
    const SYMBOLS: [HandshakeMatch; 3] = [
        HandshakeMatch::Both,
        HandshakeMatch::Client,
        HandshakeMatch::None,
    ];

    fn index(self) -> i32 {
        match self {
            HandshakeMatch::Both => 0,
            HandshakeMatch::Client => 1,
            HandshakeMatch::None => 2,
        }
    }
}

impl fmt::Display for HandshakeMatch {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            HandshakeMatch::Both => "BOTH",
            HandshakeMatch::Client => "CLIENT",
            HandshakeMatch::None => "NONE",
        })
    }
}

/// The server's answer to a [`HandshakeRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse {
    /// See [`HandshakeMatch`].
    pub matched: HandshakeMatch,
    /// The server's protocol text, sent unless `matched` is `BOTH`.
    pub server_protocol: Option<String>,
    /// The server's hash, sent unless `matched` is `BOTH`.
    pub server_hash: Option<Md5Hash>,
    /// Plugin metadata (Flume installs no plugins: null).
    pub meta: Option<Meta>,
}

impl HandshakeRequest {
    /// Appends the record's encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.client_hash.0);
        write_optional(out, self.client_protocol.as_deref(), write_str);
        out.extend_from_slice(&self.server_hash.0);
        write_optional(out, self.meta.as_deref(), write_bytes_map);
    }

    /// Reads the record.
    pub fn decode(reader: &mut Reader<'_>, limits: &CallLimits) -> Result<Self, ValueError> {
        let client_hash = Md5Hash(reader.read_fixed("handshake.clientHash")?);
        let client_protocol = reader.read_optional("handshake.clientProtocol", |reader| {
            reader.read_string("handshake.clientProtocol", limits.max_protocol_text_bytes)
        })?;
        let server_hash = Md5Hash(reader.read_fixed("handshake.serverHash")?);
        let meta = reader.read_optional("handshake.meta", |reader| {
            read_meta(reader, "handshake.meta", limits)
        })?;
        Ok(HandshakeRequest {
            client_hash,
            client_protocol,
            server_hash,
            meta,
        })
    }
}

impl HandshakeResponse {
    /// Appends the record's encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        crate::binary::write_int(out, self.matched.index());
        write_optional(out, self.server_protocol.as_deref(), write_str);
        write_optional(out, self.server_hash, |out, hash| {
            out.extend_from_slice(&hash.0)
        });
        write_optional(out, self.meta.as_deref(), write_bytes_map);
    }

    /// Reads the record.
    pub fn decode(reader: &mut Reader<'_>, limits: &CallLimits) -> Result<Self, ValueError> {
        let matched = HandshakeMatch::SYMBOLS
            [reader.read_enum("handshake.match", HandshakeMatch::SYMBOLS.len())?];
        let server_protocol = reader.read_optional("handshake.serverProtocol", |reader| {
            reader.read_string("handshake.serverProtocol", limits.max_protocol_text_bytes)
        })?;
        let server_hash = reader.read_optional("handshake.serverHash", |reader| {
            reader.read_fixed("handshake.serverHash").map(Md5Hash)
        })?;
        let meta = reader.read_optional("handshake.meta", |reader| {
            read_meta(reader, "handshake.meta", limits)
        })?;
        Ok(HandshakeResponse {
            matched,
            server_protocol,
            server_hash,
            meta,
        })
    }
}

/// The smallest `map<bytes>` entry: an empty key and an empty value.
const MIN_META_ENTRY_BYTES: usize = 2;

/// Reads a `map<bytes>` (handshake or call metadata).
pub(crate) fn read_meta(
    reader: &mut Reader<'_>,
    field: &'static str,
    limits: &CallLimits,
) -> Result<Meta, ValueError> {
    let mut meta = Meta::new();
    reader.read_blocks(
        field,
        limits.max_meta_entries,
        MIN_META_ENTRY_BYTES,
        &mut meta,
        |reader| {
            let key = reader.read_string(field, limits.max_string_bytes)?;
            let value = reader.read_bytes(field, usize::MAX)?;
            Ok((key, value))
        },
    )?;
    Ok(meta)
}

/// Appends a metadata map (used by the call encoders).
pub(crate) fn write_meta(out: &mut Vec<u8>, meta: &[(String, Bytes)]) {
    write_bytes_map(out, meta);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol_text::FLUME_PROTOCOL_MD5;

    #[test]
    fn a_java_first_handshake_encodes_to_the_reference_bytes() {
        let request = HandshakeRequest {
            client_hash: FLUME_PROTOCOL_MD5,
            client_protocol: None,
            server_hash: FLUME_PROTOCOL_MD5,
            meta: Some(Vec::new()),
        };
        let mut out = Vec::new();
        request.encode(&mut out);
        let hash = [
            0x86, 0xaa, 0xda, 0xe2, 0xc4, 0x54, 0x74, 0xc0, 0xfe, 0x93, 0xff, 0xd0, 0xf2, 0x35,
            0x0a, 0x65,
        ];
        let expected = [&hash[..], &[0x00], &hash[..], &[0x02, 0x00]].concat();
        assert_eq!(out, expected);
        let bytes = Bytes::from(out);
        let mut reader = Reader::new(&bytes);
        assert_eq!(
            HandshakeRequest::decode(&mut reader, &CallLimits::default()).unwrap(),
            request
        );
        reader.finish("handshake").unwrap();
    }

    #[test]
    fn a_both_answer_is_four_bytes() {
        let response = HandshakeResponse {
            matched: HandshakeMatch::Both,
            server_protocol: None,
            server_hash: None,
            meta: None,
        };
        let mut out = Vec::new();
        response.encode(&mut out);
        assert_eq!(out, [0x00, 0x00, 0x00, 0x00]);
    }

    #[test]
    fn hashes_print_and_parse_as_hex() {
        let hash = Md5Hash::from_hex("86aadae2c45474c0fe93ffd0f2350a65").unwrap();
        assert_eq!(hash, FLUME_PROTOCOL_MD5);
        assert_eq!(hash.to_string(), "86aadae2c45474c0fe93ffd0f2350a65");
        assert_eq!(Md5Hash::from_hex("86aa"), None);
        assert_eq!(Md5Hash::from_hex("g6aadae2c45474c0fe93ffd0f2350a65"), None);
    }
}
