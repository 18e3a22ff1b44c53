//! Per-SLO event counts in time buckets, so each evaluation round reads
//! only the newest minutes instead of every window again.
//!
//! Fine buckets (default 1 minute) cover the last hours; older data is
//! rolled into hourly buckets kept for the SLO period. A window's counts
//! are the buckets it covers, the oldest one pro rata, plus the partial
//! bucket in progress (the head).

use std::collections::BTreeMap;

use crate::sli::Counts;
use crate::spec::Budgeting;

/// Hourly buckets for data older than the fine span.
pub const COARSE_MS: i64 = 3_600_000;

/// How long fine buckets are kept before they are rolled into hours.
pub const FINE_SPAN_MS: i64 = 6 * COARSE_MS;

/// One coarse bucket: events, and (for time-slice budgets) slices.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Coarse {
    events: Counts,
    slices: Counts,
}

/// The buckets of one SLO.
#[derive(Debug, Clone)]
pub struct Buckets {
    width: i64,
    retention: i64,
    budgeting: Budgeting,
    fine: BTreeMap<i64, Counts>,
    coarse: BTreeMap<i64, Coarse>,
    head: Option<(i64, i64, Counts)>,
}

/// `t` rounded down to a multiple of `step`.
pub fn floor(t: i64, step: i64) -> i64 {
    t.div_euclid(step) * step
}

impl Buckets {
    /// Empty buckets of `width` ms, keeping `retention` ms of history.
    pub fn new(width: i64, retention: i64, budgeting: Budgeting) -> Buckets {
        Buckets {
            width,
            retention,
            budgeting,
            fine: BTreeMap::new(),
            coarse: BTreeMap::new(),
            head: None,
        }
    }

    /// Fine bucket width (ms).
    pub fn width(&self) -> i64 {
        self.width
    }

    /// Where fine buckets start at time `t`: whole hours, so rolled hours
    /// line up with the coarse buckets.
    pub fn fine_start(t: i64) -> i64 {
        floor(t, COARSE_MS) - FINE_SPAN_MS
    }

    /// Sets the fine bucket ending at `end` (replacing an earlier reading).
    pub fn set_fine(&mut self, end: i64, c: Counts) {
        self.fine.insert(end, c);
    }

    /// Replaces the fine buckets ending in `[first_end, last_end]` with a
    /// fresh reading: buckets the reading lacks are empty now, even if an
    /// earlier reading saw part of them.
    pub fn replace_fine(
        &mut self,
        first_end: i64,
        last_end: i64,
        got: impl IntoIterator<Item = (i64, Counts)>,
    ) {
        let mut e = first_end;
        while e <= last_end {
            self.fine.insert(e, Counts::default());
            e += self.width;
        }
        for (end, c) in got {
            self.fine.insert(end, c);
        }
    }

    /// Sets an hourly bucket ending at `end`.
    pub fn set_coarse(&mut self, end: i64, c: Counts) {
        let slices = self.coarse_slices(c);
        self.coarse.insert(end, Coarse { events: c, slices });
    }

    /// The partial bucket `(from, to]` in progress.
    pub fn set_head(&mut self, from: i64, to: i64, c: Counts) {
        self.head = (to > from).then_some((from, to, c));
    }

    /// Rolls fine buckets older than the fine span into hours and forgets
    /// hours older than the retention.
    pub fn roll(&mut self, t: i64) {
        let start = Self::fine_start(t);
        let keep = self.fine.split_off(&(start + 1));
        let old = std::mem::replace(&mut self.fine, keep);
        let mut hours: BTreeMap<i64, Vec<(i64, Counts)>> = BTreeMap::new();
        for (end, c) in old {
            hours
                .entry(floor(end - 1, COARSE_MS) + COARSE_MS)
                .or_default()
                .push((end, c));
        }
        for (end, buckets) in hours {
            let mut events = Counts::default();
            buckets.iter().for_each(|(_, c)| events.add(*c));
            let slices = self.fine_slices(buckets.iter().copied(), end - COARSE_MS, end);
            let entry = self.coarse.entry(end).or_default();
            entry.events.add(events);
            entry.slices.add(slices);
        }
        let horizon = t - self.retention;
        self.coarse = self.coarse.split_off(&(horizon + 1));
    }

