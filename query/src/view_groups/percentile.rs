//! `approx_percentile_cont` per group without an accumulator per group.
//!
//! DataFusion has no groups accumulator for `approx_percentile_cont`, so a
//! grouped query runs it through `GroupsAccumulatorAdapter`: every batch is
//! sorted by group, and each group's slice is sorted again and merged into
//! that group's t-digest. With ~100 groups a batch of 8 192 rows gives each
//! group ~70 values, so most of the merge's work is re-walking the digest's
//! centroids: the digest path was half the CPU of the SQL bench's p99 query
//! (docs/benchmarks.md, "Session 12"). [`DigestGroups`] buffers each
//! group's values and merges them [`CHUNK`] at a time, with the very same
//! `TDigest` and state layout, so DataFusion's final aggregation merges
//! its partial states as its own.

use std::mem::size_of;
use std::sync::Arc;

use arrow::array::new_empty_array;
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array};
use arrow::datatypes::{DataType, Float64Type};
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion_functions_aggregate_common::tdigest::{DEFAULT_MAX_SIZE, TDigest};

/// Values a group buffers before they are sorted and merged into its
/// digest: a merge walks all of the digest's (up to 100) centroids, so it
/// should bring many more values than that.
pub const CHUNK: usize = 1024;

/// The t-digests of `approx_percentile_cont(x, p[, max_size])` per group.
#[derive(Debug)]
pub struct DigestGroups {
    percentile: f64,
    max_size: usize,
    digests: Vec<TDigest>,
    /// Values not yet merged into `digests`, per group, as [`order_key`]s.
    pending: Vec<Vec<u64>>,
    /// The floats of the chunk being merged.
    sorted: Vec<f64>,
}

impl DigestGroups {
    /// The groups accumulator for `aggregate` if it is an
    /// `approx_percentile_cont` this type computes exactly as DataFusion
    /// would (a literal percentile and size, no `DISTINCT`, a float result).
    pub fn for_aggregate(aggregate: &AggregateFunctionExpr) -> Option<Self> {
        let args = aggregate.expressions();
        if aggregate.fun().name() != "approx_percentile_cont"
            || aggregate.is_distinct()
            || !(2..=3).contains(&args.len())
            || aggregate.field().data_type() != &DataType::Float64
        {
            return None;
        }
        let percentile = match literal(&args[1])? {
            ScalarValue::Float64(Some(p)) if (0.0..=1.0).contains(p) => *p,
            _ => return None,
        };
        // `WITHIN GROUP (ORDER BY x DESC)` asks for the percentile from the top.
        let descending = aggregate
            .order_bys()
            .first()
            .is_some_and(|o| o.options.descending);
        let max_size = match args.get(2) {
            None => DEFAULT_MAX_SIZE,
            Some(size) => match literal(size)?.cast_to(&DataType::UInt64).ok()? {
                ScalarValue::UInt64(Some(n)) if n > 0 => usize::try_from(n).ok()?,
                _ => return None,
            },
        };
        Some(Self {
            percentile: if descending {
                1.0 - percentile
            } else {
                percentile
            },
            max_size,
            digests: Vec::new(),
            pending: Vec::new(),
            sorted: Vec::new(),
        })
    }

    fn resize(&mut self, groups: usize) {
        if self.digests.len() < groups {
            self.digests.resize(groups, TDigest::new(self.max_size));
            self.pending.resize_with(groups, Vec::new);
        }
    }

    /// Merges group `g`'s buffered values into its digest.
    fn fold(&mut self, g: usize) {
        let keys = &mut self.pending[g];
        if keys.is_empty() {
            return;
        }
        // Integers sort twice as fast as floats compared with `total_cmp`.
        keys.sort_unstable();
        self.sorted.clear();
        self.sorted.extend(keys.iter().map(|k| from_order_key(*k)));
        self.digests[g] = self.digests[g].merge_sorted_f64(&self.sorted);
        keys.clear();
    }

    /// The digests of the groups `emit_to` takes, all values merged.
    fn take(&mut self, emit_to: EmitTo) -> Vec<TDigest> {
        let n = match emit_to {
            EmitTo::All => self.digests.len(),
            EmitTo::First(n) => n.min(self.digests.len()),
        };
        (0..n).for_each(|g| self.fold(g));
        self.pending.drain(..n).for_each(drop);
        self.digests.drain(..n).collect()
    }
}

/// Bytes a group holds: its digest at full size and a full buffer.
fn group_bytes(max_size: usize) -> usize {
    size_of::<TDigest>() + max_size * 2 * size_of::<f64>() + CHUNK * size_of::<u64>()
}

/// `v`'s bits mapped so that integer order is `f64::total_cmp`'s order.
fn order_key(v: f64) -> u64 {
    let bits = v.to_bits();
    match bits >> 63 {
        1 => !bits,
        _ => bits | 1 << 63,
    }
}

fn from_order_key(k: u64) -> f64 {
    f64::from_bits(match k >> 63 {
        1 => k & !(1 << 63),
        _ => !k,
    })
}

fn literal(expr: &Arc<dyn PhysicalExpr>) -> Option<&ScalarValue> {
    expr.downcast_ref::<Literal>().map(Literal::value)
}

