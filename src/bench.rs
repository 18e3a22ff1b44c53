//! `sightline bench`: a whole-system ingest benchmark.
//!
//! Generates realistic OTLP traces (several services, trace trees, typical
//! HTTP/RPC/DB attributes) or, with `--signal logs`, one log record per
//! span of them, starts `sightline run` on a scratch data dir
//! (unless `--endpoint` points at a running server), sends them over gRPC at
//! maximum rate, and reports acknowledged spans/s, server CPU seconds per
//! million spans, peak server RSS, bytes on disk per span next to raw OTLP
//! protobuf bytes per span, and the prost decode-only rate as the ceiling.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use collector::receive::grpc::RawCodec;
use collector::schema::Table;
use collector::self_metrics::SelfMetrics;
use collector::storage::Storage;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::codegen::http::uri::PathAndQuery;

mod workload;

/// Flags of `sightline bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// How long to send load.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Spans per export request.
    #[arg(long, default_value_t = 512)]
    pub batch_size: usize,
    /// Concurrent export requests in flight.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Number of distinct services in the generated traces.
    #[arg(long, default_value_t = 8)]
    pub services: usize,
    /// Send to this running server (`http://host:4317`) instead of starting one.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Memory budget of the started server, in bytes.
    #[arg(long, default_value_t = 512 << 20)]
    pub memory_limit_bytes: u64,
    /// Compress requests with gzip (as most SDKs do by default).
    #[arg(long)]
    pub gzip: bool,
    /// Give every request fresh ids as it is sent, instead of re-sending a
    /// pool of 524,288 pre-encoded spans (~3 s of load): for loading data
    /// to query, where a trace sent twice would be found twice. A
    /// generator thread encodes them, so it takes CPU from the server.
    #[arg(long)]
    pub fresh_ids: bool,
    /// What to send: traces, or logs (one record per generated span, with
    /// its attributes, ids and a message body).
    #[arg(long, value_enum, default_value = "traces")]
    pub signal: BenchSignal,
}

/// The signal `sightline bench` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchSignal {
    /// `ExportTraceServiceRequest`s.
    Traces,
    /// `ExportLogsServiceRequest`s.
    Logs,
}

impl BenchSignal {
    /// One item, for the report.
    fn item(self) -> &'static str {
        match self {
            BenchSignal::Traces => "span",
            BenchSignal::Logs => "log record",
        }
    }

    fn table(self) -> Table {
        match self {
            BenchSignal::Traces => Table::Spans,
            BenchSignal::Logs => Table::Logs,
        }
    }

    fn path(self) -> PathAndQuery {
        PathAndQuery::from_static(match self {
            BenchSignal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            BenchSignal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        })
    }

    /// The request body for one generated trace request.
    fn encode(self, req: &ExportTraceServiceRequest) -> Vec<u8> {
        match self {
            BenchSignal::Traces => req.encode_to_vec(),
            BenchSignal::Logs => workload::logs_of(req).encode_to_vec(),
        }
    }

    /// Decodes a body with prost (the ceiling's work) and counts its items.
    fn decode_count(self, body: &[u8]) -> u64 {
        match self {
            BenchSignal::Traces => workload::span_count(
                &ExportTraceServiceRequest::decode(body).expect("generated payloads decode"),
            ),
            BenchSignal::Logs => {
                let r = ExportLogsServiceRequest::decode(body).expect("generated payloads decode");
                r.resource_logs
                    .iter()
                    .flat_map(|rl| &rl.scope_logs)
                    .map(|sl| sl.log_records.len() as u64)
                    .sum()
            }
        }
    }
}

/// Figures of one run.
#[derive(Debug, Default)]
struct Report {
    items_acked: u64,
    requests_refused: u64,
    elapsed: Duration,
    decode_items_per_sec: f64,
    raw_bytes_per_item: f64,
    server_cpu_secs: Option<f64>,
    server_peak_rss: Option<u64>,
    /// Parquet bytes and rows of the signal's own table (`spans` or `logs`).
    disk_bytes: Option<u64>,
    disk_rows: Option<u64>,
    /// Rows of the node's own tables (self-metrics, profile samples).
    other_rows: Option<u64>,
}

