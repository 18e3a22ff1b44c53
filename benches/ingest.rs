//! Micro-benchmarks of the per-item ingest stages on the `sightline bench`
//! workloads, traces and logs: prost decoding (the ceiling), reading a
//! request straight into Arrow (what ingest does), converting a decoded
//! request, and Parquet encoding of a flush. Run with
//! `cargo bench --bench ingest` (`-- ingest/` or `-- ingest_logs/` for one).

use std::time::Duration;

use collector::convert::convert;
use collector::otlp::{Encoding, Payload};
use collector::schema::{Signal, Table};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

// The workload generator is shared with `sightline bench`.
#[allow(dead_code)] // `sightline bench` uses the rest.
#[path = "../src/bench/workload.rs"]
mod workload;

const BATCH: usize = 512;

/// One signal's requests, encoded, and how to decode them with prost.
struct Workload {
    group: &'static str,
    signal: Signal,
    table: Table,
    encoded: Vec<bytes::Bytes>,
    prost: fn(&[u8]) -> Payload,
}

fn traces() -> Workload {
    Workload::new(
        "ingest",
        Signal::Traces,
        Table::Spans,
        |r| r.encode_to_vec(),
        |b| Payload::Traces(ExportTraceServiceRequest::decode(b).unwrap()),
    )
}

fn logs() -> Workload {
    // One log record per span of the same requests (`sightline bench --signal logs`).
    let encode = |r: &ExportTraceServiceRequest| workload::logs_of(r).encode_to_vec();
    Workload::new("ingest_logs", Signal::Logs, Table::Logs, encode, |b| {
        Payload::Logs(ExportLogsServiceRequest::decode(b).unwrap())
    })
}

impl Workload {
    fn new(
        group: &'static str,
        signal: Signal,
        table: Table,
        encode: impl Fn(&ExportTraceServiceRequest) -> Vec<u8>,
        prost: fn(&[u8]) -> Payload,
    ) -> Workload {
        let requests = workload::request_pool(16, BATCH, 8, 7);
        Workload {
            group,
            signal,
            table,
            encoded: requests.iter().map(|r| encode(r).into()).collect(),
            prost,
        }
    }
}

fn stages(c: &mut Criterion, w: Workload) {
    let items = (w.encoded.len() * BATCH) as u64;
    let mut g = c.benchmark_group(w.group);
    g.throughput(Throughput::Elements(items));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("decode", |b| {
        b.iter(|| {
            for e in &w.encoded {
                std::hint::black_box((w.prost)(e));
            }
        })
    });
    // What ingest does with a valid request: read it straight into Arrow.
    g.bench_function("decode_to_arrow", |b| {
        b.iter(|| {
            for e in &w.encoded {
                std::hint::black_box(Payload::decode(w.signal, Encoding::Protobuf, e).unwrap());
            }
        })
    });
    let decoded: Vec<Payload> = w.encoded.iter().map(|e| (w.prost)(e)).collect();
    // The path of requests prost decodes (JSON, partly rejected ones).
    g.bench_function("convert_decoded", |b| {
        b.iter(|| {
            for p in &decoded {
                std::hint::black_box(convert(p, 0));
            }
        })
    });
    let batches: Vec<_> = decoded
        .iter()
        .flat_map(|p| convert(p, 0))
        .map(|(_, b)| b)
        .collect();
    g.bench_function("encode_parquet", |b| {
        b.iter(|| {
            std::hint::black_box(
                collector::storage::encode_flush(w.table, &batches, 0, |_| Vec::new()).unwrap(),
            )
        })
    });
    g.finish();
}

fn all(c: &mut Criterion) {
    stages(c, traces());
    stages(c, logs());
}

criterion_group!(benches, all);
criterion_main!(benches);
