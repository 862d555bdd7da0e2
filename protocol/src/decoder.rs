//! Stateful, sans-IO decoders for each direction of a connection: [`RequestDecoder`] on the
//! server, [`ResponseDecoder`] on the client.
//!
//! A decoder is fed whatever bytes have arrived and returns a complete frame, `None` (more
//! bytes needed) or an error. It never reads a socket, never waits and never buffers on
//! its own: the caller owns the buffer. Contracts:
//!
//! * **Split invariance.** The frames and the error produced for a byte stream do not
//!   depend on how the stream is cut into reads.
//! * **Limits before allocation.** A length prefix above `max_frame_bytes` is an error as
//!   soon as its four bytes are there; nothing is allocated or waited for on its account.
//!   A server's first frame (the unauthenticated client's `Hello`) is held to the much
//!   smaller `max_hello_frame_bytes` the same way.
//!   A frame is parsed only once it is complete, and parsing allocates at most the frame's
//!   own strings (counts can never make it allocate more).
//! * **Early rejection.** A foreign protocol is recognised from its first bytes, an unknown
//!   or misdirected frame type from the frame header, before the payload arrives.
//! * **Errors are final.** After an error the decoder returns the same error forever: the
//!   connection is no longer in step and must be closed.

use bytes::{Bytes, BytesMut};

use crate::decode_error::DecodeError;
use crate::frame::{
    FrameType, RequestId, FRAME_HEADER_BYTES, FRAME_TYPE_BYTES, LENGTH_PREFIX_BYTES, MAGIC,
    REQUEST_ID_BYTES,
};
use crate::limits::DecodeLimits;
use crate::message::{Request, Response};
use crate::sniff::{check_preamble, Preamble};

/// A request and the id the client gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFrame {
    /// Copy it into the response.
    pub request_id: RequestId,
    /// The request.
    pub request: Request,
}

/// A response and the id of the request it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseFrame {
    /// The id of the request answered, or [`RequestId::CONNECTION`].
    pub request_id: RequestId,
    /// The response.
    pub response: Response,
}

/// Where a frame sits in the input, read from its header.
#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    /// Offset of the length prefix: after the magic for the first frame, else 0.
    frame_start: usize,
    /// Offset just past the frame.
    frame_end: usize,
    frame_type_byte: u8,
    request_id: RequestId,
}

impl FrameHeader {
    fn payload_start(&self) -> usize {
        self.frame_start + FRAME_HEADER_BYTES
    }
}

/// The size limit a frame header is checked against.
#[derive(Debug, Clone, Copy)]
enum FrameLimit {
    /// Any frame: `max_frame_bytes`.
    Frame(u32),
    /// A server's first frame, before the client is authenticated:
    /// `max_hello_frame_bytes`.
    Hello(u32),
}

