//! PromQL functions, with Prometheus' exact arithmetic (extrapolation in
//! `rate`, Go's NaN rules for min/max, …).

use std::sync::Arc;

use chrono::{DateTime, Datelike, Timelike};
use promql_parser::label::MatchOp;
use promql_parser::parser::{Call, Expr};

use super::blocks::BlockCall;
use super::eval::{Evaluator, Memo, derive_in, ms, selector_matchers};
use super::value::{Labels, NAME, Sample, Value};
use crate::error::QueryError;

/// Go's `math.Max` (NaN wins).
pub fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// Go's `math.Min` (NaN wins).
pub fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn arg(c: &Call, i: usize) -> Result<&Expr, QueryError> {
    c.args
        .args
        .get(i)
        .map(|b| b.as_ref())
        .ok_or_else(|| QueryError::BadQuery(format!("{}: missing argument {}", c.func.name, i + 1)))
}

fn dropped(ev: &Evaluator, s: &Sample) -> Arc<Labels> {
    ev.without_name(&s.labels)
}

/// Applies `f` to every sample's value; the metric name is dropped.
fn map_values(ev: &Evaluator, v: Vec<Sample>, f: impl Fn(f64) -> f64) -> Value {
    Value::Vector(
        v.iter()
            .map(|s| Sample {
                labels: dropped(ev, s),
                value: f(s.value),
                time: s.time,
            })
            .collect(),
    )
}

/// Applies a range function to each series' samples in a range vector
/// argument. A range selector's samples are read in place, without copying
/// them out of the loaded series at every step.
fn over_time(
    ev: &Evaluator,
    c: &Call,
    t: i64,
    arg_index: usize,
    f: impl Fn(&[(i64, f64)]) -> Option<f64>,
) -> Result<Value, QueryError> {
    let mut out = Vec::new();
    let mut emit = |memo: &mut Memo, labels: &Arc<Labels>, points: &[(i64, f64)]| {
        if let Some(value) = f(points) {
            out.push(Sample {
                labels: derive_in(memo, 0, labels, Labels::without_name),
                value,
                time: t,
            });
        }
    };
    match arg(c, arg_index)? {
        Expr::MatrixSelector(m) => {
            let end = ev.shifted(t, &m.vs.at, &m.vs.offset);
            let mut memo = ev.memo();
            ev.windows(&m.vs, end - ms(&m.range), end, |l, p| emit(&mut memo, l, p))?;
        }
        other => {
            let matrix = ev.matrix(other, t)?;
            let mut memo = ev.memo();
            for s in matrix {
                emit(&mut memo, &s.labels, &s.points);
            }
        }
    }
    Ok(Value::Vector(out))
}

/// A range function whose value depends only on a window's points and
/// its end (ms): these can be computed ahead, series by series (see
/// `blocks`). `None` for other functions.
pub fn window_fn(c: &Call) -> Result<Option<Box<WindowFnBox>>, QueryError> {
    let range = || match arg(c, 0)? {
        Expr::MatrixSelector(m) => Ok(ms(&m.range)),
        // A subquery: its range ends at its own evaluation time.
        Expr::Subquery(sq) => Ok(ms(&sq.range)),
        _ => Err(QueryError::BadQuery(format!(
            "{}: expected a range vector",
            c.func.name
        ))),
    };
    let extrapolated = |counter: bool, rate: bool| -> Result<Box<WindowFnBox>, QueryError> {
        let range = range()?;
        Ok(Box::new(move |s: &[(i64, f64)], end: i64| {
            extrapolate(s, end - range, end, range, counter, rate)
        }))
    };
    Ok(Some(match c.func.name {
        // Prometheus' `extrapolatedRate` (2.x).
        "rate" => extrapolated(true, true)?,
        "increase" => extrapolated(true, false)?,
        "delta" => extrapolated(false, false)?,
        "irate" => Box::new(|s, _| instant_delta(s, true)),
        "idelta" => Box::new(|s, _| instant_delta(s, false)),
        "deriv" => Box::new(|s, _| (s.len() >= 2).then(|| linear_regression(s, s[0].0).0)),
        "resets" => Box::new(|s, _| Some(s.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64)),
        "changes" => Box::new(|s, _| {
            Some(
                s.windows(2)
                    .filter(|w| w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan()))
                    .count() as f64,
            )
        }),
        "sum_over_time" => Box::new(|s, _| Some(s.iter().map(|p| p.1).sum())),
        "count_over_time" => Box::new(|s, _| Some(s.len() as f64)),
        "avg_over_time" => Box::new(|s, _| Some(mean(s.iter().map(|p| p.1)))),
        "min_over_time" => Box::new(|s, _| {
            Some(
                s.iter()
                    .fold(f64::NAN, |m, p| if p.1 < m || m.is_nan() { p.1 } else { m }),
            )
        }),
        "max_over_time" => Box::new(|s, _| {
            Some(
                s.iter()
                    .fold(f64::NAN, |m, p| if p.1 > m || m.is_nan() { p.1 } else { m }),
            )
        }),
        "present_over_time" => Box::new(|_, _| Some(1.0)),
        "stddev_over_time" => Box::new(|s, _| Some(variance(s.iter().map(|p| p.1)).sqrt())),
        "stdvar_over_time" => Box::new(|s, _| Some(variance(s.iter().map(|p| p.1)))),
        _ => return Ok(None),
    }))
}

