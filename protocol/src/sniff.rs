//! Recognising a peer that does not speak Millrace from its first bytes.
//!
//! Each side's first four bytes must be [`MAGIC`]. When they are not, the decoder names
//! what the peer most likely is, so the server can answer with a hint that the peer's own
//! tooling will show (an HTTP 400 page, a TLS alert) and close, instead of waiting for a
//! frame that will never come.
//!
//! The verdict depends only on the bytes, never on how they were split into reads: while
//! the bytes so far could still become the magic or a known signature, the decoder waits
//! for more; the bytes that decided it are at most [`LONGEST_SIGNATURE_BYTES`].

use std::fmt;

use crate::frame::MAGIC;

/// What a non-Millrace peer looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LooksLike {
    /// An HTTP/1.x request (`GET `, `POST `, …), the HTTP/2 preface (`PRI `), or an HTTP
    /// response (`HTTP/`, when a client reached an HTTP server).
    Http,
    /// A TLS record (`0x16 0x03` is a ClientHello; a server answers with an alert,
    /// `0x15 0x03`).
    Tls,
    /// Anything else.
    Unknown,
}

impl fmt::Display for LooksLike {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LooksLike::Http => {
                "HTTP (wrong port? metrics and health are on channeld's HTTP address)"
            }
            LooksLike::Tls => "a TLS handshake (the Millrace protocol is plain TCP)",
            LooksLike::Unknown => "an unknown protocol",
        })
    }
}

/// The body of [`HTTP_HINT_REPLY`], kept apart so a test can check the Content-Length.
#[cfg(test)]
const HTTP_HINT_BODY: &str = "This port speaks the Millrace binary channel protocol, not HTTP.\n\
Metrics and health are served on channeld's HTTP address (default 127.0.0.1:41451).\n";

/// A complete HTTP/1.0 response: a browser or `curl` shows the body. The Content-Length
/// (149) is checked against the body by a test.
const HTTP_HINT_REPLY: &str = concat!(
    "HTTP/1.0 400 Bad Request\r\n",
    "Content-Type: text/plain; charset=utf-8\r\n",
    "Connection: close\r\n",
    "Content-Length: 149\r\n",
    "\r\n",
    "This port speaks the Millrace binary channel protocol, not HTTP.\n",
    "Metrics and health are served on channeld's HTTP address (default 127.0.0.1:41451).\n",
);

/// A TLS alert record: content type alert (`0x15`), record version TLS 1.0 (`0x03 0x01`,
/// which every TLS client accepts in an alert), length 2, level fatal (`0x02`),
/// description `handshake_failure` (`0x28` = 40). The client reports a failed handshake at
/// once instead of waiting for a ServerHello until it times out.
const TLS_HINT_REPLY: &[u8] = &[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28];

const UNKNOWN_HINT_REPLY: &str = "millrace: this port speaks the Millrace binary protocol, which \
starts with the magic bytes 89 4d 52 43; closing the connection.\n";

impl LooksLike {
    /// Bytes a server may send to such a peer before closing, in a form the peer's own
    /// software will show the user.
    pub fn hint_reply(self) -> &'static [u8] {
        match self {
            LooksLike::Http => HTTP_HINT_REPLY.as_bytes(),
            LooksLike::Tls => TLS_HINT_REPLY,
            LooksLike::Unknown => UNKNOWN_HINT_REPLY.as_bytes(),
        }
    }
}

/// Openings of HTTP messages: request methods (RFC 9110 and WebDAV's common ones), the
/// HTTP/2 connection preface and a response status line.
const HTTP_SIGNATURES: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
    b"PRI ",
    b"HTTP/",
];

/// The longest signature: the most bytes the decoder waits for before deciding.
pub const LONGEST_SIGNATURE_BYTES: usize = 8;

/// TLS record content types: change_cipher_spec (20), alert (21), handshake (22),
/// application_data (23).
const TLS_RECORD_TYPES: std::ops::RangeInclusive<u8> = 0x14..=0x17;
/// The major version byte of every TLS (and SSL 3.0) record.
const TLS_MAJOR_VERSION: u8 = 0x03;
/// Record type plus major version.
const TLS_SIGNATURE_BYTES: usize = 2;

/// The verdict on a connection's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Preamble {
    /// The bytes so far could still be the magic or a known signature: wait for more.
    Incomplete,
    /// The magic is there.
    Present,
    /// The peer is not a Millrace peer; the first `decided_after_bytes` bytes show it.
    Foreign {
        looks_like: LooksLike,
        decided_after_bytes: usize,
    },
}

/// How a byte prefix relates to a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    /// The signature is complete at the start of the prefix.
    Full,
    /// The prefix is shorter than the signature and agrees with it so far.
    Partial,
    None,
}

fn match_literal(prefix: &[u8], signature: &[u8]) -> Match {
    if prefix.starts_with(signature) {
        Match::Full
    } else if signature.starts_with(prefix) {
        Match::Partial
    } else {
        Match::None
    }
}

fn match_tls(prefix: &[u8]) -> Match {
    match prefix {
        [] => Match::Partial,
        [record_type] if TLS_RECORD_TYPES.contains(record_type) => Match::Partial,
        [record_type, major, ..]
            if TLS_RECORD_TYPES.contains(record_type) && *major == TLS_MAJOR_VERSION =>
        {
            Match::Full
        }
        _ => Match::None,
    }
}

