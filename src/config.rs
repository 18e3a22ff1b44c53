//! `sightline run` configuration: defaults, then the YAML file (`--config`),
//! then environment variables, then flags — each overriding the one before.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use alerts::SloConfig;
use anyhow::Context;
use clap::Args;
use collector::CollectorConfig;
use collector::receive::OtlpConfig;
use collector::storage::StorageConfig;
use collector::wal::{FsyncPolicy, WalConfig};
use ebpf_probes::ProbesConfig;
use query::QueryConfig;
use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Root of the WAL and Parquet files.
    pub data_dir: PathBuf,
    /// Budget for unflushed and in-flight data, in bytes.
    pub memory_limit_bytes: u64,
    /// Time allowed for a graceful shutdown (flush included).
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// The HTTP API (health, readiness, self-metrics).
    pub http: HttpConfig,
    /// OTLP receivers.
    pub otlp: OtlpConfig,
    /// Write-ahead log.
    pub wal: WalConfig,
    /// Parquet flushing, compaction and retention.
    pub storage: StorageConfig,
    /// Query limits (SQL, PromQL).
    pub query: QueryConfig,
    /// PostgreSQL wire protocol.
    pub postgres: PostgresConfig,
    /// SLO evaluation and alerting.
    pub slo: SloConfig,
    /// eBPF probes (kernel view).
    pub probes: ProbesConfig,
}

/// PostgreSQL wire protocol settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// Listen address (loopback by default: the protocol has no
    /// authentication here; put a proxy in front to expose it).
    pub addr: SocketAddr,
    /// Whether to serve it at all.
    pub enabled: bool,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            addr: ([127, 0, 0, 1], 5433).into(),
            enabled: true,
        }
    }
}

/// HTTP API settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address.
    pub addr: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: ([0, 0, 0, 0], 8080).into(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let c = CollectorConfig::default();
        Self {
            data_dir: c.data_dir,
            memory_limit_bytes: c.memory_limit_bytes,
            shutdown_timeout: Duration::from_secs(30),
            http: HttpConfig::default(),
            otlp: c.otlp,
            wal: c.wal,
            storage: c.storage,
            query: QueryConfig::default(),
            postgres: PostgresConfig::default(),
            slo: SloConfig::default(),
            probes: ProbesConfig::default(),
        }
    }
}

impl Config {
    /// The collector's part.
    pub fn collector(&self) -> CollectorConfig {
        CollectorConfig {
            data_dir: self.data_dir.clone(),
            memory_limit_bytes: self.memory_limit_bytes,
            otlp: self.otlp.clone(),
            wal: self.wal.clone(),
            storage: self.storage.clone(),
        }
    }

