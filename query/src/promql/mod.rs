//! PromQL on Sightline's metric tables.
//!
//! A query is parsed with `promql-parser`, the series each selector needs
//! are loaded once for the whole query (only the matching metrics and the
//! time range the query reaches, through DataFusion scans: [`select`]),
//! then the expression is evaluated at each step ([`eval`]) with
//! Prometheus' semantics: lookback and staleness, extrapolated `rate`,
//! vector matching, and so on.

pub mod aggregate;
pub mod binary;
mod blocks;
pub mod eval;
pub mod functions;
pub mod histogram;
pub mod label_cache;
pub mod metric_lists;
pub mod names;
mod rows;
pub mod select;
pub mod target_info;
pub mod value;
pub mod warm;

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::label::Matchers;
use promql_parser::parser::{self, AtModifier, Expr};

use crate::engine::QueryEngine;
use crate::error::QueryError;
use eval::{Evaluator, epoch_ms, ms, offset_ms, selector_key, selector_matchers};
use value::{Labels, Series, Value};

/// Parses a PromQL expression.
pub fn parse(query: &str) -> Result<Expr, QueryError> {
    parser::parse(query)
        .map_err(|e| QueryError::BadQuery(format!("invalid parameter \"query\": {e}")))
}

/// Time ranges each selector needs.
struct Needs {
    start: i64,
    end: i64,
    lookback: i64,
    default_step: i64,
    selectors: HashMap<String, (Matchers, i64, i64)>,
}

impl Needs {
    fn at(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            Some(AtModifier::Start) => Some(self.start),
            Some(AtModifier::End) => Some(self.end),
            Some(AtModifier::At(t)) => Some(epoch_ms(t)),
            None => None,
        }
    }

    fn add(&mut self, vs: &parser::VectorSelector, from: i64, to: i64) {
        let e = self
            .selectors
            .entry(selector_key(vs))
            .or_insert_with(|| (selector_matchers(vs), from, to));
        e.1 = e.1.min(from);
        e.2 = e.2.max(to);
    }

    /// Records what `e` needs when evaluated at every time in `[from, to]`.
    fn walk(&mut self, e: &Expr, from: i64, to: i64) {
        match e {
            Expr::VectorSelector(vs) => {
                let (a, b) = self.shift(from, to, &vs.at, &vs.offset);
                self.add(vs, a - self.lookback, b);
            }
            Expr::MatrixSelector(m) => {
                let (a, b) = self.shift(from, to, &m.vs.at, &m.vs.offset);
                self.add(&m.vs, a - ms(&m.range), b);
            }
            Expr::Subquery(sq) => {
                let (a, b) = self.shift(from, to, &sq.at, &sq.offset);
                let step = eval::subquery_step(sq, self.default_step);
                self.walk(&sq.expr, a - ms(&sq.range) - step, b);
            }
            Expr::Aggregate(a) => {
                self.walk(&a.expr, from, to);
                if let Some(p) = &a.param {
                    self.walk(p, from, to);
                }
            }
            Expr::Unary(u) => self.walk(&u.expr, from, to),
            Expr::Binary(b) => {
                self.walk(&b.lhs, from, to);
                self.walk(&b.rhs, from, to);
            }
            Expr::Paren(p) => self.walk(&p.expr, from, to),
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.walk(a, from, to);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn shift(
        &self,
        from: i64,
        to: i64,
        at: &Option<AtModifier>,
        offset: &Option<parser::Offset>,
    ) -> (i64, i64) {
        let o = offset_ms(offset);
        match self.at(at) {
            Some(t) => (t - o, t - o),
            None => (from - o, to - o),
        }
    }
}

/// Evaluation settings of one query.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    /// First step (ms).
    pub start: i64,
    /// Last step (ms).
    pub end: i64,
    /// Step (ms); instant queries use 1.
    pub step: i64,
}

async fn prepare(engine: &QueryEngine, exprs: &[&Expr], r: Range) -> Result<Evaluator, QueryError> {
    let lookback = ms(&engine.config().lookback_delta);
    let default_step = 60_000;
    let mut needs = Needs {
        start: r.start,
        end: r.end,
        lookback,
        default_step,
        selectors: HashMap::new(),
    };
    for expr in exprs {
        needs.walk(expr, r.start, r.end);
    }
    // One catalog read for all selectors, over the span they cover together.
    let span = needs
        .selectors
        .values()
        .fold(None, |acc: Option<(i64, i64)>, (_, a, b)| {
            Some(acc.map_or((*a, *b), |(x, y)| (x.min(*a), y.max(*b))))
        });
    let entries = match span {
        Some((from, to)) => select::catalog(engine, from, to).await?,
        None => Vec::new(),
    };
    let shared = load_shared(engine, &entries, &needs.selectors).await?;
    let mut data = HashMap::new();
    for (key, (matchers, from, to)) in needs.selectors {
        let series = match exact_name(&matchers).and_then(|n| shared.get(n)) {
            Some(all) => all
                .iter()
                .filter(|s| select::matches(&matchers, &s.labels))
                .map(|s| Series {
                    labels: s.labels.clone(),
                    points: s
                        .points
                        .iter()
                        .copied()
                        .filter(|(t, _)| (from..=to).contains(t))
                        .collect(),
                })
                .collect(),
            None => select::select_from(engine, &entries, &matchers, from, to).await?,
        };
        data.insert(key, Arc::new(series));
    }
    Ok(Evaluator {
        start: r.start,
        end: r.end,
        lookback,
        default_step,
        data,
        max_series: engine.config().max_series,
        deadline: std::time::Instant::now() + engine.config().timeout,
        timeout: engine.config().timeout,
        derived: Default::default(),
        cursors: Default::default(),
        step: if r.end > r.start { r.step } else { 0 },
        nested: Default::default(),
        blocks: Default::default(),
    })
}

