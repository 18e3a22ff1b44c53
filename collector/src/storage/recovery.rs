//! Start-up reconciliation between Parquet files and the WAL.
//!
//! A flush writes one file per partition; only when all of them exist are the
//! flush's WAL records covered for that table. A crash can leave:
//! - a partial flush: its files are deleted and the records replayed;
//! - a compaction whose sources were not all deleted: they are deleted now
//!   (the compacted file already holds their rows).

use std::collections::{HashMap, HashSet};

use super::{FileInfo, Storage, StorageError};
use crate::schema::Table;

/// Which (table, LSN) pairs are already in durable Parquet files.
#[derive(Debug, Default)]
pub struct Covered {
    set: HashSet<(Table, u64)>,
}

impl Covered {
    /// Whether the rows of `lsn` for `table` are already stored.
    pub fn contains(&self, table: Table, lsn: u64) -> bool {
        self.set.contains(&(table, lsn))
    }

    /// Number of (table, LSN) pairs.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether nothing is covered.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// Reconciles files with the WAL whose oldest record is `oldest_wal_lsn`.
pub async fn recover(storage: &Storage, oldest_wal_lsn: u64) -> Result<Covered, StorageError> {
    let mut infos: Vec<FileInfo> = Vec::new();
    for table in Table::ALL {
        for meta in storage.list(table, None).await? {
            match storage.file_info(meta.clone()).await {
                Ok(info) => infos.push(info),
                Err(e) => {
                    tracing::error!(path = %meta.location, error = %e, "unreadable Parquet footer; leaving the file alone")
                }
            }
        }
    }
    finish_compactions(storage, &mut infos).await?;
    let mut by_flush: HashMap<(Table, String), Vec<&FileInfo>> = HashMap::new();
    for info in &infos {
        let relevant = info.lsns.last().is_some_and(|max| *max >= oldest_wal_lsn);
        if let (true, Some(id)) = (relevant, &info.flush_id) {
            by_flush
                .entry((info.table, id.clone()))
                .or_default()
                .push(info);
        }
    }
    let mut covered = Covered::default();
    for ((table, id), files) in by_flush {
        if files.len() >= files[0].flush_files {
            for f in &files {
                covered.set.extend(f.lsns.iter().map(|l| (table, *l)));
            }
        } else {
            tracing::warn!(%table, flush = %id, found = files.len(), expected = files[0].flush_files,
                "deleting the files of an incomplete flush; its WAL records will be replayed");
            for f in files {
                storage.delete(&f.meta.location).await?;
            }
        }
    }
    Ok(covered)
}

async fn finish_compactions(
    storage: &Storage,
    infos: &mut Vec<FileInfo>,
) -> Result<(), StorageError> {
    let mut leftovers: HashSet<String> = HashSet::new();
    for info in infos.iter().filter(|i| !i.compacted_from.is_empty()) {
        let dir = info
            .meta
            .location
            .as_ref()
            .rsplit_once('/')
            .map_or("", |(d, _)| d)
            .to_string();
        for name in &info.compacted_from {
            leftovers.insert(format!("{dir}/{name}"));
        }
    }
    let mut kept = Vec::new();
    for info in infos.drain(..) {
        if leftovers.contains(info.meta.location.as_ref()) {
            tracing::info!(path = %info.meta.location, "deleting a file an interrupted compaction already merged");
            storage.delete(&info.meta.location).await?;
        } else {
            kept.push(info);
        }
    }
    *infos = kept;
    Ok(())
}
