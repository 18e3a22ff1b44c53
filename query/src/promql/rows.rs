//! Typed access to the metric rows a selector reads, and the identity of
//! the series each row belongs to.
//!
//! A row names its series in one of two ways: by the stored `series_id`
//! (files and buffers since ids were stored; the labels then come from the
//! rows with `series_first` set, read separately), or by its label columns
//! (files written before, and exemplar reads, which need every column).

use std::collections::BTreeMap;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int32Array, Int64Array, MapArray, PrimitiveArray,
    RecordBatch, StringArray, UInt64Array,
};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampNanosecondType, UInt64Type};

use super::names;
use super::value::{Labels, NAME};

/// Column names of the series identity, as read for labels.
pub const LABEL_COLUMNS: [&str; 6] = [
    "service_name",
    "service_namespace",
    "service_instance_id",
    "attributes",
    "scope_name",
    "scope_version",
];

/// The stored series id (`collector::storage::series`).
pub const SERIES_ID: &str = "series_id";
/// Set on the first row of each run of one series in a file.
pub const SERIES_FIRST: &str = "series_first";

/// Labels of a series before its name and `le`/`quantile`.
pub type BasePairs = Vec<(String, String)>;

pub fn opt_str(a: &StringArray, i: usize) -> Option<&str> {
    (!a.is_null(i)).then(|| a.value(i))
}

/// The label columns of a batch.
pub struct LabelColumns<'a> {
    service: &'a StringArray,
    namespace: &'a StringArray,
    instance: &'a StringArray,
    attributes: &'a MapArray,
    scope_name: &'a StringArray,
    scope_version: &'a StringArray,
}

impl<'a> LabelColumns<'a> {
    /// The label columns of `b`, if it has them all.
    pub fn of(b: &'a RecordBatch) -> Option<Self> {
        let s = |n: &str| b.column_by_name(n).and_then(|c| c.as_string_opt::<i32>());
        Some(LabelColumns {
            service: s("service_name")?,
            namespace: s("service_namespace")?,
            instance: s("service_instance_id")?,
            attributes: b.column_by_name("attributes")?.as_map_opt()?,
            scope_name: s("scope_name")?,
            scope_version: s("scope_version")?,
        })
    }

    fn strings(&self) -> [&'a StringArray; 5] {
        [
            self.service,
            self.namespace,
            self.instance,
            self.scope_name,
            self.scope_version,
        ]
    }

    fn attrs(&self, i: usize) -> std::ops::Range<usize> {
        let o = self.attributes.value_offsets();
        o[i] as usize..o[i + 1] as usize
    }

    fn keys_values(&self) -> (&'a StringArray, &'a StringArray) {
        (
            self.attributes.keys().as_string::<i32>(),
            self.attributes.values().as_string::<i32>(),
        )
    }

    /// Whether rows `a` and `b` have the same resource, scope and
    /// attributes (in the same order).
    fn same(&self, a: usize, b: usize) -> bool {
        if !self
            .strings()
            .iter()
            .all(|c| opt_str(c, a) == opt_str(c, b))
        {
            return false;
        }
        let (ra, rb) = (self.attrs(a), self.attrs(b));
        if ra.len() != rb.len() {
            return false;
        }
        let (keys, values) = self.keys_values();
        ra.zip(rb).all(|(x, y)| {
            keys.value(x) == keys.value(y) && opt_str(values, x) == opt_str(values, y)
        })
    }

    /// Feeds row `i`'s identity (everything its labels come from) to `out`.
    fn key(&self, i: usize, out: &mut Fingerprint) {
        for a in self.strings() {
            out.opt_str(opt_str(a, i));
        }
        let (keys, values) = self.keys_values();
        for k in self.attrs(i) {
            // An empty value makes no label: `{a=""}` is `{}`.
            if let Some(v) = opt_str(values, k).filter(|v| !v.is_empty()) {
                out.str(keys.value(k));
                out.str(v);
            }
        }
    }

    /// Row `i`'s labels besides the name and `le`/`quantile`.
    pub fn pairs(&self, i: usize) -> BasePairs {
        let (keys, values) = self.keys_values();
        // Keys that sanitize to the same label are joined with ";" in key order.
        let mut attrs: BTreeMap<String, Vec<(&str, &str)>> = BTreeMap::new();
        for k in self.attrs(i) {
            let key = keys.value(k);
            attrs
                .entry(names::sanitize_label(key))
                .or_default()
                .push((key, opt_str(values, k).unwrap_or("")));
        }
        let mut pairs: BasePairs = attrs
            .into_iter()
            .map(|(label, mut vs)| {
                vs.sort();
                (label, vs.iter().map(|v| v.1).collect::<Vec<_>>().join(";"))
            })
            .collect();
        if let Some(scope) = opt_str(self.scope_name, i) {
            pairs.push(("otel_scope_name".into(), scope.into()));
        }
        if let Some(v) = opt_str(self.scope_version, i) {
            pairs.push(("otel_scope_version".into(), v.into()));
        }
        if let Some(job) = names::job(opt_str(self.namespace, i), opt_str(self.service, i)) {
            pairs.push(("job".into(), job));
        }
        if let Some(inst) = opt_str(self.instance, i) {
            pairs.push(("instance".into(), inst.into()));
        }
        pairs
    }
}

/// Completes base labels with the `extra` label and the name.
pub fn labels_of(mut pairs: BasePairs, name: &str, extra: Option<(&str, String)>) -> Labels {
    if let Some((k, v)) = extra {
        pairs.push((k.into(), v));
    }
    pairs.push((NAME.into(), name.into()));
    Labels::new(pairs)
}