/// The metric a selector names exactly (`__name__="x"`, no `or`).
fn exact_name(m: &Matchers) -> Option<&str> {
    if !m.or_matchers.is_empty() {
        return None;
    }
    m.matchers
        .iter()
        .find(|x| x.name == value::NAME && matches!(x.op, promql_parser::label::MatchOp::Equal))
        .map(|x| x.value.as_str())
}

/// Loads once the metrics that several selectors name (many SLIs or panels
/// over one metric with different labels): one scan instead of one per
/// selector, filtered per selector in memory afterwards.
async fn load_shared(
    engine: &QueryEngine,
    entries: &[select::MetricEntry],
    selectors: &HashMap<String, (Matchers, i64, i64)>,
) -> Result<HashMap<String, Vec<Series>>, QueryError> {
    let mut spans: HashMap<&str, (usize, i64, i64)> = HashMap::new();
    for (m, from, to) in selectors.values() {
        if let Some(name) = exact_name(m) {
            let e = spans.entry(name).or_insert((0, *from, *to));
            *e = (e.0 + 1, e.1.min(*from), e.2.max(*to));
        }
    }
    let mut out = HashMap::new();
    for (name, (n, from, to)) in spans {
        if n < 2 {
            continue;
        }
        let all = Matchers::new(vec![promql_parser::label::Matcher::new(
            promql_parser::label::MatchOp::Equal,
            value::NAME,
            name,
        )]);
        match select::select_from(engine, entries, &all, from, to).await {
            Ok(series) => {
                out.insert(name.to_string(), series);
            }
            // Too many series together: each selector loads its own.
            Err(QueryError::TooLarge(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Runs an instant query at `t` (ms).
pub async fn instant(engine: &QueryEngine, query: &str, t: i64) -> Result<Value, QueryError> {
    let expr = parse(query)?;
    let range = Range {
        start: t,
        end: t,
        step: 1,
    };
    let ev = prepare(engine, &[&expr], range).await?;
    let run = tokio::task::spawn_blocking(move || {
        let v = ev.eval(&expr, t)?;
        if let Value::Vector(samples) = &v {
            ev.check_unique(samples)?;
        }
        Ok::<_, QueryError>(v)
    });
    engine
        .with_timeout(async {
            run.await
                .map_err(|e| QueryError::Execution(e.to_string()))?
        })
        .await
}

/// Runs a range query; the result is sorted by labels.
pub async fn range(engine: &QueryEngine, query: &str, r: Range) -> Result<Vec<Series>, QueryError> {
    let mut out = range_many(engine, &[query], r).await?;
    Ok(out.pop().unwrap_or_default())
}

/// Runs several range queries over the same steps, reading the data they
/// share once (the SLO evaluator asks for hundreds of SLIs per round).
pub async fn range_many(
    engine: &QueryEngine,
    queries: &[&str],
    r: Range,
) -> Result<Vec<Vec<Series>>, QueryError> {
    let mut exprs = Vec::with_capacity(queries.len());
    for q in queries {
        let expr = parse(q)?;
        match expr.value_type() {
            promql_parser::parser::value::ValueType::Vector
            | promql_parser::parser::value::ValueType::Scalar => {}
            other => {
                return Err(QueryError::BadQuery(format!(
                    "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                    type_display(other)
                )));
            }
        }
        exprs.push(expr);
    }
    let ev = prepare(engine, &exprs.iter().collect::<Vec<_>>(), r).await?;
    let max_series = engine.config().max_series;
    let run = tokio::task::spawn_blocking(move || {
        exprs
            .iter()
            .map(|e| eval_range(&ev, e, r, max_series))
            .collect::<Result<Vec<_>, _>>()
    });
    engine
        .with_timeout(async {
            run.await
                .map_err(|e| QueryError::Execution(e.to_string()))?
        })
        .await
}

fn eval_range(
    ev: &Evaluator,
    expr: &Expr,
    r: Range,
    max_series: usize,
) -> Result<Vec<Series>, QueryError> {
    let mut out: eval::FastMap<Arc<Labels>, Vec<(i64, f64)>> = Default::default();
    let mut t = r.start;
    while t <= r.end {
        ev.check_deadline()?;
        match ev.eval(expr, t)? {
            Value::Scalar(v) => out
                .entry(Arc::new(Labels::default()))
                .or_default()
                .push((t, v)),
            Value::Vector(samples) => {
                ev.check_unique(&samples)?;
                for s in samples {
                    out.entry(s.labels).or_default().push((t, s.value));
                }
                if out.len() > max_series {
                    return Err(QueryError::TooLarge(format!(
                        "the result has more than {max_series} series"
                    )));
                }
            }
            other => {
                return Err(QueryError::BadQuery(format!(
                    "range query of a {}",
                    other.type_name()
                )));
            }
        }
        t += r.step;
    }
    let mut series: Vec<Series> = out
        .into_iter()
        .map(|(labels, points)| Series { labels, points })
        .collect();
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(series)
}

fn type_display(t: promql_parser::parser::value::ValueType) -> &'static str {
    match t {
        promql_parser::parser::value::ValueType::Vector => "instant vector",
        promql_parser::parser::value::ValueType::Scalar => "scalar",
        promql_parser::parser::value::ValueType::Matrix => "range vector",
        promql_parser::parser::value::ValueType::String => "string",
    }
}
