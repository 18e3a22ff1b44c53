//! Background compaction: merges the small files of a partition into one.
//!
//! Only files whose WAL records are all gone from the WAL are merged, so the
//! start-up check for incomplete flushes never has to reason about merged
//! files. The merged file lists its sources in its metadata; recovery deletes
//! sources a crash left behind.
//!
//! A merge holds a bounded amount of memory whatever the size of its
//! sources: it streams their rows in chunks of at most
//! [`CompactionMemory::chunk_bytes`] of Arrow data and uploads the encoded
//! bytes as they are produced. Chunks of sorted tables (metrics, profiles)
//! are sorted and written as one row group each; spans and logs keep
//! arrival order (see [`encode_chunk`]). Chunks and the writer's row group
//! in progress count in the memory budget, so receivers back off instead of
//! the process growing. Reading a whole partition into memory to sort it
//! once took 14 GiB of RSS for 128 MiB of span files (docs/benchmarks.md).

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::RecordBatch;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::buffered::BufWriter;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;

use super::layout::{META_COMPACTED_FROM, META_LSNS, Partition};
use super::{FileInfo, Storage, StorageConfig, StorageError, encode, layout};
use crate::buffer::MemoryBudget;
use crate::schema::Table;

/// Rows per batch read from a source file.
const READ_BATCH_ROWS: usize = 8192;

/// Rows per row group of an unsorted merge (spans, logs): about what a
/// flush writes. A trace lookup decodes the `trace_id` column of every row
/// group whose bloom filter lets it through; with the writer's default of
/// 1 Mi rows that was 2 M rows for a 5-span trace (docs/benchmarks.md,
/// "Session 11").
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Bytes the upload buffers before it sends a part.
const UPLOAD_PART_BYTES: usize = 8 << 20;

/// How much memory a merge may hold, and where it is counted.
#[derive(Clone, Copy)]
pub struct CompactionMemory<'a> {
    /// The ingest budget: a chunk being read, sorted and encoded counts in
    /// it, so receivers refuse (retryably) rather than the RSS growing.
    pub budget: &'a MemoryBudget,
    /// Arrow bytes sorted and written as one row group. The merge holds
    /// about twice this while it sorts a chunk.
    pub chunk_bytes: usize,
}

/// Compacts every partition of `table` that has enough small files.
/// Returns the number of compactions done.
pub async fn compact_table(
    storage: &Storage,
    table: Table,
    config: &StorageConfig,
    oldest_wal_lsn: u64,
    memory: CompactionMemory<'_>,
) -> Result<usize, StorageError> {
    let mut by_partition: BTreeMap<Partition, Vec<FileInfo>> = BTreeMap::new();
    // Candidates come from the manifest, not a listing: a listing would
    // also show files already merged but still read by a query.
    for file in storage.manifest().files(table) {
        if file.meta.size >= config.compaction_target_bytes {
            continue;
        }
        let info = storage.file_info(file.meta.clone()).await?;
        if info.lsns.last().is_some_and(|max| *max >= oldest_wal_lsn) {
            continue;
        }
        by_partition.entry(info.partition).or_default().push(info);
    }
    let mut done = 0;
    for (_, mut files) in by_partition {
        if files.len() < config.compaction_min_files {
            continue;
        }
        // Smallest first, capped so one merge stays within a bounded memory.
        files.sort_by_key(|f| f.meta.size);
        let mut total = 0;
        files.retain(|f| {
            total += f.meta.size;
            total <= config.compaction_target_bytes
        });
        if files.len() >= 2 {
            // Oldest first (names start with the write time): an unsorted
            // merge then keeps arrival order.
            files.sort_by(|a, b| a.meta.location.cmp(&b.meta.location));
            merge(storage, table, &files, memory).await?;
            done += 1;
        }
    }
    Ok(done)
}

async fn merge(
    storage: &Storage,
    table: Table,
    files: &[FileInfo],
    memory: CompactionMemory<'_>,
) -> Result<(), StorageError> {
    let mut lsns = BTreeSet::new();
    let mut names = Vec::new();
    for f in files {
        lsns.extend(f.lsns.iter().copied());
        names.push(f.meta.location.filename().unwrap_or_default().to_string());
    }
    let meta = vec![
        KeyValue::new(META_LSNS.into(), layout::encode_lsns(&lsns)),
        KeyValue::new(META_COMPACTED_FROM.into(), names.join(",")),
    ];
    let partition = files[0].partition;
    let path = storage.new_path(table, partition, rand::random());
    // The store publishes the object only when the upload completes (a
    // local file is renamed into place), so readers never see a part.
    let upload = BufWriter::with_capacity(storage.object_store(), path.clone(), UPLOAD_PART_BYTES);
    let mut out = MergedFile {
        budget: memory.budget,
        counted: 0,
        table,
        meta,
        total_rows: files.iter().map(|f| f.rows as usize).sum(),
        writer: None,
        upload,
        len: 0,
    };
    let mut chunk = Chunk::new(memory.budget);
    for f in files {
        let mut rows = storage.read_stream(&f.meta, READ_BATCH_ROWS).await?;
        while let Some(batch) = rows.try_next().await? {
            chunk.push(super::series::upgrade(batch)?);
            if chunk.bytes >= memory.chunk_bytes {
                out.write_chunk(&mut chunk).await?;
            }
        }
    }
    out.write_chunk(&mut chunk).await?;
    let len = out.finish().await?;
    let meta = storage
        .made_durable(&path, len, table, "compaction")
        .await?;
    let sources: Vec<_> = files.iter().map(|f| f.meta.location.clone()).collect();
    storage
        .manifest()
        .replace(table, &sources, super::DataFile { meta, partition });
    storage.delete_retired().await?;
    storage
        .metrics
        .compactions
        .with_label_values(&[table.name()])
        .inc();
    tracing::debug!(%table, files = files.len(), output = %path, "compacted partition");
    Ok(())
}

