//! Measuring SLIs: bad and total events per time bucket, read through the
//! query engine.
//!
//! PromQL SLIs are evaluated with `{{.window}}` set to the bucket width at
//! each bucket's end (one range query per refresh). Span SLIs of all SLOs
//! share one grouped DataFusion scan of the `spans` table per refresh.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::logical_expr::{Expr, case, col, lit};
use datafusion::scalar::ScalarValue;
use promql_parser::parser::{self, Expr as PromExpr};
use query::promql::value::format_value;
use query::{QueryEngine, QueryError};

use crate::spec::{HistogramSli, Sli, SpanSli, render_window};
use crate::windows::format_duration;

/// Bad and total events (or, for ratio SLIs, bad and total seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    /// Bad events.
    pub bad: f64,
    /// All events.
    pub total: f64,
}

impl Counts {
    /// Adds another bucket.
    pub fn add(&mut self, o: Counts) {
        self.bad += o.bad;
        self.total += o.total;
    }
}

/// The bad and total `{{.window}}` templates of a histogram SLI whose
/// threshold bucket is `le` (as the `le` label spells it).
pub fn histogram_queries(h: &HistogramSli, threshold_seconds: f64) -> (String, String) {
    histogram_queries_le(h, &format_value(threshold_seconds))
}

fn histogram_queries_le(h: &HistogramSli, le: &str) -> (String, String) {
    let sep = if h.matchers.is_empty() { "" } else { ", " };
    let sel = |le: &str| format!("{}_bucket{{{}{sep}le=\"{le}\"}}", h.metric, h.matchers);
    let total = format!("sum(rate({}[{{{{.window}}}}]))", sel("+Inf"));
    let bad = format!("{total} - sum(rate({}[{{{{.window}}}}]))", sel(le));
    (bad, total)
}

/// A PromQL SLI ready to evaluate per bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct PromqlSli {
    /// Bad events (or the bad ratio when `total` is `None`).
    pub bad: String,
    /// All events; `None` for a raw ratio.
    pub total: Option<String>,
    /// The queries give per-second rates (`rate`, `irate`), so a bucket
    /// holds rate × width events.
    pub per_second: bool,
}

impl PromqlSli {
    /// The PromQL form of `sli`; `le` overrides a histogram threshold's
    /// bucket (after snapping). `None` for span SLIs.
    pub fn new(sli: &Sli, le: Option<&str>) -> Option<PromqlSli> {
        let (bad, total) = match sli {
            Sli::Events {
                error_query,
                total_query,
            } => (error_query.clone(), Some(total_query.clone())),
            Sli::Raw { error_ratio_query } => (error_ratio_query.clone(), None),
            Sli::Histogram(h) => {
                let (b, t) = match le {
                    Some(le) => histogram_queries_le(h, le),
                    None => histogram_queries(h, h.threshold_seconds),
                };
                (b, Some(t))
            }
            Sli::Spans(_) => return None,
        };
        let per_second = total.as_deref().is_some_and(uses_rate) || uses_rate(&bad);
        Some(PromqlSli {
            bad,
            total,
            per_second,
        })
    }