impl GroupsAccumulator for DigestGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        // The result's type is the argument's: Float64 (`for_aggregate`).
        let Some(values) = values
            .first()
            .and_then(|v| v.as_primitive_opt::<Float64Type>())
        else {
            return internal_err!("approx_percentile_cont of a non-Float64 argument");
        };
        for (row, &g) in group_indices.iter().enumerate() {
            // Nulls are skipped, as are rows the aggregate's FILTER drops.
            if values.is_null(row) || opt_filter.is_some_and(|f| !f.is_valid(row) || !f.value(row))
            {
                continue;
            }
            self.pending[g].push(order_key(values.value(row)));
            if self.pending[g].len() >= CHUNK {
                self.fold(g);
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let p = self.percentile;
        let values: Float64Array = self
            .take(emit_to)
            .iter()
            .map(|d| (d.count() > 0.0).then(|| d.estimate_quantile(p)))
            .collect();
        Ok(Arc::new(values))
    }

    /// The state DataFusion's own accumulator gives
    /// (`TDigest::to_scalar_state`): max size, sum, count, max, min and the
    /// centroids as a list of mean, weight pairs.
    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let states: Vec<Vec<ScalarValue>> = self
            .take(emit_to)
            .iter()
            .map(TDigest::to_scalar_state)
            .collect();
        // An empty digest's state gives each column's type, which
        // `iter_to_array` cannot find in an empty column.
        let layout = TDigest::new(self.max_size).to_scalar_state();
        (0..layout.len())
            .map(|i| match states.is_empty() {
                true => Ok(new_empty_array(&layout[i].data_type())),
                false => ScalarValue::iter_to_array(states.iter().map(|s| s[i].clone())),
            })
            .collect()
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        for (row, &g) in group_indices.iter().enumerate() {
            let state = values
                .iter()
                .map(|column| ScalarValue::try_from_array(column, row))
                .collect::<Result<Vec<_>>>()?;
            let other = TDigest::from_scalar_state(&state);
            self.digests[g] = TDigest::merge_digests([&self.digests[g], &other]);
        }
        Ok(())
    }

    /// Each row as a state of its own: a digest of its one value.
    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let rows = values.first().map_or(0, |v| v.len());
        let mut single = Self {
            digests: Vec::new(),
            pending: Vec::new(),
            sorted: Vec::new(),
            ..*self
        };
        let ids: Vec<usize> = (0..rows).collect();
        single.update_batch(values, &ids, opt_filter, rows)?;
        single.state(EmitTo::All)
    }

    fn size(&self) -> usize {
        self.digests.len() * group_bytes(self.max_size)
            + self.digests.capacity() * size_of::<TDigest>()
            + self.pending.capacity() * size_of::<Vec<u64>>()
            + self.sorted.capacity() * size_of::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(values: &[f64]) -> TDigest {
        let mut sorted = values.to_vec();
        sorted.sort_unstable_by(f64::total_cmp);
        TDigest::new(DEFAULT_MAX_SIZE).merge_sorted_f64(&sorted)
    }

    fn groups(percentile: f64) -> DigestGroups {
        DigestGroups {
            percentile,
            max_size: DEFAULT_MAX_SIZE,
            digests: Vec::new(),
            pending: Vec::new(),
            sorted: Vec::new(),
        }
    }

    #[test]
    fn order_keys_sort_as_floats_do() {
        let mut floats = vec![
            3.5,
            -0.0,
            0.0,
            -2.0,
            f64::INFINITY,
            -1e300,
            1e-300,
            f64::NEG_INFINITY,
            7.0,
        ];
        let mut keys: Vec<u64> = floats.iter().map(|v| order_key(*v)).collect();
        keys.sort_unstable();
        floats.sort_unstable_by(f64::total_cmp);
        let back: Vec<f64> = keys.into_iter().map(from_order_key).collect();
        assert_eq!(
            back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            floats.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn state_round_trips_through_datafusion_s_layout() {
        let mut acc = groups(0.5);
        let values: ArrayRef = Arc::new(Float64Array::from_iter(
            (0..3000).map(|i| (i % 7 != 0).then_some(f64::from(i))),
        ));
        let ids: Vec<usize> = (0..3000).map(|i| i % 2).collect();
        acc.update_batch(&[values], &ids, None, 2).unwrap();
        let state = acc.state(EmitTo::All).unwrap();
        assert_eq!(state.len(), 6);
        assert_eq!(state[0].len(), 2);
        let mut merged = groups(0.5);
        merged.merge_batch(&state, &[1, 0], 2).unwrap();
        let evens: Vec<f64> = (0..3000)
            .filter(|i| i % 2 == 0 && i % 7 != 0)
            .map(f64::from)
            .collect();
        let expected = digest_of(&evens).estimate_quantile(0.5);
        let got = merged.evaluate(EmitTo::All).unwrap();
        let got = got.as_primitive::<Float64Type>();
        assert!(
            (got.value(1) - expected).abs() < 15.0,
            "{} vs {expected}",
            got.value(1)
        );
        assert!((got.value(1) - 1500.0).abs() < 30.0, "{}", got.value(1));
    }

    #[test]
    fn no_groups_give_an_empty_state() {
        let acc = groups(0.5);
        let values: ArrayRef = Arc::new(Float64Array::from(Vec::<f64>::new()));
        let state = acc.convert_to_state(&[values], None).unwrap();
        assert_eq!(state.len(), 6);
        assert!(state.iter().all(|c| c.is_empty()));
        assert_eq!(state[0].data_type(), &DataType::UInt64);
    }

    #[test]
    fn filtered_and_null_rows_are_left_out() {
        let mut acc = groups(1.0);
        let values: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(1.0),
            None,
            Some(50.0),
            Some(3.0),
        ]));
        let keep = BooleanArray::from(vec![Some(true), Some(true), Some(false), None]);
        acc.update_batch(&[values], &[0, 0, 0, 1], Some(&keep), 3)
            .unwrap();
        let got = acc.evaluate(EmitTo::All).unwrap();
        let got = got.as_primitive::<Float64Type>();
        assert_eq!(got.value(0), 1.0);
        // Groups with no value have no percentile, as DataFusion's.
        assert!(got.is_null(1) && got.is_null(2));
    }
}
