//! Aggregation operators (`sum`, `avg`, `topk`, `count_values`, …) with
//! `by`/`without`, as Prometheus computes them.

use std::sync::Arc;

use promql_parser::parser::token::{self, TokenId};
use promql_parser::parser::{AggregateExpr, Expr, LabelModifier};

use super::eval::{Evaluator, FastMap, Memo, derive_in};
use super::functions::{quantile, valid_label_name};
use super::value::{Labels, NAME, Sample, Value, format_value};
use crate::error::QueryError;

struct Group {
    labels: Arc<Labels>,
    value: f64,
    mean: f64,
    count: f64,
    members: Vec<Sample>,
}

impl Group {
    fn new(op: TokenId, labels: Arc<Labels>, v: f64, sample: Option<Sample>) -> Group {
        Group {
            labels,
            value: if op == token::T_STDDEV || op == token::T_STDVAR {
                0.0
            } else if op == token::T_GROUP {
                1.0
            } else {
                v
            },
            mean: v,
            count: 1.0,
            members: sample.into_iter().filter(|_| !streams(op)).collect(),
        }
    }

    fn add(&mut self, op: TokenId, v: f64, sample: Option<Sample>) {
        let g = self;
        g.count += 1.0;
        match op {
            token::T_SUM => g.value += v,
            token::T_AVG => {
                if g.mean.is_infinite() {
                    if v.is_infinite() && (g.mean > 0.0) == (v > 0.0) {
                        return;
                    }
                    if !v.is_infinite() && !v.is_nan() {
                        return;
                    }
                }
                g.mean += v / g.count - g.mean / g.count;
            }
            token::T_MAX if g.value < v || g.value.is_nan() => g.value = v,
            token::T_MIN if g.value > v || g.value.is_nan() => g.value = v,
            token::T_STDDEV | token::T_STDVAR => {
                let d = v - g.mean;
                g.mean += d / g.count;
                g.value += d * (v - g.mean);
            }
            token::T_TOPK | token::T_BOTTOMK | token::T_QUANTILE => g.members.extend(sample),
            _ => {}
        }
    }
}

fn group_labels(l: &Labels, modifier: &Option<LabelModifier>) -> Labels {
    match modifier {
        Some(LabelModifier::Include(by)) => l.only(&by.labels),
        Some(LabelModifier::Exclude(without)) => l.without(&without.labels).without_name(),
        None => Labels::default(),
    }
}

fn param_scalar(ev: &Evaluator, a: &AggregateExpr, t: i64) -> Result<f64, QueryError> {
    let p = a
        .param
        .as_ref()
        .ok_or_else(|| QueryError::BadQuery("missing aggregation parameter".into()))?;
    ev.scalar(p, t)
}

/// Evaluates an aggregation at `t`.
pub fn eval(ev: &Evaluator, a: &AggregateExpr, t: i64) -> Result<Value, QueryError> {
    let op = a.op.id();
    if streams(op) {
        // `sum by (x) (rate(m[5m]))` and the like: values straight from the
        // range function's block, each series' group known by number.
        let mut slots: Vec<Option<Group>> = Vec::new();
        let mut order: Vec<u32> = Vec::new();
        let add = |slot: u32, key: &Arc<Labels>, _: &Arc<Labels>, v: f64| {
            let mut fresh = false;
            let g = numbered(&mut slots, &mut order, slot, || {
                fresh = true;
                Group::new(op, key.clone(), v, None)
            });
            if !fresh {
                g.add(op, v, None);
            }
        };
        let how = a as *const AggregateExpr as usize;
        let group = |l: &Labels| group_labels(l, &a.modifier);
        if super::functions::grouped_from_block(ev, &a.expr, t, how, &group, add)? {
            let in_order = order.iter().filter_map(|s| slots[*s as usize].take());
            return Ok(output(op, in_order, t, 0.0, 0));
        }
    }
    let mut k = 0usize;
    if op == token::T_TOPK || op == token::T_BOTTOMK {
        k = k_param(ev, a, t)?;
        if k == 0 {
            return Ok(Value::Vector(Vec::new()));
        }
        if let Some(v) = top_from_block(ev, a, t, k)? {
            return Ok(v);
        }
    }
    let mut input = ev.vector(&a.expr, t)?;
    let mut q = 0.0;
    let mut modifier = a.modifier.clone();
    if op == token::T_QUANTILE {
        q = param_scalar(ev, a, t)?;
    } else if op == token::T_COUNT_VALUES {
        let Some(Expr::StringLiteral(s)) = a.param.as_deref() else {
            return Err(QueryError::BadQuery(
                "count_values needs a label name".into(),
            ));
        };
        let label = s.val.clone();
        if !valid_label(&label) {
            return Err(QueryError::Eval(format!("invalid label name {label:?}")));
        }
        for s in &mut input {
            s.labels = Arc::new(s.labels.with(&label, &format_value(s.value)));
        }
        if let Some(LabelModifier::Include(by)) = &mut modifier {
            by.labels.push(label);
        } else if modifier.is_none() {
            modifier = Some(LabelModifier::Include(promql_parser::label::Labels {
                labels: vec![label],
            }));
        }
    }
    let mut grouping = Grouping {
        op,
        modifier: &modifier,
        // count_values makes new label sets at every step: not worth keeping.
        memoize: op != token::T_COUNT_VALUES,
        how: a as *const AggregateExpr as usize,
        groups: Default::default(),
        order: Vec::new(),
    };
    let mut memo = ev.memo();
    for s in input {
        let (labels, v) = (s.labels.clone(), s.value);
        grouping.add(&mut memo, &labels, v, Some(s));
    }
    drop(memo);
    finish(grouping, t, q, k)
}

