//! PromQL values: label sets, samples, series and the results of evaluating
//! an expression at one time.

use std::fmt;
use std::sync::Arc;

/// The label holding the metric name.
pub const NAME: &str = "__name__";

/// A stale marker: the NaN Prometheus writes when a series disappears.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is a stale marker.
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A label set, sorted by name, without empty values.
///
/// It carries a hash of its pairs, computed once: evaluation hashes and
/// compares the same label sets at every step of a range query (grouping,
/// matching, duplicate checks), and rehashing every string each time
/// dominated it.
#[derive(Debug, Clone)]
pub struct Labels {
    pairs: Vec<(String, String)>,
    hash: u64,
}

impl Default for Labels {
    fn default() -> Self {
        Labels::sorted(Vec::new())
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.pairs == other.pairs
    }
}

impl Eq for Labels {}

impl std::hash::Hash for Labels {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    /// Pair by pair, name then value, as Prometheus' `labels.Compare`.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.pairs.cmp(&other.pairs)
    }
}

impl Labels {
    /// Wraps pairs already sorted by name and unique.
    fn sorted(pairs: Vec<(String, String)>) -> Labels {
        use std::hash::{Hash, Hasher};
        // Fixed keys: the hash only lives inside one process, but a
        // deterministic one keeps evaluation reproducible.
        let mut h = std::hash::DefaultHasher::new();
        pairs.hash(&mut h);
        Labels {
            hash: h.finish(),
            pairs,
        }
    }

    /// Builds a label set from pairs in any order (empty values dropped; on
    /// duplicate names the last wins).
    pub fn new(mut pairs: Vec<(String, String)>) -> Labels {
        pairs.retain(|(_, v)| !v.is_empty());
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<(String, String)> = Vec::with_capacity(pairs.len());
        for p in pairs {
            match out.last_mut() {
                Some(last) if last.0 == p.0 => *last = p,
                _ => out.push(p),
            }
        }
        Labels::sorted(out)
    }

    /// The value of `name` ("" when absent, as in Prometheus).
    pub fn get(&self, name: &str) -> &str {
        self.pairs
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .map_or("", |i| self.pairs[i].1.as_str())
    }

    /// The pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A copy with `name` set to `value` (removed when `value` is empty).
    pub fn with(&self, name: &str, value: &str) -> Labels {
        let mut pairs: Vec<(String, String)> = self
            .pairs
            .iter()
            .filter(|(k, _)| k != name)
            .cloned()
            .collect();
        if !value.is_empty() {
            pairs.push((name.to_string(), value.to_string()));
        }
        Labels::new(pairs)
    }

    /// A copy without the metric name.
    pub fn without_name(&self) -> Labels {
        self.without(&[NAME])
    }

    /// A copy without the listed labels.
    pub fn without<S: AsRef<str>>(&self, names: &[S]) -> Labels {
        Labels::sorted(
            self.pairs
                .iter()
                .filter(|(k, _)| !names.iter().any(|n| n.as_ref() == k))
                .cloned()
                .collect(),
        )
    }

    /// A copy with only the listed labels.
    pub fn only<S: AsRef<str>>(&self, names: &[S]) -> Labels {
        Labels::sorted(
            self.pairs
                .iter()
                .filter(|(k, _)| names.iter().any(|n| n.as_ref() == k))
                .cloned()
                .collect(),
        )
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{")?;
        for (i, (k, v)) in self.pairs.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{k}={v:?}")?;
        }
        write!(f, "}}")
    }
}

/// One series' samples, in time order (milliseconds).
#[derive(Debug, Clone)]
pub struct Series {
    /// Its labels.
    pub labels: Arc<Labels>,
    /// `(time ms, value)`, increasing time.
    pub points: Vec<(i64, f64)>,
}

/// One element of an instant vector.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Its labels.
    pub labels: Arc<Labels>,
    /// Its value.
    pub value: f64,
    /// Time of the underlying sample (for `timestamp()`), milliseconds.
    pub time: i64,
}

/// The value of an expression at one evaluation time.
#[derive(Debug, Clone)]
pub enum Value {
    /// A number.
    Scalar(f64),
    /// A string literal.
    String(String),
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range vector (only from range selectors and subqueries).
    Matrix(Vec<Series>),
}

impl Value {
    /// The name of the value's type, as in Prometheus' `resultType`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::String(_) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// Formats a value as Prometheus does in JSON (`strconv.FormatFloat(v, 'f', -1, 64)`).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_unique_and_without_empty_values() {
        let l = Labels::new(vec![
            ("b".into(), "2".into()),
            ("a".into(), "1".into()),
            ("c".into(), String::new()),
            ("a".into(), "3".into()),
        ]);
        assert_eq!(l.to_string(), r#"{a="3", b="2"}"#);
        assert_eq!(l.get("c"), "");
        assert_eq!(l.with("b", "").to_string(), r#"{a="3"}"#);
        assert_eq!(l.only(&["b"]).to_string(), r#"{b="2"}"#);
    }

    #[test]
    fn values_format_like_go() {
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(-0.0), "-0");
    }
}
