//! A borrowing reader of the protobuf wire format, for converting requests
//! to Arrow without first decoding them into owned structs.
//!
//! prost decodes a span into a dozen `String`s and `Vec`s that conversion
//! copies once more into Arrow builders and then drops; reading fields
//! straight from the request bytes skips that allocation, page faulting
//! and freeing (about a quarter of the server's CPU under load).
//!
//! The reader follows prost's rules where they decide the result: the last
//! occurrence of a scalar field wins, unknown fields are skipped, integers
//! narrow as prost narrows them, strings must be UTF-8. What it does not
//! handle is reported as [`Unusual`] (a singular message field sent twice,
//! which protobuf merges; groups; malformed bytes) so that the caller can
//! take prost's path, which gives the same data or the same error.

/// Why a message was not read: the caller falls back to prost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unusual {
    /// Truncated or malformed wire data.
    #[error("malformed protobuf")]
    Malformed,
    /// A known field with an unexpected wire type.
    #[error("field {0} has an unexpected wire type")]
    WireType(u32),
    /// A string field that is not UTF-8.
    #[error("string field is not UTF-8")]
    Utf8,
    /// A singular message field present twice (protobuf merges them).
    #[error("message field {0} repeated")]
    Merge(u32),
    /// A deprecated group field.
    #[error("group fields are not read")]
    Group,
}

/// One field's value as it is on the wire.
#[derive(Debug, Clone, Copy)]
pub enum Field<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 5.
    Fixed32(u32),
    /// Wire type 2: bytes, strings and embedded messages.
    Len(&'a [u8]),
}

impl<'a> Field<'a> {
    /// A varint field (`uint32`, `int32`, enums, `int64`, `bool`).
    pub fn varint(self, tag: u32) -> Result<u64, Unusual> {
        match self {
            Field::Varint(v) => Ok(v),
            _ => Err(Unusual::WireType(tag)),
        }
    }

    /// A `uint32`, narrowed as prost narrows it.
    pub fn uint32(self, tag: u32) -> Result<u32, Unusual> {
        Ok(self.varint(tag)? as u32)
    }

    /// An `int32` or enum, narrowed as prost narrows it.
    pub fn int32(self, tag: u32) -> Result<i32, Unusual> {
        Ok(self.varint(tag)? as i32)
    }

    /// A `fixed64`.
    pub fn fixed64(self, tag: u32) -> Result<u64, Unusual> {
        match self {
            Field::Fixed64(v) => Ok(v),
            _ => Err(Unusual::WireType(tag)),
        }
    }

    /// A `fixed32`.
    pub fn fixed32(self, tag: u32) -> Result<u32, Unusual> {
        match self {
            Field::Fixed32(v) => Ok(v),
            _ => Err(Unusual::WireType(tag)),
        }
    }

    /// A `bytes` field or an embedded message.
    pub fn bytes(self, tag: u32) -> Result<&'a [u8], Unusual> {
        match self {
            Field::Len(b) => Ok(b),
            _ => Err(Unusual::WireType(tag)),
        }
    }

    /// A `string` field.
    pub fn str(self, tag: u32) -> Result<&'a str, Unusual> {
        std::str::from_utf8(self.bytes(tag)?).map_err(|_| Unusual::Utf8)
    }
}

/// Iterates over the fields of one message.
pub struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    /// The fields of the message encoded in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn varint(&mut self) -> Result<u64, Unusual> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or(Unusual::Malformed)?;
            self.buf = rest;
            // The tenth byte may only carry the top bit of a u64.
            if i == 9 && b > 1 {
                return Err(Unusual::Malformed);
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(Unusual::Malformed)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Unusual> {
        if n > self.buf.len() {
            return Err(Unusual::Malformed);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The next field as `(tag, value)`, `None` at the end of the message.
    pub fn next_field(&mut self) -> Result<Option<(u32, Field<'a>)>, Unusual> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| Unusual::Malformed)?;
        if tag == 0 {
            return Err(Unusual::Malformed);
        }
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => Field::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().map_err(|_| Unusual::Malformed)?,
            )),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| Unusual::Malformed)?;
                Field::Len(self.take(len)?)
            }
            5 => Field::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().map_err(|_| Unusual::Malformed)?,
            )),
            3 | 4 => return Err(Unusual::Group),
            _ => return Err(Unusual::Malformed),
        };
        Ok(Some((tag, field)))
    }

    /// Calls `f` with every field; stops at the first error.
    pub fn for_each(
        mut self,
        mut f: impl FnMut(u32, Field<'a>) -> Result<(), Unusual>,
    ) -> Result<(), Unusual> {
        while let Some((tag, field)) = self.next_field()? {
            f(tag, field)?;
        }
        Ok(())
    }
}

