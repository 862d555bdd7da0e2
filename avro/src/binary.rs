//! Avro binary encoding, only the parts Flume's protocol uses (Avro specification, "Binary
//! Encoding"; summarised in `docs/avro.md` §2).
//!
//! ```text
//! int, long     zigzag, then base-128 varint, low group first:   0 -> 00, -1 -> 01, 1 -> 02
//! boolean       one byte, 00 or 01
//! string,bytes  long length n >= 0, then n bytes (strings UTF-8)
//! fixed(n)      n raw bytes, no length
//! enum          int index into the symbols
//! union         long branch index, then the value of that branch
//! array, map    blocks: long count n, then n items (a map item is string key, then value);
//!               a count of 0 ends the series; a negative count means |n| items and is
//!               followed by a long byte size of the block's items
//! record        its fields in order, no tags
//! ```
//!
//! Reading is over a [`Bytes`] so that `bytes` values come out as slices of the frame, not
//! copies. Every length and count is checked against what is left of the input and against
//! the caller's cap *before* anything is allocated on its account, so a hostile count can
//! never make a reader reserve more than the input could describe.

use bytes::Bytes;
use thiserror::Error;

/// The longest varint an Avro `long` may take: 64 bits in groups of 7.
const MAX_LONG_VARINT_BYTES: usize = 10;
/// The longest varint an Avro `int` may take: 32 bits in groups of 7.
const MAX_INT_VARINT_BYTES: usize = 5;
/// The varint continuation bit.
const CONTINUATION_BIT: u8 = 0x80;
/// The 7 payload bits of a varint byte.
const PAYLOAD_BITS: u8 = 0x7f;

/// What is wrong with Avro bytes. `field` names the value being read as `docs/avro.md`
/// does (`handshake.clientHash`, `event.headers`, `call.message`, …).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValueError {
    /// The input ends inside this value: `needed_bytes` more are required at `offset`,
    /// only `available_bytes` are left.
    #[error(
        "{field} is cut short at offset {offset}: needs {needed_bytes} bytes, \
         {available_bytes} left"
    )]
    Truncated {
        /// The value being read.
        field: &'static str,
        /// Where it starts in the message.
        offset: usize,
        /// Bytes it needs (for a length, the announced length; for a varint, 1).
        needed_bytes: u64,
        /// Bytes left in the message.
        available_bytes: usize,
    },
    /// A varint longer than its type allows (10 bytes for a long, 5 for an int), or one
    /// whose value does not fit the type.
    #[error("{field} at offset {offset} is not a valid Avro {kind} varint")]
    InvalidVarint {
        /// The value being read.
        field: &'static str,
        /// Where the varint starts.
        offset: usize,
        /// `int` or `long`.
        kind: &'static str,
    },
    /// A length or block byte size below zero.
    #[error("{field} at offset {offset} has a negative length {length}")]
    NegativeLength {
        /// The value being read.
        field: &'static str,
        /// Where the length starts.
        offset: usize,
        /// The value received.
        length: i64,
    },
    /// A string or bytes value longer than the cap for this field.
    #[error("{field} at offset {offset} is {length_bytes} bytes, more than the limit {max_bytes}")]
    TooLong {
        /// The value being read.
        field: &'static str,
        /// Where the value starts.
        offset: usize,
        /// Its announced length.
        length_bytes: u64,
        /// The cap.
        max_bytes: usize,
    },
    /// An array or map with more items than the cap for this field (counted over all its
    /// blocks), or more than the remaining input could hold at the smallest item size.
    #[error("{field} at offset {offset} announces {count} items, more than the limit {max_count}")]
    TooManyItems {
        /// The value being read.
        field: &'static str,
        /// Where the block count starts.
        offset: usize,
        /// Items announced so far, this block included.
        count: u64,
        /// The cap that was crossed.
        max_count: u64,
    },
    /// A block with a negative count whose byte size does not match its items.
    #[error(
        "{field}: the block at offset {offset} says its items take {declared_bytes} bytes, \
         they take {actual_bytes}"
    )]
    BlockSizeMismatch {
        /// The array or map.
        field: &'static str,
        /// Where the block count starts.
        offset: usize,
        /// The byte size the block declared.
        declared_bytes: u64,
        /// The bytes its items took.
        actual_bytes: u64,
    },
    /// A string that is not UTF-8.
    #[error("{field} at offset {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// The value being read.
        field: &'static str,
        /// Where the string's bytes start.
        offset: usize,
    },
    /// A boolean byte other than 0 or 1.
    #[error("{field} at offset {offset} is the byte {byte:#04x}, not a boolean (0 or 1)")]
    InvalidBoolean {
        /// The value being read.
        field: &'static str,
        /// Where the byte is.
        offset: usize,
        /// The byte received.
        byte: u8,
    },
    /// An enum index or union branch outside the schema.
    #[error("{field} at offset {offset} is {index}, expected 0 to {}", .choices - 1)]
    InvalidIndex {
        /// The value being read.
        field: &'static str,
        /// Where the index starts.
        offset: usize,
        /// The index received.
        index: i64,
        /// How many symbols or branches the schema has.
        choices: usize,
    },
    /// Bytes left over after the last value of a message.
    #[error("{trailing_bytes} bytes are left over after {after}")]
    TrailingBytes {
        /// The last value read.
        after: &'static str,
        /// How many bytes follow it.
        trailing_bytes: usize,
    },
}

