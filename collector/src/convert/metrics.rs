//! OTLP metrics → one table per data-point type (`metrics_gauge`,
//! `metrics_sum`, `metrics_histogram`, `metrics_exponential_histogram`,
//! `metrics_summary`).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, RecordBatch,
    StringBuilder, TimestampNanosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint,
    SummaryDataPoint, exemplar, exponential_histogram_data_point::Buckets, metric::Data,
    number_data_point,
};

use super::columns::{
    AttributesBuilder, Column, ColumnsExt, Context, ContextBuilder, IdBuilder, append_opt_str,
    append_time, attributes_type, field, list_of_structs, timestamp_builder, timestamp_type,
};
use crate::schema::Table;

/// The columns every metric data point has, whatever its type.
struct PointBuilder {
    time: TimestampNanosecondBuilder,
    start_time: TimestampNanosecondBuilder,
    metric_name: StringBuilder,
    metric_description: StringBuilder,
    metric_unit: StringBuilder,
    metric_metadata: AttributesBuilder,
    context: ContextBuilder,
    attributes: AttributesBuilder,
    flags: UInt32Builder,
    exemplars: ExemplarsBuilder,
    rows: usize,
}

impl Default for PointBuilder {
    fn default() -> Self {
        Self {
            time: timestamp_builder(),
            start_time: timestamp_builder(),
            metric_name: StringBuilder::with_capacity(0, 0),
            metric_description: StringBuilder::with_capacity(0, 0),
            metric_unit: StringBuilder::with_capacity(0, 0),
            metric_metadata: AttributesBuilder::default(),
            context: ContextBuilder::default(),
            attributes: AttributesBuilder::default(),
            flags: UInt32Builder::with_capacity(0),
            exemplars: ExemplarsBuilder::default(),
            rows: 0,
        }
    }
}

/// The common fields of one data point.
struct Point<'a> {
    attributes: &'a [KeyValue],
    start_time_unix_nano: u64,
    time_unix_nano: u64,
    flags: u32,
    exemplars: &'a [Exemplar],
}

/// The common fields of any OTLP data point (they share field names).
macro_rules! point {
    ($dp:expr) => {
        point!($dp, &$dp.exemplars)
    };
    ($dp:expr, $exemplars:expr) => {
        Point {
            attributes: &$dp.attributes,
            start_time_unix_nano: $dp.start_time_unix_nano,
            time_unix_nano: $dp.time_unix_nano,
            flags: $dp.flags,
            exemplars: $exemplars,
        }
    };
}

impl PointBuilder {
    fn append(&mut self, ctx: &Context<'_>, metric: &Metric, p: Point<'_>) {
        append_time(&mut self.time, p.time_unix_nano);
        append_time(&mut self.start_time, p.start_time_unix_nano);
        self.metric_name.append_value(&metric.name);
        append_opt_str(&mut self.metric_description, &metric.description);
        append_opt_str(&mut self.metric_unit, &metric.unit);
        self.metric_metadata.append(&metric.metadata);
        self.context.append(ctx);
        self.attributes.append(p.attributes);
        self.flags.append_value(p.flags);
        self.exemplars.append(p.exemplars);
        self.rows += 1;
    }

    fn finish_head(&mut self, cols: &mut Vec<Column>) {
        cols.add("time", true, Arc::new(self.time.finish()));
        cols.add("start_time", true, Arc::new(self.start_time.finish()));
        cols.add("metric_name", false, Arc::new(self.metric_name.finish()));
        self.context.finish_promoted(cols);
        cols.add("attributes", false, Arc::new(self.attributes.finish()));
    }

    fn finish_tail(&mut self, cols: &mut Vec<Column>) {
        cols.add("flags", false, Arc::new(self.flags.finish()));
        cols.push(self.exemplars.finish());
        cols.add(
            "metric_description",
            true,
            Arc::new(self.metric_description.finish()),
        );
        cols.add("metric_unit", true, Arc::new(self.metric_unit.finish()));
        cols.add(
            "metric_metadata",
            false,
            Arc::new(self.metric_metadata.finish()),
        );
        self.context.finish_rest(cols);
        self.rows = 0;
    }
}