/// Sets a singular message field, refusing a second occurrence: protobuf
/// merges the two, which the readers built on this module do not do.
pub fn set_once<'a>(
    slot: &mut Option<&'a [u8]>,
    tag: u32,
    field: Field<'a>,
) -> Result<(), Unusual> {
    if slot.is_some() {
        return Err(Unusual::Merge(tag));
    }
    *slot = Some(field.bytes(tag)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn fields(buf: &[u8]) -> Result<Vec<(u32, String)>, Unusual> {
        let mut out = Vec::new();
        Fields::new(buf).for_each(|tag, f| {
            out.push((tag, format!("{f:?}")));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn reads_every_wire_type_prost_writes() {
        use opentelemetry_proto::tonic::trace::v1::Span;
        let span = Span {
            trace_id: vec![7; 16],
            flags: 0x301,
            kind: 3,
            start_time_unix_nano: u64::MAX,
            dropped_links_count: 300,
            ..Default::default()
        };
        let got = fields(&span.encode_to_vec()).unwrap();
        assert_eq!(
            got,
            vec![
                (1, format!("Len({:?})", [7u8; 16])),
                (6, "Varint(3)".to_string()),
                (7, format!("Fixed64({})", u64::MAX)),
                (14, "Varint(300)".to_string()),
                (16, "Fixed32(769)".to_string()),
            ]
        );
    }

    #[test]
    fn malformed_input_is_reported_not_misread() {
        // A length past the end, a varint running off the end, a varint past
        // 64 bits, field number 0, a group, and wire type 7.
        for bad in [
            &[0x0a, 0x05, 1, 2][..],
            &[0x08, 0x80],
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
            ],
            &[0x00, 0x01],
            &[0x0b],
            &[0x0f],
        ] {
            assert!(fields(bad).is_err(), "{bad:?} accepted");
            assert!(
                opentelemetry_proto::tonic::trace::v1::Span::decode(bad).is_err(),
                "prost accepts {bad:?}: the reader must too"
            );
        }
    }

    #[test]
    fn wrong_wire_types_and_bad_utf8_are_refused() {
        assert_eq!(Field::Varint(1).bytes(5), Err(Unusual::WireType(5)));
        assert_eq!(Field::Len(&[0xff]).str(5), Err(Unusual::Utf8));
        assert_eq!(Field::Varint(u64::MAX).int32(6), Ok(-1));
        let mut slot = None;
        set_once(&mut slot, 15, Field::Len(&[])).unwrap();
        assert_eq!(
            set_once(&mut slot, 15, Field::Len(&[])),
            Err(Unusual::Merge(15))
        );
    }
}

/// Rewritten encodings, for tests that hold the readers to prost.
#[cfg(test)]
pub mod rewrite {
    use prost::encoding::{WireType, encode_key, encode_varint};

    /// The raw fields of a message, in order.
    pub fn split(mut buf: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let start = buf;
            let (tag, wire) = prost::encoding::decode_key(&mut buf).unwrap();
            prost::encoding::skip_field(wire, tag, &mut buf, Default::default()).unwrap();
            let field_len = start.len() - buf.len();
            out.push((tag, start[..field_len].to_vec()));
        }
        out
    }

    /// The payload of a length-delimited field's raw bytes.
    pub fn inner(raw: &[u8]) -> &[u8] {
        let mut b = raw;
        prost::encoding::decode_key(&mut b).unwrap();
        prost::encoding::decode_varint(&mut b).unwrap();
        b
    }

    /// `payload` as length-delimited field `tag`.
    pub fn framed(tag: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_key(tag, WireType::LengthDelimited, &mut out);
        encode_varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    }

    /// Rewrites a message with its fields in reverse order, recursing into
    /// the submessages `nested` names by tag, with two unknown fields added.
    pub fn reversed(buf: &[u8], nested: &dyn Fn(u32) -> Option<u8>, depth: u8) -> Vec<u8> {
        let mut out = Vec::new();
        for (tag, raw) in split(buf).into_iter().rev() {
            match nested(tag + 100 * u32::from(depth)) {
                Some(d) => out.extend(framed(tag, &reversed(inner(&raw), nested, d))),
                None => out.extend(raw),
            }
        }
        // An unknown varint field and an unknown length-delimited one.
        encode_key(999, WireType::Varint, &mut out);
        encode_varint(42, &mut out);
        out.extend(framed(998, b"ignored"));
        out
    }
}
