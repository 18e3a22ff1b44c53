//! Tables, their names and the attribute keys promoted to typed columns.
//!
//! The full column lists are documented in `docs/schema.md`; the Arrow
//! schemas themselves come from the builders in [`crate::convert`], via
//! [`Table::schema`].

use std::fmt;
use std::sync::OnceLock;

use arrow::datatypes::SchemaRef;

/// The type of a promoted attribute column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromotedKind {
    /// A `Utf8` column, filled from string attributes.
    String,
    /// An `Int64` column, filled from integer attributes.
    Int,
}

/// Resource attributes stored in their own columns (in every table).
pub const PROMOTED_RESOURCE_KEYS: &[(&str, PromotedKind)] = &[
    ("service.name", PromotedKind::String),
    ("service.namespace", PromotedKind::String),
    ("service.instance.id", PromotedKind::String),
    ("service.version", PromotedKind::String),
    ("deployment.environment.name", PromotedKind::String),
    ("host.name", PromotedKind::String),
    ("k8s.namespace.name", PromotedKind::String),
    ("k8s.pod.name", PromotedKind::String),
    ("k8s.node.name", PromotedKind::String),
    ("container.id", PromotedKind::String),
];

/// Span attributes stored in their own columns (in `spans`).
pub const PROMOTED_SPAN_KEYS: &[(&str, PromotedKind)] = &[
    ("http.request.method", PromotedKind::String),
    ("http.response.status_code", PromotedKind::Int),
    ("http.route", PromotedKind::String),
    ("url.full", PromotedKind::String),
    ("server.address", PromotedKind::String),
    ("rpc.system", PromotedKind::String),
    ("rpc.service", PromotedKind::String),
    ("rpc.method", PromotedKind::String),
    ("db.system", PromotedKind::String),
    ("db.system.name", PromotedKind::String),
    ("db.operation.name", PromotedKind::String),
    ("messaging.system", PromotedKind::String),
];

/// Every table Sightline writes. Metrics are split by OTLP data type so each
/// table has exactly the columns its points need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Spans with their events and links.
    Spans,
    /// Log records.
    Logs,
    /// Gauge data points.
    MetricsGauge,
    /// Sum (counter / up-down counter) data points.
    MetricsSum,
    /// Explicit-bucket histogram data points.
    MetricsHistogram,
    /// Exponential histogram data points.
    MetricsExponentialHistogram,
    /// Summary data points.
    MetricsSummary,
    /// CPU profile samples from the eBPF profiler.
    ProfileSamples,
}

impl Table {
    /// All tables.
    pub const ALL: [Table; 8] = [
        Table::Spans,
        Table::Logs,
        Table::MetricsGauge,
        Table::MetricsSum,
        Table::MetricsHistogram,
        Table::MetricsExponentialHistogram,
        Table::MetricsSummary,
        Table::ProfileSamples,
    ];

    /// The table's name, also its directory under the data dir.
    pub fn name(self) -> &'static str {
        match self {
            Table::Spans => "spans",
            Table::Logs => "logs",
            Table::MetricsGauge => "metrics_gauge",
            Table::MetricsSum => "metrics_sum",
            Table::MetricsHistogram => "metrics_histogram",
            Table::MetricsExponentialHistogram => "metrics_exponential_histogram",
            Table::MetricsSummary => "metrics_summary",
            Table::ProfileSamples => "profile_samples",
        }
    }

    /// Parses a table name.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The column that decides a row's `date=`/`hour=` partition.
    pub fn time_column(self) -> &'static str {
        match self {
            Table::Spans => "start_time",
            _ => "time",
        }
    }

    /// Row order of flushed files, and of each row group of compacted ones.
    /// Empty means arrival order, which keeps each trace's spans together
    /// and compresses best (see `storage::encode`); metric points are
    /// grouped by series instead.
    pub fn flush_sort_columns(self) -> &'static [&'static str] {
        match self {
            Table::Spans | Table::Logs => &[],
            Table::ProfileSamples => &["service_name", "comm", "time"],
            // Each series' rows together (`storage::series`), in time order.
            _ => &["metric_name", "service_name", "series_id", "time"],
        }
    }

    /// Whether rows are sorted ([`Table::flush_sort_columns`]) rather than
    /// kept in arrival order.
    pub fn sorts_rows(self) -> bool {
        !self.flush_sort_columns().is_empty()
    }

    /// Columns with a Parquet bloom filter.
    pub fn bloom_filter_columns(self) -> &'static [&'static str] {
        match self {
            Table::Spans | Table::Logs => &["trace_id"],
            _ => &[],
        }
    }

    /// The table's Arrow schema (built once from the converters' output).
    pub fn schema(self) -> SchemaRef {
        static SCHEMAS: OnceLock<Vec<SchemaRef>> = OnceLock::new();
        let all = SCHEMAS.get_or_init(|| {
            Table::ALL
                .iter()
                .map(|t| crate::convert::empty_batch(*t).schema())
                .collect()
        });
        // `ALL` lists the variants in declaration order.
        all[self as usize].clone()
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The three OTLP signals, and the profiles Sightline records itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// Traces (spans).
    Traces,
    /// Metrics.
    Metrics,
    /// Logs.
    Logs,
    /// CPU profile samples (never received over OTLP; their WAL records
    /// hold an Arrow IPC stream).
    Profiles,
}

impl Signal {
    /// All signals.
    pub const ALL: [Signal; 4] = [
        Signal::Traces,
        Signal::Metrics,
        Signal::Logs,
        Signal::Profiles,
    ];

    /// The label used in self-metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
            Signal::Profiles => "profiles",
        }
    }

    /// The byte stored in WAL records.
    pub fn code(self) -> u8 {
        match self {
            Signal::Traces => 1,
            Signal::Metrics => 2,
            Signal::Logs => 3,
            Signal::Profiles => 4,
        }
    }

    /// Inverse of [`Signal::code`].
    pub fn from_code(code: u8) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.code() == code)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
