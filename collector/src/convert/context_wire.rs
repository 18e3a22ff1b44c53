//! Borrowed views of the messages every signal's request shares, read
//! with `wire` (common/v1 and resource/v1 field numbers): `KeyValue` and
//! `AnyValue`, `Resource`, `InstrumentationScope`, and the two envelopes
//! (`Resource*` and `Scope*` messages) around each signal's items.

use opentelemetry_proto::tonic::common::v1::AnyValue;
use prost::Message;

use super::columns::{Attribute, Group, Value};
use super::wire::{Fields, Unusual, set_once};

/// A `KeyValue`.
#[derive(Debug, Clone, Copy)]
pub struct KvView<'a> {
    key: &'a str,
    value: Option<Value<'a>>,
}

impl Attribute for KvView<'_> {
    fn key(&self) -> &str {
        self.key
    }

    fn value(&self) -> Option<Value<'_>> {
        self.value
    }
}

/// A `Resource` (its attributes go to a scratch vector).
#[derive(Debug, Default)]
pub struct ResourceView {
    /// `dropped_attributes_count`.
    pub dropped: u32,
}

/// An `InstrumentationScope` (its attributes go to a scratch vector).
#[derive(Debug, Default)]
pub struct ScopeView<'a> {
    /// `name`.
    pub name: &'a str,
    /// `version`.
    pub version: &'a str,
    /// `dropped_attributes_count`.
    pub dropped: u32,
}

/// Reads a `ResourceSpans`/`ScopeSpans` (or logs, metrics) envelope: all
/// share one shape. Field 1 is their resource or scope, 2 the repeated
/// messages below them (put in `items`, cleared first), 3 a schema URL.
pub fn read_envelope<'a>(
    buf: &'a [u8],
    items: &mut Vec<&'a [u8]>,
) -> Result<(Option<&'a [u8]>, &'a str), Unusual> {
    let (mut head, mut schema_url) = (None, "");
    items.clear();
    Fields::new(buf).for_each(|tag, f| {
        match tag {
            1 => set_once(&mut head, tag, f)?,
            2 => items.push(f.bytes(tag)?),
            3 => schema_url = f.str(tag)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok((head, schema_url))
}

/// Reads a `Resource`, its attributes into `attrs`. `entity_refs` are not
/// stored, so they are skipped unread.
pub fn read_resource<'a>(
    buf: &'a [u8],
    attrs: &mut Vec<KvView<'a>>,
) -> Result<ResourceView, Unusual> {
    let mut r = ResourceView::default();
    Fields::new(buf).for_each(|tag, f| {
        match tag {
            1 => attrs.push(read_kv(f.bytes(tag)?)?),
            2 => r.dropped = f.uint32(tag)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(r)
}

/// Reads an `InstrumentationScope`, its attributes into `attrs`.
pub fn read_scope<'a>(
    buf: &'a [u8],
    attrs: &mut Vec<KvView<'a>>,
) -> Result<ScopeView<'a>, Unusual> {
    let mut s = ScopeView::default();
    Fields::new(buf).for_each(|tag, f| {
        match tag {
            1 => s.name = f.str(tag)?,
            2 => s.version = f.str(tag)?,
            3 => attrs.push(read_kv(f.bytes(tag)?)?),
            4 => s.dropped = f.uint32(tag)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(s)
}

/// Reads a `KeyValue`. `key_strindex` (profiles only) is not stored.
pub fn read_kv(buf: &[u8]) -> Result<KvView<'_>, Unusual> {
    let (mut key, mut value) = ("", None);
    Fields::new(buf).for_each(|tag, f| {
        match tag {
            1 => key = f.str(tag)?,
            2 => set_once(&mut value, tag, f)?,
            3 => {
                f.int32(tag)?;
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(KvView {
        key,
        value: value.map(read_any_value).transpose()?.flatten(),
    })
}

/// Reads an `AnyValue`: `None` when it holds nothing. Arrays, key-value
/// lists and string-table references stay encoded (they are stored as
/// JSON, rarely) once prost has checked that they decode.
pub fn read_any_value(buf: &[u8]) -> Result<Option<Value<'_>>, Unusual> {
    let mut value = None;
    Fields::new(buf).for_each(|tag, f| {
        let v = match tag {
            1 => Value::Str(f.str(tag)?),
            2 => Value::Bool(f.varint(tag)? != 0),
            3 => Value::Int(f.varint(tag)? as i64),
            4 => Value::Double(f64::from_bits(f.fixed64(tag)?)),
            5 | 6 => {
                f.bytes(tag)?;
                Value::Encoded(buf)
            }
            7 => Value::Bytes(f.bytes(tag)?),
            8 => {
                f.int32(tag)?;
                Value::Encoded(buf)
            }
            _ => return Ok(()),
        };
        // A oneof set twice: prost keeps the last scalar but merges
        // messages; leave both cases to prost.
        if value.replace(v).is_some() {
            return Err(Unusual::Merge(tag));
        }
        Ok(())
    })?;
    if let Some(Value::Encoded(b)) = value {
        AnyValue::decode(b).map_err(|_| Unusual::Malformed)?;
    }
    Ok(value)
}

/// Reads the envelopes of an encoded export request of any signal (field 1
/// of the request: `Resource*`, each holding `Scope*` messages) and calls
/// `group` once per scope that holds items, with its context and its
/// items' bytes. Returns the encoded bytes of context the items carry in
/// all (each item gets its own copy of its resource and scope), which the
/// caller checks against the request's context limit.
pub fn for_each_group<'a>(
    body: &'a [u8],
    mut group: impl FnMut(&Group<'_, KvView<'a>>, &[&'a [u8]]) -> Result<(), Unusual>,
) -> Result<u64, Unusual> {
    let mut context_bytes = 0u64;
    let (mut scopes, mut items) = (Vec::new(), Vec::new());
    let (mut resource_attributes, mut scope_attributes) = (Vec::new(), Vec::new());
    Fields::new(body).for_each(|tag, f| {
        if tag != 1 {
            return Ok(());
        }
        let (resource, resource_schema_url) = read_envelope(f.bytes(tag)?, &mut scopes)?;
        resource_attributes.clear();
        let res = match resource {
            Some(r) => read_resource(r, &mut resource_attributes)?,
            None => ResourceView::default(),
        };
        let resource_len = resource.map_or(0, <[u8]>::len) + resource_schema_url.len();
        for buf in &scopes {
            let (scope, scope_schema_url) = read_envelope(buf, &mut items)?;
            scope_attributes.clear();
            let sc = match scope {
                Some(b) => read_scope(b, &mut scope_attributes)?,
                None => ScopeView::default(),
            };
            let g = Group {
                resource_attributes: &resource_attributes,
                resource_dropped: res.dropped,
                resource_schema_url,
                scope_name: sc.name,
                scope_version: sc.version,
                scope_attributes: &scope_attributes,
                scope_dropped: sc.dropped,
                scope_schema_url,
            };
            if items.is_empty() {
                continue;
            }
            let len = resource_len + scope.map_or(0, <[u8]>::len) + scope_schema_url.len();
            context_bytes = context_bytes.saturating_add(copies(len, items.len()));
            group(&g, &items)?;
        }
        Ok(())
    })?;
    Ok(context_bytes)
}

/// `bytes` copied to each of `items` items, saturating.
fn copies(bytes: usize, items: usize) -> u64 {
    (bytes as u64).saturating_mul(items as u64)
}
