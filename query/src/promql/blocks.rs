//! Range functions over a range selector (`rate(x[5m])`,
//! `max_over_time(x[1h])`, …) in a range query, computed series by series
//! for a block of upcoming steps at once.
//!
//! A range query evaluates its expression step by step, so each step would
//! visit every series' window once: 10k series × 1,440 steps means 14 M
//! visits to memory scattered over all the loaded points, each with a label
//! lookup. Walking one series through [`BLOCK_STEPS`] consecutive windows
//! instead keeps its points in cache, moves each window forward from the
//! last, and derives its output labels once. The values wait in the block
//! (step-major, so a step reads them in series order) until the step
//! loop asks for them. Results are the same: each value is the function of
//! exactly the window the step would have read.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use promql_parser::parser::VectorSelector;

use super::eval::Evaluator;
use super::value::{Labels, is_stale};
use crate::error::QueryError;

/// Steps computed ahead per block: enough to amortise the walk, small
/// enough (10k series × 128 steps × 9 bytes ≈ 11 MiB) to stay cheap.
pub const BLOCK_STEPS: i64 = 128;

/// A range function's values for consecutive steps of a range query.
#[derive(Debug, Default)]
pub struct Block {
    /// First step (ms).
    from: i64,
    /// Steps held.
    steps: usize,
    /// Series in the selector.
    width: usize,
    /// `values[k * width + j]`: series `j` at step `k`, if `present`.
    values: Vec<f64>,
    present: Vec<bool>,
    /// Each series' labels without the metric name.
    labels: Vec<Arc<Labels>>,
    /// Series grouped by aggregations reading the block, by aggregation.
    groupings: HashMap<usize, Grouped>,
}

impl Block {
    /// Step `k`'s values and whether each is present, in series order.
    fn row(&self, k: usize) -> impl Iterator<Item = (f64, bool)> + '_ {
        let row = k * self.width..(k + 1) * self.width;
        self.values[row.clone()]
            .iter()
            .copied()
            .zip(self.present[row].iter().copied())
    }

    /// Calls `f` with each present value of step `k` and its series.
    fn each_at(&self, k: usize, mut f: impl FnMut(usize, f64)) {
        for (j, (v, present)) in self.row(k).enumerate() {
            if present {
                f(j, v);
            }
        }
    }
}

/// Group numbers of `labels` under `group`, numbered in order of first
/// appearance.
fn grouped(labels: &[Arc<Labels>], group: &dyn Fn(&Labels) -> Labels) -> Grouped {
    let mut numbers: HashMap<Labels, u32> = HashMap::new();
    let mut keys = Vec::new();
    let slots = labels
        .iter()
        .map(|l| {
            let key = group(l);
            *numbers.entry(key.clone()).or_insert_with(|| {
                keys.push(Arc::new(key));
                (keys.len() - 1) as u32
            })
        })
        .collect();
    Grouped { slots, keys }
}

/// Blocks by the call expression computing them (by address).
pub type Blocks = HashMap<usize, Block>;

/// A range function of a window's points and its end (ms).
pub type WindowFn<'a> = &'a dyn Fn(&[(i64, f64)], i64) -> Option<f64>;

/// A range function call over a range selector, whose values a block holds.
pub struct BlockCall<'a> {
    /// Names the call's block (the call expression's address).
    pub key: usize,
    /// The range selector.
    pub vs: &'a VectorSelector,
    /// Its window length (ms).
    pub range: i64,
    /// The function.
    pub f: WindowFn<'a>,
}

/// The groups of an aggregation over a block's series: each series' group
/// number, and each group's labels.
#[derive(Debug)]
struct Grouped {
    slots: Vec<u32>,
    keys: Vec<Arc<Labels>>,
}

impl Evaluator {
    /// Calls `emit` with the value of `call`'s function over each series'
    /// window at step `t`, from the call's block; returns `false`, doing
    /// nothing, where blocks do not apply (instant queries, inside
    /// subqueries, times off the step grid).
    pub fn from_block(
        &self,
        call: &BlockCall<'_>,
        t: i64,
        mut emit: impl FnMut(&Arc<Labels>, f64),
    ) -> Result<bool, QueryError> {
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        let Some((block, k)) = self.block_at(&mut blocks, call, t)? else {
            return Ok(false);
        };
        block.each_at(k, |j, v| emit(&block.labels[j], v));
        Ok(true)
    }