/// Feeds `emit` each series' value of the range function call `e` at `t`
/// straight from its block, with the number and labels of the series'
/// group under `group` (derivation `how`) and the series' own labels,
/// without building samples; `false` (nothing done) when `e` is no such
/// call over a range selector or blocks do not apply.
pub fn grouped_from_block(
    ev: &Evaluator,
    e: &Expr,
    t: i64,
    how: usize,
    group: &dyn Fn(&Labels) -> Labels,
    emit: impl FnMut(u32, &Arc<Labels>, &Arc<Labels>, f64),
) -> Result<bool, QueryError> {
    let e = match e {
        Expr::Paren(p) => &p.expr,
        other => other,
    };
    let Expr::Call(c) = e else {
        return Ok(false);
    };
    let Some(f) = window_fn(c)? else {
        return Ok(false);
    };
    match block_call(c, &f) {
        Some(call) => ev.grouped_from_block(&call, t, (how, group), emit),
        None => Ok(false),
    }
}

/// `c` as a call whose values blocks can hold, if its argument is a range
/// selector.
fn block_call<'a>(c: &'a Call, f: &'a WindowFnBox) -> Option<BlockCall<'a>> {
    let Some(Expr::MatrixSelector(m)) = c.args.args.first().map(|b| b.as_ref()) else {
        return None;
    };
    Some(BlockCall {
        key: c as *const Call as usize,
        vs: &m.vs,
        range: ms(&m.range),
        f,
    })
}

/// A boxed range function of a window and its end.
pub type WindowFnBox = dyn Fn(&[(i64, f64)], i64) -> Option<f64>;

/// A range function of a window's points and its end (ms), applied to the
/// first argument; over a range selector in a range query it is computed
/// ahead, series by series (see `blocks`).
fn over_window(ev: &Evaluator, c: &Call, t: i64, f: &WindowFnBox) -> Result<Value, QueryError> {
    if let Some(call) = block_call(c, f) {
        let mut out = Vec::new();
        let emit = |labels: &Arc<Labels>, value| {
            out.push(Sample {
                labels: labels.clone(),
                value,
                time: t,
            })
        };
        if ev.from_block(&call, t, emit)? {
            return Ok(Value::Vector(out));
        }
    }
    let end = match arg(c, 0)? {
        Expr::MatrixSelector(m) => ev.shifted(t, &m.vs.at, &m.vs.offset),
        Expr::Subquery(sq) => ev.shifted(t, &sq.at, &sq.offset),
        _ => t,
    };
    over_time(ev, c, t, 0, |s| f(s, end))
}

