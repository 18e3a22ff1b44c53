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
    /// Label sets derived from others, per (derivation, input label set by
    /// address; the input is kept alive so the address stays its own):
    /// functions drop the name and aggregations group the same series at
    /// every step of a range query.
    pub derived: std::sync::Mutex<Memo>,
    /// Where each range selector's last window was, per selector (by
    /// address): a range query moves every window forward by one step, so
    /// the next one is found by stepping on instead of searching.
    pub cursors: std::sync::Mutex<HashMap<usize, Cursor>>,
    /// The range query's step (ms); 0 for an instant query.
    pub step: i64,
    /// Subqueries being evaluated (their steps are not the query's).
    pub nested: std::sync::atomic::AtomicUsize,
    /// Range functions computed ahead, see [`super::blocks`].
    pub blocks: std::sync::Mutex<super::blocks::Blocks>,
}

/// The last window a range selector read: its bounds and, per series,
/// the indexes of its first point and of the point after it.
#[derive(Debug, Default)]
pub struct Cursor {
    from: i64,
    to: i64,
    at: Vec<(usize, usize)>,
}

/// Index of the first point at or after `t`, searching on from `start`
/// (which must not be past it).
fn step_to(points: &[(i64, f64)], start: usize, t: i64) -> usize {
    let mut i = start;
    while i < points.len() && points[i].0 < t {
        i += 1;
    }
    i
}

/// A hash map with a fast hasher, for the maps evaluation touches for
/// every series at every step.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Derived label sets by (derivation, input address), with the input kept
/// alive.
pub type Memo = FastMap<(usize, usize), (Arc<Labels>, Arc<Labels>)>;

/// [`Evaluator::derived`] with the memo already locked.
pub fn derive_in(
    memo: &mut Memo,
    how: usize,
    labels: &Arc<Labels>,
    derive: impl FnOnce(&Labels) -> Labels,
) -> Arc<Labels> {
    let key = (how, Arc::as_ptr(labels) as usize);
    // Inputs made afresh at every step (labels from a binary operation,
    // say) never hit; bound what they cost.
    if memo.len() >= MAX_DERIVED && !memo.contains_key(&key) {
        memo.clear();
    }
    memo.entry(key)
        .or_insert_with(|| (labels.clone(), Arc::new(derive(labels))))
        .1
        .clone()
}

/// Derived label sets remembered before the memo starts over.
const MAX_DERIVED: usize = 1 << 20;

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

    /// The series loaded for `vs`.
    pub fn series(&self, vs: &VectorSelector) -> Result<Arc<Vec<Series>>, QueryError> {
        self.data
            .get(&selector_key(vs))
            .cloned()
            .ok_or_else(|| QueryError::Execution(format!("selector {vs} was not loaded")))
    }

    /// `labels` without the metric name, shared across steps.
    pub fn without_name(&self, labels: &Arc<Labels>) -> Arc<Labels> {
        self.derived(0, labels, Labels::without_name)
    }

    /// `derive(labels)`, computed once per `how` (a number naming the
    /// derivation, e.g. the address of the expression doing it) and input.
    pub fn derived(
        &self,
        how: usize,
        labels: &Arc<Labels>,
        derive: impl FnOnce(&Labels) -> Labels,
    ) -> Arc<Labels> {
        derive_in(&mut self.memo(), how, labels, derive)
    }

    /// The memo of derived label sets, locked: callers deriving for every
    /// series of a step lock it once (see [`derive_in`]). Do not evaluate
    /// while holding it.
    pub fn memo(&self) -> std::sync::MutexGuard<'_, Memo> {
        self.derived.lock().unwrap_or_else(|e| e.into_inner())
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
                            labels: self.without_name(&s.labels),
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
        let mut out = Vec::new();
        self.windows(vs, from, to, |labels, points| {
            out.push(Series {
                labels: labels.clone(),
                points: points.to_vec(),
            })
        })?;
        Ok(out)
    }

    /// Calls `f` with each series' samples in `[from, to]` (stale markers
    /// removed), borrowed from the loaded series where no marker is in the
    /// way; series without any samples there are skipped.
    pub fn windows(
        &self,
        vs: &VectorSelector,
        from: i64,
        to: i64,
        mut f: impl FnMut(&Arc<Labels>, &[(i64, f64)]),
    ) -> Result<(), QueryError> {
        let series = self.series(vs)?;
        let mut cursors = self.cursors.lock().unwrap_or_else(|e| e.into_inner());
        let cursor = cursors
            .entry(vs as *const VectorSelector as usize)
            .or_default();
        // Subqueries evaluate a selector at earlier times again: search.
        let forward = from >= cursor.from && to >= cursor.to && cursor.at.len() == series.len();
        cursor.at.resize(series.len(), (0, 0));
        (cursor.from, cursor.to) = (from, to);
        let mut scratch = Vec::new();
        for (s, at) in series.iter().zip(cursor.at.iter_mut()) {
            let (a, b) = if forward {
                let a = step_to(&s.points, at.0, from);
                (a, step_to(&s.points, at.1.max(a), to + 1))
            } else {
                let a = first_at_or_after(&s.points, from);
                (a, a + first_at_or_after(&s.points[a..], to + 1))
            };
            *at = (a, b);
            let points = &s.points[a..b];
            if points.iter().any(|p| is_stale(p.1)) {
                scratch.clear();
                scratch.extend(points.iter().copied().filter(|p| !is_stale(p.1)));
                if !scratch.is_empty() {
                    f(&s.labels, &scratch);
                }
            } else if !points.is_empty() {
                f(&s.labels, points);
            }
        }
        Ok(())
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
            self.nested
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let value = self.eval(&sq.expr, ts);
            self.nested
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            match value? {
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
        let mut seen = std::collections::HashSet::with_capacity_and_hasher(
            v.len(),
            foldhash::fast::RandomState::default(),
        );
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
