//! Micro-benchmarks of the per-span ingest stages on the `sightline bench`
//! workload: prost decoding (the ceiling), reading a request straight into
//! Arrow (what ingest does), converting a decoded request, and
//! Parquet encoding of a flush. Run with `cargo bench --bench ingest`.

use std::time::Duration;

use collector::convert::convert;
use collector::otlp::{Encoding, Payload};
use collector::schema::{Signal, Table};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

// The workload generator is shared with `sightline bench`.
#[allow(dead_code)] // `sightline bench` uses the rest.
#[path = "../src/bench/workload.rs"]
mod workload;

const BATCH: usize = 512;

fn payloads() -> Vec<bytes::Bytes> {
    workload::request_pool(16, BATCH, 8, 7)
        .iter()
        .map(|r| r.encode_to_vec().into())
        .collect()
}

fn stages(c: &mut Criterion) {
    let encoded = payloads();
    let spans = (encoded.len() * BATCH) as u64;
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(spans));
    g.measurement_time(Duration::from_secs(5));
    g.bench_function("decode", |b| {
        b.iter(|| {
            for e in &encoded {
                std::hint::black_box(ExportTraceServiceRequest::decode(e.as_ref()).unwrap());
            }
        })
    });
    // What ingest does with a valid request: read it straight into Arrow.
    g.bench_function("decode_to_arrow", |b| {
        b.iter(|| {
            for e in &encoded {
                std::hint::black_box(
                    Payload::decode(Signal::Traces, Encoding::Protobuf, e).unwrap(),
                );
            }
        })
    });
    let decoded: Vec<Payload> = encoded
        .iter()
        .map(|e| Payload::Traces(ExportTraceServiceRequest::decode(e.as_ref()).unwrap()))
        .collect();
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
                collector::storage::encode_flush(Table::Spans, &batches, 0, |_| Vec::new())
                    .unwrap(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