/// Evaluates a function call at `t`.
pub fn call(ev: &Evaluator, c: &Call, t: i64) -> Result<Value, QueryError> {
    let name = c.func.name;
    let simple: Option<fn(f64) -> f64> = match name {
        "abs" => Some(f64::abs),
        "ceil" => Some(f64::ceil),
        "floor" => Some(f64::floor),
        "exp" => Some(f64::exp),
        "sqrt" => Some(f64::sqrt),
        "ln" => Some(f64::ln),
        "log2" => Some(f64::log2),
        "log10" => Some(f64::log10),
        "sin" => Some(f64::sin),
        "cos" => Some(f64::cos),
        "tan" => Some(f64::tan),
        "asin" => Some(f64::asin),
        "acos" => Some(f64::acos),
        "atan" => Some(f64::atan),
        "sinh" => Some(f64::sinh),
        "cosh" => Some(f64::cosh),
        "tanh" => Some(f64::tanh),
        "asinh" => Some(f64::asinh),
        "acosh" => Some(f64::acosh),
        "atanh" => Some(f64::atanh),
        "deg" => Some(f64::to_degrees),
        "rad" => Some(f64::to_radians),
        "sgn" => Some(|v: f64| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        }),
        _ => None,
    };
    if let Some(f) = simple {
        return Ok(map_values(ev, ev.vector(arg(c, 0)?, t)?, f));
    }
    if let Some(f) = window_fn(c)? {
        return over_window(ev, c, t, &f);
    }
    match name {
        "time" => Ok(Value::Scalar(t as f64 / 1000.0)),
        "pi" => Ok(Value::Scalar(std::f64::consts::PI)),
        "vector" => Ok(Value::Vector(vec![Sample {
            labels: Arc::new(Labels::default()),
            value: ev.scalar(arg(c, 0)?, t)?,
            time: t,
        }])),
        "scalar" => {
            let v = ev.vector(arg(c, 0)?, t)?;
            Ok(Value::Scalar(if v.len() == 1 {
                v[0].value
            } else {
                f64::NAN
            }))
        }
        "timestamp" => {
            let v = ev.vector(arg(c, 0)?, t)?;
            Ok(Value::Vector(
                v.iter()
                    .map(|s| Sample {
                        labels: dropped(ev, s),
                        value: s.time as f64 / 1000.0,
                        time: t,
                    })
                    .collect(),
            ))
        }
        "round" => {
            let to = match c.args.args.get(1) {
                Some(a) => ev.scalar(a, t)?,
                None => 1.0,
            };
            let inv = 1.0 / to;
            Ok(map_values(ev, ev.vector(arg(c, 0)?, t)?, |v| {
                (v * inv + 0.5).floor() / inv
            }))
        }
        "clamp" => {
            let v = ev.vector(arg(c, 0)?, t)?;
            let lo = ev.scalar(arg(c, 1)?, t)?;
            let hi = ev.scalar(arg(c, 2)?, t)?;
            if hi < lo {
                return Ok(Value::Vector(Vec::new()));
            }
            Ok(map_values(ev, v, |x| go_max(lo, go_min(hi, x))))
        }
        "clamp_max" => {
            let v = ev.vector(arg(c, 0)?, t)?;
            let hi = ev.scalar(arg(c, 1)?, t)?;
            Ok(map_values(ev, v, |x| go_min(x, hi)))
        }
        "clamp_min" => {
            let v = ev.vector(arg(c, 0)?, t)?;
            let lo = ev.scalar(arg(c, 1)?, t)?;
            Ok(map_values(ev, v, |x| go_max(x, lo)))
        }
        "sort" | "sort_desc" => {
            let mut v = ev.vector(arg(c, 0)?, t)?;
            // NaN sorts last in both directions, as in Prometheus.
            v.sort_by(|a, b| {
                let o = if name == "sort" {
                    a.value.partial_cmp(&b.value)
                } else {
                    b.value.partial_cmp(&a.value)
                };
                o.unwrap_or_else(|| b.value.is_nan().cmp(&a.value.is_nan()).reverse())
            });
            Ok(Value::Vector(v))
        }
        "year" | "month" | "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month"
        | "hour" | "minute" => date_function(ev, c, t),
        "label_replace" => label_replace(ev, c, t),
        "label_join" => label_join(ev, c, t),
        "absent" => absent(ev, c, t, false),
        "absent_over_time" => absent(ev, c, t, true),
        "histogram_quantile" => super::histogram::quantile(ev, c, t),
        "predict_linear" => {
            let dur = ev.scalar(arg(c, 1)?, t)?;
            over_time(ev, c, t, 0, |s| {
                (s.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(s, t);
                    slope * dur + intercept
                })
            })
        }
        "last_over_time" => {
            let m = ev.matrix(arg(c, 0)?, t)?;
            Ok(Value::Vector(
                m.iter()
                    .filter_map(|s| {
                        s.points.last().map(|p| Sample {
                            labels: s.labels.clone(),
                            value: p.1,
                            time: t,
                        })
                    })
                    .collect(),
            ))
        }
        "quantile_over_time" => {
            let q = ev.scalar(arg(c, 0)?, t)?;
            over_time(ev, c, t, 1, |s| {
                Some(quantile(q, s.iter().map(|p| p.1).collect()))
            })
        }
        "holt_winters" => {
            let sf = ev.scalar(arg(c, 1)?, t)?;
            let tf = ev.scalar(arg(c, 2)?, t)?;
            if !(sf > 0.0 && sf < 1.0) {
                return Err(QueryError::Eval(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf}"
                )));
            }
            if !(tf > 0.0 && tf < 1.0) {
                return Err(QueryError::Eval(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf}"
                )));
            }
            over_time(ev, c, t, 0, |s| holt_winters(s, sf, tf))
        }
        other => Err(QueryError::BadQuery(format!(
            "function {other}() is not supported"
        ))),
    }
}

