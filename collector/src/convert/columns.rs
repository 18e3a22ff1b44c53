//! Arrow column builders shared by every table: OTLP `AnyValue`s, attribute
//! maps, ids, and the resource/scope context every row carries.
//!
//! Each builder's `finish` returns `(Field, ArrayRef)` pairs, and a table's
//! schema is the field list of an empty batch, so schema and data cannot drift.

use std::sync::Arc;

use arrow::array::ArrayBuilder;
use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, FixedSizeBinaryBuilder, Float64Builder, Int64Builder,
    ListArray, MapArray, StringBuilder, StructArray, TimestampNanosecondBuilder, UInt32Builder,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, TimeUnit};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::repeat;
use crate::schema::{PROMOTED_RESOURCE_KEYS, PromotedKind};

/// A finished column: its field and its values.
pub type Column = (FieldRef, ArrayRef);

/// Appends finished columns; the field's type is the array's own, so a
/// column's declared type can never disagree with its data.
pub trait ColumnsExt {
    /// Adds column `name`.
    fn add(&mut self, name: &str, nullable: bool, array: ArrayRef);
}

impl ColumnsExt for Vec<Column> {
    fn add(&mut self, name: &str, nullable: bool, array: ArrayRef) {
        self.push((field(name, array.data_type().clone(), nullable), array));
    }
}

/// The Arrow type of timestamps in every table: nanoseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

/// Fields of the struct that stores one OTLP `AnyValue` with its type kept:
/// exactly one child is non-null; arrays and key-value lists are stored as
/// their OTLP JSON encoding in `json`.
pub fn any_value_fields() -> Fields {
    Fields::from(vec![
        Field::new("string", DataType::Utf8, true),
        Field::new("int", DataType::Int64, true),
        Field::new("double", DataType::Float64, true),
        Field::new("bool", DataType::Boolean, true),
        Field::new("bytes", DataType::Binary, true),
        Field::new("json", DataType::Utf8, true),
    ])
}

fn map_entries_field() -> FieldRef {
    Arc::new(Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Struct(any_value_fields()), true),
        ])),
        false,
    ))
}

/// The Arrow type of an attribute map column.
pub fn attributes_type() -> DataType {
    DataType::Map(map_entries_field(), false)
}