/// `topk`/`bottomk`'s `k` at `t` (0: the result is empty).
fn k_param(ev: &Evaluator, a: &AggregateExpr, t: i64) -> Result<usize, QueryError> {
    let f = param_scalar(ev, a, t)?;
    if f.is_nan() || f.abs() >= 9.2e18 {
        return Err(QueryError::Eval(format!(
            "Scalar value {f} overflows int64"
        )));
    }
    Ok(if f < 1.0 { 0 } else { f as usize })
}

/// `topk`/`bottomk` over a range function's block: each group's heap sees
/// every value, and samples are made only for those it keeps. `None` when
/// blocks do not apply.
fn top_from_block(
    ev: &Evaluator,
    a: &AggregateExpr,
    t: i64,
    k: usize,
) -> Result<Option<Value>, QueryError> {
    let largest = a.op.id() == token::T_TOPK;
    let mut tops: Vec<Option<TopK>> = Vec::new();
    let mut order: Vec<u32> = Vec::new();
    let add = |slot: u32, _: &Arc<Labels>, labels: &Arc<Labels>, v: f64| {
        let top = numbered(&mut tops, &mut order, slot, || TopK::new(k, largest));
        top.offer(v, || Sample {
            labels: labels.clone(),
            value: v,
            time: t,
        });
    };
    let how = a as *const AggregateExpr as usize;
    let group = |l: &Labels| group_labels(l, &a.modifier);
    if !super::functions::grouped_from_block(ev, &a.expr, t, how, &group, add)? {
        return Ok(None);
    }
    let out = order
        .iter()
        .filter_map(|s| tops[*s as usize].take())
        .flat_map(TopK::finish)
        .collect();
    Ok(Some(Value::Vector(out)))
}

/// The entry numbered `slot` (a group of a block, see `blocks`), made and
/// its number appended to `order` on first use.
fn numbered<'a, T>(
    slots: &'a mut Vec<Option<T>>,
    order: &mut Vec<u32>,
    slot: u32,
    make: impl FnOnce() -> T,
) -> &'a mut T {
    let i = slot as usize;
    if slots.len() <= i {
        slots.resize_with(i + 1, || None);
    }
    slots[i].get_or_insert_with(|| {
        order.push(slot);
        make()
    })
}

/// Aggregations that need each group's value only, not its members.
fn streams(op: TokenId) -> bool {
    matches!(
        op,
        token::T_SUM
            | token::T_AVG
            | token::T_MIN
            | token::T_MAX
            | token::T_COUNT
            | token::T_GROUP
            | token::T_STDDEV
            | token::T_STDVAR
    )
}

/// Samples sorted into the groups of one aggregation at one step.
struct Grouping<'a> {
    op: TokenId,
    modifier: &'a Option<LabelModifier>,
    memoize: bool,
    /// Names the aggregation's label derivation in the memo.
    how: usize,
    groups: FastMap<Arc<Labels>, Group>,
    order: Vec<Arc<Labels>>,
}

impl Grouping<'_> {
    /// Adds a value of a series with `labels`; `sample` is kept for the
    /// operators that need their groups' members.
    fn add(&mut self, memo: &mut Memo, labels: &Arc<Labels>, v: f64, sample: Option<Sample>) {
        let op = self.op;
        let key = if self.memoize {
            derive_in(memo, self.how, labels, |l| group_labels(l, self.modifier))
        } else {
            Arc::new(group_labels(labels, self.modifier))
        };
        match self.groups.get_mut(&key) {
            Some(g) => g.add(op, v, sample),
            None => {
                self.order.push(key.clone());
                self.groups
                    .insert(key.clone(), Group::new(op, key, v, sample));
            }
        }
    }
}

/// The aggregation's output samples at `t`, in the order groups appeared.
fn finish(grouping: Grouping<'_>, t: i64, q: f64, k: usize) -> Result<Value, QueryError> {
    let Grouping {
        op,
        mut groups,
        order,
        ..
    } = grouping;
    let in_order = order.into_iter().filter_map(|key| groups.remove(&key));
    Ok(output(op, in_order, t, q, k))
}

