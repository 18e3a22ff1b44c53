//! Group ids for rows keyed by one or more string view columns.

use std::mem::size_of;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringViewArray};
use datafusion::common::HashMap;

use super::interner::{SLOTS, ViewInterner, spread};

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
    /// Recent groups by [`spread`] of their tuple's hash: `(generation,
    /// id)`, valid only in the current generation (ids restart at each
    /// emit). Spares the tuple map a probe on most rows.
    recent: Box<[(u64, usize)]>,
    generation: u64,
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
            recent: vec![(0, 0); SLOTS].into_boxed_slice(),
            generation: 1,
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
        ids.clear();
        ids.reserve(keys[0].len());
        let column_ids = std::mem::take(&mut self.column_ids);
        match column_ids.as_slice() {
            [first, second] => self.intern_pairs(first, second, ids),
            _ => self.intern_tuples(&column_ids, ids),
        }
        self.column_ids = column_ids;
    }

    /// Two keys, the common case (service and span name): each row's pair
    /// of ids is compared and hashed as plain integers.
    fn intern_pairs(&mut self, first: &[usize], second: &[usize], ids: &mut Vec<usize>) {
        let mut previous = None;
        for (&a, &b) in first.iter().zip(second) {
            let id = match previous {
                Some((pa, pb, id)) if (pa, pb) == (a, b) => id,
                _ => self.group(&[a, b], ((a as u64) << 32) ^ b as u64),
            };
            previous = Some((a, b, id));
            ids.push(id);
        }
    }

    fn intern_tuples(&mut self, column_ids: &[Vec<usize>], ids: &mut Vec<usize>) {
        let mut tuple = vec![0; column_ids.len()];
        let mut previous: Option<usize> = None;
        for row in 0..column_ids[0].len() {
            let mut same = previous.is_some();
            for (slot, column) in tuple.iter_mut().zip(column_ids) {
                same &= *slot == column[row];
                *slot = column[row];
            }
            let id = match previous {
                Some(id) if same => id,
                _ => {
                    let hash = tuple.iter().fold(0u64, |h, &id| {
                        (h.rotate_left(21) ^ id as u64).wrapping_mul(0x2545_F491_4F6C_DD1D)
                    });
                    self.group(&tuple, hash)
                }
            };
            previous = Some(id);
            ids.push(id);
        }
    }

    /// The group of `tuple`, whose hash is `hash`.
    fn group(&mut self, tuple: &[usize], hash: u64) -> usize {
        let width = tuple.len();
        let slot = spread(hash);
        let (generation, id) = self.recent[slot];
        // Element by element: slice equality calls `memcmp`, which cost a
        // fifth of the grouping for two-key tuples.
        if generation == self.generation {
            let held = &self.tuples[id * width..(id + 1) * width];
            if held.iter().zip(tuple).all(|(a, b)| a == b) {
                return id;
            }
        }
        let id = match self.groups.get(tuple) {
            Some(&id) => id,
            None => {
                let id = self.tuples.len() / width;
                self.tuples.extend_from_slice(tuple);
                self.groups.insert(tuple.into(), id);
                id
            }
        };
        self.recent[slot] = (self.generation, id);
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
        self.generation += 1;
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
            + SLOTS * size_of::<(u64, usize)>()
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

    #[test]
    fn three_keys_group_by_the_whole_tuple() {
        let a = StringViewArray::from(vec!["x", "x", "x", "x", "y"]);
        let b = StringViewArray::from(vec!["p", "p", "q", "p", "p"]);
        let c = StringViewArray::from(vec!["1", "2", "1", "1", "1"]);
        let mut keys = GroupKeys::new(3);
        let mut ids = Vec::new();
        keys.intern(&[&a, &b, &c], &mut ids);
        assert_eq!(ids, [0, 1, 2, 0, 3]);
        let columns = keys.emit();
        let values: Vec<String> = (0..4)
            .map(|g| {
                let column = |i: usize| columns[i].as_string_view().value(g).to_owned();
                column(0) + &column(1) + &column(2)
            })
            .collect();
        assert_eq!(values, ["xp1", "xp2", "xq1", "yp1"]);
    }
}
