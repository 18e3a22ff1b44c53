//! Which metrics each stored file holds, read once per file.
//!
//! Every PromQL query first lists the metrics with samples in its range (to
//! map Prometheus names to stored ones). Grouping every row of the range by
//! name, unit and description cost a fifth of a 6-hour query over 10k
//! series; files never change, so each file's list is read once (its
//! name/unit/description columns only) and kept while the file exists.
//! Buffered rows are listed afresh each time.
//!
//! Files are taken whole when their hour overlaps the range, so a metric
//! whose samples in such an hour all lie outside the range is still listed
//! (as Prometheus lists the names of every block overlapping a range); its
//! selectors then find no samples.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::TimestampNanosecondType;
use collector::schema::Table;
use collector::storage::DataFile;
use collector::storage::reader::StoreReader;
use datafusion::parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use datafusion::parquet::errors::ParquetError;
use futures::TryStreamExt;
use object_store::path::Path;

use crate::catalog::TimeRange;
use crate::engine::QueryEngine;
use crate::error::QueryError;

/// One metric as stored: name, unit, description and, for sums, whether
/// it is monotonic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoredMetric {
    /// `metric_name`.
    pub name: String,
    /// `metric_unit`.
    pub unit: Option<String>,
    /// `metric_description`.
    pub help: Option<String>,
    /// `is_monotonic` (sums only).
    pub monotonic: Option<bool>,
}

/// The columns a list reads.
const COLUMNS: [&str; 4] = [
    "metric_name",
    "metric_unit",
    "metric_description",
    "is_monotonic",
];

/// Metric lists of stored files, by path.
#[derive(Debug, Default)]
pub struct MetricLists {
    files: Mutex<HashMap<Path, Arc<BTreeSet<StoredMetric>>>>,
}

impl MetricLists {
    /// The metrics of `table` in files whose hour overlaps `[min_ms, max_ms]`
    /// and in buffered rows within it.
    pub async fn list(
        &self,
        engine: &QueryEngine,
        table: Table,
        min_ms: i64,
        max_ms: i64,
    ) -> Result<BTreeSet<StoredMetric>, QueryError> {
        let range = TimeRange {
            min: min_ms.saturating_mul(1_000_000),
            max: max_ms.saturating_mul(1_000_000),
        };
        let (files, batches) = engine.ingest().view(table);
        self.forget_gone(table, &files);
        let mut out = BTreeSet::new();
        for f in files.iter().filter(|f| range.overlaps_hour(f.partition)) {
            out.extend(self.of_file(engine, f).await?.iter().cloned());
        }
        for b in &batches {
            add_rows(b, Some(range), &mut out);
        }
        Ok(out)
    }

    /// The metrics file `f` holds, read on first use.
    pub async fn of_file(
        &self,
        engine: &QueryEngine,
        f: &DataFile,
    ) -> Result<Arc<BTreeSet<StoredMetric>>, QueryError> {
        let cached = self.lock().get(&f.meta.location).cloned();
        if let Some(list) = cached {
            return Ok(list);
        }
        let store = engine.ingest().storage().object_store();
        let reader = StoreReader::new(store, f.meta.location.clone(), f.meta.size);
        let failed =
            |e: ParquetError| QueryError::Execution(format!("reading {}: {e}", f.meta.location));
        let builder = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(failed)?;
        let leaves: Vec<usize> = builder
            .parquet_schema()
            .columns()
            .iter()
            .enumerate()
            .filter(|(_, c)| COLUMNS.contains(&c.path().string().as_str()))
            .map(|(i, _)| i)
            .collect();
        let mask = ProjectionMask::leaves(builder.parquet_schema(), leaves);
        let stream = builder.with_projection(mask).build().map_err(failed)?;
        let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(failed)?;
        let mut list = BTreeSet::new();
        for b in &batches {
            add_rows(b, None, &mut list);
        }
        let list = Arc::new(list);
        self.lock().insert(f.meta.location.clone(), list.clone());
        Ok(list)
    }

    /// Drops the lists of `table`'s files no longer in the store.
    fn forget_gone(&self, table: Table, files: &[Arc<DataFile>]) {
        let live: std::collections::HashSet<&Path> =
            files.iter().map(|f| &f.meta.location).collect();
        let prefix = format!("{}/", table.name());
        self.lock()
            .retain(|p, _| !p.as_ref().starts_with(&prefix) || live.contains(p));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Path, Arc<BTreeSet<StoredMetric>>>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Adds the metrics of `b`'s rows (those within `range`, if given).
fn add_rows(b: &RecordBatch, range: Option<TimeRange>, out: &mut BTreeSet<StoredMetric>) {
    let Some(names) = b
        .column_by_name("metric_name")
        .and_then(|c| c.as_string_opt::<i32>())
    else {
        return;
    };
    let string = |n: &str| b.column_by_name(n).and_then(|c| c.as_string_opt::<i32>());
    let (unit, help) = (string("metric_unit"), string("metric_description"));
    let monotonic = b
        .column_by_name("is_monotonic")
        .and_then(|c| c.as_boolean_opt());
    let time = b
        .column_by_name("time")
        .and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>());
    fn opt(a: Option<&StringArray>, i: usize) -> Option<&str> {
        a.filter(|a| a.is_valid(i)).map(|a| a.value(i))
    }
    let flag = |i: usize| monotonic.filter(|m| m.is_valid(i)).map(|m| m.value(i));
    let mut last: Option<usize> = None;
    for i in 0..b.num_rows() {
        if let (Some(r), Some(t)) = (range, time)
            && (t.is_null(i) || t.value(i) < r.min || t.value(i) > r.max)
        {
            continue;
        }
        // Rows of one metric come together: skip repeats cheaply.
        if let Some(j) = last {
            let same = |a: Option<&StringArray>| opt(a, i) == opt(a, j);
            if names.value(i) == names.value(j) && same(unit) && same(help) && flag(i) == flag(j) {
                continue;
            }
        }
        last = Some(i);
        out.insert(StoredMetric {
            name: names.value(i).to_string(),
            unit: opt(unit, i).map(String::from),
            help: opt(help, i).map(String::from),
            monotonic: flag(i),
        });
    }
}
