//! Cumulative log2 latency histograms per label set, as OTLP histograms.

use std::collections::BTreeMap;

use ebpf_probes_common::SLOTS;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint;

/// Upper bounds (seconds) of log2 microsecond slots: slot `s` holds
/// `[2^s, 2^(s+1))` µs, so its bound is `2^(s+1)` µs; the last slot is the
/// `+Inf` bucket.
pub fn bounds_seconds() -> Vec<f64> {
    (1..SLOTS).map(|s| (1u64 << s) as f64 * 1e-6).collect()
}

/// Counts since start per label set (sorted key/value pairs).
#[derive(Debug, Default)]
pub struct Log2Histograms {
    totals: BTreeMap<Vec<(String, String)>, Vec<u64>>,
}

impl Log2Histograms {
    /// Adds `n` observations in `slot` for `labels`.
    pub fn add(&mut self, labels: Vec<(String, String)>, slot: u32, n: u64) {
        let counts = self
            .totals
            .entry(labels)
            .or_insert_with(|| vec![0; SLOTS as usize]);
        counts[(slot.min(SLOTS - 1)) as usize] += n;
    }

    /// Whether nothing was observed yet.
    pub fn is_empty(&self) -> bool {
        self.totals.is_empty()
    }

    /// One cumulative data point per label set.
    pub fn points(&self, start_ns: u64, now_ns: u64) -> Vec<HistogramDataPoint> {
        let bounds = bounds_seconds();
        self.totals
            .iter()
            .map(|(labels, counts)| HistogramDataPoint {
                attributes: labels.iter().map(|(k, v)| kv(k, v)).collect(),
                start_time_unix_nano: start_ns,
                time_unix_nano: now_ns,
                count: counts.iter().sum(),
                bucket_counts: counts.clone(),
                explicit_bounds: bounds.clone(),
                ..Default::default()
            })
            .collect()
    }
}

/// A string attribute.
pub fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
    }
}

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
        h.add(l, 99, 1);
        let p = &h.points(1, 2)[0];
        assert_eq!(p.count, 4);
        assert_eq!(p.bucket_counts[3], 3);
        assert_eq!(p.bucket_counts[SLOTS as usize - 1], 1);
    }
}
