//! Sightline's own metrics, registered in one place and served in the
//! Prometheus text format on `GET /metrics`.
//!
//! Names follow `sightline_<component>_<what>_<unit>`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
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
    /// Queries by API (`sql`, `promql`, `pgwire`, …) and outcome (`success`
    /// or the error type).
    pub queries: IntCounterVec,
    /// Query latency by API.
    pub query_seconds: HistogramVec,
    /// Stored metric files whose series labels and metric lists were read
    /// ahead of queries.
    pub query_files_warmed: IntCounter,
    /// Series whose labels were read ahead of queries.
    pub query_series_warmed: IntCounter,
    /// Remote-write samples received, accepted or refused, by outcome.
    pub remote_write_samples: IntCounterVec,
    /// SLO evaluation rounds by outcome (`success`, `error`).
    pub slo_evaluations: IntCounterVec,
    /// Duration of one SLO evaluation round.
    pub slo_evaluation_seconds: Histogram,
    /// SLO files refused at load (invalid YAML or spec).
    pub slo_files_invalid: IntGauge,
    /// SLOs being evaluated.
    pub slos: IntGauge,
    /// SLO alerts by state (`pending`, `firing`).
    pub slo_alerts: IntGaugeVec,
    /// Notification deliveries by receiver kind and outcome.
    pub slo_notifications: IntCounterVec,
    /// Whether each eBPF probe is running (1) or off (0).
    pub probe_up: IntGaugeVec,
    /// CPU profile samples recorded, by whether the user stack was walked.
    pub profile_samples: IntCounterVec,
    /// Stack addresses named from the build-id symbol cache or not.
    pub profile_symbol_lookups: IntCounterVec,
}

impl Default for SelfMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers a metric and hands it back. Registration only fails for a
/// duplicate name, which every name below rules out.
fn register<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, metric: M) -> M {
    r.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(r, IntCounter::new(name, help).expect("valid metric"))
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(r, IntGauge::new(name, help).expect("valid metric"))
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

/// Exponential buckets from `start` seconds, doubling 16 times.
fn seconds_buckets(start: f64) -> Vec<f64> {
    prometheus::exponential_buckets(start, 2.0, 16).expect("valid buckets")
}

impl SelfMetrics {
    /// Creates and registers every metric in a fresh registry.
    pub fn new() -> Self {
        let r = Registry::new();
        // process_cpu_seconds_total, process_resident_memory_bytes, open fds…
        let process = prometheus::process_collector::ProcessCollector::for_self();
        r.register(Box::new(process)).expect("unique metric");
        let sl = &["signal", "transport"];
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
            wal_fsync_seconds: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "sightline_wal_fsync_duration_seconds",
                        "WAL fsync latency.",
                    )
                    .buckets(seconds_buckets(0.0001)),
                )
                .expect("valid metric"),
            ),
            wal_bytes_written: counter(
                &r,
                "sightline_wal_written_bytes_total",
                "Bytes appended to the WAL.",
            ),
            wal_segments: gauge(&r, "sightline_wal_segments", "WAL segment files."),
            wal_replayed_records: counter(
                &r,
                "sightline_wal_replayed_records_total",
                "WAL records replayed at start.",
            ),
            memory_bytes: gauge(
                &r,
                "sightline_memory_used_bytes",
                "Bytes of unflushed and in-flight data.",
            ),
            memory_limit_bytes: gauge(
                &r,
                "sightline_memory_limit_bytes",
                "The memory budget for unflushed and in-flight data.",
            ),
            buffer_rows: register(
                &r,
                prometheus::IntGaugeVec::new(
                    Opts::new(
                        "sightline_buffer_rows",
                        "Rows waiting in the in-memory buffer.",
                    ),
                    &["table"],
                )
                .expect("valid metric"),
            ),
            flush_seconds: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "sightline_storage_flush_duration_seconds",
                        "Duration of buffer flushes to Parquet.",
                    )
                    .buckets(seconds_buckets(0.001)),
                    &["table"],
                )
                .expect("valid metric"),
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
            query_files_warmed: counter(
                &r,
                "sightline_query_warmed_files_total",
                "Metric files whose series labels and metric lists were read ahead of queries.",
            ),
            query_series_warmed: counter(
                &r,
                "sightline_query_warmed_series_total",
                "Series whose labels were read ahead of queries (the first query over them needs not).",
            ),
            queries: counter_vec(
                &r,
                "sightline_queries_total",
                "Queries by API and outcome (success or the error type).",
                &["api", "outcome"],
            ),
            query_seconds: register(
                &r,
                HistogramVec::new(
                    prometheus::HistogramOpts::new(
                        "sightline_query_duration_seconds",
                        "Query latency by API.",
                    )
                    .buckets(
                        prometheus::exponential_buckets(0.001, 4.0, 10).expect("valid buckets"),
                    ),
                    &["api"],
                )
                .expect("valid metric"),
            ),
            remote_write_samples: counter_vec(
                &r,
                "sightline_remote_write_samples_total",
                "Prometheus remote-write samples by outcome.",
                &["outcome"],
            ),
            slo_evaluations: counter_vec(
                &r,
                "sightline_slo_evaluations_total",
                "SLO evaluation rounds by outcome (an error means at least one SLO could not be evaluated).",
                &["outcome"],
            ),
            slo_evaluation_seconds: register(
                &r,
                Histogram::with_opts(
                    prometheus::HistogramOpts::new(
                        "sightline_slo_evaluation_duration_seconds",
                        "Wall time of one SLO evaluation round.",
                    )
                    .buckets(seconds_buckets(0.001)),
                )
                .expect("valid metric"),
            ),
            slo_files_invalid: gauge(
                &r,
                "sightline_slo_files_invalid",
                "SLO files refused at load because of invalid YAML or specs.",
            ),
            slos: gauge(&r, "sightline_slos", "SLOs being evaluated."),
            slo_alerts: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("sightline_slo_alerts", "SLO alerts by state."),
                    &["state"],
                )
                .expect("valid metric"),
            ),
            slo_notifications: counter_vec(
                &r,
                "sightline_slo_notifications_total",
                "Alert notification deliveries by receiver kind (alertmanager, webhook) and outcome.",
                &["receiver", "outcome"],
            ),
            probe_up: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "sightline_probe_up",
                        "Whether an eBPF probe is running (1) or off (0); the log says why.",
                    ),
                    &["probe"],
                )
                .expect("valid metric"),
            ),
            profile_samples: counter_vec(
                &r,
                "sightline_profile_samples_total",
                "CPU profile samples recorded; user_stack=\"no_frame_pointers\" counts samples of processes built without frame pointers, shown as their leaf only under a \"[no frame pointers]\" frame; user_stack=\"none\" counts samples with no readable stack, shown as \"[unknown stack]\".",
                &["user_stack"],
            ),
            profile_symbol_lookups: counter_vec(
                &r,
                "sightline_profile_symbol_lookups_total",
                "Stack addresses named by the profiler, from the per-build-id cache (hit) or by reading symbols (miss).",
                &["result"],
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
