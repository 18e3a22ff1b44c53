//! Parquet storage: flushing buffered batches to files, recovering the set of
//! WAL records files cover, compaction and retention. All file I/O goes
//! through `object_store`, so the same code can write to S3 later.

pub mod compaction;
mod encode;
pub mod layout;
pub mod manifest;
pub mod reader;
pub mod recovery;
pub mod retention;
pub mod series;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::{ParquetRecordBatchStream, ParquetRecordBatchStreamBuilder};
use parquet::file::metadata::KeyValue;
use reader::StoreReader;
use serde::{Deserialize, Serialize};

use crate::schema::Table;
use crate::self_metrics::SelfMetrics;
pub use encode::{EncodedFile, encode_flush, in_table_order};
use layout::{META_COMPACTED_FROM, META_FLUSH_FILES, META_FLUSH_ID, META_LSNS, Partition};
pub use manifest::{DataFile, Manifest};

/// Storage failures. Flushes that fail are retried; nothing is dropped.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object store failed.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// Parquet encoding or decoding failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Arrow compute failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Local file-system call failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A batch did not have the expected columns.
    #[error("schema: {0}")]
    Schema(String),
    /// A background task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Flush, compaction and retention settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Flush a table's buffer once it holds this many rows.
    pub flush_rows: usize,
    /// Flush a table's buffer once it holds this many bytes of Arrow data.
    pub flush_bytes: usize,
    /// Flush a table's buffer once its oldest row has waited this long.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// How often compaction looks for small files to merge.
    #[serde(with = "humantime_serde")]
    pub compaction_interval: Duration,
    /// A partition is compacted once it has at least this many small files.
    pub compaction_min_files: usize,
    /// Files at least this large are left alone by compaction; it also caps
    /// the input of one compaction.
    pub compaction_target_bytes: u64,
    /// Partitions older than this are deleted.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            flush_rows: 500_000,
            flush_bytes: 64 << 20,
            flush_interval: Duration::from_secs(60),
            compaction_interval: Duration::from_secs(300),
            compaction_min_files: 4,
            compaction_target_bytes: 128 << 20,
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Deletes the staging files (`<name>.parquet#<n>`) that the local object
/// store writes before renaming a file into place: a crash during a flush or
/// a merge leaves them behind, invisible to listings but taking disk.
fn remove_staged_uploads(dir: &std::path::Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            remove_staged_uploads(&path)?;
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.rsplit_once(".parquet#"))
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            tracing::info!(path = %path.display(), "removing a partial upload left by a crash");
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// A data file and what its footer says about it.
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// Object metadata (path, size).
    pub meta: ObjectMeta,
    /// Table and partition.
    pub table: Table,
    /// Hour partition.
    pub partition: Partition,
    /// Rows in the file.
    pub rows: u64,
    /// WAL records whose rows for this table the file holds.
    pub lsns: BTreeSet<u64>,
    /// The flush that wrote it (none for compacted files).
    pub flush_id: Option<String>,
    /// How many files that flush wrote.
    pub flush_files: usize,
    /// File names this file was compacted from.
    pub compacted_from: Vec<String>,
}

/// The Parquet store.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// Set for the local file system, where durability needs an explicit fsync.
    local_root: Option<PathBuf>,
    metrics: SelfMetrics,
    manifest: Arc<Manifest>,
}

impl Storage {
    /// A store rooted at a local directory (created if missing).
    pub fn local(root: PathBuf, metrics: SelfMetrics) -> Result<Storage, StorageError> {
        std::fs::create_dir_all(&root)?;
        let root = root.canonicalize()?;
        let store = LocalFileSystem::new_with_prefix(&root)?;
        Ok(Storage {
            store: Arc::new(store),
            local_root: Some(root),
            metrics,
            manifest: Arc::default(),
        })
    }

    /// Deletes the staging files of uploads a crash interrupted (local
    /// store only). Only the process holding the data directory may call
    /// this: another one's upload in progress looks the same.
    pub fn remove_staged_uploads(&self) -> Result<(), StorageError> {
        if let Some(root) = &self.local_root {
            remove_staged_uploads(root)?;
        }
        Ok(())
    }

    /// The underlying object store (for readers such as the query layer).
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The files queries may read.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Makes every data file in the store visible (at start, after recovery).
    pub async fn load_manifest(&self) -> Result<(), StorageError> {
        for table in Table::ALL {
            let files = self
                .list(table, None)
                .await?
                .into_iter()
                .filter_map(|meta| {
                    let (_, partition) = layout::parse_path(&meta.location)?;
                    Some(DataFile { meta, partition })
                })
                .collect();
            self.manifest.publish(table, files, || {});
        }
        Ok(())
    }

    /// Deletes retired files no query reads any more.
    pub async fn delete_retired(&self) -> Result<usize, StorageError> {
        let paths = self.manifest.take_deletable();
        for p in &paths {
            self.delete(p).await?;
        }
        Ok(paths.len())
    }