    /// Counts of the buckets of `width` ms ending at `first_end`,
    /// `first_end + width`, …, up to `last_end`.
    pub async fn buckets(
        &self,
        engine: &QueryEngine,
        first_end: i64,
        last_end: i64,
        width: i64,
    ) -> Result<Vec<(i64, Counts)>, QueryError> {
        let mut out = promql_buckets(engine, &[self], first_end, last_end, width).await?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Turns the summed results of this SLI's queries into bucket counts.
    fn counts(
        &self,
        bad: BTreeMap<i64, f64>,
        total: Option<BTreeMap<i64, f64>>,
        width: i64,
    ) -> Vec<(i64, Counts)> {
        let seconds = width as f64 / 1000.0;
        let scale = if self.per_second { seconds } else { 1.0 };
        let Some(total) = total else {
            // A ratio SLI: weigh each bucket's ratio by its duration.
            return bad
                .into_iter()
                .filter(|(_, r)| r.is_finite())
                .map(|(t, r)| {
                    (
                        t,
                        Counts {
                            bad: r * seconds,
                            total: seconds,
                        },
                    )
                })
                .collect();
        };
        total
            .into_iter()
            .map(|(t, tot)| {
                let b = bad.get(&t).copied().unwrap_or(0.0);
                let c = Counts {
                    bad: (b * scale).max(0.0),
                    total: (tot * scale).max(0.0),
                };
                (t, c)
            })
            .filter(|(_, c)| c.total.is_finite() && c.bad.is_finite())
            .collect()
    }
}

/// Bucket counts of several PromQL SLIs at once: one `range_many`, so the
/// metrics they share are read once.
pub async fn promql_buckets(
    engine: &QueryEngine,
    slis: &[&PromqlSli],
    first_end: i64,
    last_end: i64,
    width: i64,
) -> Result<Vec<Vec<(i64, Counts)>>, QueryError> {
    let window = format_duration(width);
    let mut queries = Vec::new();
    for s in slis {
        queries.push(render_window(&s.bad, &window));
        if let Some(t) = &s.total {
            queries.push(render_window(t, &window));
        }
    }
    let refs: Vec<&str> = queries.iter().map(String::as_str).collect();
    let range = query::promql::Range {
        start: first_end,
        end: last_end,
        step: width,
    };
    let mut results = query::promql::range_many(engine, &refs, range)
        .await?
        .into_iter()
        .map(summed);
    Ok(slis
        .iter()
        .map(|s| {
            let bad = results.next().unwrap_or_default();
            let total = s.total.as_ref().map(|_| results.next().unwrap_or_default());
            s.counts(bad, total, width)
        })
        .collect())
}

fn uses_rate(q: &str) -> bool {
    fn walk(e: &PromExpr) -> bool {
        match e {
            PromExpr::Call(c) => {
                matches!(c.func.name, "rate" | "irate") || c.args.args.iter().any(|a| walk(a))
            }
            PromExpr::Aggregate(a) => walk(&a.expr),
            PromExpr::Binary(b) => walk(&b.lhs) || walk(&b.rhs),
            PromExpr::Paren(p) => walk(&p.expr),
            PromExpr::Unary(u) => walk(&u.expr),
            PromExpr::Subquery(s) => walk(&s.expr),
            _ => false,
        }
    }
    parser::parse(&render_window(q, "5m")).is_ok_and(|e| walk(&e))
}

/// Sums a range query's series per step.
fn summed(series: Vec<query::promql::value::Series>) -> BTreeMap<i64, f64> {
    let mut out = BTreeMap::new();
    for s in series {
        for (t, v) in s.points {
            *out.entry(t).or_insert(0.0) += v;
        }
    }
    out
}

/// Snaps a histogram threshold to a bucket boundary: the largest `le` not
/// above the threshold (so requests between it and the threshold count as
/// slow — erring towards alerting). Returns the `le` label value and a
/// warning when the threshold was not a boundary.
pub async fn snap_threshold(
    engine: &QueryEngine,
    h: &HistogramSli,
    t: i64,
) -> Result<(String, Option<String>), QueryError> {
    let value = query::promql::instant(engine, &bounds_query(h), t).await?;
    let bounds = match value {
        query::promql::value::Value::Vector(v) => v
            .iter()
            .filter_map(|s| {
                let le = s.labels.get("le").to_string();
                le.parse::<f64>().ok().map(|b| (b, le))
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(snap(h, bounds))
}

/// PromQL listing the bucket bounds (`le`) a histogram had over the last day.
pub fn bounds_query(h: &HistogramSli) -> String {
    let sep = if h.matchers.is_empty() { "" } else { ", " };
    format!(
        "group by (le) (last_over_time({}_bucket{{{}{sep}le!=\"\"}}[1d]))",
        h.metric, h.matchers
    )
}

/// The `le` label a threshold snaps to among `bounds` (value, label): the
/// bound itself, else the largest one below it (else the smallest), with
/// a warning whenever it is not the threshold itself.
pub fn snap(h: &HistogramSli, mut bounds: Vec<(f64, String)>) -> (String, Option<String>) {
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let want = h.threshold_seconds;
    if bounds.is_empty() {
        return (
            format_value(want),
            Some(format!(
                "no {}_bucket series found yet: threshold {want}s used as the le label",
                h.metric
            )),
        );
    }
    let close = |b: f64| (b - want).abs() <= want.abs() * 1e-9;
    if let Some((_, le)) = bounds.iter().find(|(b, _)| close(*b)) {
        return (le.clone(), None);
    }
    let chosen = bounds
        .iter()
        .rev()
        .find(|(b, _)| *b < want)
        .unwrap_or(&bounds[0]);
    (
        chosen.1.clone(),
        Some(format!(
            "latency threshold {want}s is not a bucket boundary of {}: using le=\"{}\" (requests between it and the threshold count as slow)",
            h.metric, chosen.1
        )),
    )
}

/// Counts per bucket for every span SLI in `slis`, from one grouped scan of
/// spans starting in `[from, to]` (ms). Buckets are keyed by their end.
pub async fn span_buckets(
    engine: &QueryEngine,
    slis: &[SpanSli],
    from: i64,
    to: i64,
    width: i64,
) -> Result<Vec<Vec<(i64, Counts)>>, QueryError> {
    let mut out = vec![Vec::new(); slis.len()];
    if slis.is_empty() || to < from {
        return Ok(out);
    }
    let mut thresholds: Vec<i64> = slis.iter().filter_map(|s| s.latency_threshold_ns).collect();
    thresholds.sort_unstable();
    thresholds.dedup();
    let ts = |ms: i64| {
        lit(ScalarValue::TimestampNanosecond(
            Some(ms * 1_000_000),
            Some("UTC".into()),
        ))
    };
    let services: Vec<Expr> = {
        let mut s: Vec<&str> = slis.iter().map(|s| s.service.as_str()).collect();
        s.sort_unstable();
        s.dedup();
        s.into_iter().map(lit).collect()
    };
    let width_ns = width * 1_000_000;
    let bucket = (Expr::Cast(datafusion::logical_expr::Cast::new(
        Box::new(col("start_time")),
        DataType::Int64,
    )) / lit(width_ns))
    .alias("b");
    let flag = |cond: Expr| -> Result<Expr, QueryError> {
        Ok(sum(case(cond)
            .when(lit(true), lit(1i64))
            .otherwise(lit(0i64))?))
    };
    let errors = col("status_code")
        .eq(lit(2i32))
        .or(col("http_response_status_code").gt_eq(lit(500i64)));
    let mut aggs = vec![
        count(lit(1i64)).alias("total"),
        flag(errors)?.alias("errors"),
    ];
    for (i, t) in thresholds.iter().enumerate() {
        aggs.push(flag(col("duration_ns").gt(lit(*t)))?.alias(format!("slow_{i}")));
    }
    let df = engine
        .context()
        .table("spans")
        .await?
        .filter(
            col("start_time")
                .gt_eq(ts(from))
                .and(col("start_time").lt_eq(ts(to)))
                .and(col("service_name").in_list(services, false)),
        )?
        .aggregate(
            vec![bucket, col("service_name"), col("name"), col("kind")],
            aggs,
        )?;
    let batches = engine
        .with_timeout(async { Ok(df.collect().await?) })
        .await?;
    for batch in batches {
        let col_i64 = |name: &str| -> Result<Vec<Option<i64>>, QueryError> {
            let a = datafusion::arrow::compute::cast(
                batch.column_by_name(name).expect("aggregate output"),
                &DataType::Int64,
            )
            .map_err(|e| QueryError::Execution(e.to_string()))?;
            let a = a.as_primitive::<Int64Type>();
            Ok((0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i)))
                .collect())
        };
        let col_str = |name: &str| -> Result<Vec<Option<String>>, QueryError> {
            let a = datafusion::arrow::compute::cast(
                batch.column_by_name(name).expect("aggregate output"),
                &DataType::Utf8,
            )
            .map_err(|e| QueryError::Execution(e.to_string()))?;
            let a = a.as_string::<i32>();
            Ok((0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
                .collect())
        };
        let (b, svc, name, kind) = (
            col_i64("b")?,
            col_str("service_name")?,
            col_str("name")?,
            col_i64("kind")?,
        );
        let (total, errs) = (col_i64("total")?, col_i64("errors")?);
        let slow: Vec<Vec<Option<i64>>> = (0..thresholds.len())
            .map(|i| col_i64(&format!("slow_{i}")))
            .collect::<Result<_, _>>()?;
        for row in 0..batch.num_rows() {
            let Some(start) = b[row] else { continue };
            let end = (start + 1) * width;
            for (i, sli) in slis.iter().enumerate() {
                if svc[row].as_deref() != Some(sli.service.as_str())
                    || sli
                        .span_name
                        .as_ref()
                        .is_some_and(|n| name[row].as_deref() != Some(n.as_str()))
                    || sli.span_kind.is_some_and(|k| kind[row] != Some(k as i64))
                {
                    continue;
                }
                let bad = match sli.latency_threshold_ns {
                    Some(t) => slow[thresholds.binary_search(&t).expect("collected above")][row],
                    None => errs[row],
                };
                out[i].push((
                    end,
                    Counts {
                        bad: bad.unwrap_or(0) as f64,
                        total: total[row].unwrap_or(0) as f64,
                    },
                ));
            }
        }
    }
    for v in &mut out {
        merge_sorted(v);
    }
    Ok(out)
}

/// Sorts by bucket end and merges duplicates (several span names or kinds
/// of one SLO fall in the same bucket).
fn merge_sorted(v: &mut Vec<(i64, Counts)>) {
    v.sort_by_key(|(t, _)| *t);
    let mut merged: Vec<(i64, Counts)> = Vec::with_capacity(v.len());
    for (t, c) in v.drain(..) {
        match merged.last_mut() {
            Some((lt, lc)) if *lt == t => lc.add(c),
            _ => merged.push((t, c)),
        }
    }
    *v = merged;
}
