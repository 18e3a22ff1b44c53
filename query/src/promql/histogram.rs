//! `histogram_quantile` over classic buckets (exponential histograms are
//! loaded as classic buckets too, see [`super::select`]).

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::Call;

use super::eval::Evaluator;
use super::value::{Labels, NAME, Sample, Value};
use crate::error::QueryError;

/// Output labels and `(upper bound, count)` buckets of one histogram.
type Buckets = (Arc<Labels>, Vec<(f64, f64)>);

/// Evaluates `histogram_quantile(φ, buckets)` at `t`.
pub fn quantile(ev: &Evaluator, c: &Call, t: i64) -> Result<Value, QueryError> {
    let q = ev.scalar(&c.args.args[0], t)?;
    let v = ev.vector(&c.args.args[1], t)?;
    let mut groups: HashMap<Labels, Buckets> = HashMap::new();
    let mut order = Vec::new();
    for s in &v {
        let Ok(upper) = s.labels.get("le").parse::<f64>() else {
            continue;
        };
        let key = s.labels.without(&["le"]);
        let entry = groups.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            (Arc::new(s.labels.without(&[NAME, "le"])), Vec::new())
        });
        entry.1.push((upper, s.value));
    }
    let mut out = Vec::new();
    for key in order {
        if let Some((labels, buckets)) = groups.remove(&key) {
            out.push(Sample {
                labels,
                value: bucket_quantile(q, buckets),
                time: t,
            });
        }
    }
    ev.check_unique(&out)?;
    Ok(Value::Vector(out))
}

/// Prometheus' `bucketQuantile`: linear interpolation within the bucket the
/// rank falls in; NaN without a `+Inf` bucket or observations.
pub fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Buckets with the same bound (e.g. from two sources) are added.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == b.0 => last.1 += b.1,
            _ => merged.push(b),
        }
    }
    let mut buckets = merged;
    // Counts must not decrease (they may, with scrapes at slightly
    // different times).
    let mut max = f64::NEG_INFINITY;
    for b in &mut buckets {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if buckets.len() < 2 {
        return f64::NAN;
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = buckets.len() - 1;
    let b = buckets[..n].partition_point(|x| x.1 < rank);
    if b == n {
        return buckets[n - 1].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (mut start, end, mut count) = (0.0, buckets[b].0, buckets[b].1);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

#[cfg(test)]
mod tests {
    use super::bucket_quantile;

    #[test]
    fn interpolates_within_the_bucket() {
        let b = vec![(0.1, 10.0), (0.5, 30.0), (f64::INFINITY, 40.0)];
        // Rank 20 is halfway through the (0.1, 0.5] bucket.
        assert!((bucket_quantile(0.5, b.clone()) - 0.3).abs() < 1e-12);
        // Ranks in the +Inf bucket answer the highest finite bound.
        assert_eq!(bucket_quantile(0.99, b.clone()), 0.5);
        assert!(bucket_quantile(0.5, vec![(1.0, 3.0)]).is_nan());
        assert_eq!(bucket_quantile(-1.0, b), f64::NEG_INFINITY);
    }
}