/// One attribute value as the builders take it: borrowed from a decoded
/// `AnyValue` or read straight from the request bytes (see `wire`).
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// `string_value`.
    Str(&'a str),
    /// `int_value`.
    Int(i64),
    /// `double_value`.
    Double(f64),
    /// `bool_value`.
    Bool(bool),
    /// `bytes_value`.
    Bytes(&'a [u8]),
    /// An array, key-value list or string-table reference, decoded.
    Decoded(&'a AnyValue),
    /// The same, as the bytes of its encoded `AnyValue` message.
    Encoded(&'a [u8]),
}

impl<'a> Value<'a> {
    /// The content of a decoded value (`None` when it has none).
    pub fn of(v: &'a AnyValue) -> Option<Value<'a>> {
        Some(match v.value.as_ref()? {
            any_value::Value::StringValue(s) => Value::Str(s),
            any_value::Value::IntValue(i) => Value::Int(*i),
            any_value::Value::DoubleValue(d) => Value::Double(*d),
            any_value::Value::BoolValue(b) => Value::Bool(*b),
            any_value::Value::BytesValue(b) => Value::Bytes(b),
            any_value::Value::ArrayValue(_)
            | any_value::Value::KvlistValue(_)
            | any_value::Value::StringValueStrindex(_) => Value::Decoded(v),
        })
    }
}

/// Arrays, key-value lists and string-table references keep their OTLP/JSON
/// form. Serialising a decoded message cannot fail.
fn json(v: &AnyValue) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// An OTLP attribute: a key and maybe a value.
pub trait Attribute {
    /// The key.
    fn key(&self) -> &str;
    /// The value, `None` when absent or empty.
    fn value(&self) -> Option<Value<'_>>;
}

impl Attribute for KeyValue {
    fn key(&self) -> &str {
        &self.key
    }

    fn value(&self) -> Option<Value<'_>> {
        self.value.as_ref().and_then(Value::of)
    }
}

/// Builds a struct column of typed OTLP `AnyValue`s.
pub struct AnyValueBuilder {
    string: StringBuilder,
    int: Int64Builder,
    double: Float64Builder,
    boolean: BooleanBuilder,
    bytes: BinaryBuilder,
    json: StringBuilder,
    valid: Vec<bool>,
}

impl Default for AnyValueBuilder {
    fn default() -> Self {
        // Arrow's default builders reserve 1024 slots each; most attribute
        // value types are rare, so start empty and let them grow.
        Self {
            string: StringBuilder::with_capacity(0, 0),
            int: Int64Builder::with_capacity(0),
            double: Float64Builder::with_capacity(0),
            boolean: BooleanBuilder::with_capacity(0),
            bytes: BinaryBuilder::with_capacity(0, 0),
            json: StringBuilder::with_capacity(0, 0),
            valid: Vec::new(),
        }
    }
}

/// Appends `value` to `builder` after padding it with nulls up to `row`:
/// each child only sees the rows of its own type, and the nulls in between
/// are added in one call instead of five per value.
macro_rules! put {
    ($builder:expr, $row:expr, $value:expr) => {{
        let pad = $row - $builder.len();
        $builder.append_nulls(pad);
        $builder.append_value($value);
    }};
}

impl AnyValueBuilder {
    /// Appends one decoded value; `None` (or a value with no content)
    /// becomes a null struct.
    pub fn append_any(&mut self, value: Option<&AnyValue>) {
        self.append(value.and_then(Value::of))
    }

    /// Appends one value; `None` becomes a null struct.
    pub fn append(&mut self, value: Option<Value<'_>>) {
        let row = self.valid.len();
        match value {
            Some(Value::Str(s)) => put!(self.string, row, s),
            Some(Value::Int(i)) => put!(self.int, row, i),
            Some(Value::Double(d)) => put!(self.double, row, d),
            Some(Value::Bool(b)) => put!(self.boolean, row, b),
            Some(Value::Bytes(b)) => put!(self.bytes, row, b),
            Some(Value::Decoded(v)) => put!(self.json, row, json(v)),
            // The wire reader checked that it decodes.
            Some(Value::Encoded(b)) => put!(
                self.json,
                row,
                json(&<AnyValue as prost::Message>::decode(b).unwrap_or_default())
            ),
            None => {}
        }
        self.valid.push(value.is_some());
    }

    /// Finishes the struct array.
    pub fn finish(&mut self) -> StructArray {
        let rows = self.valid.len();
        self.string.append_nulls(rows - self.string.len());
        self.int.append_nulls(rows - self.int.len());
        self.double.append_nulls(rows - self.double.len());
        self.boolean.append_nulls(rows - self.boolean.len());
        self.bytes.append_nulls(rows - self.bytes.len());
        self.json.append_nulls(rows - self.json.len());
        let valid = std::mem::take(&mut self.valid);
        let nulls = (!valid.iter().all(|v| *v)).then(|| NullBuffer::from(valid));
        StructArray::new(
            any_value_fields(),
            vec![
                Arc::new(self.string.finish()),
                Arc::new(self.int.finish()),
                Arc::new(self.double.finish()),
                Arc::new(self.boolean.finish()),
                Arc::new(self.bytes.finish()),
                Arc::new(self.json.finish()),
            ],
            nulls,
        )
    }
}

/// Builds a `map<string, any_value>` column of OTLP attributes.
pub struct AttributesBuilder {
    offsets: Vec<i32>,
    keys: StringBuilder,
    values: AnyValueBuilder,
}

impl Default for AttributesBuilder {
    fn default() -> Self {
        Self {
            offsets: vec![0],
            keys: StringBuilder::with_capacity(0, 0),
            values: AnyValueBuilder::default(),
        }
    }
}

impl AttributesBuilder {
    /// Appends one row holding the attributes whose index passes `keep`.
    pub fn append_where<A: Attribute>(&mut self, attrs: &[A], keep: impl Fn(usize) -> bool) {
        let mut n = 0;
        for (_, kv) in attrs.iter().enumerate().filter(|(i, _)| keep(*i)) {
            self.keys.append_value(kv.key());
            self.values.append(kv.value());
            n += 1;
        }
        let last = *self.offsets.last().unwrap_or(&0);
        self.offsets.push(last + n);
    }

    /// Appends one row holding all attributes.
    pub fn append<A: Attribute>(&mut self, attrs: &[A]) {
        self.append_where(attrs, |_| true);
    }

    /// Finishes the map array.
    pub fn finish(&mut self) -> MapArray {
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        let DataType::Struct(entry_fields) = map_entries_field().data_type().clone() else {
            unreachable!("map entries are a struct")
        };
        let entries = StructArray::new(
            entry_fields,
            vec![Arc::new(self.keys.finish()), Arc::new(self.values.finish())],
            None,
        );
        MapArray::new(
            map_entries_field(),
            OffsetBuffer::new(offsets.into()),
            entries,
            None,
            false,
        )
    }
}

/// Builds a nullable fixed-size id column (trace ids: 16 bytes, span ids: 8).
pub struct IdBuilder {
    inner: FixedSizeBinaryBuilder,
}

impl IdBuilder {
    /// A builder for ids of `width` bytes.
    pub fn new(width: i32) -> Self {
        Self {
            inner: FixedSizeBinaryBuilder::with_capacity(0, width),
        }
    }

    /// Appends an id; an empty or all-zero id is stored as null (OTLP's "absent").
    /// Ids of the wrong width are rejected by validation before conversion, so
    /// they are also stored as null here rather than failing the batch.
    pub fn append(&mut self, id: &[u8]) {
        if id.is_empty() || id.iter().all(|b| *b == 0) || self.inner.append_value(id).is_err() {
            self.inner.append_null();
        }
    }

    /// Finishes the array.
    pub fn finish(&mut self) -> ArrayRef {
        Arc::new(self.inner.finish())
    }
}

/// Appends a timestamp; OTLP's 0 means "unknown" and becomes null.
pub fn append_time(builder: &mut TimestampNanosecondBuilder, unix_nano: u64) {
    if unix_nano == 0 {
        builder.append_null();
    } else {
        builder.append_value(nanos_i64(unix_nano));
    }
}

/// OTLP times are u64 nanoseconds; Arrow's are i64. Times past 2262 saturate.
pub fn nanos_i64(unix_nano: u64) -> i64 {
    i64::try_from(unix_nano).unwrap_or(i64::MAX)
}

/// A timestamp builder already carrying the UTC timezone.
pub fn timestamp_builder() -> TimestampNanosecondBuilder {
    TimestampNanosecondBuilder::with_capacity(0).with_timezone("UTC")
}

/// Makes a field for a column.
pub fn field(name: &str, data_type: DataType, nullable: bool) -> FieldRef {
    Arc::new(Field::new(name, data_type, nullable))
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// The string value of an attribute, if it is a string.
pub fn string_value(kv: &impl Attribute) -> Option<&str> {
    match kv.value()? {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

/// The integer value of an attribute, if it is an integer.
pub fn int_value(kv: &impl Attribute) -> Option<i64> {
    match kv.value()? {
        Value::Int(i) => Some(i),
        _ => None,
    }
}

/// Builds promoted attribute columns (one typed column per promoted key).
pub struct PromotedBuilder {
    keys: &'static [(&'static str, PromotedKind)],
    strings: Vec<StringBuilder>,
    ints: Vec<Int64Builder>,
    /// Per key: index of the attribute filling it in the current row.
    slots: Vec<Option<usize>>,
    /// Per attribute of the current row: whether a promoted column took it.
    taken: Vec<bool>,
}

impl PromotedBuilder {
    /// A builder for the given promoted keys.
    pub fn new(keys: &'static [(&'static str, PromotedKind)]) -> Self {
        Self {
            keys,
            strings: keys
                .iter()
                .map(|_| StringBuilder::with_capacity(0, 0))
                .collect(),
            ints: keys
                .iter()
                .map(|_| Int64Builder::with_capacity(0))
                .collect(),
            slots: vec![None; keys.len()],
            taken: Vec::new(),
        }
    }

    /// Index of a promoted key. Most attribute keys are not promoted, so
    /// length and last byte reject them before any string comparison.
    fn position(&self, key: &str) -> Option<usize> {
        let (len, last) = (key.len(), key.as_bytes().last().copied());
        self.keys
            .iter()
            .position(|(k, _)| k.len() == len && k.as_bytes().last().copied() == last && *k == key)
    }

    /// Appends one row in a single pass over `attrs`: the first attribute
    /// with a promoted key and the column's type fills the column; every
    /// other attribute (including a promoted key with another type, or a
    /// duplicate) goes to `rest`, so nothing is lost.
    pub fn append<A: Attribute>(&mut self, attrs: &[A], rest: &mut AttributesBuilder) {
        self.slots.iter_mut().for_each(|s| *s = None);
        self.taken.clear();
        self.taken.resize(attrs.len(), false);
        for (i, kv) in attrs.iter().enumerate() {
            let Some(k) = self.position(kv.key()) else {
                continue;
            };
            let fits = match self.keys[k].1 {
                PromotedKind::String => string_value(kv).is_some(),
                PromotedKind::Int => int_value(kv).is_some(),
            };
            if fits && self.slots[k].is_none() {
                self.slots[k] = Some(i);
                self.taken[i] = true;
            }
        }
        for (k, (_, kind)) in self.keys.iter().enumerate() {
            let kv = self.slots[k].map(|i| &attrs[i]);
            match kind {
                PromotedKind::String => self.strings[k].append_option(kv.and_then(string_value)),
                PromotedKind::Int => self.ints[k].append_option(kv.and_then(int_value)),
            }
        }
        let taken = &self.taken;
        rest.append_where(attrs, |i| !taken[i]);
    }

    /// Finishes one column per key, named with dots replaced by underscores.
    pub fn finish(&mut self, out: &mut Vec<Column>) {
        for (i, (key, kind)) in self.keys.iter().enumerate() {
            let name = key.replace('.', "_");
            let (dt, arr): (DataType, ArrayRef) = match kind {
                PromotedKind::String => (DataType::Utf8, Arc::new(self.strings[i].finish())),
                PromotedKind::Int => (DataType::Int64, Arc::new(self.ints[i].finish())),
            };
            out.push((field(&name, dt, true), arr));
        }
    }
}

/// Builds the resource and instrumentation-scope columns every row carries.
///
/// Every row of a ResourceSpans/ScopeSpans (or logs/metrics equivalent)
/// shares one resource and scope, so the builders hold one entry per group
/// and `finish` expands them to rows with [`repeat`] — much cheaper than
/// rebuilding a dozen resource attributes for every span.
pub struct ContextBuilder {
    /// Row → group index.
    rows: Vec<u32>,
    /// Identity of the last group (addresses of its resource, scope and URLs).
    last: Option<[usize; 4]>,
    groups: u32,
    promoted: PromotedBuilder,
    resource_attributes: AttributesBuilder,
    resource_dropped: UInt32Builder,
    resource_schema_url: StringBuilder,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
    scope_attributes: AttributesBuilder,
    scope_dropped: UInt32Builder,
    scope_schema_url: StringBuilder,
}

impl Default for ContextBuilder {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            last: None,
            groups: 0,
            promoted: PromotedBuilder::new(PROMOTED_RESOURCE_KEYS),
            resource_attributes: AttributesBuilder::default(),
            resource_dropped: UInt32Builder::with_capacity(0),
            resource_schema_url: StringBuilder::with_capacity(0, 0),
            scope_name: StringBuilder::with_capacity(0, 0),
            scope_version: StringBuilder::with_capacity(0, 0),
            scope_attributes: AttributesBuilder::default(),
            scope_dropped: UInt32Builder::with_capacity(0),
            scope_schema_url: StringBuilder::with_capacity(0, 0),
        }
    }
}

