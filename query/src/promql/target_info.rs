//! `target_info`: one series per resource that reported metrics, valued 1,
//! with the resource attributes (other than those that make `job` and
//! `instance`) as labels, as the OpenTelemetry Prometheus compatibility
//! specification describes. A sample exists wherever the resource reported
//! any metric point.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::TimestampNanosecondType;
use collector::schema::PROMOTED_RESOURCE_KEYS;
use datafusion::prelude::{Expr, col};
use promql_parser::label::Matchers;

use super::names;
use super::select::{METRIC_TABLES, matches, time_filter};
use super::value::{Labels, NAME, Series};
use crate::engine::QueryEngine;
use crate::error::QueryError;

/// The series name.
pub const TARGET_INFO: &str = "target_info";

/// Resource keys that are `job` and `instance` rather than labels.
const IDENTITY: [&str; 3] = ["service.name", "service.namespace", "service.instance.id"];

fn columns() -> Vec<Expr> {
    let mut c = vec![col("time")];
    c.extend(
        PROMOTED_RESOURCE_KEYS
            .iter()
            .map(|(k, _)| col(k.replace('.', "_"))),
    );
    c.push(col("resource_attributes"));
    c
}

/// Loads `target_info` series matching `sel` in `[min_ms, max_ms]`.
pub async fn select(
    engine: &QueryEngine,
    sel: &Matchers,
    min_ms: i64,
    max_ms: i64,
) -> Result<Vec<Series>, QueryError> {
    let mut series: HashMap<String, Option<usize>> = HashMap::new();
    let mut out: Vec<Series> = Vec::new();
    for table in METRIC_TABLES {
        let df = engine
            .context()
            .table(table.name())
            .await?
            .filter(time_filter(min_ms, max_ms))?
            .select(columns())?;
        let max = engine.config().max_series;
        engine
            .for_each_batch(df, |b| add_batch(b, sel, &mut series, &mut out, max))
            .await?;
    }
    for s in &mut out {
        s.points.sort_by_key(|p| p.0);
        s.points.dedup_by_key(|p| p.0);
    }
    Ok(out)
}

fn add_batch(
    b: &RecordBatch,
    sel: &Matchers,
    series: &mut HashMap<String, Option<usize>>,
    out: &mut Vec<Series>,
    max_series: usize,
) -> Result<(), QueryError> {
    let time = b.column(0).as_primitive::<TimestampNanosecondType>();
    let promoted: Vec<&StringArray> = (1..=PROMOTED_RESOURCE_KEYS.len())
        .map(|i| b.column(i).as_string::<i32>())
        .collect();
    let map = b.column(PROMOTED_RESOURCE_KEYS.len() + 1).as_map();
    let keys = map.keys().as_string::<i32>();
    let values = map.values().as_string::<i32>();
    let mut key = String::new();
    for i in 0..b.num_rows() {
        key.clear();
        for p in &promoted {
            key.push('\u{1}');
            key.push_str(if p.is_null(i) { "" } else { p.value(i) });
        }
        let (from, to) = (
            map.value_offsets()[i] as usize,
            map.value_offsets()[i + 1] as usize,
        );
        for k in from..to {
            key.push('\u{2}');
            key.push_str(keys.value(k));
            key.push('=');
            key.push_str(if values.is_null(k) {
                ""
            } else {
                values.value(k)
            });
        }
        let slot = match series.get(&key) {
            Some(s) => *s,
            None => {
                let mut attrs: BTreeMap<String, String> = BTreeMap::new();
                let mut identity: HashMap<&str, &str> = HashMap::new();
                for (n, (k, _)) in PROMOTED_RESOURCE_KEYS.iter().enumerate() {
                    if promoted[n].is_null(i) {
                        continue;
                    }
                    let v = promoted[n].value(i);
                    if IDENTITY.contains(k) {
                        identity.insert(k, v);
                    } else {
                        attrs.insert(names::sanitize_label(k), v.to_string());
                    }
                }
                for k in from..to {
                    if !values.is_null(k) {
                        attrs.insert(
                            names::sanitize_label(keys.value(k)),
                            values.value(k).to_string(),
                        );
                    }
                }
                let mut pairs: Vec<(String, String)> = attrs.into_iter().collect();
                if let Some(job) = names::job(
                    identity.get("service.namespace").copied(),
                    identity.get("service.name").copied(),
                ) {
                    pairs.push(("job".into(), job));
                }
                if let Some(inst) = identity.get("service.instance.id") {
                    pairs.push(("instance".into(), inst.to_string()));
                }
                // A resource with nothing beyond job and instance has no target_info.
                let only_identity = pairs.iter().all(|(k, _)| k == "job" || k == "instance");
                pairs.push((NAME.into(), TARGET_INFO.into()));
                let labels = Labels::new(pairs);
                let slot = (!only_identity && matches(sel, &labels)).then(|| {
                    out.push(Series {
                        labels: Arc::new(labels),
                        points: Vec::new(),
                    });
                    out.len() - 1
                });
                if out.len() > max_series {
                    return Err(QueryError::TooLarge(format!(
                        "the query selects more than {max_series} series"
                    )));
                }
                series.insert(key.clone(), slot);
                slot
            }
        };
        if let Some(ix) = slot {
            out[ix]
                .points
                .push((time.value(i).div_euclid(1_000_000), 1.0));
        }
    }
    Ok(())
}
