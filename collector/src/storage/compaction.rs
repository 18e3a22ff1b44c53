//! Background compaction: merges the small files of a partition into one.
//!
//! Only files whose WAL records are all gone from the WAL are merged, so the
//! start-up check for incomplete flushes never has to reason about merged
//! files. The merged file lists its sources in its metadata; recovery deletes
//! sources a crash left behind.

use std::collections::{BTreeMap, BTreeSet};

use super::layout::{META_COMPACTED_FROM, META_LSNS, Partition};
use super::{FileInfo, Storage, StorageConfig, StorageError, encode, layout};
use crate::schema::Table;
use parquet::file::metadata::KeyValue;

/// Compacts every partition of `table` that has enough small files.
/// Returns the number of compactions done.
pub async fn compact_table(
    storage: &Storage,
    table: Table,
    config: &StorageConfig,
    oldest_wal_lsn: u64,
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
            merge(storage, table, &files).await?;
            done += 1;
        }
    }
    Ok(done)
}

async fn merge(storage: &Storage, table: Table, files: &[FileInfo]) -> Result<(), StorageError> {
    let mut batches = Vec::new();
    let mut lsns = BTreeSet::new();
    let mut names = Vec::new();
    for f in files {
        for b in storage.read_all(&f.meta).await? {
            batches.push(super::series::upgrade(b)?);
        }
        lsns.extend(f.lsns.iter().copied());
        names.push(f.meta.location.filename().unwrap_or_default().to_string());
    }
    let meta = vec![
        KeyValue::new(META_LSNS.into(), layout::encode_lsns(&lsns)),
        KeyValue::new(META_COMPACTED_FROM.into(), names.join(",")),
    ];
    let schema = table.schema();
    let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, StorageError> {
        let all = arrow::compute::concat_batches(&schema, &batches)?;
        let sorted = encode::sort(table, &all)?;
        encode::encode(table, &[sorted], meta)
    })
    .await??;
    let partition = files[0].partition;
    let path = storage.new_path(table, partition, rand::random());
    let meta = storage
        .put_durable(&path, bytes, table, "compaction")
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
