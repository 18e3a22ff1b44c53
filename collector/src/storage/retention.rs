//! Retention: deletes whole hour partitions older than the configured age.

use std::time::Duration;

use super::layout::{HOUR_NANOS, Partition};
use super::{Storage, StorageError};
use crate::schema::Table;

/// Deletes files in partitions that ended more than `retention` before
/// `now_ns`. Returns the number of files deleted.
pub async fn apply(
    storage: &Storage,
    retention: Duration,
    now_ns: i64,
) -> Result<usize, StorageError> {
    let cutoff = now_ns.saturating_sub(i64::try_from(retention.as_nanos()).unwrap_or(i64::MAX));
    let mut deleted = 0;
    for table in Table::ALL {
        let expired: Vec<_> = storage
            .manifest()
            .files(table)
            .iter()
            .filter(|f| partition_end(f.partition) <= cutoff)
            .map(|f| f.meta.location.clone())
            .collect();
        storage.manifest().retire(table, &expired);
        storage
            .metrics
            .retention_deleted_files
            .with_label_values(&[table.name()])
            .inc_by(expired.len() as u64);
        deleted += expired.len();
    }
    // Files a running query still reads go at a later round.
    storage.delete_retired().await?;
    Ok(deleted)
}

fn partition_end(p: Partition) -> i64 {
    (p.0 + 1).saturating_mul(HOUR_NANOS)
}