struct ExemplarsBuilder {
    offsets: Vec<i32>,
    time: TimestampNanosecondBuilder,
    double: Float64Builder,
    int: Int64Builder,
    trace_id: IdBuilder,
    span_id: IdBuilder,
    attributes: AttributesBuilder,
}

impl Default for ExemplarsBuilder {
    fn default() -> Self {
        Self {
            offsets: vec![0],
            time: timestamp_builder(),
            double: Float64Builder::with_capacity(0),
            int: Int64Builder::with_capacity(0),
            trace_id: IdBuilder::new(16),
            span_id: IdBuilder::new(8),
            attributes: AttributesBuilder::default(),
        }
    }
}

impl ExemplarsBuilder {
    fn append(&mut self, exemplars: &[Exemplar]) {
        for e in exemplars {
            append_time(&mut self.time, e.time_unix_nano);
            self.double.append_option(match e.value {
                Some(exemplar::Value::AsDouble(d)) => Some(d),
                _ => None,
            });
            self.int.append_option(match e.value {
                Some(exemplar::Value::AsInt(i)) => Some(i),
                _ => None,
            });
            self.trace_id.append(&e.trace_id);
            self.span_id.append(&e.span_id);
            self.attributes.append(&e.filtered_attributes);
        }
        let last = *self.offsets.last().unwrap_or(&0);
        self.offsets.push(last + exemplars.len() as i32);
    }

    fn finish(&mut self) -> Column {
        let children = vec![
            (
                field("time", timestamp_type(), true),
                Arc::new(self.time.finish()) as ArrayRef,
            ),
            (
                field("value_double", DataType::Float64, true),
                Arc::new(self.double.finish()),
            ),
            (
                field("value_int", DataType::Int64, true),
                Arc::new(self.int.finish()),
            ),
            (
                field("trace_id", DataType::FixedSizeBinary(16), true),
                self.trace_id.finish(),
            ),
            (
                field("span_id", DataType::FixedSizeBinary(8), true),
                self.span_id.finish(),
            ),
            (
                field("filtered_attributes", attributes_type(), false),
                Arc::new(self.attributes.finish()),
            ),
        ];
        list_of_structs(
            "exemplars",
            children,
            std::mem::replace(&mut self.offsets, vec![0]),
        )
    }
}

/// `list<u64>` / `list<f64>` columns (histogram buckets and bounds).
fn u64_list() -> ListBuilder<UInt64Builder> {
    ListBuilder::with_capacity(UInt64Builder::with_capacity(0), 0).with_field(Arc::new(Field::new(
        "item",
        DataType::UInt64,
        false,
    )))
}

fn f64_list() -> ListBuilder<Float64Builder> {
    ListBuilder::with_capacity(Float64Builder::with_capacity(0), 0)
        .with_field(Arc::new(Field::new("item", DataType::Float64, false)))
}

/// Gauge and sum points: the value keeps its OTLP type (int or double).
struct NumberBuilder {
    points: PointBuilder,
    value_double: Float64Builder,
    value_int: Int64Builder,
    temporality: Int32Builder,
    is_monotonic: BooleanBuilder,
    is_sum: bool,
}

impl NumberBuilder {
    fn new(is_sum: bool) -> Self {
        Self {
            points: PointBuilder::default(),
            value_double: Float64Builder::with_capacity(0),
            value_int: Int64Builder::with_capacity(0),
            temporality: Int32Builder::with_capacity(0),
            is_monotonic: BooleanBuilder::with_capacity(0),
            is_sum,
        }
    }

    fn append(
        &mut self,
        ctx: &Context<'_>,
        m: &Metric,
        dp: &NumberDataPoint,
        sum: Option<(i32, bool)>,
    ) {
        self.points.append(ctx, m, point!(dp));
        self.value_double.append_option(match dp.value {
            Some(number_data_point::Value::AsDouble(d)) => Some(d),
            _ => None,
        });
        self.value_int.append_option(match dp.value {
            Some(number_data_point::Value::AsInt(i)) => Some(i),
            _ => None,
        });
        if let Some((temporality, monotonic)) = sum {
            self.temporality.append_value(temporality);
            self.is_monotonic.append_value(monotonic);
        }
    }

