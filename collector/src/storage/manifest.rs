//! The set of Parquet files queries may read.
//!
//! Listing the object store is not enough for a consistent read: a flush
//! publishes files whose rows are still in the buffer until the flush
//! finishes, and compaction writes the merged file before it deletes the
//! sources. The manifest changes in one step under a lock, together with the
//! buffer (see [`Manifest::publish`] and [`Manifest::view`]), so a query sees
//! every row exactly once. Files a compaction or retention replaced are
//! *retired*: hidden from new queries and deleted once no running query holds
//! them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use object_store::ObjectMeta;
use object_store::path::Path;

use super::layout::Partition;
use crate::schema::Table;

/// One visible data file.
#[derive(Debug)]
pub struct DataFile {
    /// Location and size.
    pub meta: ObjectMeta,
    /// Hour partition of its rows.
    pub partition: Partition,
}

#[derive(Default)]
struct State {
    files: HashMap<Table, BTreeMap<Path, Arc<DataFile>>>,
    retired: Vec<Arc<DataFile>>,
}

/// Visible files per table, plus retired files awaiting deletion.
#[derive(Default)]
pub struct Manifest {
    state: Mutex<State>,
}

impl Manifest {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("manifest lock")
    }

    /// The visible files of `table`. Holding the returned `Arc`s keeps the
    /// files from being deleted.
    pub fn files(&self, table: Table) -> Vec<Arc<DataFile>> {
        self.lock()
            .files
            .get(&table)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The visible files and whatever `also` returns, read atomically with
    /// respect to [`Manifest::publish`].
    pub fn view<T>(&self, table: Table, also: impl FnOnce() -> T) -> (Vec<Arc<DataFile>>, T) {
        let state = self.lock();
        let files = state
            .files
            .get(&table)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        (files, also())
    }

    /// Makes `files` visible and runs `then` in the same step (the flush
    /// drops the rows from the buffer there).
    pub fn publish(&self, table: Table, files: Vec<DataFile>, then: impl FnOnce()) {
        let mut state = self.lock();
        let entry = state.files.entry(table).or_default();
        for f in files {
            entry.insert(f.meta.location.clone(), Arc::new(f));
        }
        then();
    }

    /// Replaces `old` files with `new` (compaction).
    pub fn replace(&self, table: Table, old: &[Path], new: DataFile) {
        let mut state = self.lock();
        let entry = state.files.entry(table).or_default();
        let mut gone: Vec<Arc<DataFile>> = old.iter().filter_map(|p| entry.remove(p)).collect();
        entry.insert(new.meta.location.clone(), Arc::new(new));
        state.retired.append(&mut gone);
    }

    /// Hides `paths` from new queries (retention).
    pub fn retire(&self, table: Table, paths: &[Path]) {
        let mut state = self.lock();
        let entry = state.files.entry(table).or_default();
        let mut gone: Vec<Arc<DataFile>> = paths.iter().filter_map(|p| entry.remove(p)).collect();
        state.retired.append(&mut gone);
    }

    /// Retired files no query holds any more; they are forgotten here and the
    /// caller deletes them.
    pub fn take_deletable(&self) -> Vec<Path> {
        let mut state = self.lock();
        let (free, held): (Vec<_>, Vec<_>) = state
            .retired
            .drain(..)
            .partition(|f| Arc::strong_count(f) == 1);
        state.retired = held;
        free.into_iter().map(|f| f.meta.location.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> DataFile {
        DataFile {
            meta: ObjectMeta {
                location: Path::from(name),
                last_modified: chrono::Utc::now(),
                size: 1,
                e_tag: None,
                version: None,
            },
            partition: Partition(0),
        }
    }

    #[test]
    fn replaced_files_are_deleted_only_when_no_reader_holds_them() {
        let m = Manifest::default();
        m.publish(Table::Spans, vec![file("a"), file("b")], || {});
        let reader = m.files(Table::Spans);
        assert_eq!(reader.len(), 2);
        m.replace(Table::Spans, &[Path::from("a"), Path::from("b")], file("c"));
        let now: Vec<_> = m
            .files(Table::Spans)
            .iter()
            .map(|f| f.meta.location.to_string())
            .collect();
        assert_eq!(now, ["c"]);
        assert!(m.take_deletable().is_empty(), "a query still reads a and b");
        drop(reader);
        let mut freed: Vec<_> = m.take_deletable().iter().map(|p| p.to_string()).collect();
        freed.sort();
        assert_eq!(freed, ["a", "b"]);
        assert!(m.take_deletable().is_empty());
    }

    #[test]
    fn view_and_publish_are_atomic_with_the_callback() {
        let m = Manifest::default();
        let mut buffered = vec![1];
        m.publish(Table::Logs, vec![file("x")], || buffered.clear());
        let (files, rows) = m.view(Table::Logs, || buffered.len());
        assert_eq!((files.len(), rows), (1, 0));
    }
}
