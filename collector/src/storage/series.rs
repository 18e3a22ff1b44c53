//! A metric row's series as one number, so that flushes and compaction
//! store the rows of one series next to each other: its times and values
//! then sit together in the file (better delta and dictionary encoding), and
//! a reader turning rows into series (PromQL) meets each series' identity
//! once per run of rows instead of once per row.

use std::hash::{DefaultHasher, Hash, Hasher};

use arrow::array::{Array, AsArray, MapArray, RecordBatch, StringArray, StructArray, UInt64Array};
use arrow::datatypes::{DataType, Float64Type, Int64Type};

/// Stands for the series hash in [`crate::schema::Table::sort_columns`].
pub const SERIES: &str = "(series)";

/// Columns that, with `metric_name`, `service_name` and `attributes`, make a
/// metric row's series.
const IDENTITY: [&str; 4] = [
    "service_namespace",
    "service_instance_id",
    "scope_name",
    "scope_version",
];

/// One hash per row of `batch` over its series identity besides the metric
/// and service names (which sort before it). Equal series give equal
/// hashes; the order of different series is arbitrary but stable.
pub fn hashes(batch: &RecordBatch) -> UInt64Array {
    let strings: Vec<&StringArray> = IDENTITY
        .iter()
        .filter_map(|n| batch.column_by_name(n))
        .filter(|c| c.data_type() == &DataType::Utf8)
        .map(|c| c.as_string::<i32>())
        .collect();
    let attributes = batch
        .column_by_name("attributes")
        .and_then(|c| c.as_map_opt());
    (0..batch.num_rows())
        .map(|row| {
            // Fixed keys: the same series sorts the same way in every file.
            let mut h = DefaultHasher::new();
            for c in &strings {
                c.is_valid(row).then(|| c.value(row)).hash(&mut h);
            }
            if let Some(map) = attributes {
                hash_entries(map, row, &mut h);
            }
            h.finish()
        })
        .collect()
}

/// Feeds the attribute entries of `row` (key, then the typed value) to `h`.
fn hash_entries(map: &MapArray, row: usize, h: &mut DefaultHasher) {
    let offsets = map.value_offsets();
    let (from, to) = (offsets[row] as usize, offsets[row + 1] as usize);
    let keys = map.keys().as_string_opt::<i32>();
    let values = map.values().as_struct_opt();
    for e in from..to {
        if let Some(keys) = keys {
            keys.value(e).hash(h);
        }
        if let Some(values) = values {
            hash_value(values, e, h);
        }
    }
}

/// Feeds one OTLP `AnyValue` (a struct with one field set per type) to `h`.
fn hash_value(v: &StructArray, e: usize, h: &mut DefaultHasher) {
    for (i, child) in v.columns().iter().enumerate() {
        if !child.is_valid(e) {
            continue;
        }
        i.hash(h);
        match child.data_type() {
            DataType::Utf8 => child.as_string::<i32>().value(e).hash(h),
            DataType::Int64 => child.as_primitive::<Int64Type>().value(e).hash(h),
            DataType::Float64 => child
                .as_primitive::<Float64Type>()
                .value(e)
                .to_bits()
                .hash(h),
            DataType::Boolean => child.as_boolean().value(e).hash(h),
            DataType::Binary => child.as_binary::<i32>().value(e).hash(h),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::convert;
    use crate::otlp::Payload;
    use crate::schema::Table;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };

    fn point(route: Value) -> NumberDataPoint {
        NumberDataPoint {
            time_unix_nano: 5,
            attributes: vec![KeyValue {
                key: "route".into(),
                value: Some(AnyValue { value: Some(route) }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn equal_series_hash_equal_and_typed_values_count() {
        let points = vec![
            point(Value::StringValue("/a".into())),
            point(Value::StringValue("/a".into())),
            point(Value::StringValue("/b".into())),
            point(Value::IntValue(1)),
            point(Value::StringValue("1".into())),
        ];
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "g".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: points,
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let out = convert(&Payload::Metrics(req), 0);
        let (table, batch) = &out[0];
        assert_eq!(*table, Table::MetricsGauge);
        let h = hashes(batch);
        assert_eq!(h.value(0), h.value(1));
        assert_ne!(h.value(0), h.value(2));
        // An int attribute is not the string of its digits.
        assert_ne!(h.value(3), h.value(4));
    }
}
