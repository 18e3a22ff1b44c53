//! Group ids for string views, resolved once per distinct view.

use std::mem::size_of;

use arrow::array::{Array, ArrayRef, StringViewArray};
use arrow::buffer::NullBuffer;
use datafusion::common::HashMap;

/// Assigns a group id to each string of a view array.
///
/// A view array decoded from a dictionary-encoded Parquet page repeats the
/// very same 16-byte view for every row holding the same dictionary entry,
/// and rows of one trace or one request sit together. So rows are matched
/// first on the raw view (the previous row's, then a small direct-mapped
/// cache of the batch's views) and the string itself is looked up only
/// when the view misses. Equal views always hold equal strings; equal
/// strings with different views (another page, another buffer) meet in
/// the string map.
#[derive(Debug)]
pub struct ViewInterner {
    ids: HashMap<Box<str>, usize>,
    values: Vec<Option<Box<str>>>,
    null_id: Option<usize>,
    text_bytes: usize,
    /// Views seen in this batch by [`slot`]: `(view, batch, id)`, valid
    /// only when `batch` is the current one, so nothing is cleared between
    /// batches. A hash map of views cost a probe per row where routes
    /// interleave.
    recent: Box<[(u128, u64, usize)]>,
    batch: u64,
}

/// Entries of [`ViewInterner`]'s view cache (a power of two).
pub(super) const SLOTS: usize = 1024;

impl Default for ViewInterner {
    fn default() -> Self {
        ViewInterner {
            ids: HashMap::default(),
            values: Vec::new(),
            null_id: None,
            text_bytes: 0,
            recent: vec![(0, 0, 0); SLOTS].into_boxed_slice(),
            batch: 0,
        }
    }
}

/// The cache slot of a view: both halves mixed (length and prefix in the
/// low one; buffer and offset, or the inline bytes, in the high one).
fn slot(view: u128) -> usize {
    spread((view as u64) ^ ((view >> 64) as u64))
}

/// A slot of a [`SLOTS`]-entry cache for `key`.
pub(super) fn spread(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOTS.trailing_zeros())) as usize
}

impl ViewInterner {
    /// Number of groups seen since the last [`ViewInterner::emit`].
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no group was seen since the last [`ViewInterner::emit`].
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Writes the group id of each row of `array` to `ids`.
    pub fn intern(&mut self, array: &StringViewArray, ids: &mut Vec<usize>) {
        ids.clear();
        ids.reserve(array.len());
        // Batch numbers start at 1, so the zeroed cache holds nothing.
        self.batch += 1;
        let views = array.views();
        let nulls = array.logical_nulls();
        let mut row = 0;
        while row < views.len() {
            if nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                let id = self.null_group();
                ids.push(id);
                row += 1;
                continue;
            }
            let id = self.view_group(views[row], array, row);
            // Whole runs at once: a tight compare loop and a fill, rather
            // than a lookup and a push per row.
            let end = run_end(views, row, nulls.as_ref());
            match end - row {
                // Span names and routes interleave: most runs are one row.
                1 => ids.push(id),
                n => ids.resize(ids.len() + n, id),
            }
            row = end;
        }
    }

    fn view_group(&mut self, view: u128, array: &StringViewArray, row: usize) -> usize {
        let slot = slot(view);
        let (cached, batch, id) = self.recent[slot];
        if batch == self.batch && cached == view {
            return id;
        }
        let id = self.group(array.value(row));
        self.recent[slot] = (view, self.batch, id);
        id
    }

    /// The groups' values in id order; the interner starts over empty.
    pub fn emit(&mut self) -> ArrayRef {
        let values = self.take_values();
        let values: StringViewArray = values.iter().map(Option::as_deref).collect();
        std::sync::Arc::new(values)
    }

    /// The groups' values in id order (`None` for the null group); the
    /// interner starts over empty.
    pub fn take_values(&mut self) -> Vec<Option<Box<str>>> {
        self.ids.clear();
        self.null_id = None;
        self.text_bytes = 0;
        std::mem::take(&mut self.values)
    }

    /// Bytes held, for the memory pool.
    pub fn size(&self) -> usize {
        let entry = size_of::<(Box<str>, usize)>() + size_of::<Option<Box<str>>>() + 1;
        self.ids.capacity() * entry + self.text_bytes + SLOTS * size_of::<(u128, u64, usize)>()
    }

    fn null_group(&mut self) -> usize {
        *self.null_id.get_or_insert_with(|| {
            self.values.push(None);
            self.values.len() - 1
        })
    }

    fn group(&mut self, value: &str) -> usize {
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        let id = self.values.len();
        self.values.push(Some(value.into()));
        self.ids.insert(value.into(), id);
        self.text_bytes += 2 * value.len();
        id
    }
}

/// The end of the run of valid rows holding the same view as `start`.
fn run_end(views: &[u128], start: usize, nulls: Option<&NullBuffer>) -> usize {
    let view = views[start];
    let rest = &views[start + 1..];
    let run = match nulls {
        None => rest.iter().take_while(|v| **v == view).count(),
        Some(nulls) => (start + 1..views.len())
            .take_while(|&row| views[row] == view && nulls.is_valid(row))
            .count(),
    };
    start + 1 + run
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, StringViewBuilder};

    fn ids_of(interner: &mut ViewInterner, array: &StringViewArray) -> Vec<usize> {
        let mut ids = Vec::new();
        interner.intern(array, &mut ids);
        ids
    }

    #[test]
    fn equal_strings_share_a_group_whatever_their_views() {
        let long = "a service name longer than twelve bytes";
        // Deduplicated: equal strings share one view, as decoded from a
        // Parquet dictionary page.
        let mut shared = StringViewBuilder::new().with_deduplicate_strings();
        // Not deduplicated: each long string has a view of its own.
        let mut copied = StringViewBuilder::new();
        for builder in [&mut shared, &mut copied] {
            for value in [
                Some(long),
                Some("short"),
                None,
                Some(long),
                Some("short"),
                None,
            ] {
                builder.append_option(value);
            }
        }
        let (shared, copied) = (shared.finish(), copied.finish());
        assert_eq!(shared.views()[0], shared.views()[3]);
        assert_ne!(copied.views()[0], copied.views()[3]);

        let mut interner = ViewInterner::default();
        assert_eq!(ids_of(&mut interner, &shared), [0, 1, 2, 0, 1, 2]);
        assert_eq!(ids_of(&mut interner, &copied), [0, 1, 2, 0, 1, 2]);
        assert_eq!(interner.len(), 3);

        let values = interner.emit();
        let values = values.as_string_view();
        assert_eq!(values.value(0), long);
        assert_eq!(values.value(1), "short");
        assert!(values.is_null(2));
        assert!(interner.is_empty());
        assert_eq!(ids_of(&mut interner, &shared)[..2], [0, 1]);
    }
}