/// The resource and scope that a group of rows shares.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The OTLP resource, if the request had one.
    pub resource: Option<&'a Resource>,
    /// The resource's schema URL.
    pub resource_schema_url: &'a str,
    /// The instrumentation scope, if any.
    pub scope: Option<&'a InstrumentationScope>,
    /// The scope's schema URL.
    pub scope_schema_url: &'a str,
}

impl Context<'_> {
    /// Addresses that identify the group within one request.
    fn identity(&self) -> [usize; 4] {
        [
            self.resource.map_or(0, |r| r as *const Resource as usize),
            self.scope
                .map_or(0, |s| s as *const InstrumentationScope as usize),
            self.resource_schema_url.as_ptr() as usize,
            self.scope_schema_url.as_ptr() as usize,
        ]
    }
}

/// The resource and scope fields one group of rows shares, whatever they
/// were read from.
pub struct Group<'a, A> {
    /// The resource's attributes.
    pub resource_attributes: &'a [A],
    /// The resource's `dropped_attributes_count`.
    pub resource_dropped: u32,
    /// The resource's schema URL.
    pub resource_schema_url: &'a str,
    /// The scope's name.
    pub scope_name: &'a str,
    /// The scope's version.
    pub scope_version: &'a str,
    /// The scope's attributes.
    pub scope_attributes: &'a [A],
    /// The scope's `dropped_attributes_count`.
    pub scope_dropped: u32,
    /// The scope's schema URL.
    pub scope_schema_url: &'a str,
}

