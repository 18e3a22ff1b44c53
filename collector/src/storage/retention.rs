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
        for meta in storage.list(table, None).await? {
            let Some((_, p)) = super::layout::parse_path(&meta.location) else {
                continue;
            };
            if partition_end(p) <= cutoff {
                storage.delete(&meta.location).await?;
                storage
                    .metrics
                    .retention_deleted_files
                    .with_label_values(&[table.name()])
                    .inc();
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

fn partition_end(p: Partition) -> i64 {
    (p.0 + 1).saturating_mul(HOUR_NANOS)
}
