//! Little-endian primitives shared by every frame: a bounds-checked reader over a frame's
//! payload and the [`OutputBuffer`] trait that encoders write into.
//!
//! Every read is checked against the bytes that are actually there, and nothing here
//! allocates: strings come back as `&str` borrowed from the frame.

use bytes::BytesMut;

use crate::error::{EncodeError, Malformation};

/// Bytes of the `u8` length in front of short strings (channel names, stat names).
pub(crate) const SHORT_STRING_LENGTH_BYTES: usize = 1;
/// Bytes of the `u16` length in front of longer strings (header keys and values,
/// messages, the auth token).
pub(crate) const STRING_LENGTH_BYTES: usize = 2;

/// The longest string a `u8` length can describe.
pub const MAX_SHORT_STRING_BYTES: usize = u8::MAX as usize;
/// The longest string a `u16` length can describe.
pub const MAX_STRING_BYTES: usize = u16::MAX as usize;
/// The longest string a `u32` length can describe (the frame limit is what bounds it in
/// practice).
pub const MAX_LONG_STRING_BYTES: usize = u32::MAX as usize;
/// Bytes of a `str8` at its longest.
pub(crate) const LONGEST_SHORT_STRING_BYTES: usize =
    SHORT_STRING_LENGTH_BYTES + MAX_SHORT_STRING_BYTES;
/// Bytes of a `str16` at its longest.
pub(crate) const LONGEST_STRING_BYTES: usize = STRING_LENGTH_BYTES + MAX_STRING_BYTES;

/// A buffer owned by the caller that frames are appended to.
///
/// Encoders only ever append, then patch the length prefix of the frame they wrote, or cut
/// the buffer back to where the frame started when encoding fails, so a buffer never holds
/// half a frame. Bytes that were in the buffer before are never touched.
pub trait OutputBuffer {
    /// Bytes currently in the buffer.
    fn filled_bytes(&self) -> usize;
    /// Appends `bytes` at the end.
    fn append_bytes(&mut self, bytes: &[u8]);
    /// Overwrites already-written bytes starting at `offset`.
    ///
    /// Callers only patch bytes they wrote themselves, so `offset + bytes.len()` is
    /// always within [`filled_bytes`](Self::filled_bytes).
    fn overwrite_bytes(&mut self, offset: usize, bytes: &[u8]);
    /// Cuts the buffer back to `filled_bytes` bytes (never grows it).
    fn cut_to(&mut self, filled_bytes: usize);
}

impl OutputBuffer for Vec<u8> {
    fn filled_bytes(&self) -> usize {
        self.len()
    }

    fn append_bytes(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    fn overwrite_bytes(&mut self, offset: usize, bytes: &[u8]) {
        if let Some(target) = self.get_mut(offset..offset + bytes.len()) {
            target.copy_from_slice(bytes);
        }
    }

    fn cut_to(&mut self, filled_bytes: usize) {
        self.truncate(filled_bytes);
    }
}

impl OutputBuffer for BytesMut {
    fn filled_bytes(&self) -> usize {
        self.len()
    }

    fn append_bytes(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    fn overwrite_bytes(&mut self, offset: usize, bytes: &[u8]) {
        if let Some(target) = self.get_mut(offset..offset + bytes.len()) {
            target.copy_from_slice(bytes);
        }
    }

    fn cut_to(&mut self, filled_bytes: usize) {
        self.truncate(filled_bytes);
    }
}

/// Checks that `text` fits a string field of at most `max_bytes`.
pub(crate) fn check_length(
    field: &'static str,
    text: &str,
    max_bytes: usize,
) -> Result<(), EncodeError> {
    if text.len() > max_bytes {
        return Err(EncodeError::FieldTooLong {
            field,
            len_bytes: text.len(),
            max_bytes,
        });
    }
    Ok(())
}

pub(crate) fn put_u8<O: OutputBuffer + ?Sized>(out: &mut O, value: u8) {
    out.append_bytes(&[value]);
}

pub(crate) fn put_u16<O: OutputBuffer + ?Sized>(out: &mut O, value: u16) {
    out.append_bytes(&value.to_le_bytes());
}

pub(crate) fn put_u32<O: OutputBuffer + ?Sized>(out: &mut O, value: u32) {
    out.append_bytes(&value.to_le_bytes());
}

pub(crate) fn put_u64<O: OutputBuffer + ?Sized>(out: &mut O, value: u64) {
    out.append_bytes(&value.to_le_bytes());
}

/// Writes a string with a `u8` length. The caller has checked the length already.
pub(crate) fn put_short_string<O: OutputBuffer + ?Sized>(out: &mut O, text: &str) {
    debug_assert!(text.len() <= MAX_SHORT_STRING_BYTES);
    put_u8(out, text.len() as u8);
    out.append_bytes(text.as_bytes());
}

/// Writes a string with a `u16` length. The caller has checked the length already.
pub(crate) fn put_string<O: OutputBuffer + ?Sized>(out: &mut O, text: &str) {
    debug_assert!(text.len() <= MAX_STRING_BYTES);
    put_u16(out, text.len() as u16);
    out.append_bytes(text.as_bytes());
}

/// Writes a string with a `u32` length. The caller has checked the length already (the
/// frame limit bounds it far below `u32::MAX`).
pub(crate) fn put_long_string<O: OutputBuffer + ?Sized>(out: &mut O, text: &str) {
    debug_assert!(text.len() <= MAX_LONG_STRING_BYTES);
    put_u32(out, text.len() as u32);
    out.append_bytes(text.as_bytes());
}

/// A cursor over one frame's payload. Every method either returns a value that lies
/// entirely within the payload or a [`Malformation`] naming the field.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, position: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.position
    }

