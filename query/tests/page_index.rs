//! The page index of a file is read once: the footer cached for later
//! queries carries it (DataFusion's opener alone parsed it again for every
//! query that pruned pages).

use std::path::Path;
use std::time::Duration;

use collector::otlp::Payload;
use collector::receive::Transport;
use collector::receive::remote_write::{Label, Sample, TimeSeries, WriteRequest, to_otlp};
use collector::self_metrics::SelfMetrics;
use collector::{CollectorConfig, Ingest};
use datafusion::datasource::physical_plan::parquet::metadata::CachedParquetMetaData;
use query::{QueryConfig, QueryEngine};

fn gauge(name: &str, t0_ms: i64) -> Payload {
    let label = |name: &str, value: &str| Label {
        name: name.into(),
        value: value.into(),
    };
    let req = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![label("__name__", name), label("job", "j")],
            samples: (0..50)
                .map(|i| Sample {
                    value: i as f64,
                    timestamp: t0_ms + i * 1000,
                })
                .collect(),
        }],
    };
    Payload::Metrics(to_otlp(req).unwrap())
}

/// Paths of the Parquet files under `dir`, relative to it.
fn parquet_files(dir: &Path, under: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(under).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            parquet_files(dir, &p, out);
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
        }
    }
}

/// Whether the footer cached for `file` holds its column and offset index.
fn cached_with_page_index(engine: &QueryEngine, file: &str) -> Option<bool> {
    let cache = engine
        .context()
        .runtime_env()
        .cache_manager
        .get_file_metadata_cache();
    let entry = cache.get(&object_store::path::Path::from(file))?;
    let parquet = entry
        .file_metadata
        .as_any()
        .downcast_ref::<CachedParquetMetaData>()?
        .parquet_metadata()
        .clone();
    Some(parquet.column_index().is_some() && parquet.offset_index().is_some())
}

#[tokio::test]
async fn a_scan_that_prunes_pages_caches_the_page_index_with_the_footer() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = CollectorConfig {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.storage.flush_interval = Duration::from_secs(3600);
    let ingest = Ingest::start(config, SelfMetrics::new()).await.unwrap();
    let engine = QueryEngine::new(ingest.clone(), QueryConfig::default()).unwrap();
    let t0 = chrono::Utc::now().timestamp_millis() / 3_600_000 * 3_600_000 - 1_800_000;
    for name in ["up", "down"] {
        ingest
            .export(Transport::RemoteWrite, gauge(name, t0), None)
            .await
            .unwrap();
    }
    ingest.shutdown().await;
    let tables = dir.path().join("tables");
    let mut files = Vec::new();
    parquet_files(&tables, &tables.join("metrics_gauge"), &mut files);
    assert_eq!(files.len(), 1, "{files:?}");

    // No filter on values: the footer alone is enough, and cached.
    let (_, rows) = engine
        .sql("SELECT count(value_double) FROM metrics_gauge")
        .await
        .unwrap();
    assert_eq!(rows[0].num_rows(), 1);
    assert_eq!(cached_with_page_index(&engine, &files[0]), Some(false));

    // An equality prunes with the page index, which then stays cached.
    let sql = "SELECT sum(value_double) AS s FROM metrics_gauge WHERE metric_name = 'up'";
    for _ in 0..2 {
        let (_, rows) = engine.sql(sql).await.unwrap();
        let s = rows[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .unwrap()
            .value(0);
        assert_eq!(s, (0..50).sum::<i32>() as f64);
        assert_eq!(cached_with_page_index(&engine, &files[0]), Some(true));
    }
}