fn extrapolate(
    p: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    range: i64,
    counter: bool,
    rate: bool,
) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (first, last) = (p[0], p[p.len() - 1]);
    let mut result = last.1 - first.1;
    if counter {
        let mut prev = 0.0;
        for x in p {
            if x.1 < prev {
                result += prev;
            }
            prev = x.1;
        }
    }
    let mut to_start = (first.0 - range_start) as f64 / 1000.0;
    let to_end = (range_end - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg = sampled / (p.len() - 1) as f64;
    if counter && result > 0.0 && first.1 >= 0.0 {
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = avg * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        avg / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        avg / 2.0
    };
    result *= interval / sampled;
    if rate {
        result /= range as f64 / 1000.0;
    }
    Some(result)
}

fn instant_delta(p: &[(i64, f64)], rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (prev, last) = (p[p.len() - 2], p[p.len() - 1]);
    let mut result = if rate && last.1 < prev.1 {
        last.1
    } else {
        last.1 - prev.1
    };
    let interval = last.0 - prev.0;
    if interval == 0 {
        return None;
    }
    if rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// Least-squares slope and intercept at `intercept_time` (ms).
fn linear_regression(points: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let init = points[0].1;
    let constant = points.iter().all(|p| p.1 == init);
    if constant {
        return if init.is_infinite() {
            (f64::NAN, f64::NAN)
        } else {
            (0.0, init)
        };
    }
    let (mut n, mut sx, mut sy, mut sxy, mut sx2) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for p in points {
        let x = (p.0 - intercept_time) as f64 / 1e3;
        n += 1.0;
        sx += x;
        sy += p.1;
        sxy += x * p.1;
        sx2 += x * x;
    }
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// Prometheus' running mean (keeps precision and handles infinities).
pub fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let mut m = 0.0f64;
    let mut n = 0.0f64;
    for v in values {
        n += 1.0;
        if m.is_infinite() {
            if v.is_infinite() && (m > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        m += v / n - m / n;
    }
    m
}

/// Population variance by Welford's method.
pub fn variance(values: impl Iterator<Item = f64>) -> f64 {
    let (mut n, mut m, mut acc) = (0.0, 0.0, 0.0);
    for v in values {
        n += 1.0;
        let d = v - m;
        m += d / n;
        acc += d * (v - m);
    }
    acc / n
}

/// The φ-quantile of `values` by linear interpolation (Prometheus `quantile`).
pub fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

fn holt_winters(points: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let mut s0 = 0.0;
    let mut s1 = points[0].1;
    let mut b = points[1].1 - points[0].1;
    for (i, p) in points.iter().enumerate().skip(1) {
        let x = sf * p.1;
        // The trend is updated from the second step on.
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

fn date_function(ev: &Evaluator, c: &Call, t: i64) -> Result<Value, QueryError> {
    let v = match c.args.args.first() {
        Some(a) => ev.vector(a, t)?,
        None => vec![Sample {
            labels: Arc::new(Labels::default()),
            value: t as f64 / 1000.0,
            time: t,
        }],
    };
    let name = c.func.name;
    Ok(Value::Vector(
        v.iter()
            .filter_map(|s| {
                if s.value.is_nan() || s.value.is_infinite() {
                    return None;
                }
                let d = DateTime::from_timestamp(s.value.trunc() as i64, 0)?;
                let value = match name {
                    "year" => d.year() as f64,
                    "month" => d.month() as f64,
                    "day_of_month" => d.day() as f64,
                    "day_of_week" => d.weekday().num_days_from_sunday() as f64,
                    "day_of_year" => d.ordinal() as f64,
                    "hour" => d.hour() as f64,
                    "minute" => d.minute() as f64,
                    _ => days_in_month(d.year(), d.month()) as f64,
                };
                Some(Sample {
                    labels: dropped(ev, s),
                    value,
                    time: t,
                })
            })
            .collect(),
    ))
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let first_next = chrono::NaiveDate::from_ymd_opt(ny, nm, 1);
    let first = chrono::NaiveDate::from_ymd_opt(year, month, 1);
    match (first, first_next) {
        (Some(a), Some(b)) => (b - a).num_days() as u32,
        _ => 30,
    }
}

fn string_arg(ev: &Evaluator, c: &Call, i: usize, t: i64) -> Result<String, QueryError> {
    match ev.eval(arg(c, i)?, t)? {
        Value::String(s) => Ok(s),
        other => Err(QueryError::BadQuery(format!(
            "{}: expected a string, got a {}",
            c.func.name,
            other.type_name()
        ))),
    }
}

/// Whether `s` is a valid Prometheus label name.
pub fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn label_replace(ev: &Evaluator, c: &Call, t: i64) -> Result<Value, QueryError> {
    let v = ev.vector(arg(c, 0)?, t)?;
    let dst = string_arg(ev, c, 1, t)?;
    let repl = string_arg(ev, c, 2, t)?;
    let src = string_arg(ev, c, 3, t)?;
    let re = string_arg(ev, c, 4, t)?;
    let re = regex::Regex::new(&format!("^(?s:{re})$")).map_err(|e| {
        QueryError::BadQuery(format!(
            "invalid regular expression in label_replace(): {e}"
        ))
    })?;
    if !valid_label_name(&dst) {
        return Err(QueryError::BadQuery(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    let out: Vec<Sample> = v
        .into_iter()
        .map(|s| {
            let value = s.labels.get(&src).to_string();
            match re.captures(&value) {
                Some(caps) => {
                    let mut new = String::new();
                    caps.expand(&repl, &mut new);
                    Sample {
                        labels: Arc::new(s.labels.with(&dst, &new)),
                        ..s
                    }
                }
                None => s,
            }
        })
        .collect();
    ev.check_unique(&out)?;
    Ok(Value::Vector(out))
}

fn label_join(ev: &Evaluator, c: &Call, t: i64) -> Result<Value, QueryError> {
    let v = ev.vector(arg(c, 0)?, t)?;
    let dst = string_arg(ev, c, 1, t)?;
    let sep = string_arg(ev, c, 2, t)?;
    let mut srcs = Vec::new();
    for i in 3..c.args.args.len() {
        srcs.push(string_arg(ev, c, i, t)?);
    }
    if !valid_label_name(&dst) {
        return Err(QueryError::BadQuery(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    let out: Vec<Sample> = v
        .into_iter()
        .map(|s| {
            let joined = srcs
                .iter()
                .map(|l| s.labels.get(l))
                .collect::<Vec<_>>()
                .join(&sep);
            Sample {
                labels: Arc::new(s.labels.with(&dst, &joined)),
                ..s
            }
        })
        .collect();
    ev.check_unique(&out)?;
    Ok(Value::Vector(out))
}

/// `absent`/`absent_over_time`: one sample with the selector's equality
/// labels when the argument has no series.
fn absent(ev: &Evaluator, c: &Call, t: i64, over_time: bool) -> Result<Value, QueryError> {
    let a = arg(c, 0)?;
    let empty = if over_time {
        ev.matrix(a, t)?.is_empty()
    } else {
        ev.vector(a, t)?.is_empty()
    };
    if !empty {
        return Ok(Value::Vector(Vec::new()));
    }
    let vs = match a {
        Expr::VectorSelector(vs) => Some(vs),
        Expr::MatrixSelector(m) => Some(&m.vs),
        _ => None,
    };
    let mut pairs = Vec::new();
    if let Some(vs) = vs {
        let m = selector_matchers(vs);
        let mut seen = std::collections::HashMap::new();
        for x in &m.matchers {
            *seen.entry(x.name.clone()).or_insert(0) += 1;
        }
        for x in &m.matchers {
            if matches!(x.op, MatchOp::Equal) && x.name != NAME && seen[&x.name] == 1 {
                pairs.push((x.name.clone(), x.value.clone()));
            }
        }
    }
    Ok(Value::Vector(vec![Sample {
        labels: Arc::new(Labels::new(pairs)),
        value: 1.0,
        time: t,
    }]))
}
