//! Cumulative log2 latency histograms per label set, as OTLP histograms.

use std::collections::BTreeMap;

use ebpf_probes_common::SLOTS;
use opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint;

/// Upper bounds (seconds) of log2 microsecond slots: slot `s` holds
/// `[2^s, 2^(s+1))` µs, so its bound is `2^(s+1)` µs; the last slot is the
/// `+Inf` bucket.
pub fn bounds_seconds() -> Vec<f64> {
    (1..SLOTS).map(|s| (1u64 << s) as f64 * 1e-6).collect()
}

/// Label pairs, sorted.
pub type Labels = Vec<(String, String)>;

/// Counts since start per label set, and the sum of the observations (ns).
#[derive(Debug, Default)]
pub struct Log2Histograms {
    totals: BTreeMap<Labels, (Vec<u64>, u64)>,
}

impl Log2Histograms {
    /// Adds `n` observations in `slot` for `labels`.
    pub fn add(&mut self, labels: Labels, slot: u32, n: u64) {
        let (counts, _) = self.entry(labels);
        counts[(slot.min(SLOTS - 1)) as usize] += n;
    }

    /// Adds `ns` to the sum of `labels`' observations.
    pub fn add_sum(&mut self, labels: Labels, ns: u64) {
        self.entry(labels).1 += ns;
    }

    fn entry(&mut self, labels: Labels) -> &mut (Vec<u64>, u64) {
        self.totals
            .entry(labels)
            .or_insert_with(|| (vec![0; SLOTS as usize], 0))
    }

    /// Whether nothing was observed yet.
    pub fn is_empty(&self) -> bool {
        self.totals.is_empty()
    }

    /// Counts per slot of every label set together.
    pub fn merged(&self) -> Vec<u64> {
        let mut out = vec![0; SLOTS as usize];
        for (counts, _) in self.totals.values() {
            out.iter_mut().zip(counts).for_each(|(o, c)| *o += c);
        }
        out
    }

    /// The label sets that contain every pair of `wanted`.
    pub fn only(&self, wanted: &[(&str, &str)]) -> Log2Histograms {
        Log2Histograms {
            totals: self
                .totals
                .iter()
                .filter(|(l, _)| {
                    wanted
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
                })
                .map(|(l, v)| (l.clone(), v.clone()))
                .collect(),
        }
    }

    /// The label sets, for tests and tools.
    pub fn label_sets(&self) -> impl Iterator<Item = &Labels> {
        self.totals.keys()
    }

    /// Keeps only the `n` label sets with the largest sums (the rest are
    /// left out, not merged into an "other" series that would mislabel).
    pub fn top_by_sum(&self, n: usize) -> Log2Histograms {
        let mut all: Vec<_> = self.totals.iter().collect();
        all.sort_by_key(|b| std::cmp::Reverse(b.1.1));
        Log2Histograms {
            totals: all
                .into_iter()
                .take(n)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// One cumulative data point per label set.
    pub fn points(&self, start_ns: u64, now_ns: u64) -> Vec<HistogramDataPoint> {
        let bounds = bounds_seconds();
        self.totals
            .iter()
            .map(|(labels, (counts, sum_ns))| HistogramDataPoint {
                attributes: labels.iter().map(|(k, v)| kv(k, v)).collect(),
                start_time_unix_nano: start_ns,
                time_unix_nano: now_ns,
                count: counts.iter().sum(),
                sum: Some(*sum_ns as f64 / 1e9),
                bucket_counts: counts.clone(),
                explicit_bounds: bounds.clone(),
                ..Default::default()
            })
            .collect()
    }
}

pub use collector::otlp::string_kv as kv;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_map_to_bounds_and_cumulate() {
        let b = bounds_seconds();
        assert_eq!(b.len(), SLOTS as usize - 1);
        assert!((b[0] - 2e-6).abs() < 1e-12);
        let mut h = Log2Histograms::default();
        let l = vec![("cgroup".to_string(), "/a".to_string())];
        h.add(l.clone(), 3, 2);
        h.add(l.clone(), 3, 1);
        h.add(l.clone(), 99, 1);
        h.add_sum(l, 2_000_000_000);
        let p = &h.points(1, 2)[0];
        assert_eq!(p.count, 4);
        assert_eq!(p.bucket_counts[3], 3);
        assert_eq!(p.bucket_counts[SLOTS as usize - 1], 1);
        assert_eq!(p.sum, Some(2.0));
    }

    #[test]
    fn top_by_sum_keeps_the_heaviest() {
        let mut h = Log2Histograms::default();
        for (name, ns) in [("a", 5), ("b", 50), ("c", 1)] {
            let l = vec![("syscall".to_string(), name.to_string())];
            h.add(l.clone(), 0, 1);
            h.add_sum(l, ns);
        }
        let top: Vec<_> = h
            .top_by_sum(2)
            .label_sets()
            .map(|l| l[0].1.clone())
            .collect();
        assert_eq!(top, ["a", "b"]);
    }
}
