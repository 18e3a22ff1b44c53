//! Binary operators: arithmetic, comparisons (filtering or `bool`) and set
//! operators, with `on`/`ignoring` and `group_left`/`group_right` matching.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use promql_parser::parser::token::{self, TokenId};
use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::eval::Evaluator;
use super::value::{Labels, Sample, Value};
use crate::error::QueryError;

fn is_comparison(op: TokenId) -> bool {
    matches!(
        op,
        token::T_EQLC | token::T_NEQ | token::T_GTR | token::T_LSS | token::T_GTE | token::T_LTE
    )
}

/// Whether the result loses the metric name. Prometheus 2.x keeps it for
/// `atan2` (its list of arithmetic operators omits it); matched here.
fn drops_name(op: TokenId) -> bool {
    matches!(
        op,
        token::T_ADD | token::T_SUB | token::T_MUL | token::T_DIV | token::T_MOD | token::T_POW
    )
}

fn is_set(op: TokenId) -> bool {
    matches!(op, token::T_LAND | token::T_LOR | token::T_LUNLESS)
}

/// `lhs op rhs`: the value, and for comparisons whether it holds.
fn apply(op: TokenId, l: f64, r: f64) -> (f64, bool) {
    match op {
        token::T_ADD => (l + r, true),
        token::T_SUB => (l - r, true),
        token::T_MUL => (l * r, true),
        token::T_DIV => (l / r, true),
        token::T_MOD => (l % r, true),
        token::T_POW => (l.powf(r), true),
        token::T_ATAN2 => (l.atan2(r), true),
        token::T_EQLC => (l, l == r),
        token::T_NEQ => (l, l != r),
        token::T_GTR => (l, l > r),
        token::T_LSS => (l, l < r),
        token::T_GTE => (l, l >= r),
        token::T_LTE => (l, l <= r),
        _ => (f64::NAN, false),
    }
}

/// Evaluates a binary expression at `t`.
pub fn eval(ev: &Evaluator, b: &BinaryExpr, t: i64) -> Result<Value, QueryError> {
    let op = b.op.id();
    let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
    let lhs = ev.eval(&b.lhs, t)?;
    let rhs = ev.eval(&b.rhs, t)?;
    match (lhs, rhs) {
        (Value::Scalar(l), Value::Scalar(r)) => {
            let (v, keep) = apply(op, l, r);
            Ok(Value::Scalar(if is_comparison(op) {
                if keep { 1.0 } else { 0.0 }
            } else {
                v
            }))
        }
        (Value::Vector(v), Value::Scalar(s)) => {
            Ok(Value::Vector(vector_scalar(op, v, s, false, return_bool)))
        }
        (Value::Scalar(s), Value::Vector(v)) => {
            Ok(Value::Vector(vector_scalar(op, v, s, true, return_bool)))
        }
        (Value::Vector(l), Value::Vector(r)) => {
            let default = BinModifier {
                card: if is_set(op) {
                    VectorMatchCardinality::ManyToMany
                } else {
                    VectorMatchCardinality::OneToOne
                },
                matching: None,
                return_bool: false,
            };
            let m = b.modifier.as_ref().unwrap_or(&default);
            let out = match op {
                token::T_LAND => and_unless(l, r, m, true),
                token::T_LUNLESS => and_unless(l, r, m, false),
                token::T_LOR => or(l, r, m),
                _ => vector_vector(op, l, r, m, return_bool)?,
            };
            Ok(Value::Vector(out))
        }
        (l, r) => Err(QueryError::BadQuery(format!(
            "binary operator between a {} and a {}",
            l.type_name(),
            r.type_name()
        ))),
    }
}

