//! Reads new files' series labels and metric lists ahead of queries.
//!
//! A PromQL query lists the metrics of the files in its range and reads the
//! labels of the series ids the label cache lacks. Done at query time, that
//! made the first query of a dashboard over 10k series 1.2–1.8× slower than
//! the same query repeated (`docs/benchmarks.md`). Files never change once
//! written, so the warmer reads both as files appear — after a flush, a
//! compaction or at start — newest hour first, while the label cache has
//! room (Prometheus keeps its whole series index in memory for the same
//! reason). Only each series' first row per file is read.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use collector::schema::Table;
use collector::storage::DataFile;
use datafusion::prelude::{col, lit};
use object_store::path::Path;
use tokio::sync::watch;

use super::rows::{LABEL_COLUMNS, SERIES_FIRST, SERIES_ID};
use super::select::METRIC_TABLES;
use crate::engine::{QueryEngine, StoreScan};
use crate::error::QueryError;
use crate::events::{FilesWarmed, WarmFailed};

/// How often the warmer looks for new files.
pub const WARM_INTERVAL: Duration = Duration::from_secs(5);

/// Reads the labels and metric lists of stored files as they appear.
pub struct Warmer {
    engine: QueryEngine,
    /// Files already read, per table (files gone from the store are
    /// forgotten).
    done: HashMap<Table, HashSet<Path>>,
}

/// What one pass read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Warmed {
    /// Files read.
    pub files: usize,
    /// Series whose labels were new to the cache.
    pub series: usize,
}

impl Warmer {
    /// A warmer for `engine`'s caches.
    pub fn new(engine: QueryEngine) -> Self {
        Warmer {
            engine,
            done: HashMap::new(),
        }
    }

    /// Reads the files that appeared since the last pass.
    pub async fn warm_new_files(&mut self) -> Warmed {
        let started = Instant::now();
        let mut out = Warmed::default();
        for table in METRIC_TABLES {
            for f in self.new_files(table) {
                match self.warm_file(table, f.clone()).await {
                    Ok(series) => out.series += series,
                    Err(error) => WarmFailed {
                        file: f.meta.location.as_ref(),
                        error: &error,
                    }
                    .emit(),
                }
                out.files += 1;
                self.done
                    .entry(table)
                    .or_default()
                    .insert(f.meta.location.clone());
            }
        }
        if out.files > 0 {
            FilesWarmed {
                files: out.files,
                series: out.series,
                elapsed: started.elapsed(),
            }
            .emit(self.engine.ingest().metrics());
        }
        out
    }

    /// `table`'s files not read yet, newest hour first.
    fn new_files(&mut self, table: Table) -> Vec<Arc<DataFile>> {
        let (files, _) = self.engine.ingest().view(table);
        let done = self.done.entry(table).or_default();
        let live: HashSet<&Path> = files.iter().map(|f| &f.meta.location).collect();
        done.retain(|p| live.contains(p));
        let mut new: Vec<Arc<DataFile>> = files
            .iter()
            .filter(|f| !done.contains(&f.meta.location))
            .cloned()
            .collect();
        new.sort_by_key(|f| std::cmp::Reverse(f.partition));
        new
    }

    /// Reads `f`'s metric list and the labels of its series; returns how
    /// many series were new to the cache.
    async fn warm_file(&self, table: Table, f: Arc<DataFile>) -> Result<usize, QueryError> {
        let engine = &self.engine;
        engine.metric_lists().of_file(engine, &f).await?;
        let cache = engine.label_cache();
        if !cache.has_room_to_warm() {
            return Ok(0);
        }
        let mut columns = LABEL_COLUMNS.to_vec();
        columns.push(SERIES_ID);
        let firsts = col(SERIES_FIRST).eq(lit(true));
        let mut series = 0;
        engine
            .for_each_store_batch(
                table,
                &columns,
                StoreScan::Files(vec![f], &[firsts]),
                |batch| {
                    series += cache.learn(batch);
                    Ok(())
                },
            )
            .await?;
        Ok(series)
    }

    /// Passes every [`WARM_INTERVAL`] until `stop` turns true.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            self.warm_new_files().await;
            tokio::select! {
                _ = tokio::time::sleep(WARM_INTERVAL) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}
