//! Storage lifecycle through the public `Ingest` API: compaction, retention,
//! and recovery from crashes in the middle of a flush or a compaction.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{TimestampNanosecondType, UInt64Type};
use collector::buffer::MemoryBudget;
use collector::otlp::Payload;
use collector::receive::Transport;
use collector::schema::Table;
use collector::self_metrics::SelfMetrics;
use collector::storage::compaction::{CompactionMemory, compact_table};
use collector::{CollectorConfig, Ingest};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const HOUR: u64 = 3_600_000_000_000;

fn now() -> u64 {
    collector::ingest::now_nanos()
}

/// `n` spans starting at `start` (unix ns), with distinct span ids from `first_id`.
fn spans(n: u64, start: u64, first_id: u64) -> Payload {
    let spans = (0..n)
        .map(|i| Span {
            trace_id: ((first_id + i) as u128 + (1 << 100)).to_be_bytes().to_vec(),
            span_id: (first_id + i + 1).to_be_bytes().to_vec(),
            name: "op".into(),
            start_time_unix_nano: start + i,
            end_time_unix_nano: start + i + 1000,
            ..Default::default()
        })
        .collect();
    Payload::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("svc".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

fn config(dir: &Path) -> CollectorConfig {
    let mut c = CollectorConfig {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    c.storage.flush_interval = Duration::from_secs(3600);
    c.storage.compaction_min_files = 3;
    c
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join("tables")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Span ids of every stored row, sorted.
fn stored_ids(dir: &Path) -> Vec<u64> {
    let mut ids = Vec::new();
    for f in parquet_files(dir) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let col = batch.column_by_name("span_id").unwrap();
            let col = col
                .as_any()
                .downcast_ref::<arrow::array::FixedSizeBinaryArray>()
                .unwrap();
            ids.extend(
                col.iter()
                    .map(|v| u64::from_be_bytes(v.unwrap().try_into().unwrap())),
            );
        }
    }
    ids.sort();
    ids
}

async fn export(ingest: &Ingest, p: Payload) {
    let rej = ingest.export(Transport::Grpc, p, None).await.unwrap();
    assert_eq!(rej.count, 0);
}

#[tokio::test]
async fn compaction_merges_small_files_and_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(config(dir.path()), SelfMetrics::new())
        .await
        .unwrap();
    let t0 = now();
    for k in 0..4 {
        export(&ingest, spans(10, t0, k * 100)).await;
        ingest.shutdown().await; // drain conversions and flush: one file each
    }
    assert_eq!(parquet_files(dir.path()).len(), 4);
    ingest.maintain().await;
    assert_eq!(
        parquet_files(dir.path()).len(),
        1,
        "four small files in one partition become one"
    );
    let want: Vec<u64> = (0..4)
        .flat_map(|k| (0..10).map(move |i| k * 100 + i + 1))
        .collect();
    assert_eq!(stored_ids(dir.path()), want);
    drop(ingest);

    // Restarting replays nothing (every record is covered) and keeps one copy.
    let metrics = SelfMetrics::new();
    let ingest = Ingest::start(config(dir.path()), metrics.clone())
        .await
        .unwrap();
    ingest.shutdown().await;
    assert_eq!(metrics.wal_replayed_records.get(), 0);
    assert_eq!(stored_ids(dir.path()), want);
}

/// A pipeline whose store holds four files, the `k`th of `request(k)`.
async fn four_files(
    request: impl Fn(u64) -> Payload,
) -> (tempfile::TempDir, CollectorConfig, Ingest) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let ingest = Ingest::start(cfg.clone(), SelfMetrics::new())
        .await
        .unwrap();
    for k in 0..4 {
        export(&ingest, request(k)).await;
        ingest.shutdown().await; // drain conversions and flush: one file each
    }
    assert_eq!(parquet_files(dir.path()).len(), 4);
    (dir, cfg, ingest)
}

/// Merges every small file of `table` with chunks of `chunk_bytes`, then
/// checks that the merge gave its memory back.
async fn merge_all(ingest: &Ingest, cfg: &CollectorConfig, table: Table, chunk_bytes: usize) {
    let budget = MemoryBudget::new(1 << 30, SelfMetrics::new());
    let memory = CompactionMemory {
        budget: &budget,
        chunk_bytes,
    };
    let merged = compact_table(ingest.storage(), table, &cfg.storage, u64::MAX, memory)
        .await
        .unwrap();
    assert_eq!(merged, 1);
    assert_eq!(budget.used(), 0, "every chunk's bytes are released");
}

/// The one Parquet file under `dir`, read one row group at a time.
fn row_groups(dir: &Path) -> Vec<Vec<RecordBatch>> {
    let files = parquet_files(dir);
    assert_eq!(files.len(), 1, "the small files became one");
    let open = || {
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&files[0]).unwrap()).unwrap()
    };
    (0..open().metadata().num_row_groups())
        .map(|g| {
            let rows = open().with_row_groups(vec![g]).build().unwrap();
            rows.map(|b| b.unwrap()).collect()
        })
        .collect()
}