    /// Counts over `(t - window, t]`.
    pub fn sum(&self, t: i64, window: i64) -> Counts {
        let from = t - window;
        let mut out = Counts::default();
        let fine_from = self.fine.keys().next().map_or(t, |e| e - self.width);
        // Hours before the fine buckets.
        for (end, c) in self.coarse.range(from + 1..) {
            if *end > fine_from {
                break;
            }
            let part = match self.budgeting {
                Budgeting::Occurrences => c.events,
                Budgeting::Timeslices { .. } => c.slices,
            };
            out.add(scaled(part, fraction(*end - COARSE_MS, *end, from)));
        }
        match self.budgeting {
            Budgeting::Occurrences => {
                for (end, c) in self.fine.range(from + 1..=t) {
                    out.add(scaled(*c, fraction(end - self.width, *end, from)));
                }
                if let Some((h_from, h_to, c)) = self.head
                    && h_to <= t
                    && h_from >= from
                {
                    out.add(c);
                }
            }
            Budgeting::Timeslices { .. } => {
                let start = from.max(fine_from);
                out.add(self.fine_slices(
                    self.fine.range(start + 1..=t).map(|(e, c)| (*e, *c)),
                    start,
                    t,
                ));
            }
        }
        out
    }

    /// Good/bad time slices among fine buckets in `(from, to]`: only whole
    /// slices count.
    fn fine_slices(
        &self,
        buckets: impl Iterator<Item = (i64, Counts)>,
        from: i64,
        to: i64,
    ) -> Counts {
        let Budgeting::Timeslices { slice_ms, target } = self.budgeting else {
            return Counts::default();
        };
        let mut per_slice: BTreeMap<i64, Counts> = BTreeMap::new();
        for (end, c) in buckets {
            per_slice
                .entry(floor(end - 1, slice_ms) + slice_ms)
                .or_default()
                .add(c);
        }
        let mut out = Counts::default();
        for (end, c) in per_slice {
            if end - slice_ms < from || end > to || c.total <= 0.0 {
                continue;
            }
            out.total += 1.0;
            if 1.0 - c.bad / c.total < target {
                out.bad += 1.0;
            }
        }
        out
    }

    /// Slices of an hour known only as a total (backfill): all bad or all
    /// good by the hour's ratio.
    fn coarse_slices(&self, c: Counts) -> Counts {
        let Budgeting::Timeslices { slice_ms, target } = self.budgeting else {
            return Counts::default();
        };
        if c.total <= 0.0 {
            return Counts::default();
        }
        let n = (COARSE_MS / slice_ms) as f64;
        let bad = if 1.0 - c.bad / c.total < target {
            n
        } else {
            0.0
        };
        Counts { bad, total: n }
    }
}

/// Share of the bucket `(start, end]` that lies after `from`.
fn fraction(start: i64, end: i64, from: i64) -> f64 {
    if start >= from {
        1.0
    } else {
        ((end - from) as f64 / (end - start) as f64).clamp(0.0, 1.0)
    }
}

fn scaled(c: Counts, f: f64) -> Counts {
    Counts {
        bad: c.bad * f,
        total: c.total * f,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn c(bad: f64, total: f64) -> Counts {
        Counts { bad, total }
    }

    #[test]
    fn windows_sum_whole_buckets_the_oldest_pro_rata_and_the_head() {
        let mut b = Buckets::new(MIN, 30 * 86_400_000, Budgeting::Occurrences);
        let t0 = 100 * COARSE_MS;
        for i in 1..=10 {
            b.set_fine(t0 + i * MIN, c(1.0, 10.0));
        }
        b.set_head(t0 + 10 * MIN, t0 + 10 * MIN + 30_000, c(5.0, 5.0));
        let t = t0 + 10 * MIN + 30_000;
        // 5 minutes back: head (30 s) + 4 whole buckets + half of one.
        assert_eq!(b.sum(t, 5 * MIN), c(4.5 + 5.0, 45.0 + 5.0));
    }

    #[test]
    fn rolled_hours_keep_their_counts() {
        let mut b = Buckets::new(MIN, 30 * 86_400_000, Budgeting::Occurrences);
        let t0 = 100 * COARSE_MS;
        for i in 1..=60 {
            b.set_fine(t0 + i * MIN, c(1.0, 2.0));
        }
        let before = b.sum(t0 + COARSE_MS, COARSE_MS);
        b.roll(t0 + COARSE_MS + FINE_SPAN_MS + COARSE_MS);
        assert!(b.fine.is_empty());
        let t = t0 + COARSE_MS;
        assert_eq!(b.sum(t, COARSE_MS), before);
        assert_eq!(before, c(60.0, 120.0));
    }

    #[test]
    fn time_slices_count_bad_minutes() {
        let slices = Budgeting::Timeslices {
            slice_ms: MIN,
            target: 0.95,
        };
        let mut b = Buckets::new(MIN, 30 * 86_400_000, slices);
        let t0 = 100 * COARSE_MS;
        for i in 1..=10 {
            let bad = if i % 5 == 0 { 1.0 } else { 0.0 };
            b.set_fine(t0 + i * MIN, c(bad, 10.0));
        }
        assert_eq!(b.sum(t0 + 10 * MIN, 10 * MIN), c(2.0, 10.0));
    }
}