    fn finish(&mut self) -> RecordBatch {
        let mut cols = Vec::new();
        self.points.finish_head(&mut cols);
        cols.add("value_double", true, Arc::new(self.value_double.finish()));
        cols.add("value_int", true, Arc::new(self.value_int.finish()));
        if self.is_sum {
            cols.add(
                "aggregation_temporality",
                false,
                Arc::new(self.temporality.finish()),
            );
            cols.add("is_monotonic", false, Arc::new(self.is_monotonic.finish()));
        }
        self.points.finish_tail(&mut cols);
        super::batch_from_columns(cols)
    }
}

/// `count`, `sum`, `min` and `max` of histogram points.
struct StatsBuilder {
    count: UInt64Builder,
    sum: Float64Builder,
    min: Float64Builder,
    max: Float64Builder,
}

impl Default for StatsBuilder {
    fn default() -> Self {
        Self {
            count: UInt64Builder::with_capacity(0),
            sum: Float64Builder::with_capacity(0),
            min: Float64Builder::with_capacity(0),
            max: Float64Builder::with_capacity(0),
        }
    }
}

impl StatsBuilder {
    fn append(&mut self, count: u64, sum: Option<f64>, min: Option<f64>, max: Option<f64>) {
        self.count.append_value(count);
        self.sum.append_option(sum);
        self.min.append_option(min);
        self.max.append_option(max);
    }

    fn finish(&mut self, cols: &mut Vec<Column>) {
        cols.add("count", false, Arc::new(self.count.finish()));
        cols.add("sum", true, Arc::new(self.sum.finish()));
        cols.add("min", true, Arc::new(self.min.finish()));
        cols.add("max", true, Arc::new(self.max.finish()));
    }
}

struct HistogramBuilder {
    points: PointBuilder,
    stats: StatsBuilder,
    bucket_counts: ListBuilder<UInt64Builder>,
    explicit_bounds: ListBuilder<Float64Builder>,
    temporality: Int32Builder,
}

impl Default for HistogramBuilder {
    fn default() -> Self {
        Self {
            points: PointBuilder::default(),
            stats: StatsBuilder::default(),
            bucket_counts: u64_list(),
            explicit_bounds: f64_list(),
            temporality: Int32Builder::with_capacity(0),
        }
    }
}

impl HistogramBuilder {
    fn append(&mut self, ctx: &Context<'_>, m: &Metric, dp: &HistogramDataPoint, temporality: i32) {
        self.points.append(ctx, m, point!(dp));
        self.stats.append(dp.count, dp.sum, dp.min, dp.max);
        self.bucket_counts.values().append_slice(&dp.bucket_counts);
        self.bucket_counts.append(true);
        self.explicit_bounds
            .values()
            .append_slice(&dp.explicit_bounds);
        self.explicit_bounds.append(true);
        self.temporality.append_value(temporality);
    }

    fn finish(&mut self) -> RecordBatch {
        let mut cols = Vec::new();
        self.points.finish_head(&mut cols);
        self.stats.finish(&mut cols);
        cols.add(
            "bucket_counts",
            false,
            Arc::new(self.bucket_counts.finish()),
        );
        cols.add(
            "explicit_bounds",
            false,
            Arc::new(self.explicit_bounds.finish()),
        );
        cols.add(
            "aggregation_temporality",
            false,
            Arc::new(self.temporality.finish()),
        );
        self.points.finish_tail(&mut cols);
        super::batch_from_columns(cols)
    }
}

struct ExpHistogramBuilder {
    points: PointBuilder,
    stats: StatsBuilder,
    scale: Int32Builder,
    zero_count: UInt64Builder,
    zero_threshold: Float64Builder,
    positive_offset: Int32Builder,
    positive_counts: ListBuilder<UInt64Builder>,
    negative_offset: Int32Builder,
    negative_counts: ListBuilder<UInt64Builder>,
    temporality: Int32Builder,
}