/// Reads Avro values from the front of a message, keeping its position.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    input: &'a Bytes,
    position: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `input`.
    pub fn new(input: &'a Bytes) -> Self {
        Reader { input, position: 0 }
    }

    /// Offset of the next byte to read.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.input.len() - self.position
    }

    /// Fails with [`ValueError::TrailingBytes`] unless every byte was read.
    pub fn finish(&self, after: &'static str) -> Result<(), ValueError> {
        match self.remaining() {
            0 => Ok(()),
            trailing_bytes => Err(ValueError::TrailingBytes {
                after,
                trailing_bytes,
            }),
        }
    }

    fn truncated(&self, field: &'static str, offset: usize, needed_bytes: u64) -> ValueError {
        ValueError::Truncated {
            field,
            offset,
            needed_bytes,
            available_bytes: self.input.len().saturating_sub(offset),
        }
    }

    /// Reads a varint of at most `max_bytes` bytes as an unsigned 64-bit value.
    fn read_varint(
        &mut self,
        field: &'static str,
        max_bytes: usize,
        kind: &'static str,
    ) -> Result<u64, ValueError> {
        let start = self.position;
        let mut value: u64 = 0;
        for index in 0..max_bytes {
            let Some(&byte) = self.input.get(start + index) else {
                return Err(self.truncated(field, start + index, 1));
            };
            let shift = 7 * index as u32;
            let payload = u64::from(byte & PAYLOAD_BITS);
            // The last group of a long may only carry the one bit left of 64 (of an int,
            // the four bits left of 32); anything more does not fit the type.
            let room_bits = if kind == "int" { 32 } else { 64 } - shift;
            if room_bits < 7 && payload >> room_bits != 0 {
                return Err(ValueError::InvalidVarint {
                    field,
                    offset: start,
                    kind,
                });
            }
            value |= payload << shift;
            if byte & CONTINUATION_BIT == 0 {
                self.position = start + index + 1;
                return Ok(value);
            }
        }
        Err(ValueError::InvalidVarint {
            field,
            offset: start,
            kind,
        })
    }

    /// Reads an Avro `long`.
    pub fn read_long(&mut self, field: &'static str) -> Result<i64, ValueError> {
        let raw = self.read_varint(field, MAX_LONG_VARINT_BYTES, "long")?;
        Ok(zigzag_decode(raw))
    }

    /// Reads an Avro `int`.
    pub fn read_int(&mut self, field: &'static str) -> Result<i32, ValueError> {
        let raw = self.read_varint(field, MAX_INT_VARINT_BYTES, "int")?;
        // read_varint kept the value within 32 bits.
        Ok(zigzag_decode(raw) as i32)
    }

    /// Reads an Avro `boolean`.
    pub fn read_bool(&mut self, field: &'static str) -> Result<bool, ValueError> {
        let offset = self.position;
        match self.input.get(offset) {
            None => Err(self.truncated(field, offset, 1)),
            Some(0) => {
                self.position += 1;
                Ok(false)
            }
            Some(1) => {
                self.position += 1;
                Ok(true)
            }
            Some(&byte) => Err(ValueError::InvalidBoolean {
                field,
                offset,
                byte,
            }),
        }
    }

    /// Reads a length-prefixed value's length, checked against `max_bytes` and the input.
    fn read_length(&mut self, field: &'static str, max_bytes: usize) -> Result<usize, ValueError> {
        let offset = self.position;
        let length = self.read_long(field)?;
        if length < 0 {
            return Err(ValueError::NegativeLength {
                field,
                offset,
                length,
            });
        }
        let length_bytes = length as u64;
        if length_bytes > max_bytes as u64 {
            return Err(ValueError::TooLong {
                field,
                offset,
                length_bytes,
                max_bytes,
            });
        }
        if length_bytes > self.remaining() as u64 {
            return Err(self.truncated(field, self.position, length_bytes));
        }
        Ok(length_bytes as usize)
    }

    /// Reads an Avro `bytes` value of at most `max_bytes` as a slice of the input (no copy).
    pub fn read_bytes(
        &mut self,
        field: &'static str,
        max_bytes: usize,
    ) -> Result<Bytes, ValueError> {
        let length = self.read_length(field, max_bytes)?;
        let start = self.position;
        self.position += length;
        Ok(self.input.slice(start..start + length))
    }

    /// Reads an Avro `string` of at most `max_bytes`, borrowed from the input.
    pub fn read_str(
        &mut self,
        field: &'static str,
        max_bytes: usize,
    ) -> Result<&'a str, ValueError> {
        let length = self.read_length(field, max_bytes)?;
        let start = self.position;
        let text = std::str::from_utf8(&self.input[start..start + length]).map_err(|_| {
            ValueError::InvalidUtf8 {
                field,
                offset: start,
            }
        })?;
        self.position += length;
        Ok(text)
    }

    /// Reads an Avro `string` of at most `max_bytes` into an owned `String`.
    pub fn read_string(
        &mut self,
        field: &'static str,
        max_bytes: usize,
    ) -> Result<String, ValueError> {
        self.read_str(field, max_bytes).map(str::to_owned)
    }

    /// Reads a `fixed` of `N` bytes.
    pub fn read_fixed<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], ValueError> {
        let start = self.position;
        let Some(bytes) = self.input.get(start..start + N) else {
            return Err(self.truncated(field, start, N as u64));
        };
        let mut fixed = [0u8; N];
        fixed.copy_from_slice(bytes);
        self.position += N;
        Ok(fixed)
    }

    /// Reads an enum index, checked against the number of symbols.
    pub fn read_enum(&mut self, field: &'static str, symbols: usize) -> Result<usize, ValueError> {
        let offset = self.position;
        let index = self.read_int(field)?;
        usize::try_from(index)
            .ok()
            .filter(|&index| index < symbols)
            .ok_or(ValueError::InvalidIndex {
                field,
                offset,
                index: i64::from(index),
                choices: symbols,
            })
    }

    /// Reads a union branch index, checked against the number of branches.
    pub fn read_union_branch(
        &mut self,
        field: &'static str,
        branches: usize,
    ) -> Result<usize, ValueError> {
        let offset = self.position;
        let index = self.read_long(field)?;
        usize::try_from(index)
            .ok()
            .filter(|&index| index < branches)
            .ok_or(ValueError::InvalidIndex {
                field,
                offset,
                index,
                choices: branches,
            })
    }

    /// Reads a `["null", X]` union: `Some` with X read by `read_value`, or `None`.
    pub fn read_optional<T>(
        &mut self,
        field: &'static str,
        read_value: impl FnOnce(&mut Self) -> Result<T, ValueError>,
    ) -> Result<Option<T>, ValueError> {
        const NULL_BRANCH: usize = 0;
        const BRANCHES: usize = 2;
        match self.read_union_branch(field, BRANCHES)? {
            NULL_BRANCH => Ok(None),
            _ => read_value(self).map(Some),
        }
    }

    /// Reads an array or map: every block, appending what `read_item` reads for each item
    /// to `items`; returns how many were read.
    ///
    /// Each block's count, summed over the blocks, is checked before its items are read
    /// against `max_items` and against what the remaining input can hold when every item
    /// takes at least `min_item_bytes`; only then is room for them reserved, so a peer's
    /// count never reserves more than its bytes could fill. A block with a negative count
    /// must have items that take exactly its declared byte size.
    pub fn read_blocks<T>(
        &mut self,
        field: &'static str,
        max_items: usize,
        min_item_bytes: usize,
        items_out: &mut Vec<T>,
        mut read_item: impl FnMut(&mut Self) -> Result<T, ValueError>,
    ) -> Result<usize, ValueError> {
        let mut total_items: u64 = 0;
        loop {
            let block_offset = self.position;
            let count = self.read_long(field)?;
            if count == 0 {
                return Ok(total_items as usize);
            }
            let items = count.unsigned_abs();
            let declared_bytes = if count < 0 {
                let size_offset = self.position;
                let size = self.read_long(field)?;
                if size < 0 {
                    return Err(ValueError::NegativeLength {
                        field,
                        offset: size_offset,
                        length: size,
                    });
                }
                Some(size as u64)
            } else {
                None
            };
            let announced = total_items.saturating_add(items);
            if announced > max_items as u64 {
                return Err(ValueError::TooManyItems {
                    field,
                    offset: block_offset,
                    count: announced,
                    max_count: max_items as u64,
                });
            }
            let room = (self.remaining() / min_item_bytes.max(1)) as u64;
            if items > room {
                return Err(ValueError::TooManyItems {
                    field,
                    offset: block_offset,
                    count: announced,
                    max_count: total_items + room,
                });
            }
            items_out.reserve(items as usize);
            let items_start = self.position;
            for _ in 0..items {
                items_out.push(read_item(self)?);
            }
            if let Some(declared_bytes) = declared_bytes {
                let actual_bytes = (self.position - items_start) as u64;
                if actual_bytes != declared_bytes {
                    return Err(ValueError::BlockSizeMismatch {
                        field,
                        offset: block_offset,
                        declared_bytes,
                        actual_bytes,
                    });
                }
            }
            total_items = announced;
        }
    }
}