#[tokio::test]
async fn compacted_spans_keep_arrival_order() {
    let t0 = now();
    // Later files hold earlier start times: a sort would reorder them.
    let (dir, cfg, ingest) = four_files(|k| spans(500, t0 + (3 - k) * 10_000, k * 1000)).await;
    merge_all(&ingest, &cfg, Table::Spans, 64 << 10).await;
    let mut ids = Vec::new();
    for batch in row_groups(dir.path()).concat() {
        let col = batch
            .column_by_name("span_id")
            .unwrap()
            .as_fixed_size_binary();
        ids.extend(
            col.iter()
                .map(|v| u64::from_be_bytes(v.unwrap().try_into().unwrap())),
        );
    }
    let want: Vec<u64> = (0..4)
        .flat_map(|k| (0..500).map(move |i| k * 1000 + i + 1))
        .collect();
    assert_eq!(
        ids, want,
        "every span once, files in the order they were written"
    );
}

#[tokio::test]
async fn compacted_spans_are_cut_into_row_groups_of_128_ki_rows() {
    // Small row groups keep a trace lookup to the few its bloom filters pass.
    let t0 = now();
    let (dir, cfg, ingest) = four_files(|k| spans(50_000, t0 + k * 100_000, k * 100_000)).await;
    merge_all(&ingest, &cfg, Table::Spans, 8 << 20).await;
    let sizes: Vec<usize> = row_groups(dir.path())
        .iter()
        .map(|g| g.iter().map(|b| b.num_rows()).sum())
        .collect();
    assert_eq!(sizes, [128 * 1024, 200_000 - 128 * 1024]);
}

/// Gauge points of `series` series, `n` per series, at `t0 + i * step + shift`.
fn gauges(series: u64, n: u64, t0: u64, shift: u64) -> Payload {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    };
    let points = (0..series)
        .flat_map(|s| (0..n).map(move |i| (s, i)))
        .map(|(s, i)| NumberDataPoint {
            attributes: vec![KeyValue {
                key: "series".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(s as i64)),
                }),
                ..Default::default()
            }],
            time_unix_nano: t0 + i * 4_000 + shift,
            value: Some(number_data_point::Value::AsDouble(i as f64)),
            ..Default::default()
        })
        .collect();
    Payload::Metrics(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue_depth".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: points,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

#[tokio::test]
async fn compacted_metrics_are_sorted_chunk_by_chunk_one_row_group_each() {
    let t0 = now();
    // Each file holds every series at interleaved times.
    let (dir, cfg, ingest) = four_files(|k| gauges(30, 100, t0, k * 1_000)).await;
    // Chunks of one and a half files: each chunk ends with the start of
    // the next file, which only a sort puts in order.
    let one_file: usize = ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&parquet_files(dir.path())[0]).unwrap(),
    )
    .unwrap()
    .with_batch_size(8192)
    .build()
    .unwrap()
    .map(|b| b.unwrap().get_array_memory_size())
    .sum();
    merge_all(&ingest, &cfg, Table::MetricsGauge, one_file * 3 / 2).await;
    let groups = row_groups(dir.path());
    assert_eq!(groups.len(), 2, "two chunks of two files each");
    let mut rows = 0;
    for (g, batches) in groups.iter().enumerate() {
        let mut keys = Vec::new();
        for b in batches {
            let ids = b
                .column_by_name("series_id")
                .unwrap()
                .as_primitive::<UInt64Type>();
            let times = b.column_by_name("time").unwrap();
            let times = times.as_primitive::<TimestampNanosecondType>();
            keys.extend(
                ids.values()
                    .iter()
                    .copied()
                    .zip(times.values().iter().copied()),
            );
        }
        assert!(
            keys.windows(2).all(|w| w[0] <= w[1]),
            "row group {g} is sorted by series, then time"
        );
        rows += keys.len();
    }
    assert_eq!(rows, 12_000, "every point once");
}

#[tokio::test]
async fn partial_uploads_left_by_a_crash_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(config(dir.path()), SelfMetrics::new())
        .await
        .unwrap();
    export(&ingest, spans(3, now(), 0)).await;
    ingest.shutdown().await;
    drop(ingest);
    let file = parquet_files(dir.path()).remove(0);
    let staged = PathBuf::from(format!("{}#1", file.display()));
    let other = file.with_file_name("notes#1");
    std::fs::write(&staged, b"half a merge").unwrap();
    std::fs::write(&other, b"not ours").unwrap();
    let _ingest = Ingest::start(config(dir.path()), SelfMetrics::new())
        .await
        .unwrap();
    assert!(!staged.exists(), "the staging file of an upload is removed");
    assert!(file.exists() && other.exists(), "nothing else is touched");
    assert_eq!(stored_ids(dir.path()), vec![1, 2, 3]);
}