/// The samples of `groups` (in output order) at `t`.
fn output(op: TokenId, groups: impl Iterator<Item = Group>, t: i64, q: f64, k: usize) -> Value {
    let mut out = Vec::new();
    for g in groups {
        let value = match op {
            token::T_AVG => g.mean,
            token::T_COUNT | token::T_COUNT_VALUES => g.count,
            token::T_STDVAR => g.value / g.count,
            token::T_STDDEV => (g.value / g.count).sqrt(),
            token::T_QUANTILE => quantile(q, g.members.iter().map(|s| s.value).collect()),
            token::T_TOPK | token::T_BOTTOMK => {
                out.extend(top(g.members, k, op == token::T_TOPK));
                continue;
            }
            _ => g.value,
        };
        out.push(Sample {
            labels: g.labels,
            value,
            time: t,
        });
    }
    Value::Vector(out)
}

/// The `k` largest (or smallest) samples; NaN counts as the smallest for
/// `topk` and the largest for `bottomk`.
///
/// The selection replays Prometheus' binary heap (Go's `container/heap`
/// over `vectorByValueHeap`) sample by sample, so that among equal values
/// the same series win as in Prometheus; a plain sort would pick others.
fn top(members: Vec<Sample>, k: usize, largest: bool) -> Vec<Sample> {
    let mut top = TopK::new(k, largest);
    for s in members {
        top.offer(s.value, || s);
    }
    top.finish()
}

/// The heap of [`top`], fed one value at a time: a sample is made only when
/// the heap takes its value.
struct TopK {
    k: usize,
    largest: bool,
    heap: Vec<Sample>,
}

impl TopK {
    fn new(k: usize, largest: bool) -> TopK {
        TopK {
            k,
            largest,
            heap: Vec::with_capacity(k.min(64)),
        }
    }

    fn offer(&mut self, value: f64, sample: impl FnOnce() -> Sample) {
        let largest = self.largest;
        // `less(a, b)`: a sits nearer the heap's root, the next to be evicted.
        let less = |a: f64, b: f64| a.is_nan() || if largest { a < b } else { a > b };
        let heap = &mut self.heap;
        if heap.len() < self.k {
            heap.push(sample());
            let last = heap.len() - 1;
            heap_up(heap, last, &less);
        } else if less(heap[0].value, value) && !value.is_nan() {
            heap[0] = sample();
            if self.k > 1 && !heap_down(heap, 0, &less) {
                heap_up(heap, 0, &less);
            }
        }
    }

    fn finish(self) -> Vec<Sample> {
        let largest = self.largest;
        let mut heap = self.heap;
        heap.sort_by(|a, b| {
            let (x, y) = (a.value, b.value);
            match (x.is_nan(), y.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ => {
                    let o = x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal);
                    if largest { o.reverse() } else { o }
                }
            }
        });
        heap
    }
}

/// Go's `heap.up`.
fn heap_up(h: &mut [Sample], mut j: usize, less: &impl Fn(f64, f64) -> bool) {
    while j > 0 {
        let parent = (j - 1) / 2;
        if !less(h[j].value, h[parent].value) {
            break;
        }
        h.swap(parent, j);
        j = parent;
    }
}

/// Go's `heap.down`; whether the element moved.
fn heap_down(h: &mut [Sample], i0: usize, less: &impl Fn(f64, f64) -> bool) -> bool {
    let mut i = i0;
    loop {
        let left = 2 * i + 1;
        if left >= h.len() {
            break;
        }
        let mut j = left;
        if left + 1 < h.len() && less(h[left + 1].value, h[left].value) {
            j = left + 1;
        }
        if !less(h[j].value, h[i].value) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
    i > i0
}

fn valid_label(s: &str) -> bool {
    valid_label_name(s) && s != NAME
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, value: f64) -> Sample {
        Sample {
            labels: Arc::new(Labels::new(vec![("s".into(), name.into())])),
            value,
            time: 0,
        }
    }

    fn names(v: &[Sample]) -> Vec<&str> {
        v.iter().map(|s| s.labels.get("s")).collect()
    }

    #[test]
    fn topk_breaks_ties_as_prometheus_heap_does() {
        // Prometheus: heap [a, b]; c evicts the root a and sinks below b.
        // A stable sort would keep a (the first of the equal values).
        let input = vec![sample("a", 1.0), sample("b", 1.0), sample("c", 2.0)];
        assert_eq!(names(&top(input, 2, true)), ["c", "b"]);
    }

    #[test]
    fn bottomk_mirrors_topk_and_nan_goes_first_out() {
        let input = vec![
            sample("a", 3.0),
            sample("n", f64::NAN),
            sample("b", 3.0),
            sample("c", 1.0),
        ];
        // b takes the NaN's place at the root, then c evicts b.
        assert_eq!(names(&top(input.clone(), 2, false)), ["c", "a"]);
        assert_eq!(names(&top(input, 3, true)), ["a", "b", "c"]);
    }
}