    /// Writes `batches` of one table as one file per hour partition. The
    /// files carry `lsns` and the flush id; they are durable when this returns.
    pub async fn write_flush(
        &self,
        table: Table,
        batches: Vec<RecordBatch>,
        lsns: &BTreeSet<u64>,
        fallback_ns: i64,
    ) -> Result<Vec<DataFile>, StorageError> {
        let flush_id: u64 = rand::random();
        let lsn_text = layout::encode_lsns(lsns);
        let files = tokio::task::spawn_blocking(move || {
            encode::encode_flush(table, &batches, fallback_ns, |n| {
                vec![
                    KeyValue::new(META_LSNS.into(), lsn_text.clone()),
                    KeyValue::new(META_FLUSH_ID.into(), format!("{flush_id:016x}")),
                    KeyValue::new(META_FLUSH_FILES.into(), n.to_string()),
                ]
            })
        })
        .await??;
        let mut written = Vec::new();
        for f in files {
            let path = self.new_path(table, f.partition, flush_id);
            let meta = self.put_durable(&path, f.bytes, table, "flush").await?;
            self.metrics
                .rows_written
                .with_label_values(&[table.name()])
                .inc_by(f.rows as u64);
            written.push(DataFile {
                meta,
                partition: f.partition,
            });
        }
        Ok(written)
    }

    fn new_path(&self, table: Table, p: Partition, id: u64) -> Path {
        let ms = chrono::Utc::now().timestamp_millis();
        p.prefix(table).clone().join(layout::file_name(ms, id))
    }

    /// Puts a file atomically and makes it durable.
    async fn put_durable(
        &self,
        path: &Path,
        bytes: Vec<u8>,
        table: Table,
        reason: &str,
    ) -> Result<ObjectMeta, StorageError> {
        let len = bytes.len() as u64;
        self.store.put(path, PutPayload::from(bytes)).await?;
        self.made_durable(path, len, table, reason).await
    }

    /// Makes a file just put (whole or in parts) durable, and counts it.
    async fn made_durable(
        &self,
        path: &Path,
        len: u64,
        table: Table,
        reason: &str,
    ) -> Result<ObjectMeta, StorageError> {
        if let Some(root) = &self.local_root {
            let file = root.join(path.as_ref());
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                std::fs::File::open(&file)?.sync_all()?;
                // The rename that published the file is durable only once
                // its directory is synced.
                if let Some(dir) = file.parent() {
                    std::fs::File::open(dir)?.sync_all()?;
                }
                Ok(())
            })
            .await??;
        }
        self.metrics
            .files_written
            .with_label_values(&[table.name(), reason])
            .inc();
        self.metrics
            .bytes_written
            .with_label_values(&[table.name(), reason])
            .inc_by(len);
        Ok(ObjectMeta {
            location: path.clone(),
            last_modified: chrono::Utc::now(),
            size: len,
            e_tag: None,
            version: None,
        })
    }

    /// Lists the data files of a table (optionally one partition).
    pub async fn list(
        &self,
        table: Table,
        partition: Option<Partition>,
    ) -> Result<Vec<ObjectMeta>, StorageError> {
        let prefix = match partition {
            Some(p) => p.prefix(table),
            None => Path::from(table.name()),
        };
        let metas: Vec<ObjectMeta> = self.store.list(Some(&prefix)).try_collect().await?;
        Ok(metas
            .into_iter()
            .filter(|m| layout::parse_path(&m.location).is_some())
            .collect())
    }

    /// Reads a file's footer.
    pub async fn file_info(&self, meta: ObjectMeta) -> Result<FileInfo, StorageError> {
        let (table, partition) = layout::parse_path(&meta.location)
            .ok_or_else(|| StorageError::Schema(format!("not a data file: {}", meta.location)))?;
        let mut reader = StoreReader::new(self.store.clone(), meta.location.clone(), meta.size);
        let md = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new()).await?;
        let kv = md
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .cloned()
            .unwrap_or_default();
        let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
        Ok(FileInfo {
            table,
            partition,
            rows: u64::try_from(md.metadata().file_metadata().num_rows()).unwrap_or(0),
            lsns: get(META_LSNS)
                .and_then(|s| layout::decode_lsns(&s))
                .unwrap_or_default(),
            flush_id: get(META_FLUSH_ID),
            flush_files: get(META_FLUSH_FILES)
                .and_then(|s| s.parse().ok())
                .unwrap_or(1),
            compacted_from: get(META_COMPACTED_FROM)
                .map(|s| {
                    s.split(',')
                        .filter(|x| !x.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            meta,
        })
    }

    /// Streams a file's rows in batches of at most `batch_rows`.
    pub async fn read_stream(
        &self,
        meta: &ObjectMeta,
        batch_rows: usize,
    ) -> Result<ParquetRecordBatchStream<StoreReader>, StorageError> {
        let reader = StoreReader::new(self.store.clone(), meta.location.clone(), meta.size);
        Ok(ParquetRecordBatchStreamBuilder::new(reader)
            .await?
            .with_batch_size(batch_rows)
            .build()?)
    }

    /// Deletes a file (missing files are fine: deletion is idempotent).
    pub async fn delete(&self, path: &Path) -> Result<(), StorageError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