impl Default for ExpHistogramBuilder {
    fn default() -> Self {
        Self {
            points: PointBuilder::default(),
            stats: StatsBuilder::default(),
            scale: Int32Builder::with_capacity(0),
            zero_count: UInt64Builder::with_capacity(0),
            zero_threshold: Float64Builder::with_capacity(0),
            positive_offset: Int32Builder::with_capacity(0),
            positive_counts: u64_list(),
            negative_offset: Int32Builder::with_capacity(0),
            negative_counts: u64_list(),
            temporality: Int32Builder::with_capacity(0),
        }
    }
}

fn append_buckets(
    offset: &mut Int32Builder,
    counts: &mut ListBuilder<UInt64Builder>,
    b: Option<&Buckets>,
) {
    offset.append_value(b.map_or(0, |b| b.offset));
    counts
        .values()
        .append_slice(b.map_or(&[][..], |b| b.bucket_counts.as_slice()));
    counts.append(true);
}

impl ExpHistogramBuilder {
    fn append(
        &mut self,
        ctx: &Context<'_>,
        m: &Metric,
        dp: &ExponentialHistogramDataPoint,
        temporality: i32,
    ) {
        self.points.append(ctx, m, point!(dp));
        self.stats.append(dp.count, dp.sum, dp.min, dp.max);
        self.scale.append_value(dp.scale);
        self.zero_count.append_value(dp.zero_count);
        self.zero_threshold.append_value(dp.zero_threshold);
        append_buckets(
            &mut self.positive_offset,
            &mut self.positive_counts,
            dp.positive.as_ref(),
        );
        append_buckets(
            &mut self.negative_offset,
            &mut self.negative_counts,
            dp.negative.as_ref(),
        );
        self.temporality.append_value(temporality);
    }

    fn finish(&mut self) -> RecordBatch {
        let mut cols = Vec::new();
        self.points.finish_head(&mut cols);
        self.stats.finish(&mut cols);
        cols.add("scale", false, Arc::new(self.scale.finish()));
        cols.add("zero_count", false, Arc::new(self.zero_count.finish()));
        cols.add(
            "zero_threshold",
            false,
            Arc::new(self.zero_threshold.finish()),
        );
        cols.add(
            "positive_offset",
            false,
            Arc::new(self.positive_offset.finish()),
        );
        cols.add(
            "positive_bucket_counts",
            false,
            Arc::new(self.positive_counts.finish()),
        );
        cols.add(
            "negative_offset",
            false,
            Arc::new(self.negative_offset.finish()),
        );
        cols.add(
            "negative_bucket_counts",
            false,
            Arc::new(self.negative_counts.finish()),
        );
        cols.add(
            "aggregation_temporality",
            false,
            Arc::new(self.temporality.finish()),
        );
        self.points.finish_tail(&mut cols);
        super::batch_from_columns(cols)
    }
}

struct SummaryBuilder {
    points: PointBuilder,
    count: UInt64Builder,
    sum: Float64Builder,
    offsets: Vec<i32>,
    quantile: Float64Builder,
    value: Float64Builder,
}

impl Default for SummaryBuilder {
    fn default() -> Self {
        Self {
            points: PointBuilder::default(),
            count: UInt64Builder::with_capacity(0),
            sum: Float64Builder::with_capacity(0),
            offsets: vec![0],
            quantile: Float64Builder::with_capacity(0),
            value: Float64Builder::with_capacity(0),
        }
    }
}

impl SummaryBuilder {
    fn append(&mut self, ctx: &Context<'_>, m: &Metric, dp: &SummaryDataPoint) {
        self.points.append(ctx, m, point!(dp, &[]));
        self.count.append_value(dp.count);
        self.sum.append_value(dp.sum);
        for q in &dp.quantile_values {
            self.quantile.append_value(q.quantile);
            self.value.append_value(q.value);
        }
        let last = *self.offsets.last().unwrap_or(&0);
        self.offsets.push(last + dp.quantile_values.len() as i32);
    }

    fn finish(&mut self) -> RecordBatch {
        let mut cols = Vec::new();
        self.points.finish_head(&mut cols);
        cols.add("count", false, Arc::new(self.count.finish()));
        cols.add("sum", false, Arc::new(self.sum.finish()));
        let children = vec![
            (
                field("quantile", DataType::Float64, false),
                Arc::new(self.quantile.finish()) as ArrayRef,
            ),
            (
                field("value", DataType::Float64, false),
                Arc::new(self.value.finish()),
            ),
        ];
        cols.push(list_of_structs(
            "quantile_values",
            children,
            std::mem::replace(&mut self.offsets, vec![0]),
        ));
        self.points.finish_tail(&mut cols);
        super::batch_from_columns(cols)
    }
}