    /// Reads a YAML file; unknown keys are errors (a typo must not be ignored).
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        serde_yaml::from_str(&text)
            .with_context(|| format!("invalid config file {}", path.display()))
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// Flags of `sightline run`. Every flag can also be set through the
/// environment variable named next to it; flags win over the environment,
/// which wins over the config file.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// YAML config file.
    #[arg(long, env = "SIGHTLINE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Root of the WAL and Parquet files [default: ./sightline-data].
    #[arg(long, env = "SIGHTLINE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Memory budget in bytes: receivers refuse with retryable errors while
    /// unflushed and in-flight data pass 60% of it or the resident size passes
    /// 75% [default: 536870912 (512 MiB)].
    #[arg(long, env = "SIGHTLINE_MEMORY_LIMIT_BYTES")]
    pub memory_limit_bytes: Option<u64>,
    /// Time allowed for a graceful shutdown, e.g. `30s` [default: 30s].
    #[arg(long, env = "SIGHTLINE_SHUTDOWN_TIMEOUT", value_parser = parse_duration)]
    pub shutdown_timeout: Option<Duration>,
    /// HTTP API address (health, readiness, /metrics) [default: 0.0.0.0:8080].
    #[arg(long, env = "SIGHTLINE_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// OTLP/gRPC address [default: 0.0.0.0:4317].
    #[arg(long, env = "SIGHTLINE_OTLP_GRPC_ADDR")]
    pub otlp_grpc_addr: Option<SocketAddr>,
    /// OTLP/HTTP address [default: 0.0.0.0:4318].
    #[arg(long, env = "SIGHTLINE_OTLP_HTTP_ADDR")]
    pub otlp_http_addr: Option<SocketAddr>,
    /// Largest request body in bytes, after decompression [default: 20971520 (20 MiB)].
    #[arg(long, env = "SIGHTLINE_OTLP_MAX_REQUEST_BYTES")]
    pub otlp_max_request_bytes: Option<usize>,
    /// WAL fsync policy: `always` (before every acknowledgement) or `never` [default: always].
    #[arg(long, env = "SIGHTLINE_WAL_FSYNC", value_parser = parse_fsync)]
    pub wal_fsync: Option<FsyncPolicy>,
    /// WAL segment size in bytes [default: 67108864 (64 MiB)].
    #[arg(long, env = "SIGHTLINE_WAL_SEGMENT_BYTES")]
    pub wal_segment_bytes: Option<u64>,
    /// Flush a table once it buffers this many rows [default: 500000].
    #[arg(long, env = "SIGHTLINE_STORAGE_FLUSH_ROWS")]
    pub storage_flush_rows: Option<usize>,
    /// Flush a table once it buffers this many bytes of Arrow data [default: 67108864 (64 MiB)].
    #[arg(long, env = "SIGHTLINE_STORAGE_FLUSH_BYTES")]
    pub storage_flush_bytes: Option<usize>,
    /// Flush a table once its oldest row is this old, e.g. `60s` [default: 60s].
    #[arg(long, env = "SIGHTLINE_STORAGE_FLUSH_INTERVAL", value_parser = parse_duration)]
    pub storage_flush_interval: Option<Duration>,
    /// How often to compact small files and apply retention [default: 5m].
    #[arg(long, env = "SIGHTLINE_STORAGE_COMPACTION_INTERVAL", value_parser = parse_duration)]
    pub storage_compaction_interval: Option<Duration>,
    /// Compact a partition once it has this many small files [default: 4].
    #[arg(long, env = "SIGHTLINE_STORAGE_COMPACTION_MIN_FILES")]
    pub storage_compaction_min_files: Option<usize>,
    /// Files at least this large are not compacted [default: 134217728 (128 MiB)].
    #[arg(long, env = "SIGHTLINE_STORAGE_COMPACTION_TARGET_BYTES")]
    pub storage_compaction_target_bytes: Option<u64>,
    /// Delete partitions older than this, e.g. `7d` [default: 7d].
    #[arg(long, env = "SIGHTLINE_STORAGE_RETENTION", value_parser = parse_duration)]
    pub storage_retention: Option<Duration>,
    /// Cancel queries running longer than this [default: 2m].
    #[arg(long, env = "SIGHTLINE_QUERY_TIMEOUT", value_parser = parse_duration)]
    pub query_timeout: Option<Duration>,
    /// Memory all queries may use together; beyond it they spill to disk or
    /// fail with a clear error [default: 1073741824 (1 GiB)].
    #[arg(long, env = "SIGHTLINE_QUERY_MEMORY_LIMIT_BYTES")]
    pub query_memory_limit_bytes: Option<usize>,
    /// Rows a SQL query may return [default: 100000].
    #[arg(long, env = "SIGHTLINE_QUERY_MAX_ROWS")]
    pub query_max_rows: Option<usize>,
    /// Series a PromQL query may return or hold in one step [default: 50000].
    #[arg(long, env = "SIGHTLINE_QUERY_MAX_SERIES")]
    pub query_max_series: Option<usize>,
    /// Samples a PromQL query may load [default: 50000000].
    #[arg(long, env = "SIGHTLINE_QUERY_MAX_SAMPLES")]
    pub query_max_samples: Option<usize>,
    /// PostgreSQL wire protocol listen address [default: 127.0.0.1:5433].
    #[arg(long, env = "SIGHTLINE_POSTGRES_ADDR")]
    pub postgres_addr: Option<SocketAddr>,
    /// Serve the PostgreSQL wire protocol [default: true].
    #[arg(long, env = "SIGHTLINE_POSTGRES_ENABLED")]
    pub postgres_enabled: Option<bool>,
    /// PromQL lookback delta [default: 5m].
    #[arg(long, env = "SIGHTLINE_QUERY_LOOKBACK_DELTA", value_parser = parse_duration)]
    pub query_lookback_delta: Option<Duration>,
    /// SLO file or directory of `*.yaml` files to evaluate; repeat the flag
    /// (or separate with commas) for several [default: none].
    #[arg(long = "slo-file", env = "SIGHTLINE_SLO_FILES", value_delimiter = ',')]
    pub slo_files: Vec<PathBuf>,
    /// How often SLOs are evaluated [default: 30s].
    #[arg(long, env = "SIGHTLINE_SLO_EVAL_INTERVAL", value_parser = parse_duration)]
    pub slo_eval_interval: Option<Duration>,
    /// Width of the buckets SLI events are counted in; PromQL SLIs need two
    /// samples per bucket [default: 1m].
    #[arg(long, env = "SIGHTLINE_SLO_BUCKET", value_parser = parse_duration)]
    pub slo_bucket: Option<Duration>,
    /// Alertmanager base URL to notify, e.g. `http://alertmanager:9093`;
    /// repeat for several [default: none].
    #[arg(
        long = "alertmanager-url",
        env = "SIGHTLINE_ALERTMANAGER_URLS",
        value_delimiter = ','
    )]
    pub alertmanager_urls: Vec<String>,
    /// Webhook URL receiving Alertmanager-style payloads; repeat for several
    /// [default: none].
    #[arg(
        long = "slo-webhook-url",
        env = "SIGHTLINE_SLO_WEBHOOK_URLS",
        value_delimiter = ','
    )]
    pub slo_webhook_urls: Vec<String>,
    /// Load the eBPF probes (they switch themselves off, with a log line,
    /// without privileges) [default: true].
    #[arg(long, env = "SIGHTLINE_PROBES_ENABLED")]
    pub probes_enabled: Option<bool>,
    /// Run-queue latency probe [default: true].
    #[arg(long, env = "SIGHTLINE_PROBES_RUNQUEUE")]
    pub probes_runqueue: Option<bool>,
    /// Block I/O latency probe [default: true].
    #[arg(long, env = "SIGHTLINE_PROBES_BLOCK_IO")]
    pub probes_block_io: Option<bool>,
    /// Syscall latency probe (runs on every syscall) [default: false].
    #[arg(long, env = "SIGHTLINE_PROBES_SYSCALLS")]
    pub probes_syscalls: Option<bool>,
    /// TCP connect latency and retransmit probe [default: true].
    #[arg(long, env = "SIGHTLINE_PROBES_TCP")]
    pub probes_tcp: Option<bool>,
    /// Continuous CPU profiler into `profile_samples` [default: true].
    #[arg(long, env = "SIGHTLINE_PROBES_PROFILER")]
    pub probes_profiler: Option<bool>,
    /// CPU profiler samples per second per CPU [default: 19].
    #[arg(long, env = "SIGHTLINE_PROBES_PROFILER_FREQUENCY")]
    pub probes_profiler_frequency: Option<u64>,
    /// How often probe maps are drained into the store [default: 5s].
    #[arg(long, env = "SIGHTLINE_PROBES_DRAIN_INTERVAL", value_parser = parse_duration)]
    pub probes_drain_interval: Option<Duration>,
    /// How often firing alerts are re-sent [default: 1m].
    #[arg(long, env = "SIGHTLINE_SLO_RESEND_DELAY", value_parser = parse_duration)]
    pub slo_resend_delay: Option<Duration>,
}

