//! Sightline's own metrics, registered in one place and served in the
//! Prometheus text format on `GET /metrics`.
//!
//! Names follow `sightline_<component>_<what>_<unit>`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// All self-metrics. Cheap to clone (every metric is reference counted).
#[derive(Clone)]
pub struct SelfMetrics {
    registry: Registry,
    /// Items (spans, data points, log records) received, by signal and transport.
    pub items_received: IntCounterVec,
    /// Items accepted (durable in the WAL and acknowledged).
    pub items_accepted: IntCounterVec,
    /// Items refused, by signal, transport and reason.
    pub items_rejected: IntCounterVec,
    /// Requests by signal, transport and outcome.
    pub requests: IntCounterVec,
    /// Request body bytes (after decompression).
    pub request_bytes: IntCounterVec,
    /// Requests refused because the memory budget was exhausted.
    pub overload_rejections: IntCounterVec,
    /// WAL fsync latency.
    pub wal_fsync_seconds: Histogram,
    /// Bytes appended to the WAL.
    pub wal_bytes_written: IntCounter,
    /// Current number of WAL segment files.
    pub wal_segments: IntGauge,
    /// Records replayed from the WAL at start.
    pub wal_replayed_records: IntCounter,
    /// Bytes of unflushed and in-flight data.
    pub memory_bytes: IntGauge,
    /// The configured memory budget.
    pub memory_limit_bytes: IntGauge,
    /// Rows waiting in the buffer, by table.
    pub buffer_rows: prometheus::IntGaugeVec,
    /// Duration of buffer flushes to Parquet, by table.
    pub flush_seconds: HistogramVec,
    /// Failed flushes (they are retried; nothing is dropped), by table.
    pub flush_errors: IntCounterVec,
    /// Parquet files written, by table and reason (`flush` or `compaction`).
    pub files_written: IntCounterVec,
    /// Parquet bytes written, by table and reason.
    pub bytes_written: IntCounterVec,
    /// Rows written to Parquet by flushes, by table.
    pub rows_written: IntCounterVec,
    /// Compactions completed, by table.
    pub compactions: IntCounterVec,
    /// Files deleted by retention, by table.
    pub retention_deleted_files: IntCounterVec,
}

impl Default for SelfMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric");
    registry
        .register(Box::new(h.clone()))
        .expect("unique metric");
    h
}

impl SelfMetrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Self {
        let r = Registry::new();
        // process_cpu_seconds_total, process_resident_memory_bytes, open fds…
        // Registration only fails for duplicates, and this registry is new.
        let _ = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        let sl = &["signal", "transport"];
        let wal_fsync_seconds = Histogram::with_opts(
            HistogramOpts::new("sightline_wal_fsync_duration_seconds", "WAL fsync latency.")
                .buckets(prometheus::exponential_buckets(0.0001, 2.0, 16).expect("buckets")),
        )
        .expect("valid metric");
        r.register(Box::new(wal_fsync_seconds.clone()))
            .expect("unique metric");
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let wal_bytes_written = IntCounter::new(
            "sightline_wal_written_bytes_total",
            "Bytes appended to the WAL.",
        )
        .expect("valid metric");
        r.register(Box::new(wal_bytes_written.clone()))
            .expect("unique metric");
        let wal_replayed_records = IntCounter::new(
            "sightline_wal_replayed_records_total",
            "WAL records replayed at start.",
        )
        .expect("valid metric");
        r.register(Box::new(wal_replayed_records.clone()))
            .expect("unique metric");
        let buffer_rows = prometheus::IntGaugeVec::new(
            Opts::new(
                "sightline_buffer_rows",
                "Rows waiting in the in-memory buffer.",
            ),
            &["table"],
        )
        .expect("valid metric");
        r.register(Box::new(buffer_rows.clone()))
            .expect("unique metric");
        SelfMetrics {
            items_received: counter_vec(
                &r,
                "sightline_receiver_received_items_total",
                "Items received.",
                sl,
            ),
            items_accepted: counter_vec(
                &r,
                "sightline_receiver_accepted_items_total",
                "Items accepted (durable and acknowledged).",
                sl,
            ),
            items_rejected: counter_vec(
                &r,
                "sightline_receiver_rejected_items_total",
                "Items refused, by reason.",
                &["signal", "transport", "reason"],
            ),
            requests: counter_vec(
                &r,
                "sightline_receiver_requests_total",
                "Export requests by outcome.",
                &["signal", "transport", "outcome"],
            ),
            request_bytes: counter_vec(
                &r,
                "sightline_receiver_request_bytes_total",
                "Request body bytes after decompression.",
                sl,
            ),
            overload_rejections: counter_vec(
                &r,
                "sightline_receiver_overload_rejections_total",
                "Requests refused because the memory budget was exhausted.",
                sl,
            ),
            wal_fsync_seconds,
            wal_bytes_written,
            wal_segments: gauge("sightline_wal_segments", "WAL segment files."),
            wal_replayed_records,
            memory_bytes: gauge(
                "sightline_memory_used_bytes",
                "Bytes of unflushed and in-flight data.",
            ),
            memory_limit_bytes: gauge(
                "sightline_memory_limit_bytes",
                "The memory budget for unflushed and in-flight data.",
            ),
            buffer_rows,
            flush_seconds: histogram_vec(
                &r,
                "sightline_storage_flush_duration_seconds",
                "Duration of buffer flushes to Parquet.",
                &["table"],
                prometheus::exponential_buckets(0.001, 2.0, 16).expect("buckets"),
            ),
            flush_errors: counter_vec(
                &r,
                "sightline_storage_flush_errors_total",
                "Failed flushes (retried).",
                &["table"],
            ),
            files_written: counter_vec(
                &r,
                "sightline_storage_written_files_total",
                "Parquet files written.",
                &["table", "reason"],
            ),
            bytes_written: counter_vec(
                &r,
                "sightline_storage_written_bytes_total",
                "Parquet bytes written.",
                &["table", "reason"],
            ),
            rows_written: counter_vec(
                &r,
                "sightline_storage_written_rows_total",
                "Rows written to Parquet by flushes.",
                &["table"],
            ),
            compactions: counter_vec(
                &r,
                "sightline_storage_compactions_total",
                "Compactions completed.",
                &["table"],
            ),
            retention_deleted_files: counter_vec(
                &r,
                "sightline_storage_retention_deleted_files_total",
                "Parquet files deleted by retention.",
                &["table"],
            ),
            registry: r,
        }
    }

    /// Renders every metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// The underlying registry, for components that add their own metrics.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