/// Rows read and not yet written, counted in the memory budget.
struct Chunk<'a> {
    budget: &'a MemoryBudget,
    batches: Vec<RecordBatch>,
    bytes: usize,
}

impl<'a> Chunk<'a> {
    fn new(budget: &'a MemoryBudget) -> Self {
        Chunk {
            budget,
            batches: Vec::new(),
            bytes: 0,
        }
    }

    fn push(&mut self, batch: RecordBatch) {
        let n = batch.get_array_memory_size();
        self.budget.add(n);
        self.bytes += n;
        self.batches.push(batch);
    }
}

impl Drop for Chunk<'_> {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// The merged file being encoded and uploaded.
struct MergedFile<'a> {
    /// Also counts the writer's row group in progress (encoded pages,
    /// dictionaries), which grows up to a whole row group between chunks.
    budget: &'a MemoryBudget,
    counted: usize,
    table: Table,
    meta: Vec<KeyValue>,
    /// Rows of all sources (sizes the bloom filters of unsorted merges).
    total_rows: usize,
    /// Created with the first chunk, which sizes the trace-id bloom filter.
    writer: Option<ArrowWriter<Vec<u8>>>,
    upload: BufWriter,
    len: u64,
}

impl MergedFile<'_> {
    /// Encodes `chunk` (off the runtime: it is CPU-heavy, see
    /// [`encode_chunk`]), then uploads the bytes encoded so far.
    async fn write_chunk(&mut self, chunk: &mut Chunk<'_>) -> Result<(), StorageError> {
        if chunk.batches.is_empty() {
            return Ok(());
        }
        let batches = std::mem::take(&mut chunk.batches);
        // A sorted copy exists beside the chunk until the chunk is dropped.
        let sorting = if self.table.sorts_rows() {
            chunk.bytes
        } else {
            0
        };
        chunk.budget.add(sorting);
        let (table, meta, writer) = (self.table, self.meta.clone(), self.writer.take());
        let rows = self.total_rows;
        let encoded =
            tokio::task::spawn_blocking(move || encode_chunk(table, meta, writer, batches, rows))
                .await;
        chunk.budget.release(sorting);
        chunk.budget.release(chunk.bytes);
        chunk.bytes = 0;
        let (writer, bytes) = encoded??;
        self.count(writer.memory_size());
        self.writer = Some(writer);
        self.put(bytes).await
    }

    /// Counts `bytes` of writer memory in the budget instead of the last figure.
    fn count(&mut self, bytes: usize) {
        self.budget.add(bytes);
        self.budget.release(self.counted);
        self.counted = bytes;
    }

    async fn put(&mut self, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.len += bytes.len() as u64;
        self.upload.put(Bytes::from(bytes)).await?;
        Ok(())
    }

    /// Writes the footer and completes the upload; returns the file's size.
    async fn finish(mut self) -> Result<u64, StorageError> {
        let Some(mut writer) = self.writer.take() else {
            return Err(StorageError::Schema("a merge read no rows".into()));
        };
        let footer = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, StorageError> {
            writer.finish()?;
            Ok(std::mem::take(writer.inner_mut()))
        })
        .await??;
        self.put(footer).await?;
        tokio::io::AsyncWriteExt::shutdown(&mut self.upload).await?;
        Ok(self.len)
    }
}

impl Drop for MergedFile<'_> {
    fn drop(&mut self) {
        self.budget.release(self.counted);
    }
}

/// Writes one chunk and returns the bytes encoded since the last call.
///
/// Tables sorted at flush (metrics, profiles) are sorted chunk by chunk,
/// each chunk one row group, so a series' points stay together. Spans and
/// logs keep arrival order, as their flushes do: it is the smallest on disk
/// (sorting 5 M spans by service and time in 32 MiB chunks made them 16 %
/// larger) and needs no copy; the writer then cuts row groups of
/// [`ROW_GROUP_ROWS`].
fn encode_chunk(
    table: Table,
    meta: Vec<KeyValue>,
    writer: Option<ArrowWriter<Vec<u8>>>,
    batches: Vec<RecordBatch>,
    total_rows: usize,
) -> Result<(ArrowWriter<Vec<u8>>, Vec<u8>), StorageError> {
    let sorted = table.sorts_rows();
    let batches = encode::in_table_order(table, batches)?;
    let mut writer = match writer {
        Some(w) => w,
        None => {
            let props = if sorted {
                encode::writer_properties(table, meta, &batches)
            } else {
                let group = total_rows.min(ROW_GROUP_ROWS);
                encode::writer_properties_scaled(table, meta, &batches, group)
            };
            ArrowWriter::try_new(Vec::new(), table.schema(), Some(props))?
        }
    };
    for b in &batches {
        writer.write(b)?;
    }
    if sorted {
        writer.flush()?;
    }
    let bytes = std::mem::take(writer.inner_mut());
    Ok((writer, bytes))
}