/// Reads the magic (when `expect_preamble`) and a frame header from the start of `input`,
/// checking the length prefix against the limit as soon as it is there. `None` means more
/// bytes are needed before anything can be said.
fn read_frame_header(
    input: &[u8],
    expect_preamble: bool,
    limit: FrameLimit,
) -> Result<Option<FrameHeader>, DecodeError> {
    let frame_start = if expect_preamble {
        match check_preamble(input) {
            Preamble::Incomplete => return Ok(None),
            Preamble::Present => MAGIC.len(),
            Preamble::Foreign {
                looks_like,
                decided_after_bytes,
            } => {
                return Err(DecodeError::NotMillrace {
                    looks_like,
                    first_bytes: input[..decided_after_bytes].to_vec(),
                })
            }
        }
    } else {
        0
    };
    let frame = &input[frame_start..];
    let Some(length_bytes) = frame.first_chunk::<LENGTH_PREFIX_BYTES>() else {
        return Ok(None);
    };
    let length_prefix = u32::from_le_bytes(*length_bytes);
    let frame_bytes = LENGTH_PREFIX_BYTES as u64 + u64::from(length_prefix);
    match limit {
        FrameLimit::Frame(max_frame_bytes) if frame_bytes > u64::from(max_frame_bytes) => {
            return Err(DecodeError::FrameTooLarge {
                frame_bytes,
                max_frame_bytes,
            });
        }
        FrameLimit::Hello(max_hello_frame_bytes)
            if frame_bytes > u64::from(max_hello_frame_bytes) =>
        {
            return Err(DecodeError::HelloTooLarge {
                frame_bytes,
                max_hello_frame_bytes,
            });
        }
        FrameLimit::Frame(_) | FrameLimit::Hello(_) => {}
    }
    if (length_prefix as usize) < FRAME_TYPE_BYTES + REQUEST_ID_BYTES {
        return Err(DecodeError::FrameTooShort { length_prefix });
    }
    let Some(header) = frame.first_chunk::<FRAME_HEADER_BYTES>() else {
        return Ok(None);
    };
    let frame_type_byte = header[LENGTH_PREFIX_BYTES];
    let mut request_id_bytes = [0u8; REQUEST_ID_BYTES];
    request_id_bytes.copy_from_slice(&header[LENGTH_PREFIX_BYTES + FRAME_TYPE_BYTES..]);
    Ok(Some(FrameHeader {
        frame_start,
        // frame_bytes <= max_frame_bytes, a u32, so it fits a usize on every target
        // this crate builds for.
        frame_end: frame_start + frame_bytes as usize,
        frame_type_byte,
        request_id: RequestId(u32::from_le_bytes(request_id_bytes)),
    }))
}

/// Turns a frame type byte into a [`FrameType`], or the error for an unknown one.
fn known_frame_type(header: &FrameHeader) -> Result<FrameType, DecodeError> {
    FrameType::from_byte(header.frame_type_byte).ok_or(DecodeError::UnknownFrameType {
        frame_type: header.frame_type_byte,
        request_id: header.request_id,
    })
}

/// Where a decoder is in the life of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Before the peer's handshake frame: the magic comes first.
    Handshake,
    /// After a successful handshake.
    Open,
    /// After the server rejected the handshake (client side only): nothing may follow.
    Rejected,
    /// After an error, which is returned again on every call.
    Failed(DecodeError),
}

/// Decodes what a client sends: the magic and a `Hello`, then requests.
#[derive(Debug, Clone)]
pub struct RequestDecoder {
    limits: DecodeLimits,
    phase: Phase,
    hello_received: bool,
}

