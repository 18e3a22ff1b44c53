//! Queries see every acknowledged row exactly once while rows move from the
//! buffer to Parquet and compaction merges files under running queries.

use std::path::Path;
use std::time::Duration;

use collector::otlp::Payload;
use collector::receive::Transport;
use collector::receive::remote_write::{Label, Sample, TimeSeries, WriteRequest, to_otlp};
use collector::self_metrics::SelfMetrics;
use collector::{CollectorConfig, Ingest};
use futures::TryStreamExt;
use query::{QueryConfig, QueryEngine};

fn config(dir: &Path) -> CollectorConfig {
    let mut c = CollectorConfig {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    c.storage.flush_interval = Duration::from_secs(3600);
    c.storage.compaction_min_files = 3;
    c
}

/// `n` samples of `up{job="j", k=…}` one second apart from `t0_ms`.
fn samples(n: i64, t0_ms: i64, k: &str) -> Payload {
    let label = |name: &str, value: &str| Label {
        name: name.into(),
        value: value.into(),
    };
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![label("__name__", "up"), label("job", "j"), label("k", k)],
            samples: (0..n)
                .map(|i| Sample {
                    value: i as f64,
                    timestamp: t0_ms + i * 1000,
                })
                .collect(),
        }],
    };
    Payload::Metrics(to_otlp(req).unwrap())
}

async fn count(engine: &QueryEngine) -> i64 {
    let (_, batches) = engine
        .sql("SELECT count(*) AS n FROM metrics_gauge")
        .await
        .unwrap();
    let col = batches[0].column(0);
    col.as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

fn files(dir: &Path) -> usize {
    walk(&dir.join("tables"))
}

fn walk(d: &Path) -> usize {
    std::fs::read_dir(d)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk(&p)
            } else {
                usize::from(p.extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}

#[tokio::test]
async fn rows_are_seen_once_through_flush_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let ingest = Ingest::start(config(dir.path()), SelfMetrics::new())
        .await
        .unwrap();
    let engine = QueryEngine::new(ingest.clone(), QueryConfig::default()).unwrap();
    // Half an hour into the previous hour: one partition whatever the clock.
    let t0 = chrono::Utc::now().timestamp_millis() / 3_600_000 * 3_600_000 - 1_800_000;
    for k in ["a", "b", "c"] {
        let rej = ingest
            .export(Transport::RemoteWrite, samples(10, t0, k), None)
            .await
            .unwrap();
        assert_eq!(rej.count, 0);
    }
    // Buffered only, then converted rows wait for conversion to finish.
    ingest.shutdown().await;
    assert_eq!(count(&engine).await, 30);
    assert_eq!(files(dir.path()), 1);
    for k in ["d", "e"] {
        ingest
            .export(Transport::RemoteWrite, samples(5, t0, k), None)
            .await
            .unwrap();
        ingest.shutdown().await;
    }
    assert_eq!(files(dir.path()), 3);
    assert_eq!(count(&engine).await, 40);

    // A query planned before compaction keeps reading the files it chose.
    let df = engine
        .plan_sql("SELECT value_double FROM metrics_gauge")
        .await
        .unwrap();
    let stream = df.execute_stream().await.unwrap();
    ingest.maintain().await;
    assert_eq!(count(&engine).await, 40, "new queries read the merged file");
    assert_eq!(
        files(dir.path()),
        4,
        "sources stay while a query reads them"
    );
    let rows: usize = stream
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 40);
    ingest.maintain().await;
    assert_eq!(files(dir.path()), 1, "sources go once no query holds them");
    assert_eq!(count(&engine).await, 40);

    // PromQL reads the same rows.
    let v = query::promql::instant(&engine, "count_over_time(up[1h])", t0 + 60_000)
        .await
        .unwrap();
    let query::promql::value::Value::Vector(v) = v else {
        panic!("vector expected")
    };
    let mut got: Vec<(String, f64)> = v
        .iter()
        .map(|s| (s.labels.get("k").to_string(), s.value))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("a".into(), 10.0),
            ("b".into(), 10.0),
            ("c".into(), 10.0),
            ("d".into(), 5.0),
            ("e".into(), 5.0)
        ]
    );
}
