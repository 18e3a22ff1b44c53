//! Loading the series a selector matches, through DataFusion scans of the
//! metric tables.
//!
//! Only the metric names the selector can match and the time range the query
//! needs are read (both become scan predicates, so partitions and row groups
//! are pruned); `job`/`instance` equality matchers are pushed down too. Rows
//! are then turned into Prometheus series: histograms into `_bucket` (with
//! `le`), `_sum` and `_count`, summaries into quantiles, `_sum` and
//! `_count`, delta sums and histograms into cumulative ones.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampNanosecondType, UInt64Type};
use collector::schema::Table;
use datafusion::common::ScalarValue;
use datafusion::prelude::{Expr, col, lit};
use promql_parser::label::{MatchOp, Matcher, Matchers};

use super::eval::FastMap;
use super::label_cache::{self, LabelCache};
use super::names::{self, Kind};
use super::rows::{
    BasePairs, Fingerprint, Identity, LABEL_COLUMNS, RowCtx, Rows, SERIES_FIRST, SERIES_ID,
    labels_of,
};
use super::value::{Labels, NAME, Series};
use crate::engine::{QueryEngine, StoreScan};
use crate::error::QueryError;

/// The metric tables, in the order they are searched.
pub const METRIC_TABLES: [Table; 5] = [
    Table::MetricsGauge,
    Table::MetricsSum,
    Table::MetricsHistogram,
    Table::MetricsExponentialHistogram,
    Table::MetricsSummary,
];

/// One OTLP metric as Prometheus sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MetricEntry {
    /// Table holding it.
    pub table: Table,
    /// OTLP name.
    pub otlp_name: String,
    /// Prometheus base name.
    pub base: String,
    /// Description (for `/api/v1/metadata`).
    pub help: String,
    /// OTLP unit.
    pub unit: String,
}

impl MetricEntry {
    /// The Prometheus metric type.
    pub fn prom_type(&self) -> &'static str {
        match self.table {
            Table::MetricsGauge => "gauge",
            Table::MetricsSum if self.base.ends_with("_total") => "counter",
            Table::MetricsSum => "gauge",
            Table::MetricsSummary => "summary",
            _ => "histogram",
        }
    }

    /// Every series name this metric produces.
    pub fn names(&self) -> Vec<String> {
        match self.table {
            Table::MetricsGauge | Table::MetricsSum => vec![self.base.clone()],
            Table::MetricsSummary => vec![
                self.base.clone(),
                format!("{}_sum", self.base),
                format!("{}_count", self.base),
            ],
            _ => vec![
                format!("{}_bucket", self.base),
                format!("{}_sum", self.base),
                format!("{}_count", self.base),
            ],
        }
    }
}

fn ts_lit(ns: i64) -> Expr {
    lit(ScalarValue::TimestampNanosecond(
        Some(ns),
        Some("UTC".into()),
    ))
}

