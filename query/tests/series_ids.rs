//! PromQL reads metric rows by their stored series id and the labels from
//! one flagged row per series: series whose flagged row is outside the
//! queried range, and files written before ids were stored, must still come
//! out whole and with their labels.

use std::path::Path;
use std::time::Duration;

use collector::otlp::Payload;
use collector::receive::Transport;
use collector::receive::remote_write::{Label, Sample, TimeSeries, WriteRequest, to_otlp};
use collector::schema::Table;
use collector::self_metrics::SelfMetrics;
use collector::storage::layout::{Partition, file_name};
use collector::{CollectorConfig, Ingest};
use query::promql::value::{Series, Value};
use query::promql::warm::{Warmed, Warmer};
use query::{QueryConfig, QueryEngine};

fn config(dir: &Path) -> CollectorConfig {
    let mut c = CollectorConfig {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    c.storage.flush_interval = Duration::from_secs(3600);
    c
}

/// Samples `i` in `from..to` of `up{job="j", k=…}`: value `i` at
/// `t0_ms + 10 s × i`.
fn samples(from: i64, to: i64, t0_ms: i64, k: &str) -> Payload {
    let label = |name: &str, value: &str| Label {
        name: name.into(),
        value: value.into(),
    };
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![label("__name__", "up"), label("job", "j"), label("k", k)],
            samples: (from..to)
                .map(|i| Sample {
                    value: i as f64,
                    timestamp: t0_ms + i * 10_000,
                })
                .collect(),
        }],
    };
    Payload::Metrics(to_otlp(req).unwrap())
}

/// Start of the previous hour: one partition whatever the clock.
fn hour_ago() -> i64 {
    chrono::Utc::now().timestamp_millis() / 3_600_000 * 3_600_000 - 3_600_000
}

async fn vector(engine: &QueryEngine, q: &str, t: i64) -> Vec<(String, f64)> {
    let Value::Vector(v) = query::promql::instant(engine, q, t).await.unwrap() else {
        panic!("vector expected from {q}")
    };
    let mut got: Vec<(String, f64)> = v.iter().map(|s| (s.labels.to_string(), s.value)).collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    got
}

/// An ingest over `dir` holding an hour-old `up{k=…}` series for each of
/// `keys` (buffered), an engine over it, and the series' start (ms).
async fn with_series(dir: &Path, keys: &[&str]) -> (Ingest, QueryEngine, i64) {
    let ingest = Ingest::start(config(dir), SelfMetrics::new())
        .await
        .unwrap();
    let engine = QueryEngine::new(ingest.clone(), QueryConfig::default()).unwrap();
    let t0 = hour_ago();
    for k in keys {
        ingest
            .export(Transport::RemoteWrite, samples(0, 60, t0, k), None)
            .await
            .unwrap();
    }
    (ingest, engine, t0)
}