fn parse_fsync(s: &str) -> Result<FsyncPolicy, String> {
    match s {
        "always" => Ok(FsyncPolicy::Always),
        "never" => Ok(FsyncPolicy::Never),
        _ => Err(format!("unknown fsync policy {s:?}: use always or never")),
    }
}

fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}

impl RunArgs {
    /// Builds the effective configuration.
    pub fn load(self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        set(&mut c.data_dir, self.data_dir);
        set(&mut c.memory_limit_bytes, self.memory_limit_bytes);
        set(&mut c.shutdown_timeout, self.shutdown_timeout);
        set(&mut c.http.addr, self.http_addr);
        set(&mut c.otlp.grpc_addr, self.otlp_grpc_addr);
        set(&mut c.otlp.http_addr, self.otlp_http_addr);
        set(&mut c.otlp.max_request_bytes, self.otlp_max_request_bytes);
        set(&mut c.wal.fsync, self.wal_fsync);
        set(&mut c.wal.segment_bytes, self.wal_segment_bytes);
        let s = &mut c.storage;
        set(&mut s.flush_rows, self.storage_flush_rows);
        set(&mut s.flush_bytes, self.storage_flush_bytes);
        set(&mut s.flush_interval, self.storage_flush_interval);
        set(&mut s.compaction_interval, self.storage_compaction_interval);
        set(
            &mut s.compaction_min_files,
            self.storage_compaction_min_files,
        );
        set(
            &mut s.compaction_target_bytes,
            self.storage_compaction_target_bytes,
        );
        set(&mut s.retention, self.storage_retention);
        let q = &mut c.query;
        set(&mut q.timeout, self.query_timeout);
        set(&mut q.memory_limit_bytes, self.query_memory_limit_bytes);
        set(&mut q.max_rows, self.query_max_rows);
        set(&mut q.max_series, self.query_max_series);
        set(&mut q.max_samples, self.query_max_samples);
        set(&mut q.lookback_delta, self.query_lookback_delta);
        set(&mut c.postgres.addr, self.postgres_addr);
        set(&mut c.postgres.enabled, self.postgres_enabled);
        set(&mut c.probes.enabled, self.probes_enabled);
        set(&mut c.probes.runqueue, self.probes_runqueue);
        set(&mut c.probes.block_io, self.probes_block_io);
        set(&mut c.probes.syscalls, self.probes_syscalls);
        set(&mut c.probes.tcp, self.probes_tcp);
        set(&mut c.probes.profiler, self.probes_profiler);
        set(
            &mut c.probes.profiler_frequency,
            self.probes_profiler_frequency,
        );
        set(&mut c.probes.drain_interval, self.probes_drain_interval);
        let slo = &mut c.slo;
        if !self.slo_files.is_empty() {
            slo.files = self.slo_files;
        }
        if !self.alertmanager_urls.is_empty() {
            slo.alertmanager_urls = self.alertmanager_urls;
        }
        if !self.slo_webhook_urls.is_empty() {
            slo.webhook_urls = self.slo_webhook_urls;
        }
        set(&mut slo.eval_interval, self.slo_eval_interval);
        set(&mut slo.bucket, self.slo_bucket);
        set(&mut slo.resend_delay, self.slo_resend_delay);
        if slo.eval_interval.is_zero() || slo.bucket < Duration::from_secs(1) {
            anyhow::bail!("slo.eval_interval must be positive and slo.bucket at least 1s");
        }
        if slo.external_url.is_empty() {
            slo.external_url = format!("http://{}", c.http.addr);
        }
        Ok(c)
    }
}