#[tokio::test]
async fn sources_left_by_an_interrupted_compaction_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(config(dir.path()), SelfMetrics::new())
        .await
        .unwrap();
    let t0 = now();
    for k in 0..3 {
        export(&ingest, spans(5, t0, k * 10)).await;
        ingest.shutdown().await;
    }
    let saved: Vec<(PathBuf, Vec<u8>)> = parquet_files(dir.path())
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    ingest.maintain().await;
    drop(ingest);
    // Crash between writing the merged file and deleting its sources.
    for (p, b) in &saved {
        std::fs::write(p, b).unwrap();
    }
    assert_eq!(parquet_files(dir.path()).len(), 4);
    let _ingest = Ingest::start(config(dir.path()), SelfMetrics::new())
        .await
        .unwrap();
    assert_eq!(parquet_files(dir.path()).len(), 1);
    assert_eq!(stored_ids(dir.path()).len(), 15);
}

#[tokio::test]
async fn an_incomplete_flush_is_rolled_back_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(config(dir.path()), SelfMetrics::new())
        .await
        .unwrap();
    // One request whose spans fall in two hour partitions: one flush, two files.
    let base = now() / HOUR * HOUR;
    let Payload::Traces(mut a) = spans(3, base - HOUR, 0) else {
        unreachable!()
    };
    let Payload::Traces(b) = spans(2, base, 10) else {
        unreachable!()
    };
    a.resource_spans.extend(b.resource_spans);
    export(&ingest, Payload::Traces(a)).await;
    ingest.shutdown().await;
    let files = parquet_files(dir.path());
    assert_eq!(files.len(), 2);
    drop(ingest);
    // Crash after the first file of the flush was written but not the second.
    std::fs::remove_file(&files[1]).unwrap();
    let metrics = SelfMetrics::new();
    let ingest = Ingest::start(config(dir.path()), metrics.clone())
        .await
        .unwrap();
    assert_eq!(metrics.wal_replayed_records.get(), 1);
    ingest.shutdown().await;
    assert_eq!(stored_ids(dir.path()), vec![1, 2, 3, 11, 12]);
}

#[tokio::test]
async fn retention_deletes_old_partitions_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.storage.retention = Duration::from_secs(7 * 24 * 3600);
    let ingest = Ingest::start(cfg, SelfMetrics::new()).await.unwrap();
    export(&ingest, spans(4, now() - 10 * 24 * HOUR, 0)).await;
    export(&ingest, spans(2, now(), 100)).await;
    ingest.shutdown().await;
    assert_eq!(parquet_files(dir.path()).len(), 2);
    ingest.maintain().await;
    assert_eq!(stored_ids(dir.path()), vec![101, 102]);
}

#[tokio::test]
async fn profile_samples_are_replayed_from_the_wal_and_stored_once() {
    use arrow::array::{AsArray, Int64Array};
    use collector::convert::{ProfileSample, profile_batch};
    let dir = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(config(dir.path()), SelfMetrics::new())
        .await
        .unwrap();
    let sample = |pid: u32, count| ProfileSample {
        time_unix_nano: now() as i64,
        host_name: "node-1".into(),
        service_name: Some("checkout".into()),
        pid,
        comm: "app".into(),
        stack: vec!["main".into(), format!("work_{pid}")],
        count,
        period_nanos: 52_631_578,
        ..Default::default()
    };
    let batch = profile_batch(&[sample(1, 3), sample(2, 5)]);
    let rej = ingest
        .export(Transport::Internal, Payload::Profiles(batch), None)
        .await
        .unwrap();
    assert_eq!(rej.count, 0);
    // A crash before any flush: the samples exist only in the WAL. (Let
    // the conversion task end so it drops its handle and the lock.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(ingest);
    assert!(parquet_files(dir.path()).is_empty());
    let metrics = SelfMetrics::new();
    let ingest = Ingest::start(config(dir.path()), metrics.clone())
        .await
        .unwrap();
    assert_eq!(metrics.wal_replayed_records.get(), 1);
    ingest.shutdown().await;
    drop(ingest);
    // A second restart finds them covered by Parquet and replays nothing.
    let metrics = SelfMetrics::new();
    let ingest = Ingest::start(config(dir.path()), metrics.clone())
        .await
        .unwrap();
    assert_eq!(metrics.wal_replayed_records.get(), 0);
    ingest.shutdown().await;
    let files = parquet_files(dir.path());
    assert_eq!(files.len(), 1);
    assert!(files[0].to_string_lossy().contains("profile_samples/date="));
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&files[0]).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut stacks = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let counts = batch
            .column_by_name("count")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .clone();
        let list = batch.column_by_name("stack").unwrap().as_list::<i32>();
        for i in 0..batch.num_rows() {
            let frames = list.value(i);
            let frames: Vec<String> = frames
                .as_string::<i32>()
                .iter()
                .map(|f| f.unwrap().to_string())
                .collect();
            stacks.push((frames.join(";"), counts.value(i)));
        }
    }
    stacks.sort();
    assert_eq!(
        stacks,
        [
            ("main;work_1".to_string(), 3),
            ("main;work_2".to_string(), 5)
        ]
    );
}