impl RequestDecoder {
    /// A decoder for a new connection.
    pub fn new(limits: DecodeLimits) -> Self {
        RequestDecoder {
            limits,
            phase: Phase::Handshake,
            hello_received: false,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> DecodeLimits {
        self.limits
    }

    /// True once the client's `Hello` has been decoded. Until then the server has sent
    /// nothing, so a refusal must go out as a handshake rejection
    /// ([`Response::HandshakeRejected`], preceded by the magic); afterwards as an ordinary
    /// [`Response::Error`].
    pub fn hello_received(&self) -> bool {
        self.hello_received
    }

    /// Decodes the next request at the front of `buffer`, removing its bytes. The frame
    /// is split off as shared [`Bytes`], so event bodies are not copied.
    pub fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<RequestFrame>, DecodeError> {
        let Some((header, frame_type)) = self.locate(buffer)? else {
            return Ok(None);
        };
        let frame = buffer.split_to(header.frame_end).freeze();
        self.parse(header, frame_type, frame).map(Some)
    }

    /// Decodes the next request at the front of `input` without consuming it; returns
    /// the request and how many bytes it took (magic included). The frame's bytes are
    /// copied once into a shared buffer that its events point into.
    pub fn decode_slice(
        &mut self,
        input: &[u8],
    ) -> Result<Option<(RequestFrame, usize)>, DecodeError> {
        let Some((header, frame_type)) = self.locate(input)? else {
            return Ok(None);
        };
        let frame = Bytes::copy_from_slice(&input[..header.frame_end]);
        self.parse(header, frame_type, frame)
            .map(|request| Some((request, header.frame_end)))
    }

    /// Finds a complete frame of an allowed type at the front of `input`. The first
    /// frame (the `Hello`) is held to `max_hello_frame_bytes`: until the handshake is
    /// done the client is not authenticated, so it may not make the server buffer more.
    fn locate(&mut self, input: &[u8]) -> Result<Option<(FrameHeader, FrameType)>, DecodeError> {
        let (expect_preamble, limit) = match &self.phase {
            Phase::Handshake => (true, FrameLimit::Hello(self.limits.max_hello_frame_bytes())),
            Phase::Open | Phase::Rejected => {
                (false, FrameLimit::Frame(self.limits.max_frame_bytes()))
            }
            Phase::Failed(error) => return Err(error.clone()),
        };
        let located = read_frame_header(input, expect_preamble, limit).and_then(|header| {
            let Some(header) = header else {
                return Ok(None);
            };
            let frame_type = known_frame_type(&header)?;
            self.check_allowed(frame_type, header.request_id)?;
            Ok((input.len() >= header.frame_end).then_some((header, frame_type)))
        });
        located.inspect_err(|error| self.fail(error))
    }

    fn check_allowed(
        &self,
        frame_type: FrameType,
        request_id: RequestId,
    ) -> Result<(), DecodeError> {
        let expected = match (&self.phase, frame_type) {
            (Phase::Handshake, FrameType::Hello) => return Ok(()),
            (Phase::Handshake, _) => "a Hello frame first",
            (_, FrameType::Hello) => "a request (the handshake is already done)",
            (_, request) if request.is_request() => return Ok(()),
            _ => "a request frame, not a response",
        };
        Err(DecodeError::UnexpectedFrame {
            frame_type,
            request_id,
            expected,
        })
    }

    fn parse(
        &mut self,
        header: FrameHeader,
        frame_type: FrameType,
        frame: Bytes,
    ) -> Result<RequestFrame, DecodeError> {
        let payload = frame.slice(header.payload_start()..);
        match Request::parse(frame_type, &payload) {
            Ok(request) => {
                self.phase = Phase::Open;
                self.hello_received = true;
                Ok(RequestFrame {
                    request_id: header.request_id,
                    request,
                })
            }
            Err(problem) => {
                let error = DecodeError::Malformed {
                    frame_type,
                    request_id: header.request_id,
                    problem,
                };
                self.fail(&error);
                Err(error)
            }
        }
    }

    fn fail(&mut self, error: &DecodeError) {
        self.phase = Phase::Failed(error.clone());
    }
}

/// Decodes what a server sends: the magic and a handshake answer, then responses.
#[derive(Debug, Clone)]
pub struct ResponseDecoder {
    limits: DecodeLimits,
    phase: Phase,
}

impl ResponseDecoder {
    /// A decoder for a new connection.
    pub fn new(limits: DecodeLimits) -> Self {
        ResponseDecoder {
            limits,
            phase: Phase::Handshake,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> DecodeLimits {
        self.limits
    }

    /// Lowers the largest accepted frame to `max_frame_bytes` when that is below the
    /// current limit (never below the protocol minimum): a client that announced a
    /// generous limit holds the server to the limit the server announced for itself,
    /// the most it ever sends.
    pub fn lower_max_frame_bytes(&mut self, max_frame_bytes: u32) {
        if let Ok(lowered) = DecodeLimits::new(max_frame_bytes) {
            if lowered.max_frame_bytes() < self.limits.max_frame_bytes() {
                self.limits = lowered;
            }
        }
    }

    /// Decodes the next response at the front of `buffer`, removing its bytes. The frame
    /// is split off as shared [`Bytes`], so event bodies are not copied.
    pub fn decode(&mut self, buffer: &mut BytesMut) -> Result<Option<ResponseFrame>, DecodeError> {
        let Some((header, frame_type)) = self.locate(buffer)? else {
            return Ok(None);
        };
        let frame = buffer.split_to(header.frame_end).freeze();
        self.parse(header, frame_type, frame).map(Some)
    }

    /// Decodes the next response at the front of `input` without consuming it; returns
    /// the response and how many bytes it took (magic included).
    pub fn decode_slice(
        &mut self,
        input: &[u8],
    ) -> Result<Option<(ResponseFrame, usize)>, DecodeError> {
        let Some((header, frame_type)) = self.locate(input)? else {
            return Ok(None);
        };
        let frame = Bytes::copy_from_slice(&input[..header.frame_end]);
        self.parse(header, frame_type, frame)
            .map(|response| Some((response, header.frame_end)))
    }

    fn locate(&mut self, input: &[u8]) -> Result<Option<(FrameHeader, FrameType)>, DecodeError> {
        let expect_preamble = match &self.phase {
            Phase::Handshake => true,
            Phase::Open | Phase::Rejected => false,
            Phase::Failed(error) => return Err(error.clone()),
        };
        let limit = FrameLimit::Frame(self.limits.max_frame_bytes());
        let located = read_frame_header(input, expect_preamble, limit).and_then(|header| {
            let Some(header) = header else {
                return Ok(None);
            };
            let frame_type = known_frame_type(&header)?;
            self.check_allowed(frame_type, header.request_id)?;
            Ok((input.len() >= header.frame_end).then_some((header, frame_type)))
        });
        located.inspect_err(|error| self.phase = Phase::Failed(error.clone()))
    }

    fn check_allowed(
        &self,
        frame_type: FrameType,
        request_id: RequestId,
    ) -> Result<(), DecodeError> {
        let expected = match (&self.phase, frame_type) {
            (Phase::Handshake, FrameType::HelloAccepted | FrameType::Error) => return Ok(()),
            (Phase::Handshake, _) => "HelloAccepted or a handshake rejection first",
            (Phase::Rejected, _) => "nothing after a handshake rejection",
            (_, FrameType::HelloAccepted) => "a response (the handshake is already done)",
            (_, response) if !response.is_request() => return Ok(()),
            _ => "a response frame, not a request",
        };
        Err(DecodeError::UnexpectedFrame {
            frame_type,
            request_id,
            expected,
        })
    }

    fn parse(
        &mut self,
        header: FrameHeader,
        frame_type: FrameType,
        frame: Bytes,
    ) -> Result<ResponseFrame, DecodeError> {
        let payload = frame.slice(header.payload_start()..);
        let during_handshake = self.phase == Phase::Handshake;
        match Response::parse(frame_type, &payload, during_handshake) {
            Ok(response) => {
                self.phase = match response {
                    Response::HandshakeRejected(_) => Phase::Rejected,
                    _ => Phase::Open,
                };
                Ok(ResponseFrame {
                    request_id: header.request_id,
                    response,
                })
            }
            Err(problem) => {
                let error = DecodeError::Malformed {
                    frame_type,
                    request_id: header.request_id,
                    problem,
                };
                self.phase = Phase::Failed(error.clone());
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::Encoder;
    use crate::error_response::ErrorResponse;
    use crate::limits::HELLO_FRAME_BYTES_BEFORE_TOKEN;
    use crate::limits::{
        DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_HELLO_FRAME_BYTES, MIN_MAX_FRAME_BYTES,
    };
    use crate::message::{Hello, HelloAccepted};
    use crate::sniff::LooksLike;

    fn hello_bytes() -> Vec<u8> {
        let mut out = Vec::new();
        Encoder::default()
            .encode_request(RequestId(1), &Request::Hello(Hello::new("t")), &mut out)
            .unwrap();
        out
    }

    fn accepted_bytes() -> Vec<u8> {
        let mut out = Vec::new();
        let accepted = HelloAccepted {
            version: 1,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            server_name: "s".into(),
        };
        Encoder::default()
            .encode_response(RequestId(1), &Response::HelloAccepted(accepted), &mut out)
            .unwrap();
        out
    }

    fn request_bytes(request_id: u32, request: &Request) -> Vec<u8> {
        let mut out = Vec::new();
        Encoder::default()
            .encode_request(RequestId(request_id), request, &mut out)
            .unwrap();
        out
    }

    fn server_decoder() -> RequestDecoder {
        RequestDecoder::new(DecodeLimits::default())
    }

    fn client_decoder() -> ResponseDecoder {
        ResponseDecoder::new(DecodeLimits::default())
    }

    /// A decoder that has already read a Hello.
    fn open_server_decoder() -> RequestDecoder {
        let mut decoder = server_decoder();
        decoder.decode_slice(&hello_bytes()).unwrap().unwrap();
        decoder
    }

    #[test]
    fn oversized_length_prefix_is_rejected_before_allocating() {
        let mut decoder = open_server_decoder();
        // Only the four length bytes have arrived; the frame would be 4 GiB.
        let mut buffer = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        assert_eq!(
            decoder.decode(&mut buffer),
            Err(DecodeError::FrameTooLarge {
                frame_bytes: u64::from(u32::MAX) + 4,
                max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            })
        );
        assert_eq!(buffer.len(), 4, "nothing consumed, nothing buffered");
    }

    #[test]
    fn oversized_length_prefix_in_the_first_frame_is_rejected_right_after_the_magic() {
        let mut input = MAGIC.to_vec();
        input.extend_from_slice(&(DEFAULT_MAX_FRAME_BYTES).to_le_bytes());
        assert!(matches!(
            server_decoder().decode_slice(&input),
            Err(DecodeError::HelloTooLarge { .. })
        ));
    }

    #[test]
    fn a_first_frame_larger_than_a_hello_may_be_is_refused_from_its_length_prefix() {
        // The attack: the magic, a length just under max_frame_bytes, a Hello type byte.
        let limits = DecodeLimits::new(64 * 1024 * 1024).unwrap();
        let mut input = MAGIC.to_vec();
        input.extend_from_slice(&(64 * 1024 * 1024 - 4u32).to_le_bytes());
        input.push(FrameType::Hello.as_byte());
        assert_eq!(
            RequestDecoder::new(limits).decode_slice(&input),
            Err(DecodeError::HelloTooLarge {
                frame_bytes: 64 * 1024 * 1024,
                max_hello_frame_bytes: DEFAULT_MAX_HELLO_FRAME_BYTES,
            })
        );
    }

    #[test]
    fn a_hello_of_exactly_the_hello_limit_is_accepted_and_one_byte_more_is_not() {
        let token_bytes = DEFAULT_MAX_HELLO_FRAME_BYTES as usize - HELLO_FRAME_BYTES_BEFORE_TOKEN;
        for (extra, accepted) in [(0, true), (1, false)] {
            let hello =
                Hello::new("n".repeat(255)).with_auth_token("t".repeat(token_bytes + extra));
            let mut input = Vec::new();
            Encoder::default()
                .encode_request(RequestId(1), &Request::Hello(hello), &mut input)
                .unwrap();
            assert_eq!(
                input.len() - MAGIC.len(),
                DEFAULT_MAX_HELLO_FRAME_BYTES as usize + extra
            );
            let verdict = server_decoder().decode_slice(&input);
            assert_eq!(verdict.is_ok(), accepted, "{verdict:?}");
        }
    }

    #[test]
    fn frames_after_the_hello_may_use_the_whole_frame_limit() {
        let mut decoder = open_server_decoder();
        let large = DEFAULT_MAX_HELLO_FRAME_BYTES * 10;
        let header = [
            &large.to_le_bytes()[..],
            &[FrameType::Put.as_byte(), 2, 0, 0, 0],
        ]
        .concat();
        assert_eq!(
            decoder.decode_slice(&header),
            Ok(None),
            "waits for the rest"
        );
    }

    #[test]
    fn frame_of_exactly_max_frame_bytes_is_accepted_and_one_more_is_not() {
        let limits = DecodeLimits::new(MIN_MAX_FRAME_BYTES).unwrap();
        let largest_length_prefix = MIN_MAX_FRAME_BYTES - LENGTH_PREFIX_BYTES as u32;
        for (length_prefix, accepted) in [
            (largest_length_prefix, true),
            (largest_length_prefix + 1, false),
        ] {
            let mut decoder = RequestDecoder::new(limits);
            decoder.decode_slice(&hello_bytes()).unwrap().unwrap();
            let header = [
                &length_prefix.to_le_bytes()[..],
                &[FrameType::Ping.as_byte(), 2, 0, 0, 0],
            ]
            .concat();
            let verdict = decoder.decode_slice(&header);
            assert_eq!(verdict.is_ok(), accepted, "{verdict:?}");
        }
    }

    #[test]
    fn length_prefix_shorter_than_the_header_is_rejected() {
        let mut decoder = open_server_decoder();
        assert_eq!(
            decoder.decode_slice(&[4, 0, 0, 0]),
            Err(DecodeError::FrameTooShort { length_prefix: 4 })
        );
    }

    #[test]
    fn http_request_to_the_protocol_port_is_not_millrace() {
        assert_eq!(
            server_decoder().decode_slice(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Err(DecodeError::NotMillrace {
                looks_like: LooksLike::Http,
                first_bytes: b"GET ".to_vec(),
            })
        );
    }

    #[test]
    fn tls_client_hello_is_not_millrace() {
        assert!(matches!(
            server_decoder().decode_slice(&[0x16, 0x03, 0x01, 0x00, 0xA5, 0x01]),
            Err(DecodeError::NotMillrace {
                looks_like: LooksLike::Tls,
                ..
            })
        ));
    }

    #[test]
    fn unknown_protocol_is_not_millrace_from_the_first_byte() {
        assert!(matches!(
            server_decoder().decode_slice(b"SSH-2.0-OpenSSH_9.6\r\n"),
            Err(DecodeError::NotMillrace {
                looks_like: LooksLike::Unknown,
                ..
            })
        ));
    }

    #[test]
    fn client_connected_to_an_http_server_is_told_so() {
        assert!(matches!(
            client_decoder().decode_slice(b"HTTP/1.1 400 Bad Request\r\n"),
            Err(DecodeError::NotMillrace {
                looks_like: LooksLike::Http,
                ..
            })
        ));
    }

    #[test]
    fn partial_frame_consumes_nothing() {
        let bytes = hello_bytes();
        let mut buffer = BytesMut::from(&bytes[..bytes.len() - 1]);
        let mut decoder = server_decoder();
        assert_eq!(decoder.decode(&mut buffer), Ok(None));
        assert_eq!(buffer.len(), bytes.len() - 1);
        assert!(!decoder.hello_received());
        buffer.extend_from_slice(&bytes[bytes.len() - 1..]);
        assert!(decoder.decode(&mut buffer).unwrap().is_some());
        assert!(decoder.hello_received());
        assert!(buffer.is_empty());
    }

    #[test]
    fn decode_leaves_the_next_frame_in_the_buffer() {
        let ping = request_bytes(2, &Request::Ping);
        let mut buffer = BytesMut::from(&[hello_bytes(), ping.clone()].concat()[..]);
        let mut decoder = server_decoder();
        decoder.decode(&mut buffer).unwrap().unwrap();
        assert_eq!(&buffer[..], &ping[..]);
        let frame = decoder.decode(&mut buffer).unwrap().unwrap();
        assert_eq!(frame.request_id, RequestId(2));
        assert_eq!(frame.request, Request::Ping);
    }

    #[test]
    fn decode_slice_counts_the_magic_in_the_consumed_bytes() {
        let bytes = hello_bytes();
        let (_, used) = server_decoder().decode_slice(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn request_before_the_hello_is_unexpected() {
        let input = [&MAGIC[..], &request_bytes(1, &Request::Ping)].concat();
        assert!(matches!(
            server_decoder().decode_slice(&input),
            Err(DecodeError::UnexpectedFrame {
                frame_type: FrameType::Ping,
                ..
            })
        ));
    }

    #[test]
    fn request_without_the_magic_is_not_millrace() {
        let input = request_bytes(1, &Request::Ping);
        assert!(matches!(
            server_decoder().decode_slice(&input),
            Err(DecodeError::NotMillrace { .. })
        ));
    }

    #[test]
    fn second_hello_is_unexpected() {
        let mut decoder = open_server_decoder();
        let again = hello_bytes();
        assert!(matches!(
            decoder.decode_slice(&again[MAGIC.len()..]),
            Err(DecodeError::UnexpectedFrame {
                frame_type: FrameType::Hello,
                ..
            })
        ));
    }

    #[test]
    fn response_sent_to_the_server_is_unexpected() {
        let mut decoder = open_server_decoder();
        let mut ok = Vec::new();
        Encoder::default()
            .encode_response(RequestId(5), &Response::Ok, &mut ok)
            .unwrap();
        assert_eq!(
            decoder.decode_slice(&ok),
            Err(DecodeError::UnexpectedFrame {
                frame_type: FrameType::Ok,
                request_id: RequestId(5),
                expected: "a request frame, not a response",
            })
        );
    }

    #[test]
    fn unknown_frame_type_is_rejected_from_the_header_before_the_payload_arrives() {
        let mut decoder = open_server_decoder();
        // Announces a 1000-byte payload, but only the header is here.
        let header = [&1005u32.to_le_bytes()[..], &[0x7E], &9u32.to_le_bytes()].concat();
        assert_eq!(
            decoder.decode_slice(&header),
            Err(DecodeError::UnknownFrameType {
                frame_type: 0x7E,
                request_id: RequestId(9)
            })
        );
    }

    #[test]
    fn errors_are_returned_again_on_every_later_call() {
        let mut decoder = open_server_decoder();
        let first = decoder.decode_slice(&[1, 0, 0, 0]);
        assert!(first.is_err());
        assert_eq!(
            decoder.decode_slice(&request_bytes(2, &Request::Ping)),
            first
        );
        assert_eq!(
            decoder.decode(&mut BytesMut::new()).map(|_| ()),
            first.map(|_| ())
        );
    }

    #[test]
    fn nothing_may_follow_a_handshake_rejection() {
        let mut decoder = client_decoder();
        let mut input = Vec::new();
        let encoder = Encoder::default();
        encoder
            .encode_response(
                RequestId::CONNECTION,
                &Response::HandshakeRejected(ErrorResponse::too_many_connections(1024)),
                &mut input,
            )
            .unwrap();
        let (frame, used) = decoder.decode_slice(&input).unwrap().unwrap();
        assert!(matches!(frame.response, Response::HandshakeRejected(_)));
        let mut more = Vec::new();
        encoder
            .encode_response(RequestId(2), &Response::Ok, &mut more)
            .unwrap();
        assert_eq!(used, input.len());
        assert!(matches!(
            decoder.decode_slice(&more),
            Err(DecodeError::UnexpectedFrame {
                expected: "nothing after a handshake rejection",
                ..
            })
        ));
    }

    #[test]
    fn client_rejects_a_request_frame_from_the_server() {
        let mut decoder = client_decoder();
        decoder.decode_slice(&accepted_bytes()).unwrap().unwrap();
        assert!(matches!(
            decoder.decode_slice(&request_bytes(2, &Request::Commit)),
            Err(DecodeError::UnexpectedFrame {
                frame_type: FrameType::Commit,
                ..
            })
        ));
    }

    #[test]
    fn client_rejects_a_second_hello_accepted() {
        let mut decoder = client_decoder();
        let accepted = accepted_bytes();
        decoder.decode_slice(&accepted).unwrap().unwrap();
        assert!(matches!(
            decoder.decode_slice(&accepted[MAGIC.len()..]),
            Err(DecodeError::UnexpectedFrame {
                frame_type: FrameType::HelloAccepted,
                ..
            })
        ));
    }

    #[test]
    fn decoded_put_bodies_point_into_the_read_buffer() {
        let mut writer_out = Vec::new();
        let mut writer = Encoder::default().put_writer(&mut writer_out, RequestId(2));
        writer.push([("k", "v")], b"payload").unwrap();
        writer.finish().unwrap();
        let mut buffer = BytesMut::from(&[hello_bytes(), writer_out].concat()[..]);
        let mut decoder = server_decoder();
        decoder.decode(&mut buffer).unwrap().unwrap();
        let buffer_range = buffer.as_ptr_range();
        let frame = decoder.decode(&mut buffer).unwrap().unwrap();
        let Request::Put { events } = frame.request else {
            panic!("expected a put");
        };
        let body = events.shared_events().next().unwrap().body;
        assert_eq!(&body[..], b"payload");
        assert!(buffer_range.contains(&body.as_ptr()), "body was copied");
    }
}