    pub(crate) fn remaining_bytes(&self) -> usize {
        self.bytes.len() - self.position
    }

    pub(crate) fn take(
        &mut self,
        len: usize,
        field: &'static str,
    ) -> Result<&'a [u8], Malformation> {
        let end = self
            .position
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(Malformation::Truncated { field })?;
        let taken = &self.bytes[self.position..end];
        self.position = end;
        Ok(taken)
    }

    fn take_array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Malformation> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N, field)?);
        Ok(array)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, Malformation> {
        Ok(self.take_array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, Malformation> {
        self.take_array(field).map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, Malformation> {
        self.take_array(field).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, Malformation> {
        self.take_array(field).map(u64::from_le_bytes)
    }

    fn utf8(bytes: &'a [u8], field: &'static str) -> Result<&'a str, Malformation> {
        std::str::from_utf8(bytes).map_err(|_| Malformation::InvalidUtf8 { field })
    }

    /// A string with a `u8` length in front.
    pub(crate) fn short_string(&mut self, field: &'static str) -> Result<&'a str, Malformation> {
        let len = usize::from(self.u8(field)?);
        Self::utf8(self.take(len, field)?, field)
    }

    /// A string with a `u16` length in front.
    pub(crate) fn string(&mut self, field: &'static str) -> Result<&'a str, Malformation> {
        let len = usize::from(self.u16(field)?);
        Self::utf8(self.take(len, field)?, field)
    }

    /// A string with a `u32` length in front. The length is checked against the bytes
    /// that are there before anything is copied.
    pub(crate) fn long_string(&mut self, field: &'static str) -> Result<&'a str, Malformation> {
        let len = self.u32(field)? as usize;
        Self::utf8(self.take(len, field)?, field)
    }

    /// A `u8` that must be 0 (false) or 1 (true).
    pub(crate) fn flag(&mut self, field: &'static str) -> Result<bool, Malformation> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(Malformation::InvalidValue {
                field,
                value: u64::from(other),
                expected: "0 or 1",
            }),
        }
    }

    /// Fails unless every byte of the payload was read: a frame with bytes left over is
    /// as malformed as one that is cut short.
    pub(crate) fn finish(self) -> Result<(), Malformation> {
        match self.remaining_bytes() {
            0 => Ok(()),
            trailing_bytes => Err(Malformation::TrailingBytes { trailing_bytes }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_read_little_endian() {
        let bytes = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07];
        let mut reader = Reader::new(&bytes);
        assert_eq!(reader.u8("a"), Ok(0x01));
        assert_eq!(reader.u16("b"), Ok(0x0302));
        assert_eq!(reader.u32("c"), Ok(0x0706_0504));
        assert_eq!(reader.finish(), Ok(()));
    }

    #[test]
    fn reading_past_the_end_names_the_field_and_consumes_nothing() {
        let bytes = [0x01, 0x02];
        let mut reader = Reader::new(&bytes);
        assert_eq!(
            reader.u32("max_events"),
            Err(Malformation::Truncated {
                field: "max_events"
            })
        );
        assert_eq!(reader.position(), 0);
    }

    #[test]
    fn string_length_larger_than_the_payload_is_truncation_not_a_panic() {
        let bytes = [0xFF, 0xFF, b'a'];
        let mut reader = Reader::new(&bytes);
        assert_eq!(
            reader.string("message"),
            Err(Malformation::Truncated { field: "message" })
        );
    }

    #[test]
    fn invalid_utf8_is_reported_with_its_field() {
        let bytes = [0x02, 0xC3, 0x28];
        let mut reader = Reader::new(&bytes);
        assert_eq!(
            reader.short_string("channel"),
            Err(Malformation::InvalidUtf8 { field: "channel" })
        );
    }

    #[test]
    fn long_string_length_past_the_payload_is_truncation_and_flags_are_zero_or_one() {
        let bytes = [0xFF, 0xFF, 0xFF, 0x7F, b'a'];
        let mut reader = Reader::new(&bytes);
        assert_eq!(
            reader.long_string("report"),
            Err(Malformation::Truncated { field: "report" })
        );
        let mut out = Vec::new();
        put_long_string(&mut out, "{}");
        put_u8(&mut out, 1);
        put_u8(&mut out, 2);
        let mut reader = Reader::new(&out);
        assert_eq!(reader.long_string("report"), Ok("{}"));
        assert_eq!(reader.flag("execute"), Ok(true));
        assert_eq!(
            reader.flag("execute"),
            Err(Malformation::InvalidValue {
                field: "execute",
                value: 2,
                expected: "0 or 1"
            })
        );
    }

    #[test]
    fn leftover_bytes_are_reported_as_trailing() {
        let bytes = [0x01, 0x02, 0x03];
        let mut reader = Reader::new(&bytes);
        reader.u8("a").unwrap();
        assert_eq!(
            reader.finish(),
            Err(Malformation::TrailingBytes { trailing_bytes: 2 })
        );
    }

    #[test]
    fn vec_and_bytes_mut_buffers_behave_alike() {
        fn exercise<O: OutputBuffer + AsRef<[u8]>>(mut out: O) -> Vec<u8> {
            out.append_bytes(b"keep");
            let start = out.filled_bytes();
            put_u32(&mut out, 0);
            put_short_string(&mut out, "abc");
            out.overwrite_bytes(start, &7u32.to_le_bytes());
            let before_discarded_write = out.filled_bytes();
            put_u64(&mut out, u64::MAX);
            out.cut_to(before_discarded_write);
            out.as_ref().to_vec()
        }
        let expected = [b"keep".as_slice(), &7u32.to_le_bytes(), &[3], b"abc"].concat();
        assert_eq!(exercise(Vec::new()), expected);
        assert_eq!(exercise(BytesMut::new()), expected);
    }
}