impl<'a> Context<'a> {
    fn group(&self) -> Group<'a, KeyValue> {
        let (resource, scope) = (self.resource, self.scope);
        Group {
            resource_attributes: resource.map_or(&[], |r| r.attributes.as_slice()),
            resource_dropped: resource.map_or(0, |r| r.dropped_attributes_count),
            resource_schema_url: self.resource_schema_url,
            scope_name: scope.map_or("", |s| s.name.as_str()),
            scope_version: scope.map_or("", |s| s.version.as_str()),
            scope_attributes: scope.map_or(&[], |s| s.attributes.as_slice()),
            scope_dropped: scope.map_or(0, |s| s.dropped_attributes_count),
            scope_schema_url: self.scope_schema_url,
        }
    }
}

impl ContextBuilder {
    /// Appends the context of one row.
    pub fn append(&mut self, ctx: &Context<'_>) {
        let id = ctx.identity();
        if self.last != Some(id) {
            self.start_group(&ctx.group());
            self.last = Some(id);
        }
        self.push_row();
    }

    /// Starts a group: the rows pushed next share its resource and scope.
    pub fn start_group<A: Attribute>(&mut self, g: &Group<'_, A>) {
        self.promoted
            .append(g.resource_attributes, &mut self.resource_attributes);
        self.resource_dropped.append_value(g.resource_dropped);
        self.resource_schema_url
            .append_option(non_empty(g.resource_schema_url));
        self.scope_name.append_option(non_empty(g.scope_name));
        self.scope_version.append_option(non_empty(g.scope_version));
        self.scope_attributes.append(g.scope_attributes);
        self.scope_dropped.append_value(g.scope_dropped);
        self.scope_schema_url
            .append_option(non_empty(g.scope_schema_url));
        self.groups += 1;
        self.last = None;
    }