/// Builds all five metric tables from OTLP metric requests.
pub struct MetricsBuilder {
    gauge: NumberBuilder,
    sum: NumberBuilder,
    histogram: HistogramBuilder,
    exp_histogram: ExpHistogramBuilder,
    summary: SummaryBuilder,
}

impl Default for MetricsBuilder {
    fn default() -> Self {
        Self {
            gauge: NumberBuilder::new(false),
            sum: NumberBuilder::new(true),
            histogram: HistogramBuilder::default(),
            exp_histogram: ExpHistogramBuilder::default(),
            summary: SummaryBuilder::default(),
        }
    }
}

impl MetricsBuilder {
    /// Appends every data point of a request to the table of its type.
    pub fn append_request(&mut self, req: &ExportMetricsServiceRequest) {
        for rm in &req.resource_metrics {
            for sm in &rm.scope_metrics {
                let ctx = Context {
                    resource: rm.resource.as_ref(),
                    resource_schema_url: &rm.schema_url,
                    scope: sm.scope.as_ref(),
                    scope_schema_url: &sm.schema_url,
                };
                for m in &sm.metrics {
                    self.append_metric(&ctx, m);
                }
            }
        }
    }

    fn append_metric(&mut self, ctx: &Context<'_>, m: &Metric) {
        match &m.data {
            Some(Data::Gauge(g)) => g
                .data_points
                .iter()
                .for_each(|dp| self.gauge.append(ctx, m, dp, None)),
            Some(Data::Sum(s)) => s.data_points.iter().for_each(|dp| {
                self.sum.append(
                    ctx,
                    m,
                    dp,
                    Some((s.aggregation_temporality, s.is_monotonic)),
                )
            }),
            Some(Data::Histogram(h)) => h
                .data_points
                .iter()
                .for_each(|dp| self.histogram.append(ctx, m, dp, h.aggregation_temporality)),
            Some(Data::ExponentialHistogram(h)) => h.data_points.iter().for_each(|dp| {
                self.exp_histogram
                    .append(ctx, m, dp, h.aggregation_temporality)
            }),
            Some(Data::Summary(s)) => s
                .data_points
                .iter()
                .for_each(|dp| self.summary.append(ctx, m, dp)),
            // Validation rejects metrics without data before they get here.
            None => {}
        }
    }

    /// Finishes the non-empty tables.
    pub fn finish(&mut self) -> Vec<(Table, RecordBatch)> {
        let mut out = Vec::new();
        let mut push = |table, rows: usize, batch: RecordBatch| {
            if rows > 0 {
                out.push((table, with_series(batch)));
            }
        };
        push(
            Table::MetricsGauge,
            self.gauge.points.rows,
            self.gauge.finish(),
        );
        push(Table::MetricsSum, self.sum.points.rows, self.sum.finish());
        push(
            Table::MetricsHistogram,
            self.histogram.points.rows,
            self.histogram.finish(),
        );
        push(
            Table::MetricsExponentialHistogram,
            self.exp_histogram.points.rows,
            self.exp_histogram.finish(),
        );
        push(
            Table::MetricsSummary,
            self.summary.points.rows,
            self.summary.finish(),
        );
        out
    }

    /// An empty batch of one metric table (used for its schema).
    pub fn empty(table: Table) -> RecordBatch {
        let mut b = MetricsBuilder::default();
        with_series(match table {
            Table::MetricsGauge => b.gauge.finish(),
            Table::MetricsSum => b.sum.finish(),
            Table::MetricsHistogram => b.histogram.finish(),
            Table::MetricsExponentialHistogram => b.exp_histogram.finish(),
            _ => b.summary.finish(),
        })
    }
}

/// Appends the stored series columns (`storage::series`) to a finished batch.
fn with_series(batch: RecordBatch) -> RecordBatch {
    crate::storage::series::with_series(batch)
        .expect("series columns have one value per row of the batch")
}
