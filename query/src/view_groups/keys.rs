//! Group ids for rows keyed by one or more string view columns.

use std::mem::size_of;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringViewArray};
use datafusion::common::HashMap;

use super::interner::ViewInterner;

/// Assigns a group id to each row from its key columns' values.
///
/// Each column has its own [`ViewInterner`]; with several columns, a row's
/// group is its tuple of per-column ids, looked up only when it differs
/// from the previous row's (rows of one request share most of their key).
#[derive(Debug)]
pub struct GroupKeys {
    columns: Vec<ViewInterner>,
    column_ids: Vec<Vec<usize>>,
    groups: HashMap<Box<[usize]>, usize>,
    /// Each group's per-column ids, one tuple after the other.
    tuples: Vec<usize>,
}

impl GroupKeys {
    /// Keys of `columns` string view columns (at least one).
    pub fn new(columns: usize) -> Self {
        assert!(columns > 0, "a grouping needs a key");
        GroupKeys {
            columns: (0..columns).map(|_| ViewInterner::default()).collect(),
            column_ids: vec![Vec::new(); columns],
            groups: HashMap::default(),
            tuples: Vec::new(),
        }
    }

    /// Number of groups seen since the last [`GroupKeys::emit`].
    pub fn len(&self) -> usize {
        match self.columns.as_slice() {
            [one] => one.len(),
            many => self.tuples.len() / many.len(),
        }
    }

    /// Whether no group was seen since the last [`GroupKeys::emit`].
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the group id of each row of `keys` (one array per column, all
    /// of the same length) to `ids`.
    pub fn intern(&mut self, keys: &[&StringViewArray], ids: &mut Vec<usize>) {
        if let [one] = self.columns.as_mut_slice() {
            return one.intern(keys[0], ids);
        }
        for ((interner, array), column_ids) in
            self.columns.iter_mut().zip(keys).zip(&mut self.column_ids)
        {
            interner.intern(array, column_ids);
        }
        let rows = keys[0].len();
        ids.clear();
        ids.reserve(rows);
        let mut tuple = vec![0; self.columns.len()];
        let mut previous: Option<usize> = None;
        for row in 0..rows {
            let mut same = previous.is_some();
            for (slot, column_ids) in tuple.iter_mut().zip(&self.column_ids) {
                same &= *slot == column_ids[row];
                *slot = column_ids[row];
            }
            let id = match previous {
                Some(id) if same => id,
                _ => self.group(&tuple),
            };
            previous = Some(id);
            ids.push(id);
        }
    }

    fn group(&mut self, tuple: &[usize]) -> usize {
        if let Some(&id) = self.groups.get(tuple) {
            return id;
        }
        let id = self.tuples.len() / tuple.len();
        self.tuples.extend_from_slice(tuple);
        self.groups.insert(tuple.into(), id);
        id
    }

    /// One array per key column holding the groups' values in id order;
    /// the keys start over empty.
    pub fn emit(&mut self) -> Vec<ArrayRef> {
        if let [one] = self.columns.as_mut_slice() {
            return vec![one.emit()];
        }
        let width = self.columns.len();
        let tuples = std::mem::take(&mut self.tuples);
        self.groups.clear();
        self.columns
            .iter_mut()
            .enumerate()
            .map(|(c, interner)| {
                let values = interner.take_values();
                let column = tuples.chunks(width).map(|t| values[t[c]].as_deref());
                Arc::new(column.collect::<StringViewArray>()) as ArrayRef
            })
            .collect()
    }

    /// Bytes held, for the memory pool.
    pub fn size(&self) -> usize {
        let width = self.columns.len();
        let columns: usize = self.columns.iter().map(ViewInterner::size).sum();
        let scratch: usize = self.column_ids.iter().map(|c| c.capacity()).sum();
        let entry = size_of::<(Box<[usize]>, usize)>() + 2 * width * size_of::<usize>() + 1;
        columns
            + scratch * size_of::<usize>()
            + self.groups.capacity() * entry
            + self.tuples.capacity() * size_of::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;

    #[test]
    fn rows_with_equal_keys_share_a_group() {
        let service = StringViewArray::from(vec![
            Some("frontend"),
            Some("frontend"),
            Some("frontend"),
            None,
            Some("frontend"),
        ]);
        let name = StringViewArray::from(vec![
            Some("GET /"),
            Some("SELECT"),
            Some("GET /"),
            Some("GET /"),
            Some("SELECT"),
        ]);
        let mut keys = GroupKeys::new(2);
        let mut ids = Vec::new();
        keys.intern(&[&service, &name], &mut ids);
        assert_eq!(ids, [0, 1, 0, 2, 1]);
        assert_eq!(keys.len(), 3);

        let columns = keys.emit();
        let (service, name) = (columns[0].as_string_view(), columns[1].as_string_view());
        assert_eq!(
            (
                service.value(0),
                name.value(0),
                service.value(1),
                name.value(1)
            ),
            ("frontend", "GET /", "frontend", "SELECT")
        );
        assert!(service.is_null(2));
        assert_eq!(name.value(2), "GET /");
        assert!(keys.is_empty());
        keys.intern(&[service, name], &mut ids);
        assert_eq!(ids, [0, 1, 2]);
    }
}