/// How the rows of a batch name their series.
pub enum Identity<'a> {
    /// By label columns.
    Columns(LabelColumns<'a>),
    /// By stored id (null in rows of files written before ids).
    Id(&'a UInt64Array),
}

/// Typed access to the columns of one batch.
pub struct Rows<'a> {
    b: &'a RecordBatch,
    pub time: &'a PrimitiveArray<TimestampNanosecondType>,
    pub metric: &'a StringArray,
    pub identity: Identity<'a>,
    /// `value_double`, `value_int` and `aggregation_temporality` of gauges
    /// and sums, looked up once per batch rather than per row.
    numbers: Option<(&'a Float64Array, &'a Int64Array, Option<&'a Int32Array>)>,
}

impl<'a> Rows<'a> {
    /// Rows of `b`, named by label columns when `b` has them, else by id.
    pub fn new(b: &'a RecordBatch) -> Self {
        let identity = match LabelColumns::of(b) {
            Some(c) => Identity::Columns(c),
            None => Identity::Id(
                b.column_by_name(SERIES_ID)
                    .expect("selected column")
                    .as_primitive::<UInt64Type>(),
            ),
        };
        Rows {
            b,
            time: b.column(0).as_primitive::<TimestampNanosecondType>(),
            metric: b
                .column_by_name("metric_name")
                .expect("selected column")
                .as_string::<i32>(),
            identity,
            numbers: match (
                b.column_by_name("value_double"),
                b.column_by_name("value_int"),
            ) {
                (Some(d), Some(n)) => Some((
                    d.as_primitive::<Float64Type>(),
                    n.as_primitive::<Int64Type>(),
                    b.column_by_name("aggregation_temporality")
                        .map(|c| c.as_primitive::<Int32Type>()),
                )),
                _ => None,
            },
        }
    }

    /// The stored id of row `i`, when rows are named by id and it has one.
    pub fn id(&self, i: usize) -> Option<u64> {
        match &self.identity {
            Identity::Id(ids) => ids.is_valid(i).then(|| ids.value(i)),
            Identity::Columns(_) => None,
        }
    }

    /// Whether rows `a` and `b` belong to one series.
    pub fn same_series(&self, a: usize, b: usize) -> bool {
        if opt_str(self.metric, a) != opt_str(self.metric, b) {
            return false;
        }
        match &self.identity {
            Identity::Columns(c) => c.same(a, b),
            Identity::Id(ids) => ids.is_valid(a) && ids.is_valid(b) && ids.value(a) == ids.value(b),
        }
    }

    pub fn col(&self, name: &str) -> &'a ArrayRef {
        self.b.column_by_name(name).expect("selected column")
    }

    pub fn number(&self, i: usize) -> f64 {
        let Some((d, n, _)) = self.numbers else {
            return f64::NAN;
        };
        if d.is_valid(i) {
            return d.value(i);
        }
        if n.is_valid(i) {
            n.value(i) as f64
        } else {
            f64::NAN
        }
    }

    pub fn temporality(&self, i: usize) -> i32 {
        match self.numbers {
            Some((_, _, Some(t))) => t.value(i),
            _ => self
                .col("aggregation_temporality")
                .as_primitive::<Int32Type>()
                .value(i),
        }
    }
}

/// A 128-bit hash of a series' identity, built without allocating (this
/// runs for every row a selector reads). Two independently seeded hashes:
/// the chance that two of even a billion series collide is about 1e-21.
pub struct Fingerprint(
    foldhash::quality::FoldHasher<'static>,
    foldhash::quality::FoldHasher<'static>,
);

impl Fingerprint {
    pub fn new() -> Self {
        use std::hash::BuildHasher;
        Fingerprint(
            foldhash::quality::FixedState::with_seed(0x5157_4854_4c49_4e45).build_hasher(),
            foldhash::quality::FixedState::with_seed(0x9e37_79b9_7f4a_7c15).build_hasher(),
        )
    }

    /// A string, then a byte no UTF-8 string holds, so field boundaries
    /// cannot shift (`"ab","c"` differs from `"a","bc"`).
    pub fn str(&mut self, s: &str) {
        use std::hash::Hasher;
        for h in [&mut self.0, &mut self.1] {
            h.write(s.as_bytes());
            h.write_u8(0xff);
        }
    }

    /// A stored series id, after a byte no UTF-8 string starts with, so
    /// keys by id never equal keys by label columns.
    fn id(&mut self, id: u64) {
        use std::hash::Hasher;
        for h in [&mut self.0, &mut self.1] {
            h.write_u8(0xfe);
            h.write_u64(id);
        }
    }

    /// An optional string: absent is empty, as a label with an empty
    /// value is no label.
    fn opt_str(&mut self, s: Option<&str>) {
        self.str(s.unwrap_or(""));
    }

    pub fn finish(&self) -> u128 {
        use std::hash::Hasher;
        (u128::from(self.0.finish()) << 64) | u128::from(self.1.finish())
    }
}

/// One row being turned into samples.
pub struct RowCtx<'a> {
    pub rows: &'a Rows<'a>,
    pub i: usize,
    pub base: &'a str,
    pub t: i64,
}

impl RowCtx<'_> {
    /// Feeds the row's series identity (before `le`/`quantile`) as series
    /// `name` to `out`.
    pub fn key(&self, out: &mut Fingerprint, name: &str) {
        match &self.rows.identity {
            Identity::Columns(c) => {
                out.str(name);
                c.key(self.i, out);
            }
            Identity::Id(ids) => {
                out.id(ids.value(self.i));
                out.str(name);
            }
        }
    }
}