fn vector_scalar(
    op: TokenId,
    v: Vec<Sample>,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Vec<Sample> {
    let cmp = is_comparison(op);
    v.into_iter()
        .filter_map(|x| {
            let (l, r) = if swap { (s, x.value) } else { (x.value, s) };
            let (mut value, mut keep) = apply(op, l, r);
            // The vector's value is kept even when the scalar is on the left.
            if cmp && swap {
                value = r;
            }
            if return_bool {
                value = if keep { 1.0 } else { 0.0 };
                keep = true;
            }
            keep.then(|| Sample {
                labels: if drops_name(op) || return_bool {
                    Arc::new(x.labels.without_name())
                } else {
                    x.labels
                },
                value,
                time: x.time,
            })
        })
        .collect()
}

/// The labels two samples are matched on.
fn signature(l: &Labels, m: &BinModifier) -> Labels {
    match &m.matching {
        Some(LabelModifier::Include(on)) => l.only(&on.labels),
        Some(LabelModifier::Exclude(ignoring)) => l.without(&ignoring.labels).without_name(),
        None => l.without_name(),
    }
}

fn and_unless(l: Vec<Sample>, r: Vec<Sample>, m: &BinModifier, and: bool) -> Vec<Sample> {
    let right: HashSet<Labels> = r.iter().map(|s| signature(&s.labels, m)).collect();
    l.into_iter()
        .filter(|s| right.contains(&signature(&s.labels, m)) == and)
        .collect()
}

fn or(l: Vec<Sample>, r: Vec<Sample>, m: &BinModifier) -> Vec<Sample> {
    let left: HashSet<Labels> = l.iter().map(|s| signature(&s.labels, m)).collect();
    let mut out = l;
    out.extend(
        r.into_iter()
            .filter(|s| !left.contains(&signature(&s.labels, m))),
    );
    out
}

fn result_labels(l: &Labels, r: &Labels, op: TokenId, m: &BinModifier) -> Labels {
    let mut out = if drops_name(op) {
        l.without_name()
    } else {
        l.clone()
    };
    let include = match &m.card {
        VectorMatchCardinality::OneToOne => {
            out = match &m.matching {
                Some(LabelModifier::Include(on)) => out.only(&on.labels),
                Some(LabelModifier::Exclude(ignoring)) => out.without(&ignoring.labels),
                None => out,
            };
            None
        }
        VectorMatchCardinality::ManyToOne(inc) | VectorMatchCardinality::OneToMany(inc) => {
            Some(inc)
        }
        VectorMatchCardinality::ManyToMany => None,
    };
    // Labels named in group_x() are copied from the "one" side.
    for name in include.map(|i| i.labels.as_slice()).unwrap_or_default() {
        out = out.with(name, r.get(name));
    }
    out
}

fn vector_vector(
    op: TokenId,
    l: Vec<Sample>,
    r: Vec<Sample>,
    m: &BinModifier,
    return_bool: bool,
) -> Result<Vec<Sample>, QueryError> {
    let one_to_many = matches!(m.card, VectorMatchCardinality::OneToMany(_));
    // The "many" side is walked; the "one" side is looked up.
    let (many, one) = if one_to_many { (r, l) } else { (l, r) };
    let mut one_side: HashMap<Labels, Sample> = HashMap::with_capacity(one.len());
    for s in one {
        let sig = signature(&s.labels, m);
        if one_side.contains_key(&sig) {
            let side = if one_to_many { "left" } else { "right" };
            return Err(QueryError::Eval(format!(
                "found duplicate series for the match group {sig} on the {side} hand-side of the operation: many-to-many matching not allowed: matching labels must be unique on one side"
            )));
        }
        one_side.insert(sig, s);
    }
    let mut matched: HashMap<Labels, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for s in many {
        let sig = signature(&s.labels, m);
        let Some(o) = one_side.get(&sig) else {
            continue;
        };
        let (vl, vr) = if one_to_many {
            (o.value, s.value)
        } else {
            (s.value, o.value)
        };
        let (mut value, keep) = apply(op, vl, vr);
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let mut labels = result_labels(&s.labels, &o.labels, op, m);
        if return_bool {
            labels = labels.without_name();
        }
        let seen = matched.entry(sig).or_default();
        if matches!(m.card, VectorMatchCardinality::OneToOne) {
            if !seen.is_empty() {
                return Err(QueryError::Eval(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                ));
            }
            seen.insert(Labels::default());
        } else if !seen.insert(labels.clone()) {
            return Err(QueryError::Eval(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        out.push(Sample {
            labels: Arc::new(labels),
            value,
            time: s.time,
        });
    }
    Ok(out)
}
