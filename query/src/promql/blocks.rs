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

use super::eval::{Evaluator, Memo};
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
}

/// Blocks by the call expression computing them (by address).
pub type Blocks = HashMap<usize, Block>;

/// A range function of a window's points and its end (ms).
pub type WindowFn<'a> = &'a dyn Fn(&[(i64, f64)], i64) -> Option<f64>;

impl Evaluator {
    /// Calls `emit` (with the label memo, locked) with the value of `f`
    /// over each series' window of `vs`
    /// (`range` ms long) at step `t`, from the block of call `key`; returns
    /// `false`, doing nothing, where blocks do not apply (instant queries,
    /// inside subqueries, times off the step grid).
    pub fn from_block(
        &self,
        key: usize,
        vs: &VectorSelector,
        range: i64,
        t: i64,
        f: WindowFn<'_>,
        mut emit: impl FnMut(&mut Memo, &Arc<Labels>, f64),
    ) -> Result<bool, QueryError> {
        if self.step <= 0
            || self.nested.load(Ordering::Relaxed) > 0
            || t < self.start
            || t > self.end
            || (t - self.start) % self.step != 0
        {
            return Ok(false);
        }
        let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        let block = blocks.entry(key).or_default();
        let covered =
            block.steps > 0 && t >= block.from && (t - block.from) / self.step < block.steps as i64;
        if !covered {
            *block = self.compute(vs, range, t, f)?;
        }
        let k = ((t - block.from) / self.step) as usize;
        // After `compute` (which derives labels through the memo): the lock
        // order is blocks, then memo.
        let mut memo = self.memo();
        let row = k * block.width..(k + 1) * block.width;
        for ((labels, v), present) in block
            .labels
            .iter()
            .zip(&block.values[row.clone()])
            .zip(&block.present[row])
        {
            if *present {
                emit(&mut memo, labels, *v);
            }
        }
        Ok(true)
    }

    /// The block of steps from `t` on.
    fn compute(
        &self,
        vs: &VectorSelector,
        range: i64,
        t: i64,
        f: WindowFn<'_>,
    ) -> Result<Block, QueryError> {
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
        };
        let ends: Vec<i64> = (0..steps as i64)
            .map(|k| self.shifted(t + k * self.step, &vs.at, &vs.offset))
            .collect();
        let mut scratch = Vec::new();
        for (j, s) in series.iter().enumerate() {
            let p = &s.points;
            let (mut a, mut b) = (0, 0);
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
                if window.iter().any(|x| is_stale(x.1)) {
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