/// Runs the benchmark and prints the report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let pool = workload::request_pool(64, args.batch_size, args.services, 7);
    let encoded: Vec<Vec<u8>> = pool.iter().map(|r| args.signal.encode(r)).collect();
    let spans_per_req = args.batch_size as f64;
    let raw_bytes_per_item = encoded.iter().map(|b| b.len()).sum::<usize>() as f64
        / (encoded.len() as f64 * spans_per_req);
    let decode_items_per_sec = decode_rate(&encoded, args.signal);
    let item = args.signal.item();
    eprintln!("decode-only ceiling: {decode_items_per_sec:.0} {item}s/s (one core)");

    let scratch = std::env::temp_dir().join(format!("sightline-bench-{}", std::process::id()));
    let (endpoint, mut server) = match &args.endpoint {
        Some(e) => (e.clone(), None),
        None => {
            let s = Server::start(&scratch, args.memory_limit_bytes).await?;
            (format!("http://{}", s.grpc_addr), Some(s))
        }
    };
    let cpu_before = server.as_ref().and_then(|s| cpu_seconds(s.child.id()));
    let (acked, refused, elapsed) = send_load(&endpoint, &pool, &args).await?;
    let mut report = Report {
        items_acked: acked,
        requests_refused: refused,
        elapsed,
        decode_items_per_sec,
        raw_bytes_per_item,
        ..Default::default()
    };
    if let Some(s) = server.as_mut() {
        let pid = s.child.id();
        report.server_peak_rss = peak_rss(pid);
        report.server_cpu_secs = cpu_seconds(pid).zip(cpu_before).map(|(a, b)| a - b);
        s.stop()?;
        let totals = parquet_totals(&scratch.join("tables")).await?;
        let table = args.signal.table();
        let items = totals.iter().find(|t| t.0 == table);
        let (_, bytes, rows) = items.copied().unwrap_or((table, 0, 0));
        report.disk_bytes = Some(bytes);
        report.disk_rows = Some(rows);
        report.other_rows = Some(totals.iter().map(|t| t.2).sum::<u64>() - rows);
        let _ = std::fs::remove_dir_all(&scratch);
    }
    print_report(&report, &args);
    Ok(())
}

/// Single-threaded prost decoding of the same payloads: the ceiling.
fn decode_rate(encoded: &[Vec<u8>], signal: BenchSignal) -> f64 {
    let start = Instant::now();
    let mut spans = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        for b in encoded {
            spans += signal.decode_count(b);
        }
    }
    spans as f64 / start.elapsed().as_secs_f64()
}

/// Sends pre-encoded requests (fresh ids for every one in the pool) so the
/// load generator spends its CPU on sending, not on encoding: on a 2-core
/// machine it shares the cores with the server.
async fn send_load(
    endpoint: &str,
    pool: &[ExportTraceServiceRequest],
    args: &BenchArgs,
) -> anyhow::Result<(u64, u64, Duration)> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_string())?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {endpoint}"))?;
    let requests = Arc::new(match args.fresh_ids {
        true => Requests::fresh(pool.to_vec(), args.signal),
        false => Requests::pool(pool, args.signal),
    });
    let acked = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + args.duration;
    let path = args.signal.path();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        if args.gzip {
            grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
        }
        let (requests, acked, refused, path) = (
            requests.clone(),
            acked.clone(),
            refused.clone(),
            path.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let Some((body, spans)) = requests.next().await else {
                    break;
                };
                grpc.ready()
                    .await
                    .map_err(|e| anyhow::anyhow!("channel failed: {e}"))?;
                let reply = grpc
                    .unary(tonic::Request::new(body), path.clone(), RawCodec)
                    .await;
                match reply {
                    Ok(_) => {
                        acked.fetch_add(spans, Ordering::Relaxed);
                    }
                    Err(s) if s.code() == tonic::Code::Unavailable => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(s) => return Err(anyhow::anyhow!("export failed: {s}")),
                }
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok((
        acked.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        start.elapsed(),
    ))
}

/// Where the workers take their next request body (and its span count).
enum Requests {
    /// The pre-encoded pool, in one sequence for all workers. (Each worker
    /// used to stride through it from its own start, so workers 7 apart
    /// sent the very same requests moments apart, and flush files held
    /// repeats that flattered bytes per span.)
    Pool {
        encoded: Vec<(Bytes, u64)>,
        next: AtomicU64,
    },
    /// Requests refreshed and encoded as they are needed (`--fresh-ids`).
    Fresh(tokio::sync::Mutex<tokio::sync::mpsc::Receiver<(Bytes, u64)>>),
}

