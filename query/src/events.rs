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
