//! Record batches → Parquet bytes: split by hour partition, order rows for
//! compression and pruning, encode with zstd, dictionaries, page statistics
//! and a bloom filter on trace ids.
//!
//! Spans and logs are flushed in arrival order: SDK batches already group
//! them by resource and keep each trace's spans together in time order, and
//! measurements showed that re-sorting by service and trace id made files
//! about 25% larger (see `docs/benchmarks.md`). Skipping the sort also lets
//! a flush stream the buffered batches into the writer without copying them.
//! Compaction keeps that order too (see `storage::compaction`).

use std::collections::{BTreeMap, HashSet};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch, UInt32Array};
use arrow::compute::{
    SortColumn, SortOptions, concat_batches, filter_record_batch, lexsort_to_indices,
    take_record_batch,
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

/// False-positive rate of the trace-id bloom filters. At 1 % a lookup in
/// 86 row groups of 128 Ki spans let 1–3 unrelated groups through, and
/// decoding their `trace_id`s was most of the query; 0.1 % costs 0.12
/// bytes per span (the filter of a row group grows from 16 to 32 KiB).
const BLOOM_FPP: f64 = 0.001;

/// One encoded file: its partition, row count and bytes.
pub struct EncodedFile {
    /// Hour partition.
    pub partition: Partition,
    /// Rows in the file.
    pub rows: usize,
    /// Parquet bytes.
    pub bytes: Vec<u8>,
}

/// Encodes buffered batches as one file per hour partition. `metadata` gets
/// the number of files and returns the key-value metadata for each.
pub fn encode_flush(
    table: Table,
    batches: &[RecordBatch],
    fallback_ns: i64,
    metadata: impl Fn(usize) -> Vec<KeyValue>,
) -> Result<Vec<EncodedFile>, StorageError> {
    let parts = split(table, batches, fallback_ns)?;
    let meta = metadata(parts.len());
    parts
        .into_iter()
        .map(|(partition, batches)| {
            let batches = in_table_order(table, batches)?;
            let rows = batches.iter().map(|b| b.num_rows()).sum();
            let bytes = encode(table, &batches, meta.clone())?;
            Ok(EncodedFile {
                partition,
                rows,
                bytes,
            })
        })
        .collect()
}

/// Groups rows by hour partition of the table's time column without copying
/// batches that fall in one partition (the usual case). Rows with a null time
/// go to the partition of `fallback_ns`.
fn split(
    table: Table,
    batches: &[RecordBatch],
    fallback_ns: i64,
) -> Result<BTreeMap<Partition, Vec<RecordBatch>>, StorageError> {
    let mut out: BTreeMap<Partition, Vec<RecordBatch>> = BTreeMap::new();
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        let times = batch
            .column_by_name(table.time_column())
            .ok_or_else(|| StorageError::Schema(format!("{table} has no time column")))?
            .as_primitive::<TimestampNanosecondType>();
        let parts: Int64Array = (0..times.len())
            .map(|i| {
                Some(
                    Partition::of_nanos(if times.is_null(i) {
                        fallback_ns
                    } else {
                        times.value(i)
                    })
                    .0,
                )
            })
            .collect();
        let (min, max) = parts
            .values()
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), p| (lo.min(*p), hi.max(*p)));
        if min == max {
            out.entry(Partition(min)).or_default().push(batch.clone());
            continue;
        }
        let distinct: std::collections::BTreeSet<i64> = parts.values().iter().copied().collect();
        for p in distinct {
            let mask: BooleanArray = parts.values().iter().map(|v| Some(*v == p)).collect();
            out.entry(Partition(p))
                .or_default()
                .push(filter_record_batch(batch, &mask)?);
        }
    }
    Ok(out)
}

fn sort_by(
    table: Table,
    batch: &RecordBatch,
    columns: &[&str],
) -> Result<RecordBatch, StorageError> {
    if batch.num_rows() < 2 {
        return Ok(batch.clone());
    }
    let opts = Some(SortOptions {
        descending: false,
        nulls_first: true,
    });
    let cols: Vec<SortColumn> = columns
        .iter()
        .filter_map(|name| batch.column_by_name(name).cloned())
        .map(|values: ArrayRef| SortColumn {
            values,
            options: opts,
        })
        .collect();
    if cols.is_empty() {
        return Err(StorageError::Schema(format!(
            "{table} lacks its sort columns"
        )));
    }
    let idx: UInt32Array = lexsort_to_indices(&cols, None)?;
    super::series::mark_firsts(take_record_batch(batch, &idx)?)
}