/// Judges `prefix` as all there is so far: a partial match of the magic or of a signature
/// means "wait for more".
fn judge(prefix: &[u8]) -> Preamble {
    match match_literal(prefix, &MAGIC) {
        Match::Full => return Preamble::Present,
        Match::Partial => return Preamble::Incomplete,
        Match::None => {}
    }
    let mut could_still_match = false;
    for signature in HTTP_SIGNATURES {
        match match_literal(prefix, signature) {
            Match::Full => {
                return Preamble::Foreign {
                    looks_like: LooksLike::Http,
                    decided_after_bytes: signature.len(),
                }
            }
            Match::Partial => could_still_match = true,
            Match::None => {}
        }
    }
    match match_tls(prefix) {
        Match::Full => {
            return Preamble::Foreign {
                looks_like: LooksLike::Tls,
                decided_after_bytes: TLS_SIGNATURE_BYTES,
            }
        }
        Match::Partial => could_still_match = true,
        Match::None => {}
    }
    if could_still_match {
        Preamble::Incomplete
    } else {
        Preamble::Foreign {
            looks_like: LooksLike::Unknown,
            decided_after_bytes: prefix.len(),
        }
    }
}

/// Judges a connection's first bytes. The verdict for a given byte stream is the same
/// however it is split: prefixes are judged shortest first, and the first decisive one
/// wins.
pub(crate) fn check_preamble(input: &[u8]) -> Preamble {
    let longest = input.len().min(LONGEST_SIGNATURE_BYTES.max(MAGIC.len()));
    for prefix_bytes in 1..=longest {
        match judge(&input[..prefix_bytes]) {
            Preamble::Incomplete => continue,
            decided => return decided,
        }
    }
    Preamble::Incomplete
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(input: &[u8]) -> Preamble {
        check_preamble(input)
    }

    fn foreign(looks_like: LooksLike, decided_after_bytes: usize) -> Preamble {
        Preamble::Foreign {
            looks_like,
            decided_after_bytes,
        }
    }

    #[test]
    fn magic_is_accepted_only_when_complete() {
        assert_eq!(verdict(&[]), Preamble::Incomplete);
        assert_eq!(verdict(&MAGIC[..3]), Preamble::Incomplete);
        assert_eq!(verdict(&MAGIC), Preamble::Present);
        assert_eq!(verdict(&[&MAGIC[..], b"more"].concat()), Preamble::Present);
    }

    #[test]
    fn http_requests_are_recognised_by_their_method() {
        assert_eq!(verdict(b"GET / HTTP/1.1\r\n"), foreign(LooksLike::Http, 4));
        assert_eq!(verdict(b"POST /x"), foreign(LooksLike::Http, 5));
        assert_eq!(verdict(b"PUT /x"), foreign(LooksLike::Http, 4));
        assert_eq!(verdict(b"HEAD /"), foreign(LooksLike::Http, 5));
        assert_eq!(verdict(b"OPTIONS *"), foreign(LooksLike::Http, 8));
        assert_eq!(verdict(b"PRI * HTTP/2.0"), foreign(LooksLike::Http, 4));
    }

    #[test]
    fn http_response_from_a_server_is_recognised() {
        assert_eq!(
            verdict(b"HTTP/1.1 400 Bad Request"),
            foreign(LooksLike::Http, 5)
        );
    }

    #[test]
    fn partial_method_waits_for_more_bytes() {
        assert_eq!(verdict(b"P"), Preamble::Incomplete);
        assert_eq!(verdict(b"PU"), Preamble::Incomplete);
        assert_eq!(verdict(b"OPTIONS"), Preamble::Incomplete);
    }

    #[test]
    fn tls_client_hello_is_recognised() {
        assert_eq!(
            verdict(&[0x16, 0x03, 0x01, 0x02, 0x00]),
            foreign(LooksLike::Tls, 2)
        );
        assert_eq!(verdict(&[0x16]), Preamble::Incomplete);
        assert_eq!(verdict(&[0x15, 0x03, 0x03]), foreign(LooksLike::Tls, 2));
    }

    #[test]
    fn anything_else_is_unknown_as_soon_as_no_signature_fits() {
        assert_eq!(verdict(b"SSH-2.0-OpenSSH"), foreign(LooksLike::Unknown, 1));
        assert_eq!(verdict(&[0x89, b'M', b'X']), foreign(LooksLike::Unknown, 3));
        assert_eq!(verdict(b"GEX"), foreign(LooksLike::Unknown, 3));
        assert_eq!(verdict(&[0x16, 0x01]), foreign(LooksLike::Unknown, 2));
    }

    #[test]
    fn verdict_does_not_depend_on_how_bytes_arrive() {
        let streams: [&[u8]; 4] = [b"GET / HTTP/1.1", b"SSH-2.0", &[0x16, 0x03, 0x01], b"GEX"];
        for stream in streams {
            let whole = verdict(stream);
            let first_decisive = (1..=stream.len())
                .map(|len| verdict(&stream[..len]))
                .find(|verdict| *verdict != Preamble::Incomplete);
            assert_eq!(first_decisive, Some(whole));
        }
    }

    #[test]
    fn no_signature_is_longer_than_the_documented_wait() {
        for signature in HTTP_SIGNATURES {
            assert!(signature.len() <= LONGEST_SIGNATURE_BYTES);
            assert_ne!(signature[0], MAGIC[0]);
        }
    }

    #[test]
    fn http_hint_is_a_complete_response_with_the_right_content_length() {
        let reply = std::str::from_utf8(LooksLike::Http.hint_reply()).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, HTTP_HINT_BODY);
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
    }

    #[test]
    fn tls_hint_is_one_fatal_alert_record() {
        let reply = LooksLike::Tls.hint_reply();
        assert_eq!(reply[0], 0x15);
        assert_eq!(
            usize::from(u16::from_be_bytes([reply[3], reply[4]])),
            reply.len() - 5
        );
    }
}