    /// [`Self::from_block`] for an aggregation: `emit` gets each series'
    /// group number and group labels under `group` (derived once per block
    /// for the aggregation `how` names), its own labels and its value.
    pub fn grouped_from_block(
        &self,
        call: &BlockCall<'_>,
        t: i64,
        (how, group): (usize, &dyn Fn(&Labels) -> Labels),
        mut emit: impl FnMut(u32, &Arc<Labels>, &Arc<Labels>, f64),
    ) -> Result<bool, QueryError> {
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        let Some((block, k)) = self.block_at(&mut blocks, call, t)? else {
            return Ok(false);
        };
        if !block.groupings.contains_key(&how) {
            let numbered = grouped(&block.labels, group);
            block.groupings.insert(how, numbered);
        }
        let Grouped { slots, keys } = &block.groupings[&how];
        let labels = &block.labels;
        block.each_at(k, |j, v| {
            let slot = slots[j];
            emit(slot, &keys[slot as usize], &labels[j], v)
        });
        Ok(true)
    }

    /// The block of `call` holding step `t` (computed if need be) and the
    /// step's index in it; `None` where blocks do not apply.
    fn block_at<'b>(
        &self,
        blocks: &'b mut Blocks,
        call: &BlockCall<'_>,
        t: i64,
    ) -> Result<Option<(&'b mut Block, usize)>, QueryError> {
        if self.step <= 0
            || self.nested.load(Ordering::Relaxed) > 0
            || t < self.start
            || t > self.end
            || (t - self.start) % self.step != 0
        {
            return Ok(None);
        }
        let block = blocks.entry(call.key).or_default();
        let covered =
            block.steps > 0 && t >= block.from && (t - block.from) / self.step < block.steps as i64;
        if !covered {
            *block = self.compute(call, t)?;
        }
        let k = ((t - block.from) / self.step) as usize;
        Ok(Some((block, k)))
    }

    /// The block of steps from `t` on.
    fn compute(&self, call: &BlockCall<'_>, t: i64) -> Result<Block, QueryError> {
        let BlockCall { vs, range, f, .. } = *call;
        let series = self.series(vs)?;
        let steps = ((self.end - t) / self.step + 1).clamp(1, BLOCK_STEPS) as usize;
        let width = series.len();
        let mut block = Block {
            from: t,
            steps,
            width,
            values: vec![0.0; steps * width],
            present: vec![false; steps * width],
            labels: series
                .iter()
                .map(|s| self.without_name(&s.labels))
                .collect(),
            groupings: HashMap::new(),
        };
        let ends: Vec<i64> = (0..steps as i64)
            .map(|k| self.shifted(t + k * self.step, &vs.at, &vs.offset))
            .collect();
        let mut scratch = Vec::new();
        let (first, last) = (ends[0] - range, ends[steps - 1]);
        for (j, s) in series.iter().enumerate() {
            let p = &s.points;
            // Stale markers are rare: look for them once per block.
            let lo = p.partition_point(|x| x.0 < first);
            let hi = lo + p[lo..].partition_point(|x| x.0 <= last);
            let stale = p[lo..hi].iter().any(|x| is_stale(x.1));
            let (mut a, mut b) = (lo, lo);
            for (k, end) in ends.iter().enumerate() {
                // Ends never decrease (`@` holds them, offsets shift all).
                while a < p.len() && p[a].0 < end - range {
                    a += 1;
                }
                b = b.max(a);
                while b < p.len() && p[b].0 <= *end {
                    b += 1;
                }
                let mut window = &p[a..b];
                if stale && window.iter().any(|x| is_stale(x.1)) {
                    scratch.clear();
                    scratch.extend(window.iter().copied().filter(|x| !is_stale(x.1)));
                    window = &scratch;
                }
                if window.is_empty() {
                    continue;
                }
                if let Some(v) = f(window, *end) {
                    block.values[k * width + j] = v;
                    block.present[k * width + j] = true;
                }
            }
        }
        Ok(block)
    }
}