/// `batches` in the table's row order ([`Table::flush_sort_columns`]): as
/// they are for arrival order, else concatenated into one sorted batch.
pub fn in_table_order(
    table: Table,
    batches: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>, StorageError> {
    match table.flush_sort_columns() {
        [] => Ok(batches),
        cols => {
            let all = concat_batches(&table.schema(), &batches)?;
            drop(batches);
            Ok(vec![sort_by(table, &all, cols)?])
        }
    }
}

/// Distinct non-null ids in fixed-size binary columns (trace ids): sizes the
/// bloom filter, which would otherwise cost a byte or more per row.
fn distinct_ids(batches: &[RecordBatch], column: &str) -> usize {
    let mut seen = HashSet::new();
    for b in batches {
        match b
            .column_by_name(column)
            .and_then(|c| c.as_fixed_size_binary_opt())
        {
            Some(ids) => seen.extend(ids.iter().flatten()),
            None => return batches.iter().map(|b| b.num_rows()).sum(),
        }
    }
    seen.len()
}

/// Writer settings for a table, its bloom filters sized for `batches`.
pub fn writer_properties(
    table: Table,
    metadata: Vec<KeyValue>,
    batches: &[RecordBatch],
) -> WriterProperties {
    writer_properties_for(table, metadata, |col| distinct_ids(batches, col))
}

/// Writer settings for row groups of `group_rows` rows like `sample`: the
/// bloom filters are sized by the sample's distinct ids scaled to the row
/// group (for files written before all rows are seen).
pub fn writer_properties_scaled(
    table: Table,
    metadata: Vec<KeyValue>,
    sample: &[RecordBatch],
    group_rows: usize,
) -> WriterProperties {
    let rows: usize = sample.iter().map(|b| b.num_rows()).sum::<usize>().max(1);
    let props = writer_properties_for(table, metadata, |col| {
        let distinct = distinct_ids(sample, col) as f64;
        (distinct * group_rows as f64 / rows as f64).ceil() as usize
    });
    props
        .into_builder()
        .set_max_row_group_row_count(Some(group_rows.max(1)))
        .build()
}

fn writer_properties_for(
    table: Table,
    metadata: Vec<KeyValue>,
    distinct: impl Fn(&str) -> usize,
) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::None)
        .set_key_value_metadata(Some(metadata));
    // Page statistics (and so the page index) on top-level columns, which
    // queries filter on. Min/max of attribute map entries or list items
    // cannot prune anything useful, and computing them was a tenth of the
    // flush CPU.
    for f in table.schema().fields() {
        if !f.data_type().is_nested() {
            b = b.set_column_statistics_enabled(
                ColumnPath::from(f.name().as_str()),
                EnabledStatistics::Page,
            );
        }
    }
    for col in table.bloom_filter_columns() {
        let path = ColumnPath::from(*col);
        b = b
            .set_column_bloom_filter_enabled(path.clone(), true)
            .set_column_bloom_filter_fpp(path.clone(), BLOOM_FPP)
            .set_column_bloom_filter_max_ndv(path, distinct(col).max(1) as u64);
    }
    // Times grow within a run of rows: delta encoding beats a dictionary.
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

/// Encodes batches (in order) as one Parquet file.
pub fn encode(
    table: Table,
    batches: &[RecordBatch],
    metadata: Vec<KeyValue>,
) -> Result<Vec<u8>, StorageError> {
    let props = writer_properties(table, metadata, batches);
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, table.schema(), Some(props))?;
    for b in batches {
        w.write(b)?;
    }
    w.close()?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::empty_batch;

    #[test]
    fn empty_input_writes_no_file() {
        let files =
            encode_flush(Table::Spans, &[empty_batch(Table::Spans)], 0, |_| vec![]).unwrap();
        assert!(files.is_empty());
    }
}