impl Requests {
    /// [`PREENCODED`] requests from `templates`, each with its own ids.
    fn pool(templates: &[ExportTraceServiceRequest], signal: BenchSignal) -> Requests {
        let mut rng = salts();
        let encoded = (0..PREENCODED)
            .map(|i| encoded(&templates[i % templates.len()], &mut rng, signal))
            .collect();
        Requests::Pool {
            encoded,
            next: AtomicU64::new(0),
        }
    }

    /// An endless supply from a generator thread, which ends when the
    /// receiving side is dropped.
    fn fresh(templates: Vec<ExportTraceServiceRequest>, signal: BenchSignal) -> Requests {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        std::thread::spawn(move || {
            let mut rng = salts();
            for template in templates.iter().cycle() {
                if tx
                    .blocking_send(encoded(template, &mut rng, signal))
                    .is_err()
                {
                    return;
                }
            }
        });
        Requests::Fresh(tokio::sync::Mutex::new(rx))
    }

    async fn next(&self) -> Option<(Bytes, u64)> {
        match self {
            Requests::Pool { encoded, next } => {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                Some(encoded[i % encoded.len()].clone())
            }
            Requests::Fresh(rx) => rx.lock().await.recv().await,
        }
    }
}

/// The random source of the ids' salts, seeded from the clock: a fixed
/// seed gave every run the same ids, so loading a server in several runs
/// (as the SQL bench does) stored each trace once per run.
fn salts() -> rand::rngs::StdRng {
    workload::rng(collector::ingest::now_nanos())
}

/// `template` with fresh ids and current times, encoded as `signal`.
fn encoded(
    template: &ExportTraceServiceRequest,
    rng: &mut rand::rngs::StdRng,
    signal: BenchSignal,
) -> (Bytes, u64) {
    let mut req = template.clone();
    workload::refresh(&mut req, rng);
    (Bytes::from(signal.encode(&req)), workload::span_count(&req))
}

/// Requests encoded up front (each with its own ids): 1,024 × 512 spans
/// ≈ 120 MiB. Enough distinct spans (524,288, about 3 s of load) that a
/// flush file, which holds up to ~135,000, never sees one twice: repeats
/// would compress better than real traffic and flatter the bytes-per-span
/// figure. Longer runs send the pool again, so compacted files (and trace
/// lookups over them) do see repeats.
const PREENCODED: usize = 1024;

fn print_report(r: &Report, args: &BenchArgs) {
    let item = args.signal.item();
    let table = args.signal.table().name();
    let secs = r.elapsed.as_secs_f64();
    let rate = r.items_acked as f64 / secs;
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| workload | {} {item}s/request, {} in flight, {} services, gzip {} |",
        args.batch_size, args.concurrency, args.services, args.gzip
    );
    println!(
        "| {item}s acknowledged | {} in {:.1} s |",
        r.items_acked, secs
    );
    println!("| acknowledged rate | {rate:.0} {item}s/s |");
    println!(
        "| decode-only ceiling (prost, one core) | {:.0} {item}s/s |",
        r.decode_items_per_sec
    );
    println!(
        "| end to end / ceiling | {:.0}% |",
        100.0 * rate / r.decode_items_per_sec
    );
    println!("| requests refused (overload) | {} |", r.requests_refused);
    if let Some(cpu) = r.server_cpu_secs {
        println!(
            "| server CPU per million {item}s | {:.2} s |",
            cpu / (r.items_acked as f64 / 1e6)
        );
    }
    if let Some(rss) = r.server_peak_rss {
        println!(
            "| server peak RSS | {:.0} MiB (budget {} MiB) |",
            rss as f64 / 1048576.0,
            args.memory_limit_bytes >> 20
        );
    }
    println!(
        "| raw OTLP protobuf | {:.1} bytes/{item} |",
        r.raw_bytes_per_item
    );
    if let (Some(b), Some(rows)) = (r.disk_bytes, r.disk_rows) {
        let per = b as f64 / rows.max(1) as f64;
        println!(
            "| Parquet on disk (`{table}`) | {per:.1} bytes/{item} ({rows} rows, {:.1}x smaller than OTLP) |",
            r.raw_bytes_per_item / per
        );
        // Every acknowledged item stored once: a difference is a bug.
        let check = match rows.cmp(&r.items_acked) {
            std::cmp::Ordering::Equal => "equal".to_string(),
            std::cmp::Ordering::Greater => {
                format!("{} more on disk (stored twice?)", rows - r.items_acked)
            }
            std::cmp::Ordering::Less => format!("{} missing", r.items_acked - rows),
        };
        println!("| {item} rows on disk vs acknowledged | {check} |");
    }
    if let Some(n) = r.other_rows {
        println!("| the node's own rows (self-metrics, profiles) | {n} |");
    }
}

