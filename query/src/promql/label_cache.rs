//! The labels of stored series ids, kept across queries.
//!
//! A series id is a hash of the series' identity (`collector::storage::
//! series`), so the labels an id stands for never change: once read, they
//! can serve every later query. Prometheus keeps its whole series index in
//! memory for the same reason; here it is a bounded cache, and a query
//! reads the label columns only for the ids it does not hold (a dashboard
//! refreshing the same panels reads them once).

use std::sync::{Arc, Mutex};

use super::eval::FastMap;
use super::rows::BasePairs;

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
            if map.len() >= MAX_CACHED_SERIES && !map.contains_key(id) {
                // Simplest bound: start over. Working sets above it read
                // labels from storage as if there were no cache.
                map.clear();
            }
            map.entry(*id).or_insert_with(|| labels.clone());
        }
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
