//! Evaluation of a PromQL expression at one time, over series loaded
//! beforehand (see [`super::plan`]). A range query evaluates the expression
//! at every step, as Prometheus defines it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::label::{MatchOp, Matcher, Matchers};
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};

use super::value::{Labels, NAME, Sample, Series, Value, is_stale};
use crate::error::QueryError;

/// Everything evaluation needs: the query's time range and the loaded data.
pub struct Evaluator {
    /// Query start (ms); `@ start()` refers to it.
    pub start: i64,
    /// Query end (ms); `@ end()` refers to it.
    pub end: i64,
    /// How far back an instant selector looks (ms).
    pub lookback: i64,
    /// Subquery step when the query gives none (ms).
    pub default_step: i64,
    /// Series per selector key.
    pub data: HashMap<String, Arc<Vec<Series>>>,
    /// Series one step may hold.
    pub max_series: usize,
    /// Evaluation gives up after this instant (the blocking task cannot be
    /// cancelled from outside, so it checks).
    pub deadline: std::time::Instant,
    /// The timeout the deadline came from (for the error message).
    pub timeout: Duration,
}

/// Milliseconds of a duration.
pub fn ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds since the epoch of a time (negative before it).
pub fn epoch_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => ms(&d),
        Err(e) => -ms(&e.duration()),
    }
}

/// Milliseconds an offset moves the evaluation time back.
pub fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        Some(Offset::Pos(d)) => ms(d),
        Some(Offset::Neg(d)) => -ms(d),
        None => 0,
    }
}

/// The matchers of a selector, with the metric name as a matcher.
pub fn selector_matchers(vs: &VectorSelector) -> Matchers {
    let mut m = vs.matchers.clone();
    if let Some(name) = &vs.name
        && !m.matchers.iter().any(|x| x.name == NAME)
    {
        m.matchers.push(Matcher::new(MatchOp::Equal, NAME, name));
        for alt in &mut m.or_matchers {
            alt.push(Matcher::new(MatchOp::Equal, NAME, name));
        }
    }
    m
}

/// The key under which a selector's series are loaded.
pub fn selector_key(vs: &VectorSelector) -> String {
    format!("{:?}", selector_matchers(vs))
}

/// A subquery's step (ms): its own, or the default evaluation interval.
pub fn subquery_step(sq: &promql_parser::parser::SubqueryExpr, default: i64) -> i64 {
    sq.step
        .as_ref()
        .map(ms)
        .filter(|s| *s > 0)
        .unwrap_or(default)
}

/// Index of the first point with time >= `t`.
pub fn first_at_or_after(points: &[(i64, f64)], t: i64) -> usize {
    points.partition_point(|p| p.0 < t)
}

impl Evaluator {
    /// The time a selector or subquery with `at` and `offset` is evaluated
    /// at, when the query is at `t`.
    pub fn shifted(&self, t: i64, at: &Option<AtModifier>, offset: &Option<Offset>) -> i64 {
        let base = match at {
            Some(AtModifier::Start) => self.start,
            Some(AtModifier::End) => self.end,
            Some(AtModifier::At(time)) => epoch_ms(time),
            None => t,
        };
        base - offset_ms(offset)
    }

    fn series(&self, vs: &VectorSelector) -> Result<Arc<Vec<Series>>, QueryError> {
        self.data
            .get(&selector_key(vs))
            .cloned()
            .ok_or_else(|| QueryError::Execution(format!("selector {vs} was not loaded")))
    }

    /// Evaluates `e` at `t` (ms).
    pub fn eval(&self, e: &Expr, t: i64) -> Result<Value, QueryError> {
        match e {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => Ok(match self.eval(&u.expr, t)? {
                Value::Scalar(v) => Value::Scalar(-v),
                Value::Vector(v) => Value::Vector(
                    v.into_iter()
                        .map(|s| Sample {
                            labels: Arc::new(s.labels.without_name()),
                            value: -s.value,
                            time: s.time,
                        })
                        .collect(),
                ),
                other => {
                    return Err(QueryError::BadQuery(format!(
                        "unary minus on a {}",
                        other.type_name()
                    )));
                }
            }),
            Expr::VectorSelector(vs) => self.instant(vs, t).map(Value::Vector),
            Expr::MatrixSelector(m) => {
                let end = self.shifted(t, &m.vs.at, &m.vs.offset);
                self.window(&m.vs, end - ms(&m.range), end)
                    .map(Value::Matrix)
            }
            Expr::Subquery(sq) => self.subquery(sq, t).map(Value::Matrix),
            Expr::Call(c) => super::functions::call(self, c, t),
            Expr::Aggregate(a) => super::aggregate::eval(self, a, t),
            Expr::Binary(b) => super::binary::eval(self, b, t),
            Expr::Extension(_) => Err(QueryError::BadQuery("unsupported expression".into())),
        }
    }