    /// Appends one row of the current group.
    pub fn push_row(&mut self) {
        self.rows.push(self.groups - 1);
    }

    /// Finishes the promoted resource columns (they lead the table, since
    /// rows are sorted by them).
    pub fn finish_promoted(&mut self, out: &mut Vec<Column>) {
        let mut groups = Vec::new();
        self.promoted.finish(&mut groups);
        self.expand(groups, out);
    }

    /// Expands per-group columns to one value per row.
    fn expand(&self, groups: Vec<Column>, out: &mut Vec<Column>) {
        let runs = repeat::runs_of(&self.rows);
        for (field, array) in groups {
            // Offsets overflow only past 2 GiB of copied entries in one
            // column; `otlp::MAX_CONTEXT_BYTES` refuses such requests first.
            let rows = repeat::repeat(array.as_ref(), &runs)
                .expect("a request's expanded context fits i32 offsets");
            out.push((field, rows));
        }
    }

    /// Finishes the remaining resource and scope columns.
    pub fn finish_rest(&mut self, out: &mut Vec<Column>) {
        let mut groups: Vec<Column> = Vec::new();
        groups.add(
            "resource_attributes",
            false,
            Arc::new(self.resource_attributes.finish()),
        );
        groups.add(
            "resource_dropped_attributes_count",
            false,
            Arc::new(self.resource_dropped.finish()),
        );
        groups.add(
            "resource_schema_url",
            true,
            Arc::new(self.resource_schema_url.finish()),
        );
        groups.add("scope_name", true, Arc::new(self.scope_name.finish()));
        groups.add("scope_version", true, Arc::new(self.scope_version.finish()));
        groups.add(
            "scope_attributes",
            false,
            Arc::new(self.scope_attributes.finish()),
        );
        groups.add(
            "scope_dropped_attributes_count",
            false,
            Arc::new(self.scope_dropped.finish()),
        );
        groups.add(
            "scope_schema_url",
            true,
            Arc::new(self.scope_schema_url.finish()),
        );
        self.expand(groups, out);
        self.rows.clear();
        self.last = None;
        self.groups = 0;
    }
}

/// Appends a string, storing the empty string as null (OTLP's "unset").
pub fn append_opt_str(builder: &mut StringBuilder, s: &str) {
    builder.append_option(non_empty(s));
}

/// Wraps struct children into a non-null `list<struct>` column.
pub fn list_of_structs(name: &str, fields: Vec<Column>, offsets: Vec<i32>) -> Column {
    let (fs, arrays): (Vec<_>, Vec<ArrayRef>) = fields.into_iter().unzip();
    let fields = Fields::from(fs);
    let item = Arc::new(Field::new("item", DataType::Struct(fields.clone()), false));
    let values = StructArray::new(fields, arrays, None);
    let list = ListArray::new(
        item.clone(),
        OffsetBuffer::new(offsets.into()),
        Arc::new(values),
        None,
    );
    (field(name, DataType::List(item), false), Arc::new(list))
}
