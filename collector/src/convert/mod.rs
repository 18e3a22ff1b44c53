//! OTLP → Arrow: turns decoded export requests into one record batch per
//! table. Runs after the acknowledgement, off the request path.

mod columns;
mod context_wire;
mod logs;
mod logs_wire;
mod metrics;
#[cfg(test)]
mod oracle;
mod profiles;
mod repeat;
mod spans_wire;
mod traces;
pub mod wire;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;

pub use columns::{any_value_fields, attributes_type, timestamp_type};
pub use logs::LogsBuilder;
pub use metrics::MetricsBuilder;
pub use profiles::{ProfileSample, ProfileSamplesBuilder, profile_batch};
pub use traces::SpansBuilder;

use crate::otlp::Payload;
use crate::schema::Table;

/// What an `append_encoded` (spans or logs) appended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Items (spans, log records) appended.
    pub items: u64,
    /// Whether some item needs prost's path: an id that validation rejects
    /// (appended as null, as `IdBuilder` stores any invalid id), or a log
    /// record with no time, which takes the time the request is received.
    pub invalid: bool,
    /// Encoded bytes of resource and scope that `finish` copies to every
    /// item of their group: what the batch grows by beyond the items.
    pub context_bytes: u64,
}

/// Converts one request into record batches, one per table that has rows.
///
/// `received_at` (unix nanoseconds) stands in for log records that carry no
/// time at all.
pub fn convert(payload: &Payload, received_at: u64) -> Vec<(Table, RecordBatch)> {
    let out = match payload {
        Payload::Traces(req) => {
            let mut b = SpansBuilder::default();
            b.append_request(req);
            vec![(Table::Spans, b.finish())]
        }
        Payload::Converted(c) => vec![(c.table(), c.batch.clone())],
        Payload::Logs(req) => {
            let mut b = LogsBuilder::default();
            b.append_request(req, received_at);
            vec![(Table::Logs, b.finish())]
        }
        Payload::Metrics(req) => {
            let mut b = MetricsBuilder::default();
            b.append_request(req);
            b.finish()
        }
        Payload::Profiles(batch) => vec![(Table::ProfileSamples, batch.clone())],
    };
    out.into_iter().filter(|(_, b)| b.num_rows() > 0).collect()
}

/// An empty batch with the table's schema.
pub fn empty_batch(table: Table) -> RecordBatch {
    match table {
        Table::Spans => SpansBuilder::default().finish(),
        Table::Logs => LogsBuilder::default().finish(),
        Table::ProfileSamples => ProfileSamplesBuilder::default().finish(),
        t => MetricsBuilder::empty(t),
    }
}

/// Assembles a batch; the builders guarantee equal lengths and matching types,
/// so a failure here is a programming error.
fn batch_from_columns(cols: Vec<columns::Column>) -> RecordBatch {
    let (fields, arrays): (Vec<_>, Vec<_>) = cols.into_iter().unzip();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .expect("column builders produce consistent batches")
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
        Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
        metric::Data, number_data_point,
    };

    fn metric(name: &str, data: Data) -> Metric {
        Metric {
            name: name.into(),
            data: Some(data),
            ..Default::default()
        }
    }

    fn number(v: f64) -> NumberDataPoint {
        NumberDataPoint {
            time_unix_nano: 5,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    /// Flushing concatenates batches with the table schema, so every batch a
    /// request produces must have exactly that schema.
    #[test]
    fn every_metric_type_goes_to_its_table_with_the_table_schema() {
        let metrics = vec![
            metric(
                "g",
                Data::Gauge(Gauge {
                    data_points: vec![number(1.0)],
                }),
            ),
            metric(
                "s",
                Data::Sum(Sum {
                    data_points: vec![number(2.0), number(3.0)],
                    aggregation_temporality: 1,
                    is_monotonic: true,
                }),
            ),
            metric(
                "h",
                Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        time_unix_nano: 5,
                        count: 3,
                        bucket_counts: vec![1, 2],
                        explicit_bounds: vec![10.0],
                        ..Default::default()
                    }],
                    aggregation_temporality: 2,
                }),
            ),
            metric(
                "e",
                Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        time_unix_nano: 5,
                        count: 1,
                        scale: 3,
                        ..Default::default()
                    }],
                    aggregation_temporality: 2,
                }),
            ),
            metric(
                "q",
                Data::Summary(Summary {
                    data_points: vec![SummaryDataPoint {
                        time_unix_nano: 5,
                        count: 1,
                        sum: 2.0,
                        ..Default::default()
                    }],
                }),
            ),
        ];
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let out = convert(&Payload::Metrics(req), 0);
        let got: Vec<(Table, usize)> = out.iter().map(|(t, b)| (*t, b.num_rows())).collect();
        assert_eq!(
            got,
            vec![
                (Table::MetricsGauge, 1),
                (Table::MetricsSum, 2),
                (Table::MetricsHistogram, 1),
                (Table::MetricsExponentialHistogram, 1),
                (Table::MetricsSummary, 1),
            ]
        );
        for (table, batch) in &out {
            assert_eq!(batch.schema(), table.schema(), "{table}");
        }
    }

    #[test]
    fn promoted_attributes_never_lose_values() {
        use arrow::array::{Array, AsArray, MapArray};
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

        let kv = |k: &str, v: Value| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        };
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            start_time_unix_nano: 1,
            attributes: vec![
                kv(
                    "http.response.status_code",
                    Value::StringValue("500".into()),
                ),
                kv("http.route", Value::StringValue("/a".into())),
                kv("http.route", Value::StringValue("/b".into())),
                kv("custom", Value::IntValue(7)),
            ],
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let out = convert(&Payload::Traces(req), 0);
        let batch = &out[0].1;
        let col = |n: &str| batch.column_by_name(n).unwrap().clone();
        assert!(
            col("http_response_status_code").is_null(0),
            "a string status code is not an int"
        );
        assert_eq!(col("http_route").as_string::<i32>().value(0), "/a");
        let attrs = col("attributes");
        let map = attrs.as_any().downcast_ref::<MapArray>().unwrap();
        let keys: Vec<String> = map
            .value(0)
            .column(0)
            .as_string::<i32>()
            .iter()
            .map(|k| k.unwrap().to_string())
            .collect();
        assert_eq!(keys, ["http.response.status_code", "http.route", "custom"]);
    }
}
