//! Cost of SLO evaluation rounds for 1,000 SLOs: 500 read spans (one
//! grouped scan per round) and 500 read PromQL counters, over 7 hours of
//! backfilled data. Prints the first round (which backfills the buckets)
//! and steady-state rounds at the default 30 s interval: CPU seconds per
//! round and the share of one core that is.
//!
//! Run with `cargo bench --bench slo_evaluation`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use alerts::evaluator::{Evaluator, SloConfig};
use collector::otlp::Payload;
use collector::receive::Transport;
use collector::receive::remote_write::{Label, Sample, TimeSeries, WriteRequest, to_otlp};
use collector::self_metrics::SelfMetrics;
use collector::{CollectorConfig, Ingest};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use query::{QueryConfig, QueryEngine};

const SERVICES: usize = 50;
const ROUTES: usize = 10;
const HISTORY_MS: i64 = 7 * 3_600_000;
const ROUNDS: i64 = 20;
const INTERVAL_MS: i64 = 30_000;

/// CPU time of this process (user + system), from /proc.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after `)`.
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    let ticks = tick(11) + tick(12);
    Duration::from_millis(ticks * 10)
}

use collector::otlp::string_kv as kv;

/// One span per second per service, routes round robin, 1 % errors.
async fn load_spans(ingest: &Ingest, from: i64, to: i64) -> usize {
    let mut n = 0;
    for s in 0..SERVICES {
        let mut spans = Vec::new();
        let mut t = from;
        let mut i = 0u64;
        while t < to {
            let route = (i as usize) % ROUTES;
            spans.push(Span {
                trace_id: [(s as u8).wrapping_add(1); 16].to_vec(),
                span_id: (i + 1).to_be_bytes().to_vec(),
                name: format!("GET /r{route}"),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: (t * 1_000_000) as u64,
                end_time_unix_nano: (t * 1_000_000) as u64 + (i % 7) * 60_000_000,
                status: Some(Status {
                    code: if i.is_multiple_of(100) {
                        status::StatusCode::Error as i32
                    } else {
                        0
                    },
                    message: String::new(),
                }),
                ..Default::default()
            });
            i += 1;
            t += 1000;
        }
        n += spans.len();
        for chunk in spans.chunks(20_000) {
            let req = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", &format!("svc{s}"))],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans: chunk.to_vec(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            export(ingest, Payload::Traces(req)).await;
        }
    }
    n
}

/// `http_requests_total{job, route, code}` every 15 s, 1 % 5xx.
async fn load_counters(ingest: &Ingest, from: i64, to: i64) -> usize {
    let label = |name: &str, value: &str| Label {
        name: name.into(),
        value: value.into(),
    };
    let mut n = 0;
    for s in 0..SERVICES {
        let mut timeseries = Vec::new();
        for r in 0..ROUTES {
            for (code, per_step) in [("200", 99.0), ("500", 1.0)] {
                let mut samples = Vec::new();
                let (mut t, mut v) = (from, 0.0);
                while t < to {
                    v += per_step;
                    samples.push(Sample {
                        value: v,
                        timestamp: t,
                    });
                    t += 15_000;
                }
                n += samples.len();
                timeseries.push(TimeSeries {
                    labels: vec![
                        label("__name__", "http_requests_total"),
                        label("job", &format!("svc{s}")),
                        label("route", &format!("/r{r}")),
                        label("code", code),
                    ],
                    samples,
                });
            }
        }
        export(
            ingest,
            Payload::Metrics(to_otlp(WriteRequest { timeseries }).unwrap()),
        )
        .await;
    }
    n
}

async fn export(ingest: &Ingest, p: Payload) {
    loop {
        match ingest.export(Transport::Grpc, p.clone(), None).await {
            Ok(_) => return,
            // Over the memory budget: let the flush catch up.
            Err(_) => ingest.flush(true).await,
        }
    }
}

fn slo_file() -> String {
    let mut y = String::new();
    for s in 0..SERVICES {
        let _ = write!(y, "---\nversion: sightline/v1\nservice: svc{s}\nslos:\n");
        for r in 0..5 {
            let _ = write!(
                y,
                "  - name: avail-r{r}\n    objective: 99.9\n    sli:\n      spans:\n        span_name: GET /r{r}\n\
                 \x20 - name: latency-r{r}\n    objective: 99\n    sli:\n      spans:\n        span_name: GET /r{r}\n        latency_threshold: 300ms\n"
            );
        }
        for r in 0..ROUTES {
            let sel = format!("job=\"svc{s}\",route=\"/r{r}\"");
            let _ = write!(
                y,
                "  - name: requests-r{r}\n    objective: 99.9\n    sli:\n      events:\n        \
                 error_query: sum(rate(http_requests_total{{{sel},code=~\"5..\"}}[{{{{.window}}}}]))\n        \
                 total_query: sum(rate(http_requests_total{{{sel}}}[{{{{.window}}}}]))\n"
            );
        }
    }
    y
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = CollectorConfig {
            data_dir: dir.path().to_path_buf(),
            memory_limit_bytes: 2 << 30,
            ..Default::default()
        };
        let ingest = Ingest::start(config, SelfMetrics::new()).await.unwrap();
        let engine = QueryEngine::new(ingest.clone(), QueryConfig::default()).unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        let end = now + ROUNDS * INTERVAL_MS + 60_000;
        let began = Instant::now();
        let spans = load_spans(&ingest, now - HISTORY_MS, end).await;
        let samples = load_counters(&ingest, now - HISTORY_MS, end).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        ingest.flush(true).await;
        eprintln!(
            "loaded {spans} spans and {samples} samples in {:?}",
            began.elapsed()
        );

        let slos = alerts::spec::load_str("bench.yaml", &slo_file()).unwrap();
        assert_eq!(slos.len(), 1000);
        let state = dir.path().join("alerts/state.json");
        let mut ev = Evaluator::new(engine, slos, Vec::new(), SloConfig::default(), state);
        let (c0, w0) = (cpu(), Instant::now());
        let round = ev.evaluate(now).await;
        assert_eq!(round.errors, 0, "first round failed");
        let (first_cpu, first_wall) = (cpu() - c0, w0.elapsed());
        let (c1, w1) = (cpu(), Instant::now());
        for k in 1..=ROUNDS {
            let r = ev.evaluate(now + k * INTERVAL_MS).await;
            assert_eq!(r.errors, 0);
        }
        let per_cpu = (cpu() - c1).as_secs_f64() / ROUNDS as f64;
        let per_wall = w1.elapsed().as_secs_f64() / ROUNDS as f64;
        println!("| round | CPU s | wall s | share of one core at 30 s |");
        println!("|---|---|---|---|");
        println!(
            "| first (backfills 30 d of buckets) | {:.2} | {:.2} | — |",
            first_cpu.as_secs_f64(),
            first_wall.as_secs_f64()
        );
        println!(
            "| steady state (mean of {ROUNDS}) | {per_cpu:.3} | {per_wall:.3} | {:.1} % |",
            per_cpu / 30.0 * 100.0
        );
    });
}