fn zigzag_decode(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

fn zigzag_encode(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Appends an Avro `long`.
pub fn write_long(out: &mut Vec<u8>, value: i64) {
    let mut raw = zigzag_encode(value);
    while raw >= u64::from(CONTINUATION_BIT) {
        out.push((raw as u8 & PAYLOAD_BITS) | CONTINUATION_BIT);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// Appends an Avro `int`.
pub fn write_int(out: &mut Vec<u8>, value: i32) {
    write_long(out, i64::from(value));
}

/// Appends an Avro `boolean`.
pub fn write_bool(out: &mut Vec<u8>, value: bool) {
    out.push(u8::from(value));
}

/// Appends an Avro `bytes` value.
pub fn write_bytes(out: &mut Vec<u8>, value: &[u8]) {
    write_length(out, value.len());
    out.extend_from_slice(value);
}

/// Appends an Avro `string`.
pub fn write_str(out: &mut Vec<u8>, value: &str) {
    write_bytes(out, value.as_bytes());
}

/// Appends a length or count. Lengths of values held in memory always fit an `i64`.
pub fn write_length(out: &mut Vec<u8>, length: usize) {
    write_long(out, length as i64);
}

/// Appends a union branch index.
pub fn write_union_branch(out: &mut Vec<u8>, branch: usize) {
    write_length(out, branch);
}

/// Appends a `["null", X]` union: branch 0 for `None`, else branch 1 and X.
pub fn write_optional<T>(
    out: &mut Vec<u8>,
    value: Option<T>,
    write_value: impl FnOnce(&mut Vec<u8>, T),
) {
    match value {
        None => write_union_branch(out, 0),
        Some(value) => {
            write_union_branch(out, 1);
            write_value(out, value);
        }
    }
}

/// Appends an array or map of `count` items as Java writes it: one block with a positive
/// count (none when `count` is 0), the items written by `write_items`, then the `00` that
/// ends the series.
pub fn write_blocks(out: &mut Vec<u8>, count: usize, write_items: impl FnOnce(&mut Vec<u8>)) {
    if count > 0 {
        write_length(out, count);
        write_items(out);
    }
    out.push(0);
}

/// Appends a `map<bytes>`, as the call and handshake metadata are.
pub fn write_bytes_map(out: &mut Vec<u8>, entries: &[(String, Bytes)]) {
    write_blocks(out, entries.len(), |out| {
        for (key, value) in entries {
            write_str(out, key);
            write_bytes(out, value);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_bytes(value: i64) -> Vec<u8> {
        let mut out = Vec::new();
        write_long(&mut out, value);
        out
    }

    #[test]
    fn longs_encode_as_the_specification_shows() {
        assert_eq!(long_bytes(0), [0x00]);
        assert_eq!(long_bytes(-1), [0x01]);
        assert_eq!(long_bytes(1), [0x02]);
        assert_eq!(long_bytes(-2), [0x03]);
        assert_eq!(long_bytes(2), [0x04]);
        assert_eq!(long_bytes(11), [0x16]);
        assert_eq!(long_bytes(-64), [0x7f]);
        assert_eq!(long_bytes(64), [0x80, 0x01]);
        assert_eq!(
            long_bytes(i64::MIN),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn extreme_longs_and_ints_round_trip() {
        for value in [
            i64::MIN,
            i64::MAX,
            0,
            -1,
            1,
            i64::from(i32::MIN),
            i64::from(i32::MAX),
        ] {
            let input = Bytes::from(long_bytes(value));
            let mut reader = Reader::new(&input);
            assert_eq!(reader.read_long("test").unwrap(), value);
            reader.finish("test").unwrap();
        }
        for value in [i32::MIN, i32::MAX] {
            let input = Bytes::from(long_bytes(i64::from(value)));
            assert_eq!(Reader::new(&input).read_int("test").unwrap(), value);
        }
    }

    #[test]
    fn varints_longer_than_their_type_are_refused() {
        let eleven_bytes = Bytes::from_static(&[0xff; 11]);
        assert!(matches!(
            Reader::new(&eleven_bytes).read_long("test"),
            Err(ValueError::InvalidVarint { kind: "long", .. })
        ));
        // A tenth byte carrying more than the 64th bit.
        let overflowing =
            Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]);
        assert!(matches!(
            Reader::new(&overflowing).read_long("test"),
            Err(ValueError::InvalidVarint { .. })
        ));
        // An int past 32 bits.
        let big_int = Bytes::from(long_bytes(i64::from(i32::MAX) + 1));
        assert!(matches!(
            Reader::new(&big_int).read_int("test"),
            Err(ValueError::InvalidVarint { kind: "int", .. })
        ));
    }

    #[test]
    fn lengths_are_checked_against_the_cap_and_the_input_before_reading() {
        let mut input = Vec::new();
        write_long(&mut input, 1_000_000);
        let input = Bytes::from(input);
        assert!(matches!(
            Reader::new(&input).read_bytes("body", 100),
            Err(ValueError::TooLong {
                length_bytes: 1_000_000,
                max_bytes: 100,
                ..
            })
        ));
        assert!(matches!(
            Reader::new(&input).read_bytes("body", usize::MAX),
            Err(ValueError::Truncated {
                needed_bytes: 1_000_000,
                available_bytes: 0,
                ..
            })
        ));
        let negative = Bytes::from(long_bytes(-3));
        assert!(matches!(
            Reader::new(&negative).read_str("key", 100),
            Err(ValueError::NegativeLength { length: -3, .. })
        ));
    }

    #[test]
    fn bytes_values_are_slices_of_the_input() {
        let input = Bytes::from(vec![0x04, b'h', b'i']);
        let body = Reader::new(&input).read_bytes("body", 10).unwrap();
        assert_eq!(body, "hi");
        assert_eq!(body.as_ptr(), input[1..].as_ptr());
    }

    #[test]
    fn blocks_with_negative_counts_carry_a_byte_size_that_must_match() {
        // Two items "a", "b" as strings, in one negative block of size 4, then the end.
        let good = Bytes::from_static(&[0x03, 0x08, 0x02, b'a', 0x02, b'b', 0x00]);
        let mut items = Vec::new();
        let mut reader = Reader::new(&good);
        let count = reader
            .read_blocks("list", 10, 1, &mut items, |reader| {
                reader.read_string("item", 10)
            })
            .unwrap();
        assert_eq!(
            (count, items.as_slice()),
            (2, ["a".to_string(), "b".to_string()].as_slice())
        );
        let wrong_size = Bytes::from_static(&[0x03, 0x06, 0x02, b'a', 0x02, b'b', 0x00]);
        assert!(matches!(
            Reader::new(&wrong_size).read_blocks("list", 10, 1, &mut Vec::new(), |reader| reader
                .read_string("item", 10)),
            Err(ValueError::BlockSizeMismatch {
                declared_bytes: 3,
                actual_bytes: 4,
                ..
            })
        ));
    }

    #[test]
    fn block_counts_beyond_the_cap_or_the_input_are_refused_before_any_reservation() {
        let mut input = Vec::new();
        write_long(&mut input, i64::MAX);
        let input = Bytes::from(input);
        let mut items: Vec<u64> = Vec::new();
        let result = Reader::new(&input).read_blocks("list", usize::MAX, 2, &mut items, |_| Ok(0));
        assert!(matches!(result, Err(ValueError::TooManyItems { .. })));
        assert_eq!(items.capacity(), 0);
        let mut minimum = Vec::new();
        write_long(&mut minimum, i64::MIN);
        let minimum = Bytes::from(minimum);
        assert!(Reader::new(&minimum)
            .read_blocks("list", 5, 1, &mut Vec::new(), |_| Ok(0))
            .is_err());
    }
}