/// A `sightline run` child process on loopback ports.
struct Server {
    child: Child,
    grpc_addr: String,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Server {
    async fn start(dir: &Path, memory_limit: u64) -> anyhow::Result<Server> {
        let (api, grpc, http) = (free_port()?, free_port()?, free_port()?);
        let child = Command::new(std::env::current_exe()?)
            .args(["run", "--data-dir"])
            .arg(dir)
            .args(["--http-addr", &format!("127.0.0.1:{api}")])
            .args(["--otlp-grpc-addr", &format!("127.0.0.1:{grpc}")])
            .args(["--otlp-http-addr", &format!("127.0.0.1:{http}")])
            .args(["--memory-limit-bytes", &memory_limit.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start sightline run")?;
        let s = Server {
            child,
            grpc_addr: format!("127.0.0.1:{grpc}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http_status(&format!("127.0.0.1:{api}"), "/-/ready").await == Some(200) {
                return Ok(s);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("server did not become ready")
    }

    /// SIGTERM (flushes everything), then waits.
    fn stop(&mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("server exited with {status}");
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Status code of a plain HTTP/1.1 GET, or None when unreachable.
async fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut buf = vec![0u8; 64];
    let n = s.read(&mut buf).await.ok()?;
    std::str::from_utf8(&buf[..n])
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Peak resident set size (VmHWM) in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Parquet bytes and rows (from footers) of each table under `dir`.
async fn parquet_totals(dir: &Path) -> anyhow::Result<Vec<(Table, u64, u64)>> {
    let storage = Storage::local(dir.to_path_buf(), SelfMetrics::new())?;
    let mut out = Vec::new();
    for table in Table::ALL {
        let (mut bytes, mut rows) = (0, 0);
        for meta in storage.list(table, None).await? {
            let info = storage.file_info(meta).await?;
            bytes += info.meta.size;
            rows += info.rows;
        }
        out.push((table, bytes, rows));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[tokio::test]
    async fn workers_share_one_sequence_and_fresh_requests_never_repeat() {
        let templates = workload::request_pool(4, 8, 2, 7);
        // Each call is a send by some worker: the whole pool goes out once
        // before any request is sent again.
        let pool = Requests::pool(&templates, BenchSignal::Traces);
        let mut seen = HashSet::new();
        for _ in 0..PREENCODED {
            assert!(seen.insert(pool.next().await.unwrap().0));
        }
        assert!(!seen.insert(pool.next().await.unwrap().0));
        let fresh = Requests::fresh(templates, BenchSignal::Traces);
        let mut seen = HashSet::new();
        for _ in 0..2 * PREENCODED {
            assert!(seen.insert(fresh.next().await.unwrap().0));
        }
    }

    #[test]
    fn logs_carry_one_record_per_span_with_its_ids_and_context() {
        let req = &workload::request_pool(1, 64, 3, 7)[0];
        let body = BenchSignal::Logs.encode(req);
        assert_eq!(BenchSignal::Logs.decode_count(&body), 64);
        let logs = ExportLogsServiceRequest::decode(&body[..]).unwrap();
        for (rl, rs) in logs.resource_logs.iter().zip(&req.resource_spans) {
            assert_eq!(rl.resource, rs.resource);
            let spans = rs.scope_spans.iter().flat_map(|ss| &ss.spans);
            let records = rl.scope_logs.iter().flat_map(|sl| &sl.log_records);
            for (rec, span) in records.zip(spans) {
                assert_eq!(
                    (&rec.trace_id, &rec.span_id),
                    (&span.trace_id, &span.span_id)
                );
                assert_eq!(rec.time_unix_nano, span.start_time_unix_nano);
                assert_eq!(rec.attributes, span.attributes);
            }
        }
    }
}