/// Every metric in the store with samples between `min_ms` and `max_ms`.
pub async fn catalog(
    engine: &QueryEngine,
    min_ms: i64,
    max_ms: i64,
) -> Result<Vec<MetricEntry>, QueryError> {
    let mut out = Vec::new();
    for table in METRIC_TABLES {
        let listed = engine
            .metric_lists()
            .list(engine, table, min_ms, max_ms)
            .await?;
        for m in listed {
            let kind = match table {
                Table::MetricsGauge => Kind::Gauge,
                Table::MetricsSum if m.monotonic == Some(true) => Kind::Counter,
                Table::MetricsSum => Kind::Gauge,
                _ => Kind::Distribution,
            };
            let unit = m.unit.unwrap_or_default();
            out.push(MetricEntry {
                table,
                base: names::metric_name(&m.name, &unit, kind),
                otlp_name: m.name,
                help: m.help.unwrap_or_default(),
                unit,
            });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `time` within `[min_ms, max_ms]`.
pub fn time_filter(min_ms: i64, max_ms: i64) -> Expr {
    col("time")
        .gt_eq(ts_lit(min_ms.saturating_mul(1_000_000)))
        .and(col("time").lt_eq(ts_lit(max_ms.saturating_mul(1_000_000))))
}

/// Whether every matcher on `name` accepts `value`.
fn accepts(matchers: &[Matcher], name: &str, value: &str) -> bool {
    matchers
        .iter()
        .filter(|m| m.name == name)
        .all(|m| m.is_match(value))
}

/// Whether `labels` satisfy a selector (its `or` alternatives included).
pub fn matches(sel: &Matchers, labels: &Labels) -> bool {
    let all = |ms: &[Matcher]| ms.iter().all(|m| m.is_match(labels.get(&m.name)));
    if sel.or_matchers.is_empty() {
        all(&sel.matchers)
    } else {
        sel.or_matchers.iter().any(|ms| all(ms))
    }
}

/// The name matchers of a selector, one list per `or` alternative.
fn name_alternatives(sel: &Matchers) -> Vec<Vec<Matcher>> {
    let lists: Vec<&Vec<Matcher>> = if sel.or_matchers.is_empty() {
        vec![&sel.matchers]
    } else {
        sel.or_matchers.iter().collect()
    };
    lists
        .into_iter()
        .map(|l| l.iter().filter(|m| m.name == NAME).cloned().collect())
        .collect()
}

/// Loads every series matching `sel` with its samples in `[min_ms, max_ms]`.
pub async fn select(
    engine: &QueryEngine,
    sel: &Matchers,
    min_ms: i64,
    max_ms: i64,
) -> Result<Vec<Series>, QueryError> {
    let entries = catalog(engine, min_ms, max_ms).await?;
    select_from(engine, &entries, sel, min_ms, max_ms).await
}

/// [`select`] with the metric catalog already known (a query with several
/// selectors reads it once).
pub async fn select_from(
    engine: &QueryEngine,
    entries: &[MetricEntry],
    sel: &Matchers,
    min_ms: i64,
    max_ms: i64,
) -> Result<Vec<Series>, QueryError> {
    load(engine, entries, sel, min_ms, max_ms, true).await
}

/// The label sets of the series matching `sel` in `[min_ms, max_ms]`.
pub async fn series_labels(
    engine: &QueryEngine,
    sel: &Matchers,
    min_ms: i64,
    max_ms: i64,
) -> Result<Vec<Labels>, QueryError> {
    let entries = catalog(engine, min_ms, max_ms).await?;
    let series = load(engine, &entries, sel, min_ms, max_ms, false).await?;
    Ok(series
        .into_iter()
        .map(|s| Arc::unwrap_or_clone(s.labels))
        .collect())
}

async fn load(
    engine: &QueryEngine,
    entries: &[MetricEntry],
    sel: &Matchers,
    min_ms: i64,
    max_ms: i64,
    keep_points: bool,
) -> Result<Vec<Series>, QueryError> {
    let mut builder =
        SeriesBuilder::new(sel, engine.config().max_series, engine.config().max_samples);
    builder.keep_points = keep_points;
    let wants_target_info = scan(engine, entries, sel, min_ms, max_ms, &mut builder).await?;
    let mut series = builder.finish();
    if wants_target_info {
        series.extend(super::target_info::select(engine, sel, min_ms, max_ms).await?);
    }
    if !keep_points {
        for s in &mut series {
            s.points.clear();
        }
    }
    Ok(series)
}

/// Feeds the rows of every metric `sel` can match to `builder`; returns
/// whether `sel` can also match `target_info`.
async fn scan(
    engine: &QueryEngine,
    entries: &[MetricEntry],
    sel: &Matchers,
    min_ms: i64,
    max_ms: i64,
    builder: &mut SeriesBuilder<'_>,
) -> Result<bool, QueryError> {
    let alternatives = name_alternatives(sel);
    let wanted: Vec<&MetricEntry> = entries
        .iter()
        .filter(|e| {
            e.names()
                .iter()
                .any(|n| alternatives.iter().any(|alt| accepts(alt, NAME, n)))
        })
        .collect();
    let wants_target_info = alternatives
        .iter()
        .any(|alt| accepts(alt, NAME, super::target_info::TARGET_INFO));
    let mut by_table: BTreeMap<Table, Vec<&MetricEntry>> = BTreeMap::new();
    for e in wanted {
        by_table.entry(e.table).or_default().push(e);
    }
    let pushed = pushable(sel);
    for (table, metrics) in by_table {
        let names: Vec<Expr> = metrics.iter().map(|m| lit(m.otlp_name.clone())).collect();
        let mut filter = time_filter(min_ms, max_ms).and(col("metric_name").in_list(names, false));
        for m in &pushed {
            filter = filter.and(m.clone());
        }
        if builder.exemplars.is_some() {
            let mut columns = table_columns(table, true);
            columns.push("exemplars");
            scan_rows(engine, table, &metrics, filter, &columns, builder).await?;
            continue;
        }
        // Times and values by series id (see `rows`), then the labels of
        // the ids the label cache does not hold: from the first row of each
        // series' run, then from any row for ids whose first row is out of
        // the range.
        let columns = table_columns(table, false);
        builder.window = (min_ms, max_ms);
        if matches!(table, Table::MetricsGauge | Table::MetricsSum) && pushed.is_empty() {
            // Files are sorted by metric and series, so the metric names
            // and times prune pages well; filtering rows while decoding
            // would decode `time` and `metric_name` a second time, and
            // `add_batch` checks both anyway.
            engine
                .for_each_store_batch(
                    table,
                    &columns,
                    StoreScan::Pruned(&[filter.clone()]),
                    |batch| builder.add_batch(table, &metrics, batch),
                )
                .await?;
        } else {
            scan_rows(engine, table, &metrics, filter.clone(), &columns, builder).await?;
        }
        builder.fill_from_cache(engine.label_cache());
        let missing = builder.missing_ids();
        if !missing.is_empty() {
            let mut firsts = filter.clone().and(col(SERIES_FIRST).eq(lit(true)));
            if missing.len() <= MAX_ID_LIST {
                firsts = firsts.and(id_list(missing));
            }
            learn_labels(engine, table, firsts, builder).await?;
            let still = builder.missing_ids();
            if !still.is_empty() {
                let unseen = filter.clone().and(id_list(still));
                learn_labels(engine, table, unseen, builder).await?;
            }
        }
        builder.resolve()?;
        if std::mem::take(&mut builder.rows_without_id) > 0 {
            let old = filter.and(col(SERIES_ID).is_null());
            let columns = table_columns(table, true);
            scan_rows(engine, table, &metrics, old, &columns, builder).await?;
        }
    }
    Ok(wants_target_info)
}

/// Ids a label read names in its filter rather than reading the first
/// rows of all series. Small: DataFusion also turns the list into a pruning
/// predicate (one comparison per id per row group and page), which costs
/// more than reading every flagged row once lists reach thousands.
const MAX_ID_LIST: usize = 1_000;

/// `series_id IN (ids)`.
fn id_list(ids: Vec<u64>) -> Expr {
    let ids = ids.into_iter().map(|id| lit(ScalarValue::UInt64(Some(id))));
    col(SERIES_ID).in_list(ids.collect(), false)
}

/// Feeds the rows of `table` that pass `filter` to `builder`.
async fn scan_rows(
    engine: &QueryEngine,
    table: Table,
    metrics: &[&MetricEntry],
    filter: Expr,
    columns: &[&str],
    builder: &mut SeriesBuilder<'_>,
) -> Result<(), QueryError> {
    let df = engine.context().table(table.name()).await?.filter(filter)?;
    let df = df.select_columns(columns)?;
    engine
        .for_each_batch(df, |batch| builder.add_batch(table, metrics, batch))
        .await
}

/// Records the base labels of the series ids in the rows passing `filter`.
async fn learn_labels(
    engine: &QueryEngine,
    table: Table,
    filter: Expr,
    builder: &mut SeriesBuilder<'_>,
) -> Result<(), QueryError> {
    let mut columns: Vec<Expr> = LABEL_COLUMNS.iter().map(|c| col(*c)).collect();
    columns.push(col(SERIES_ID));
    let df = engine.context().table(table.name()).await?.filter(filter)?;
    let df = df.select(columns)?;
    engine
        .for_each_batch(df, |batch| {
            builder.learn(batch, engine.label_cache());
            Ok(())
        })
        .await
}

/// One exemplar: a traced measurement attached to a series.
#[derive(Debug, Clone)]
pub struct Exemplar {
    /// `trace_id` and `span_id` (hex) when present.
    pub labels: Labels,
    /// The measured value.
    pub value: f64,
    /// When it was measured (ms).
    pub time: i64,
}

/// The exemplars of the series matching `sel` in `[min_ms, max_ms]`. They
/// are attached to the series a point's value goes to: the series itself
/// for gauges and sums, the `_bucket` series of the bucket holding the
/// exemplar's value for histograms.
pub async fn exemplars(
    engine: &QueryEngine,
    sel: &Matchers,
    min_ms: i64,
    max_ms: i64,
) -> Result<Vec<(Arc<Labels>, Vec<Exemplar>)>, QueryError> {
    let mut builder =
        SeriesBuilder::new(sel, engine.config().max_series, engine.config().max_samples);
    builder.exemplars = Some(Vec::new());
    let entries = catalog(engine, min_ms, max_ms).await?;
    scan(engine, &entries, sel, min_ms, max_ms, &mut builder).await?;
    let found = builder.exemplars.take().unwrap_or_default();
    Ok(builder
        .series
        .into_iter()
        .zip(found)
        .filter(|(_, ex)| !ex.is_empty())
        .map(|(s, mut ex)| {
            ex.retain(|e| e.time >= min_ms && e.time <= max_ms);
            ex.sort_by_key(|e| e.time);
            (s.labels, ex)
        })
        .filter(|(_, ex)| !ex.is_empty())
        .collect())
}

/// Label matchers that can become scan predicates.
fn pushable(sel: &Matchers) -> Vec<Expr> {
    if !sel.or_matchers.is_empty() {
        return Vec::new();
    }
    sel.matchers
        .iter()
        .filter(|m| matches!(m.op, MatchOp::Equal) && !m.value.is_empty())
        .filter_map(|m| match m.name.as_str() {
            // A job with a slash may be namespace/name: not pushed.
            "job" if !m.value.contains('/') => Some(col("service_name").eq(lit(m.value.clone()))),
            "instance" => Some(col("service_instance_id").eq(lit(m.value.clone()))),
            _ => None,
        })
        .collect()
}

/// The columns a scan of `table` reads: times, values and either the label
/// columns (`labels`) or the series id.
fn table_columns(table: Table, labels: bool) -> Vec<&'static str> {
    let mut c: Vec<&str> = vec!["time", "metric_name"];
    if labels {
        c.extend_from_slice(&LABEL_COLUMNS);
    } else {
        c.push(SERIES_ID);
    }
    c.extend_from_slice(match table {
        Table::MetricsGauge => &["value_double", "value_int"][..],
        Table::MetricsSum => &["value_double", "value_int", "aggregation_temporality"],
        Table::MetricsHistogram => &[
            "count",
            "sum",
            "bucket_counts",
            "explicit_bounds",
            "aggregation_temporality",
        ],
        Table::MetricsExponentialHistogram => &[
            "count",
            "sum",
            "scale",
            "zero_count",
            "zero_threshold",
            "positive_offset",
            "positive_bucket_counts",
            "negative_bucket_counts",
            "aggregation_temporality",
        ],
        _ => &["count", "sum", "quantile_values"],
    });
    c
}

const DELTA: i32 = 1;

struct Slot {
    /// Index in `series`, or `None` when the selector rejects the series.
    index: Option<usize>,
}

/// A series whose rows came by id before its labels did.
struct Unresolved {
    index: usize,
    id: u64,
    name: String,
    extra: Option<(&'static str, String)>,
}

/// Turns rows into series.
struct SeriesBuilder<'a> {
    sel: &'a Matchers,
    /// Series by the fingerprint of their identity.
    slots: HashMap<u128, Slot, foldhash::fast::RandomState>,
    series: Vec<Series>,
    delta: Vec<bool>,
    /// False for series found not to match once their labels came.
    keep: Vec<bool>,
    /// Base labels by stored series id.
    bases: FastMap<u64, Arc<BasePairs>>,
    unresolved: Vec<Unresolved>,
    /// Rows read by id that had none (files written before ids).
    rows_without_id: usize,
    /// Series accepted (matching the selector).
    admitted: usize,
    /// Rows outside `[from, to]` (ms) are skipped (pruned scans return
    /// whole pages).
    window: (i64, i64),
    max_series: usize,
    max_samples: usize,
    samples: usize,
    keep_points: bool,
    /// Set to collect exemplars (per series, parallel to `series`) instead
    /// of points.
    exemplars: Option<Vec<Vec<Exemplar>>>,
}

impl<'a> SeriesBuilder<'a> {
    fn new(sel: &'a Matchers, max_series: usize, max_samples: usize) -> Self {
        SeriesBuilder {
            sel,
            slots: HashMap::default(),
            series: Vec::new(),
            delta: Vec::new(),
            keep: Vec::new(),
            bases: HashMap::default(),
            unresolved: Vec::new(),
            rows_without_id: 0,
            admitted: 0,
            window: (i64::MIN, i64::MAX),
            max_series,
            max_samples,
            samples: 0,
            keep_points: true,
            exemplars: None,
        }
    }

    fn add_batch(
        &mut self,
        table: Table,
        metrics: &[&MetricEntry],
        b: &RecordBatch,
    ) -> Result<(), QueryError> {
        let base: HashMap<&str, &str> = metrics
            .iter()
            .map(|m| (m.otlp_name.as_str(), m.base.as_str()))
            .collect();
        let rows = Rows::new(b);
        // Rows come sorted by metric name: look a name up when it changes.
        let mut last: Option<(&str, Option<&str>)> = None;
        // Stored metric rows are grouped by series (see the collector's
        // `storage::series`): a gauge or sum row of the same series as the
        // row before it goes to the same slot without hashing its identity.
        let mut previous: Option<(usize, Option<usize>)> = None;
        for i in 0..b.num_rows() {
            let metric = rows.metric.value(i);
            let found = match last {
                Some((m, found)) if m == metric => found,
                _ => {
                    let found = base.get(metric).copied();
                    last = Some((metric, found));
                    found
                }
            };
            let Some(base) = found else {
                continue;
            };
            if matches!(rows.identity, Identity::Id(_)) && rows.id(i).is_none() {
                self.rows_without_id += 1;
                continue;
            }
            let t = rows.time.value(i).div_euclid(1_000_000);
            if t < self.window.0 || t > self.window.1 || rows.time.is_null(i) {
                continue;
            }
            let ctx = RowCtx {
                rows: &rows,
                i,
                base,
                t,
            };
            if self.exemplars.is_some() {
                self.row_exemplars(table, &ctx)?;
                continue;
            }
            match table {
                Table::MetricsGauge | Table::MetricsSum => {
                    let v = rows.number(i);
                    let delta = table == Table::MetricsSum && rows.temporality(i) == DELTA;
                    let slot = match previous {
                        Some((row, slot)) if row + 1 == i && rows.same_series(row, i) => slot,
                        _ => self.slot(&ctx, base, None, delta)?,
                    };
                    previous = Some((i, slot));
                    self.add_point(slot, ctx.t, v)?;
                }
                Table::MetricsHistogram => self.histogram(&ctx)?,
                Table::MetricsExponentialHistogram => self.exponential(&ctx)?,
                _ => self.summary(&ctx)?,
            }
        }
        Ok(())
    }

    fn push(
        &mut self,
        ctx: &RowCtx<'_>,
        name: &str,
        extra: Option<(&'static str, String)>,
        v: f64,
        delta: bool,
    ) -> Result<(), QueryError> {
        let slot = self.slot(ctx, name, extra, delta)?;
        self.add_point(slot, ctx.t, v)
    }

    /// Adds a point to the series in `slot` (none: the selector rejected it).
    fn add_point(&mut self, slot: Option<usize>, t: i64, v: f64) -> Result<(), QueryError> {
        if let Some(ix) = slot.filter(|_| self.keep_points) {
            self.samples += 1;
            if self.samples > self.max_samples {
                return Err(QueryError::TooLarge(format!(
                    "the query loads more than {} samples; narrow the time range or the selector",
                    self.max_samples
                )));
            }
            self.series[ix].points.push((t, v));
        }
        Ok(())
    }

    /// The index of the row's series `name` (+ `extra` label), created on
    /// first sight; `None` when the selector rejects it.
    fn slot(
        &mut self,
        ctx: &RowCtx<'_>,
        name: &str,
        extra: Option<(&'static str, String)>,
        delta: bool,
    ) -> Result<Option<usize>, QueryError> {
        let mut key = Fingerprint::new();
        ctx.key(&mut key, name);
        if let Some((k, val)) = &extra {
            key.str(k);
            key.str(val);
        }
        let key = key.finish();
        if let Some(s) = self.slots.get(&key) {
            return Ok(s.index);
        }
        let index = match &ctx.rows.identity {
            Identity::Columns(c) => self.admit(labels_of(c.pairs(ctx.i), name, extra), delta)?,
            Identity::Id(ids) => {
                let id = ids.value(ctx.i);
                match self.bases.get(&id) {
                    Some(base) => {
                        let labels = labels_of(base.as_ref().clone(), name, extra);
                        self.admit(labels, delta)?
                    }
                    // Its flagged row was not read (e.g. before the time
                    // range): keep the points until `resolve`.
                    None => {
                        let index = self.new_series(Labels::default(), delta);
                        let name = name.to_string();
                        self.unresolved.push(Unresolved {
                            index,
                            id,
                            name,
                            extra,
                        });
                        Some(index)
                    }
                }
            }
        };
        self.slots.insert(key, Slot { index });
        Ok(index)
    }

    /// A new series for `labels` if the selector matches them.
    fn admit(&mut self, labels: Labels, delta: bool) -> Result<Option<usize>, QueryError> {
        if !matches(self.sel, &labels) {
            return Ok(None);
        }
        self.count_series()?;
        Ok(Some(self.new_series(labels, delta)))
    }

    fn count_series(&mut self) -> Result<(), QueryError> {
        self.admitted += 1;
        if self.admitted > self.max_series {
            return Err(QueryError::TooLarge(format!(
                "the query selects more than {} series; narrow the selector",
                self.max_series
            )));
        }
        Ok(())
    }

    fn new_series(&mut self, labels: Labels, delta: bool) -> usize {
        self.series.push(Series {
            labels: Arc::new(labels),
            points: Vec::new(),
        });
        self.delta.push(delta);
        self.keep.push(true);
        if let Some(ex) = &mut self.exemplars {
            ex.push(Vec::new());
        }
        self.series.len() - 1
    }

    /// Takes the labels of unresolved ids from `cache`.
    fn fill_from_cache(&mut self, cache: &LabelCache) {
        cache.fill(self.unresolved.iter().map(|u| &u.id), &mut self.bases);
    }

    /// Records the base labels of the ids in a batch of label columns, here
    /// and in `cache`.
    fn learn(&mut self, b: &RecordBatch, cache: &LabelCache) {
        let learned = label_cache::labels_in(b, |id| self.bases.contains_key(&id));
        for (id, labels) in &learned {
            self.bases.insert(*id, labels.clone());
        }
        cache.remember(learned.iter().map(|(id, l)| (id, l)));
    }

    /// Ids of series with points but no labels yet.
    fn missing_ids(&self) -> Vec<u64> {
        let ids: std::collections::BTreeSet<u64> = self
            .unresolved
            .iter()
            .map(|u| u.id)
            .filter(|id| !self.bases.contains_key(id))
            .collect();
        ids.into_iter().collect()
    }

    /// Gives the series that came without labels theirs, dropping those the
    /// selector does not match.
    fn resolve(&mut self) -> Result<(), QueryError> {
        for u in std::mem::take(&mut self.unresolved) {
            let labels = match self.bases.get(&u.id) {
                Some(base) => labels_of(base.as_ref().clone(), &u.name, u.extra),
                // Not in the rows the filter passes: a series a pruned scan
                // returned that `job`/`instance` matchers exclude, or one
                // whose rows moved between the reads.
                None => Labels::default(),
            };
            if !labels.is_empty() && matches(self.sel, &labels) {
                self.count_series()?;
                self.series[u.index].labels = Arc::new(labels);
            } else {
                self.keep[u.index] = false;
                self.samples -= self.series[u.index].points.len();
                self.series[u.index].points = Vec::new();
            }
        }
        Ok(())
    }

    /// Attaches the row's exemplars to the series their values belong to.
    fn row_exemplars(&mut self, table: Table, ctx: &RowCtx<'_>) -> Result<(), QueryError> {
        let list = ctx.rows.col("exemplars").as_list::<i32>().value(ctx.i);
        let list = list.as_struct();
        if list.is_empty() {
            return Ok(());
        }
        let time = list.column(0).as_primitive::<TimestampNanosecondType>();
        let double = list.column(1).as_primitive::<Float64Type>();
        let int = list.column(2).as_primitive::<Int64Type>();
        let trace = list.column(3).as_fixed_size_binary();
        let span = list.column(4).as_fixed_size_binary();
        for k in 0..list.len() {
            let value = if double.is_valid(k) {
                double.value(k)
            } else if int.is_valid(k) {
                int.value(k) as f64
            } else {
                continue;
            };
            let (name, extra) = match table {
                Table::MetricsGauge | Table::MetricsSum => (ctx.base.to_string(), None),
                Table::MetricsHistogram => (
                    format!("{}_bucket", ctx.base),
                    Some(("le", bucket_of(ctx, value))),
                ),
                Table::MetricsExponentialHistogram => (
                    format!("{}_bucket", ctx.base),
                    Some(("le", exponential_bucket_of(ctx, value))),
                ),
                _ => continue,
            };
            let Some(ix) = self.slot(ctx, &name, extra, false)? else {
                continue;
            };
            let mut pairs = Vec::new();
            if trace.is_valid(k) {
                pairs.push((
                    "trace_id".to_string(),
                    crate::hex_ids::encode_hex(trace.value(k)),
                ));
            }
            if span.is_valid(k) {
                pairs.push((
                    "span_id".to_string(),
                    crate::hex_ids::encode_hex(span.value(k)),
                ));
            }
            let t = if time.is_valid(k) {
                time.value(k).div_euclid(1_000_000)
            } else {
                ctx.t
            };
            if let Some(ex) = &mut self.exemplars {
                ex[ix].push(Exemplar {
                    labels: Labels::new(pairs),
                    value,
                    time: t,
                });
            }
        }
        Ok(())
    }

    fn histogram(&mut self, ctx: &RowCtx<'_>) -> Result<(), QueryError> {
        let r = ctx.rows;
        let i = ctx.i;
        let delta = r.temporality(i) == DELTA;
        let counts = r.col("bucket_counts").as_list::<i32>().value(i);
        let counts = counts.as_primitive::<UInt64Type>();
        let bounds = r.col("explicit_bounds").as_list::<i32>().value(i);
        let bounds = bounds.as_primitive::<Float64Type>();
        let bucket = format!("{}_bucket", ctx.base);
        let mut cum = 0u64;
        for k in 0..counts.len() {
            cum += counts.value(k);
            let le = if k < bounds.len() {
                super::value::format_value(bounds.value(k))
            } else {
                "+Inf".to_string()
            };
            self.push(ctx, &bucket, Some(("le", le)), cum as f64, delta)?;
        }
        self.sum_count(ctx, delta)
    }

    fn exponential(&mut self, ctx: &RowCtx<'_>) -> Result<(), QueryError> {
        let r = ctx.rows;
        let i = ctx.i;
        let delta = r.temporality(i) == DELTA;
        let scale = r.col("scale").as_primitive::<Int32Type>().value(i);
        let offset = r
            .col("positive_offset")
            .as_primitive::<Int32Type>()
            .value(i);
        let zero = r.col("zero_count").as_primitive::<UInt64Type>().value(i);
        let threshold = r
            .col("zero_threshold")
            .as_primitive::<Float64Type>()
            .value(i);
        let pos = r.col("positive_bucket_counts").as_list::<i32>().value(i);
        let pos = pos.as_primitive::<UInt64Type>();
        let neg = r.col("negative_bucket_counts").as_list::<i32>().value(i);
        let neg: u64 = neg.as_primitive::<UInt64Type>().values().iter().sum();
        let base = 2f64.powf(2f64.powi(-scale));
        let bucket = format!("{}_bucket", ctx.base);
        // Negative observations and the zero bucket are below the first
        // positive bucket; they form one bucket at the zero threshold.
        let mut cum = neg + zero;
        self.push(
            ctx,
            &bucket,
            Some(("le", super::value::format_value(threshold))),
            cum as f64,
            delta,
        )?;
        for k in 0..pos.len() {
            cum += pos.value(k);
            let upper = base.powi(offset + k as i32 + 1);
            self.push(
                ctx,
                &bucket,
                Some(("le", super::value::format_value(upper))),
                cum as f64,
                delta,
            )?;
        }
        self.push(ctx, &bucket, Some(("le", "+Inf".into())), cum as f64, delta)?;
        self.sum_count(ctx, delta)
    }

    fn summary(&mut self, ctx: &RowCtx<'_>) -> Result<(), QueryError> {
        let q = ctx
            .rows
            .col("quantile_values")
            .as_list::<i32>()
            .value(ctx.i);
        let q = q.as_struct();
        let quantiles = q.column(0).as_primitive::<Float64Type>();
        let values = q.column(1).as_primitive::<Float64Type>();
        for k in 0..q.len() {
            let label = super::value::format_value(quantiles.value(k));
            self.push(
                ctx,
                ctx.base,
                Some(("quantile", label)),
                values.value(k),
                false,
            )?;
        }
        self.sum_count(ctx, false)
    }

    fn sum_count(&mut self, ctx: &RowCtx<'_>, delta: bool) -> Result<(), QueryError> {
        let r = ctx.rows;
        let sum = r.col("sum").as_primitive::<Float64Type>();
        if sum.is_valid(ctx.i) {
            self.push(
                ctx,
                &format!("{}_sum", ctx.base),
                None,
                sum.value(ctx.i),
                delta,
            )?;
        }
        let count = r.col("count").as_primitive::<UInt64Type>().value(ctx.i);
        self.push(
            ctx,
            &format!("{}_count", ctx.base),
            None,
            count as f64,
            delta,
        )
    }

    fn finish(self) -> Vec<Series> {
        let mut series: Vec<(Series, bool)> = self
            .series
            .into_iter()
            .zip(self.delta)
            .zip(self.keep)
            .filter_map(|(s, keep)| keep.then_some(s))
            .collect();
        // Prometheus hands series to the evaluator in label order; where
        // order decides a result (ties in `topk`), ours must match.
        series.sort_by(|a, b| a.0.labels.cmp(&b.0.labels));
        // One label set from several identities (files from before stored
        // ids, attributes in another order or of another type): one series.
        series.dedup_by(|later, earlier| {
            let same = later.0.labels == earlier.0.labels;
            if same {
                earlier.0.points.append(&mut later.0.points);
            }
            same
        });
        series
            .into_iter()
            .map(|(mut s, delta)| {
                normalize(&mut s.points, delta);
                s
            })
            .collect()
    }
}

/// Orders `points` by time, keeps the last of equal times, and turns delta
/// values into running totals.
fn normalize(points: &mut Vec<(i64, f64)>, delta: bool) {
    points.sort_by_key(|p| p.0);
    // Several rows at one time (duplicates): the last one wins.
    points.dedup_by(|later, earlier| {
        if later.0 == earlier.0 {
            *earlier = *later;
            true
        } else {
            false
        }
    });
    if delta {
        let mut total = 0.0;
        for p in points {
            total += p.1;
            p.1 = total;
        }
    }
}

/// The `le` of the classic bucket holding `v` (as the bucket series name it).
fn bucket_of(ctx: &RowCtx<'_>, v: f64) -> String {
    let bounds = ctx
        .rows
        .col("explicit_bounds")
        .as_list::<i32>()
        .value(ctx.i);
    let bounds = bounds.as_primitive::<Float64Type>();
    bounds
        .values()
        .iter()
        .find(|b| v <= **b)
        .map_or_else(|| "+Inf".to_string(), |b| super::value::format_value(*b))
}

/// The `le` of the exponential bucket holding `v`, computed as the bucket
/// series compute their bounds so the strings match.
fn exponential_bucket_of(ctx: &RowCtx<'_>, v: f64) -> String {
    let r = ctx.rows;
    let scale = r.col("scale").as_primitive::<Int32Type>().value(ctx.i);
    let threshold = r
        .col("zero_threshold")
        .as_primitive::<Float64Type>()
        .value(ctx.i);
    if v <= threshold {
        return super::value::format_value(threshold);
    }
    let base = 2f64.powf(2f64.powi(-scale));
    let mut index = (v.ln() / base.ln()).ceil() as i32 - 1;
    // Guard against rounding at exact bucket bounds.
    while base.powi(index + 1) < v {
        index += 1;
    }
    while index > i32::MIN + 1 && base.powi(index) >= v {
        index -= 1;
    }
    super::value::format_value(base.powi(index + 1))
}