#[tokio::test]
async fn a_series_whose_first_row_is_before_the_range_keeps_its_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, engine, t0) = with_series(dir.path(), &["a", "b"]).await;
    // Into Parquet, where only each series' first row (at t0) is flagged.
    ingest.shutdown().await;
    // The last minute of ten (both ends in, as in Prometheus 2): the
    // flagged rows are nine minutes earlier.
    let at = t0 + 590_000;
    assert_eq!(
        vector(&engine, "count_over_time(up[1m])", at).await,
        vec![
            (r#"{job="j", k="a"}"#.to_string(), 7.0),
            (r#"{job="j", k="b"}"#.to_string(), 7.0)
        ]
    );
    // The labels read are kept for later queries, which then read none.
    assert_eq!(engine.label_cache().len(), 2);
    assert_eq!(
        vector(&engine, "count_over_time(up[1m])", at).await.len(),
        2
    );
    // A matcher on an attribute label is applied once the labels are known.
    assert_eq!(
        vector(&engine, r#"last_over_time(up{k="b"}[1m])"#, at).await,
        vec![(r#"{__name__="up", job="j", k="b"}"#.to_string(), 59.0)]
    );
    assert!(vector(&engine, r#"up{k="c"}"#, at).await.is_empty());
}

#[tokio::test]
async fn labels_of_new_files_are_read_ahead_of_the_first_query() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, engine, t0) = with_series(dir.path(), &["a", "b", "c"]).await;
    let mut warmer = Warmer::new(engine.clone());
    // Buffered rows are not files: nothing to read yet.
    assert_eq!(warmer.warm_new_files().await, Warmed::default());
    // Waits for the acknowledged rows to be converted, then flushes them.
    ingest.shutdown().await;
    let warmed = warmer.warm_new_files().await;
    assert_eq!((warmed.files, warmed.series), (1, 3));
    assert_eq!(engine.label_cache().len(), 3);
    assert_eq!(ingest.metrics().query_series_warmed.get(), 3);
    // Each file is read once.
    assert_eq!(warmer.warm_new_files().await, Warmed::default());
    // The query finds every label in the cache, and gives what an engine
    // reading the labels itself gives.
    let cold = QueryEngine::new(ingest.clone(), QueryConfig::default()).unwrap();
    let at = t0 + 590_000;
    let q = r#"last_over_time(up{k=~"a|c"}[1m])"#;
    let expected = vec![
        (r#"{__name__="up", job="j", k="a"}"#.to_string(), 59.0),
        (r#"{__name__="up", job="j", k="c"}"#.to_string(), 59.0),
    ];
    assert_eq!(vector(&engine, q, at).await, expected);
    assert_eq!(vector(&cold, q, at).await, expected);
    assert_eq!(engine.label_cache().len(), 3);
}

#[tokio::test]
async fn files_without_series_ids_merge_with_new_rows_of_the_same_series() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = hour_ago();
    // A file as written before `series_id`/`series_first` existed: the
    // first half of the series.
    let converted = collector::convert::convert(&samples(0, 30, t0, "a"), 0);
    let (table, batch) = &converted[0];
    assert_eq!(*table, Table::MetricsGauge);
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|i| !batch.schema().field(*i).name().starts_with("series_"))
        .collect();
    let old = batch.project(&keep).unwrap();
    let partition = Partition::of_nanos(t0 * 1_000_000);
    let path = dir
        .path()
        .join("tables")
        .join(table.name())
        .join(partition.dir());
    std::fs::create_dir_all(&path).unwrap();
    let file = std::fs::File::create(path.join(file_name(t0, 1))).unwrap();
    let mut writer =
        datafusion::parquet::arrow::ArrowWriter::try_new(file, old.schema(), None).unwrap();
    writer.write(&old).unwrap();
    writer.close().unwrap();

    let ingest = Ingest::start(config(dir.path()), SelfMetrics::new())
        .await
        .unwrap();
    let engine = QueryEngine::new(ingest.clone(), QueryConfig::default()).unwrap();
    // The second half arrives now, with ids.
    let second = samples(30, 60, t0, "a");
    ingest
        .export(Transport::RemoteWrite, second, None)
        .await
        .unwrap();
    let r = query::promql::Range {
        start: t0,
        end: t0 + 590_000,
        step: 10_000,
    };
    // Acknowledged rows are converted in the background: queryable within
    // moments, not at once.
    let mut series: Vec<Series> = Vec::new();
    for _ in 0..100 {
        series = query::promql::range(&engine, "up", r).await.unwrap();
        let newest = series.iter().filter_map(|s| s.points.last()).map(|p| p.1);
        if newest.fold(f64::NAN, f64::max) == 59.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(series.len(), 1, "one series from old and new rows");
    assert_eq!(
        series[0].labels.to_string(),
        r#"{__name__="up", job="j", k="a"}"#
    );
    let values: Vec<f64> = series[0].points.iter().map(|p| p.1).collect();
    assert_eq!(values, (0..60).map(f64::from).collect::<Vec<_>>());
    // Still one series once the new rows are in a file of their own.
    ingest.shutdown().await;
    let series = query::promql::range(&engine, "up", r).await.unwrap();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].points.len(), 60);
}
