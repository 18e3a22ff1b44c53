//! Record batches → Parquet bytes: split by hour partition, sort for
//! compression and pruning, encode with zstd, dictionaries, page statistics
//! and a bloom filter on trace ids.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{
    SortColumn, SortOptions, concat_batches, lexsort_to_indices, take_record_batch,
};
use arrow::datatypes::TimestampNanosecondType;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::StorageError;
use super::layout::Partition;
use crate::schema::Table;

/// Concatenates batches and splits the rows by hour partition of the table's
/// time column. Rows with a null time go to the partition of `fallback_ns`.
pub fn split_by_partition(
    table: Table,
    batches: &[RecordBatch],
    fallback_ns: i64,
) -> Result<BTreeMap<Partition, RecordBatch>, StorageError> {
    let schema = table.schema();
    let all = concat_batches(&schema, batches)?;
    let times = all
        .column_by_name(table.time_column())
        .ok_or_else(|| StorageError::Schema(format!("{table} has no time column")))?
        .as_primitive::<TimestampNanosecondType>();
    let mut rows: BTreeMap<Partition, Vec<u32>> = BTreeMap::new();
    for i in 0..times.len() {
        let t = if times.is_null(i) {
            fallback_ns
        } else {
            times.value(i)
        };
        rows.entry(Partition::of_nanos(t))
            .or_default()
            .push(i as u32);
    }
    let mut out = BTreeMap::new();
    for (p, idx) in rows {
        let batch = if idx.len() == all.num_rows() {
            all.clone()
        } else {
            take_record_batch(&all, &UInt32Array::from(idx))?
        };
        out.insert(p, batch);
    }
    Ok(out)
}

/// Sorts rows by the table's sort columns.
pub fn sort(table: Table, batch: &RecordBatch) -> Result<RecordBatch, StorageError> {
    let cols: Vec<SortColumn> = table
        .sort_columns()
        .iter()
        .filter_map(|name| batch.column_by_name(name))
        .map(|c| SortColumn {
            values: c.clone(),
            options: Some(SortOptions {
                descending: false,
                nulls_first: true,
            }),
        })
        .collect();
    if cols.is_empty() || batch.num_rows() < 2 {
        return Ok(batch.clone());
    }
    let idx = lexsort_to_indices(&cols, None)?;
    Ok(take_record_batch(batch, &idx)?)
}

/// Writer settings for a table.
pub fn writer_properties(table: Table, metadata: Vec<KeyValue>, rows: usize) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_key_value_metadata(Some(metadata));
    for col in table.bloom_filter_columns() {
        let path = ColumnPath::from(*col);
        b = b
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), 0.01)
            .set_column_bloom_filter_max_ndv(path, rows.max(1) as u64);
    }
    // Times grow within a sorted run: delta encoding beats a dictionary.
    for col in ["start_time", "time", "observed_time", "duration_ns"] {
        if table.schema().field_with_name(col).is_ok() {
            b = b
                .set_column_dictionary_enabled(ColumnPath::from(col), false)
                .set_column_encoding(ColumnPath::from(col), Encoding::DELTA_BINARY_PACKED);
        }
    }
    // Span ids are random: a dictionary only costs time.
    if table == Table::Spans {
        b = b.set_column_dictionary_enabled(ColumnPath::from("span_id"), false);
    }
    b.build()
}

/// Encodes one sorted batch as a Parquet file.
pub fn encode(
    table: Table,
    batch: &RecordBatch,
    metadata: Vec<KeyValue>,
) -> Result<Vec<u8>, StorageError> {
    let props = writer_properties(table, metadata, batch.num_rows());
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() / 8);
    let mut w = ArrowWriter::try_new(&mut buf, Arc::clone(&batch.schema()), Some(props))?;
    w.write(batch)?;
    w.close()?;
    Ok(buf)
}
