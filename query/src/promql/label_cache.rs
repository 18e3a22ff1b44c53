//! The labels of stored series ids, kept across queries.
//!
//! A series id is a hash of the series' identity (`collector::storage::
//! series`), so the labels an id stands for never change: once read, they
//! can serve every later query. Prometheus keeps its whole series index in
//! memory for the same reason; here it is a bounded cache, and a query
//! reads the label columns only for the ids it does not hold (a dashboard
//! refreshing the same panels reads them once).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::UInt64Type;

use super::eval::FastMap;
use super::rows::{BasePairs, LabelColumns, SERIES_ID};

/// Ids remembered before the cache starts over (at ~0.5 KiB of labels
/// each, about 50 MiB).
pub const MAX_CACHED_SERIES: usize = 100_000;

/// Base labels (before the name and `le`/`quantile`) by series id.
#[derive(Debug, Default)]
pub struct LabelCache {
    map: Mutex<FastMap<u64, Arc<BasePairs>>>,
}

impl LabelCache {
    /// Copies the labels of those of `ids` the cache holds into `out`.
    pub fn fill<'a>(
        &self,
        ids: impl Iterator<Item = &'a u64>,
        out: &mut FastMap<u64, Arc<BasePairs>>,
    ) {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            if let Some(labels) = map.get(id) {
                out.entry(*id).or_insert_with(|| labels.clone());
            }
        }
    }

    /// Remembers labels read from storage.
    pub fn remember<'a>(&self, entries: impl Iterator<Item = (&'a u64, &'a Arc<BasePairs>)>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for (id, labels) in entries {
            insert_bounded(&mut map, *id, labels);
        }
    }

    /// Remembers the labels of the ids in `b` (label columns and
    /// `series_id`) the cache does not hold yet; returns how many.
    pub fn learn(&self, b: &RecordBatch) -> usize {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let learned = labels_in(b, |id| map.contains_key(&id));
        for (id, labels) in &learned {
            insert_bounded(&mut map, *id, labels);
        }
        learned.len()
    }

    /// Whether reading labels ahead of queries may add more: warming stops
    /// at three quarters of the bound so it never makes the cache start
    /// over under the queries it is meant to serve.
    pub fn has_room_to_warm(&self) -> bool {
        self.len() < MAX_CACHED_SERIES / 4 * 3
    }

    /// Series ids held.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn insert_bounded(map: &mut FastMap<u64, Arc<BasePairs>>, id: u64, labels: &Arc<BasePairs>) {
    if map.len() >= MAX_CACHED_SERIES && !map.contains_key(&id) {
        // Simplest bound: start over. Working sets above it read labels
        // from storage as if there were no cache.
        map.clear();
    }
    map.entry(id).or_insert_with(|| labels.clone());
}

/// The base labels of the series ids in a batch of label columns and
/// `series_id`, once per id, leaving out ids for which `known` is true.
pub fn labels_in(
    b: &RecordBatch,
    mut known: impl FnMut(u64) -> bool,
) -> Vec<(u64, Arc<BasePairs>)> {
    let (Some(columns), Some(ids)) = (
        LabelColumns::of(b),
        b.column_by_name(SERIES_ID)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>()),
    ) else {
        return Vec::new();
    };
    let mut seen = HashSet::new();
    (0..b.num_rows())
        .filter(|&i| ids.is_valid(i))
        .filter(|&i| seen.insert(ids.value(i)) && !known(ids.value(i)))
        .map(|i| (ids.value(i), Arc::new(columns.pairs(i))))
        .collect()
}
