//! A metric row's series as one stored number, `series_id`, and a flag,
//! `series_first`, on the first row of each run of one series.
//!
//! Flushes and compaction sort metric rows by `metric_name, service_name,
//! series_id, time`, so a series' rows sit together in a file (better delta
//! and dictionary encoding). Readers that turn rows into series (PromQL)
//! then read the label columns only of the rows with `series_first` set and
//! the times and values of the others: the label columns are most of a
//! metric row's width, and decoding them per row was most of a query's
//! time.
//!
//! The id is an XxHash64 of the series' identity, a specified algorithm, so
//! ids written by one build are ids of the next. `series_first` is a hint:
//! a reader must cope with a series whose flagged row it did not read (e.g.
//! one filtered out by time).

use std::hash::Hasher;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, MapArray, RecordBatch, StringArray, StructArray,
    UInt64Array,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, UInt64Type};
use twox_hash::XxHash64;

use super::StorageError;

/// The stored series id column.
pub const SERIES_ID: &str = "series_id";
/// The stored first-row-of-a-run flag column.
pub const SERIES_FIRST: &str = "series_first";

/// String columns that, with `attributes`, make a metric row's series.
const IDENTITY: [&str; 6] = [
    "metric_name",
    "service_name",
    "service_namespace",
    "service_instance_id",
    "scope_name",
    "scope_version",
];

/// One id per row of `batch` over its series identity. Equal series give
/// equal ids in every file and every build.
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
            let mut h = XxHash64::with_seed(0);
            for c in &strings {
                match c.is_valid(row) {
                    true => {
                        h.write_u8(1);
                        h.write(c.value(row).as_bytes());
                        h.write_u8(0xff);
                    }
                    false => h.write_u8(0),
                }
            }
            if let Some(map) = attributes {
                hash_entries(map, row, &mut h);
            }
            h.finish()
        })
        .collect()
}

/// `batch` with `series_id` and `series_first` (first row of each run of
/// equal ids) appended; used on freshly converted metric batches.
pub fn with_series(batch: RecordBatch) -> Result<RecordBatch, StorageError> {
    let ids = hashes(&batch);
    let firsts = firsts(&ids);
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    // Nullable: reading files written before the columns existed gives nulls.
    fields.push(Field::new(SERIES_ID, DataType::UInt64, true));
    fields.push(Field::new(SERIES_FIRST, DataType::Boolean, true));
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(ids));
    columns.push(Arc::new(firsts));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Sets `series_first` again after rows moved (sorting, merging); batches
/// without the columns are returned as they are.
pub fn mark_firsts(batch: RecordBatch) -> Result<RecordBatch, StorageError> {
    let schema = batch.schema();
    let (Ok(id), Ok(first)) = (schema.index_of(SERIES_ID), schema.index_of(SERIES_FIRST)) else {
        return Ok(batch);
    };
    let Some(ids) = batch.column(id).as_primitive_opt::<UInt64Type>() else {
        return Ok(batch);
    };
    let mut columns = batch.columns().to_vec();
    columns[first] = Arc::new(firsts(ids)) as ArrayRef;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Brings a metric batch read from a file written before `series_id`
/// existed to the current columns (compaction merges old and new files).
pub fn upgrade(batch: RecordBatch) -> Result<RecordBatch, StorageError> {
    if batch.schema().index_of(SERIES_ID).is_ok() || batch.column_by_name("metric_name").is_none() {
        return Ok(batch);
    }
    with_series(batch)
}

fn firsts(ids: &UInt64Array) -> BooleanArray {
    let v = ids.values();
    (0..v.len())
        .map(|i| Some(i == 0 || v[i] != v[i - 1]))
        .collect()
}

/// Feeds the attribute entries of `row` (key, then the typed value) to `h`.
fn hash_entries(map: &MapArray, row: usize, h: &mut XxHash64) {
    let offsets = map.value_offsets();
    let (from, to) = (offsets[row] as usize, offsets[row + 1] as usize);
    let keys = map.keys().as_string_opt::<i32>();
    let values = map.values().as_struct_opt();
    for e in from..to {
        if let Some(keys) = keys {
            h.write(keys.value(e).as_bytes());
            h.write_u8(0xff);
        }
        if let Some(values) = values {
            hash_value(values, e, h);
        }
    }
}

/// Feeds one OTLP `AnyValue` (a struct with one field set per type) to `h`.
fn hash_value(v: &StructArray, e: usize, h: &mut XxHash64) {
    for (i, child) in v.columns().iter().enumerate() {
        if !child.is_valid(e) {
            continue;
        }
        h.write_u8(i as u8);
        match child.data_type() {
            DataType::Utf8 => {
                h.write(child.as_string::<i32>().value(e).as_bytes());
                h.write_u8(0xff);
            }
            DataType::Int64 => h.write_i64(child.as_primitive::<Int64Type>().value(e)),
            DataType::Float64 => {
                h.write_u64(child.as_primitive::<Float64Type>().value(e).to_bits())
            }
            DataType::Boolean => h.write_u8(child.as_boolean().value(e) as u8),
            DataType::Binary => {
                let b = child.as_binary::<i32>().value(e);
                h.write_u64(b.len() as u64);
                h.write(b);
            }
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
        // Converted batches carry the same ids, flagged at each change.
        let stored = batch
            .column_by_name(SERIES_ID)
            .unwrap()
            .as_primitive::<UInt64Type>();
        assert_eq!(stored, &h);
        assert_eq!(flags(batch), [true, false, true, true, true]);
        // Rows moved: the flags are wrong until a sort sets them again.
        let reversed = arrow::compute::take_record_batch(
            batch,
            &arrow::array::UInt32Array::from(vec![0, 2, 1, 3, 4]),
        )
        .unwrap();
        assert_eq!(flags(&reversed), [true, true, false, true, true]);
        let sorted = crate::storage::in_table_order(Table::MetricsGauge, vec![reversed])
            .unwrap()
            .remove(0);
        assert_eq!(
            flags(&sorted).iter().filter(|f| **f).count(),
            4,
            "four series, each flagged once: {:?}",
            flags(&sorted)
        );
    }

    fn flags(b: &RecordBatch) -> Vec<bool> {
        let f = b.column_by_name(SERIES_FIRST).unwrap().as_boolean();
        (0..f.len()).map(|i| f.value(i)).collect()
    }
}