    /// Evaluates `e` at `t`, requiring an instant vector.
    pub fn vector(&self, e: &Expr, t: i64) -> Result<Vec<Sample>, QueryError> {
        match self.eval(e, t)? {
            Value::Vector(v) => Ok(v),
            other => Err(QueryError::BadQuery(format!(
                "expected an instant vector, got a {}",
                other.type_name()
            ))),
        }
    }

    /// Evaluates `e` at `t`, requiring a scalar.
    pub fn scalar(&self, e: &Expr, t: i64) -> Result<f64, QueryError> {
        match self.eval(e, t)? {
            Value::Scalar(v) => Ok(v),
            other => Err(QueryError::BadQuery(format!(
                "expected a scalar, got a {}",
                other.type_name()
            ))),
        }
    }

    /// Evaluates `e` at `t`, requiring a range vector.
    pub fn matrix(&self, e: &Expr, t: i64) -> Result<Vec<Series>, QueryError> {
        match self.eval(e, t)? {
            Value::Matrix(m) => Ok(m),
            other => Err(QueryError::BadQuery(format!(
                "expected a range vector, got a {}",
                other.type_name()
            ))),
        }
    }

    /// The newest sample of each series within the lookback window.
    fn instant(&self, vs: &VectorSelector, t: i64) -> Result<Vec<Sample>, QueryError> {
        let at = self.shifted(t, &vs.at, &vs.offset);
        let series = self.series(vs)?;
        let mut out = Vec::new();
        for s in series.iter() {
            let i = first_at_or_after(&s.points, at + 1);
            if i == 0 {
                continue;
            }
            let (time, value) = s.points[i - 1];
            if time < at - self.lookback || is_stale(value) {
                continue;
            }
            out.push(Sample {
                labels: s.labels.clone(),
                value,
                time,
            });
        }
        Ok(out)
    }

    /// Each series' samples in `[from, to]` (stale markers removed); series
    /// without any are left out.
    fn window(&self, vs: &VectorSelector, from: i64, to: i64) -> Result<Vec<Series>, QueryError> {
        let series = self.series(vs)?;
        let mut out = Vec::new();
        for s in series.iter() {
            let a = first_at_or_after(&s.points, from);
            let b = first_at_or_after(&s.points, to + 1);
            let points: Vec<(i64, f64)> = s.points[a..b]
                .iter()
                .copied()
                .filter(|p| !is_stale(p.1))
                .collect();
            if !points.is_empty() {
                out.push(Series {
                    labels: s.labels.clone(),
                    points,
                });
            }
        }
        Ok(out)
    }

    /// A subquery's points: the inner expression at every step (aligned to
    /// multiples of the step, as Prometheus does) in `[end - range, end]`.
    fn subquery(
        &self,
        sq: &promql_parser::parser::SubqueryExpr,
        t: i64,
    ) -> Result<Vec<Series>, QueryError> {
        let step = subquery_step(sq, self.default_step);
        let end = self.shifted(t, &sq.at, &sq.offset);
        let from = end - ms(&sq.range);
        let mut ts = from.div_euclid(step) * step;
        if ts < from {
            ts += step;
        }
        let mut by_labels: HashMap<Arc<Labels>, Vec<(i64, f64)>> = HashMap::new();
        let mut order: Vec<Arc<Labels>> = Vec::new();
        while ts <= end {
            self.check_deadline()?;
            match self.eval(&sq.expr, ts)? {
                Value::Scalar(v) => {
                    let l = Arc::new(Labels::default());
                    if !by_labels.contains_key(&l) {
                        order.push(l.clone());
                    }
                    by_labels.entry(l).or_default().push((ts, v));
                }
                Value::Vector(v) => {
                    for s in v {
                        if !by_labels.contains_key(&s.labels) {
                            order.push(s.labels.clone());
                        }
                        by_labels.entry(s.labels).or_default().push((ts, s.value));
                    }
                }
                other => {
                    return Err(QueryError::BadQuery(format!(
                        "subquery over a {}",
                        other.type_name()
                    )));
                }
            }
            ts += step;
        }
        Ok(order
            .into_iter()
            .filter_map(|l| {
                by_labels
                    .remove(&l)
                    .map(|points| Series { labels: l, points })
            })
            .collect())
    }

    /// Fails once the query's time is up.
    pub fn check_deadline(&self) -> Result<(), QueryError> {
        if std::time::Instant::now() > self.deadline {
            return Err(QueryError::Timeout(self.timeout));
        }
        Ok(())
    }

    /// Checks a vector for two samples with the same labels.
    pub fn check_unique(&self, v: &[Sample]) -> Result<(), QueryError> {
        if v.len() > self.max_series {
            return Err(QueryError::TooLarge(format!(
                "a step holds more than {} series",
                self.max_series
            )));
        }
        let mut seen = std::collections::HashSet::with_capacity(v.len());
        for s in v {
            if !seen.insert(&s.labels) {
                return Err(QueryError::Eval(
                    "vector cannot contain metrics with the same labelset".into(),
                ));
            }
        }
        Ok(())
    }
}
