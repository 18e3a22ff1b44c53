//! Observable events of the query stage: each logs and counts itself.

use std::time::Duration;

use collector::self_metrics::SelfMetrics;

use crate::error::QueryError;

/// A query finished (successfully or not).
pub struct QueryFinished<'a> {
    /// Which API ran it: `sql`, `promql`, `pgwire`, …
    pub api: &'static str,
    /// The query text, for the log line of a failure.
    pub query: &'a str,
    /// How long it took.
    pub elapsed: Duration,
    /// The error, if it failed.
    pub error: Option<&'a QueryError>,
}

impl QueryFinished<'_> {
    /// Logs the event and updates the self-metrics.
    pub fn emit(&self, metrics: &SelfMetrics) {
        let outcome = self.error.map_or("success", QueryError::error_type);
        metrics
            .queries
            .with_label_values(&[self.api, outcome])
            .inc();
        metrics
            .query_seconds
            .with_label_values(&[self.api])
            .observe(self.elapsed.as_secs_f64());
        match self.error {
            None => tracing::debug!(api = self.api, elapsed = ?self.elapsed, "query finished"),
            Some(e) => {
                tracing::info!(api = self.api, query = self.query, error = %e, "query failed")
            }
        }
    }
}

/// New metric files' labels and metric lists were read ahead of queries.
pub struct FilesWarmed {
    /// Files read.
    pub files: usize,
    /// Series whose labels were new to the label cache.
    pub series: usize,
    /// How long it took.
    pub elapsed: Duration,
}

impl FilesWarmed {
    /// Logs the event and updates the self-metrics.
    pub fn emit(&self, metrics: &SelfMetrics) {
        metrics.query_files_warmed.inc_by(self.files as u64);
        metrics.query_series_warmed.inc_by(self.series as u64);
        tracing::debug!(
            files = self.files,
            series = self.series,
            elapsed = ?self.elapsed,
            "read new files' series labels ahead of queries"
        );
    }
}

/// Reading a file's labels ahead of queries failed; queries read them
/// when they need them.
pub struct WarmFailed<'a> {
    /// The file.
    pub file: &'a str,
    /// Why.
    pub error: &'a QueryError,
}

impl WarmFailed<'_> {
    /// Logs the event.
    pub fn emit(&self) {
        tracing::warn!(file = self.file, error = %self.error, "cannot read a file's series labels ahead of queries");
    }
}
