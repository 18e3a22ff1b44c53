//! `GROUP BY` string columns without hashing every row's strings.
//!
//! The most common observability aggregations group by low-cardinality
//! labels: requests per service, latency per route, per service and span
//! name. Tables scan strings as
//! views ([`crate::views`]), and DataFusion 55's hash aggregation hashes
//! and compares every view's string: 130 ms of the 150 ms a `count(*) …
//! GROUP BY service_name` over 12 M spans took (`docs/benchmarks.md`).
//! [`GroupByViews`] swaps such partial aggregations for a
//! [`ViewGroupedAggregateExec`], which looks each distinct view of a batch
//! up once ([`ViewInterner`]), combines several key columns by their ids
//! ([`GroupKeys`]) and feeds DataFusion's own groups accumulators, so every
//! aggregate function keeps its exact semantics.
//!
//! ```
//! # use std::sync::Arc;
//! # use datafusion::execution::SessionStateBuilder;
//! # use datafusion::prelude::SessionContext;
//! use query::view_groups::GroupByViews;
//!
//! let state = SessionStateBuilder::new()
//!     .with_default_features()
//!     .with_physical_optimizer_rule(Arc::new(GroupByViews::default()))
//!     .build();
//! let ctx = SessionContext::new_with_state(state);
//! ```

mod exec;
mod interner;
mod keys;
mod percentile;

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::physical_expr::expressions::{Column, IsNotNullExpr};
use datafusion::physical_expr::split_conjunction;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::{ExecutionPlan, InputOrderMode};

pub use exec::ViewGroupedAggregateExec;
pub use interner::ViewInterner;
pub use keys::GroupKeys;

/// Physical optimizer rule: partial aggregations keyed by `Utf8View`
/// expressions run as [`ViewGroupedAggregateExec`].
///
/// Only aggregations it can run exactly as DataFusion would qualify:
/// partial mode over unordered input, plain grouping keys that are all
/// string views (no grouping sets), no group limit, and aggregates with
/// neither `DISTINCT` nor `ORDER BY`. Anything else is left alone.
#[derive(Debug)]
pub struct GroupByViews {
    max_groups: usize,
}

impl Default for GroupByViews {
    fn default() -> Self {
        GroupByViews {
            max_groups: 1 << 20,
        }
    }
}

impl GroupByViews {
    /// The rule, with each partition emitting its groups once it holds
    /// `max_groups` (or the memory pool refuses more), so that a
    /// high-cardinality key such as a trace id cannot grow its state
    /// without bound. Repeated groups are merged by the final aggregation.
    pub fn with_max_groups(max_groups: usize) -> Self {
        GroupByViews {
            max_groups: max_groups.max(1),
        }
    }
}

impl PhysicalOptimizerRule for GroupByViews {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            if !qualifies(aggregate)? {
                return Ok(Transformed::no(node));
            }
            let exec = match without_not_null_filter(aggregate)? {
                Some((aggregate, keys)) => {
                    ViewGroupedAggregateExec::new(Arc::new(aggregate), self.max_groups)
                        .skipping_null_keys(keys)
                }
                None => ViewGroupedAggregateExec::new(Arc::new(aggregate.clone()), self.max_groups),
            };
            Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "group_by_views"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// For an aggregation over `WHERE k IS NOT NULL [AND …]`, every conjunct
/// on a grouping key column `k`: the same aggregation over the filter's
/// input, and the positions of those keys, whose null rows the exec then
/// skips itself (`SELECT route, avg(d) … WHERE route IS NOT NULL GROUP BY
/// route`, the usual way to drop the null group).
///
/// `FilterExec` copies the rows it keeps into new batches, and a coalesce
/// copies their strings into new buffers, so each row's view is new and
/// misses the interner's cache; the exec drops the rows instead and still
/// sees the views as the scan decoded them.
fn without_not_null_filter(
    aggregate: &AggregateExec,
) -> Result<Option<(AggregateExec, Vec<usize>)>> {
    let Some(filter) = aggregate.input().downcast_ref::<FilterExec>() else {
        return Ok(None);
    };
    if filter.projection().is_some() || filter.fetch().is_some() {
        return Ok(None);
    }
    let key_columns: Vec<Option<usize>> = aggregate
        .group_expr()
        .expr()
        .iter()
        .map(|(key, _)| key.downcast_ref::<Column>().map(Column::index))
        .collect();
    let mut keys = Vec::new();
    for conjunct in split_conjunction(filter.predicate()) {
        let column = conjunct
            .downcast_ref::<IsNotNullExpr>()
            .and_then(|e| e.arg().downcast_ref::<Column>());
        let Some(column) = column else {
            return Ok(None);
        };
        let Some(key) = key_columns.iter().position(|k| *k == Some(column.index())) else {
            return Ok(None);
        };
        keys.push(key);
    }
    let folded = AggregateExec::try_new(
        *aggregate.mode(),
        aggregate.group_expr().clone(),
        aggregate.aggr_expr().to_vec(),
        aggregate.filter_expr().to_vec(),
        filter.input().clone(),
        aggregate.input_schema(),
    )?;
    Ok(Some((folded, keys)))
}

fn qualifies(aggregate: &AggregateExec) -> Result<bool> {
    let group_by = aggregate.group_expr();
    if *aggregate.mode() != AggregateMode::Partial
        || *aggregate.input_order_mode() != InputOrderMode::Linear
        || aggregate.limit_options().is_some()
        || !group_by.is_single()
        || group_by.expr().is_empty()
    {
        return Ok(false);
    }
    let schema = aggregate.input_schema();
    for (key, _) in group_by.expr() {
        if key.data_type(&schema)? != DataType::Utf8View {
            return Ok(false);
        }
    }
    Ok(aggregate
        .aggr_expr()
        .iter()
        .all(|a| !a.is_distinct() && a.order_bys().is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, AsArray, Int32Array, Int64Array, RecordBatch, StringViewBuilder};
    use arrow::datatypes::{Field, Schema};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::{SessionConfig, SessionContext};

    const SERVICES: [&str; 5] = [
        "frontend",
        "checkout-service-with-a-long-name",
        "cart",
        "payment-service-with-a-long-name",
        "",
    ];

    /// `rows` rows in batches of 1 000, two partitions: services in runs
    /// (as SDK batches send them), routes interleaved, nulls in every
    /// column; odd batches deduplicate views as a Parquet dictionary page
    /// decodes, even ones give each long string its own view.
    fn table(rows: usize, distinct_routes: usize) -> MemTable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("service", DataType::Utf8View, true),
            Field::new("route", DataType::Utf8View, true),
            Field::new("d", DataType::Int64, true),
            Field::new("status", DataType::Int32, false),
        ]));
        let mut partitions = vec![Vec::new(), Vec::new()];
        for (n, start) in (0..rows).step_by(1000).enumerate() {
            let (mut service, mut route) = match n % 2 {
                1 => (
                    StringViewBuilder::new().with_deduplicate_strings(),
                    StringViewBuilder::new().with_deduplicate_strings(),
                ),
                _ => (StringViewBuilder::new(), StringViewBuilder::new()),
            };
            let (mut d, mut status) = (Vec::new(), Vec::new());
            for row in start..(start + 1000).min(rows) {
                let s = (row / 37) % (SERVICES.len() + 1);
                service.append_option(SERVICES.get(s).copied());
                let r = (row * 7919) % distinct_routes;
                route.append_option(
                    (!r.is_multiple_of(11)).then(|| format!("/api/v1/resource/{r}")),
                );
                d.push((!row.is_multiple_of(13)).then_some((row as i64 * 7) % 1000 - 100));
                status.push(row.is_multiple_of(17) as i32 * 2);
            }
            let columns: Vec<ArrayRef> = vec![
                Arc::new(service.finish()),
                Arc::new(route.finish()),
                Arc::new(Int64Array::from(d)),
                Arc::new(Int32Array::from(status)),
            ];
            partitions[n % 2].push(RecordBatch::try_new(schema.clone(), columns).unwrap());
        }
        MemTable::try_new(schema, partitions).unwrap()
    }

    fn context(rule: Option<GroupByViews>, table: MemTable) -> SessionContext {
        let mut state = SessionStateBuilder::new()
            .with_config(SessionConfig::new().with_target_partitions(2))
            .with_default_features();
        if let Some(rule) = rule {
            state = state.with_physical_optimizer_rule(Arc::new(rule));
        }
        let ctx = SessionContext::new_with_state(state.build());
        ctx.register_table("t", Arc::new(table)).unwrap();
        ctx
    }

    /// The query's rows (sorted, as text) and, if its plan used
    /// [`ViewGroupedAggregateExec`], the rows that emitted.
    async fn run(ctx: &SessionContext, sql: &str) -> (Vec<String>, Option<usize>) {
        let plan = ctx.sql(sql).await.unwrap().create_physical_plan().await;
        let plan = plan.unwrap();
        let batches = collect(plan.clone(), ctx.task_ctx()).await.unwrap();
        let text = pretty_format_batches(&batches).unwrap().to_string();
        let mut rows: Vec<String> = text.lines().map(str::to_owned).collect();
        rows.sort();
        (rows, view_grouped_rows(&plan))
    }

    fn view_grouped_rows(plan: &Arc<dyn ExecutionPlan>) -> Option<usize> {
        let own = plan
            .downcast_ref::<ViewGroupedAggregateExec>()
            .map(|p| p.metrics().unwrap().output_rows().unwrap());
        let below = plan.children().into_iter().filter_map(view_grouped_rows);
        own.into_iter().chain(below).reduce(|a, b| a + b)
    }

    /// Runs `sql` with and without the rule; returns the rows the view
    /// aggregation emitted, if the rule applied, and the rows of the result.
    async fn assert_same(
        rule: GroupByViews,
        rows: usize,
        routes: usize,
        sql: &str,
    ) -> (Option<usize>, usize) {
        let with = context(Some(rule), table(rows, routes));
        let without = context(None, table(rows, routes));
        let (expected, plain_used) = run(&without, sql).await;
        let (got, emitted) = run(&with, sql).await;
        assert_eq!(plain_used, None);
        assert!(expected.len() > 4, "{sql}: {expected:?}");
        assert_eq!(got, expected, "{sql}");
        // The rows of the table, without its header and three rules.
        (emitted, expected.len() - 4)
    }

    #[tokio::test]
    async fn aggregates_match_datafusion_s_own() {
        let queries = [
            "SELECT service, count(*) AS n FROM t GROUP BY 1",
            "SELECT service, count(d), sum(d), avg(d), min(d), max(d), min(route), max(route) \
             FROM t GROUP BY service",
            "SELECT service, count(*) FILTER (WHERE status = 2) AS errors, count(*) AS n \
             FROM t WHERE d > 0 GROUP BY 1 HAVING count(*) > 10",
            "SELECT route, avg(d) AS a, max(d) FROM t WHERE route IS NOT NULL \
             GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 8",
            "SELECT lower(service) AS s, stddev(d), bool_or(d > 800) FROM t GROUP BY 1",
            // Planned as a grouping by (service, d), then by service.
            "SELECT service, count(DISTINCT d), sum(d) FROM t GROUP BY 1",
            "SELECT route, service, min(d) FROM t WHERE status = 2 GROUP BY route, service",
        ];
        for sql in queries {
            let (emitted, groups) = assert_same(GroupByViews::default(), 20_000, 50, sql).await;
            // At most one row per group and partition (more groups than
            // the result's rows only where HAVING or LIMIT drop some).
            let most = 2 * groups.max(50);
            assert!(emitted.is_some_and(|n| n <= most), "{sql}: {emitted:?}");
        }
    }

    /// Each group's `approx_percentile_cont` (a float) by its key.
    async fn percentiles(ctx: &SessionContext, sql: &str) -> Vec<(String, f64)> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let mut rows = Vec::new();
        for b in batches {
            let keys = arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
            let keys = keys.as_string::<i32>();
            let values = b.column(1).as_primitive::<arrow::datatypes::Float64Type>();
            for i in 0..b.num_rows() {
                rows.push((keys.value(i).to_owned(), values.value(i)));
            }
        }
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        rows
    }

    /// `approx_percentile_cont` is the same t-digest merged in other
    /// slices (see `percentile`), so it agrees with DataFusion's within the
    /// digest's error: for groups of thousands of values (several chunks
    /// each) and of ~65 (one chunk, where DataFusion merged ~10 slices).
    #[tokio::test]
    async fn percentiles_agree_with_datafusion_s() {
        let cases = [
            // `d` runs over -100..900 in steps of 7 mod 1000.
            (
                "SELECT coalesce(service, '-') AS s, approx_percentile_cont(d, 0.99) AS p \
                 FROM t GROUP BY 1",
                5.0,
                Some(890.0),
            ),
            (
                "SELECT concat(coalesce(service, '-'), coalesce(route, '-')) AS s, \
                 approx_percentile_cont(d, 0.9) AS p FROM t GROUP BY service, route",
                30.0,
                None,
            ),
        ];
        for (sql, tolerance, truth) in cases {
            let with = context(Some(GroupByViews::default()), table(60_000, 50));
            let without = context(None, table(60_000, 50));
            let plan = plan_text(&with, sql).await;
            assert!(plan.contains("ViewGroupedAggregateExec"), "{plan}");
            let got = percentiles(&with, sql).await;
            let expected = percentiles(&without, sql).await;
            assert_eq!(got.len(), expected.len());
            assert!(got.len() > SERVICES.len(), "{sql}");
            let mut differ = 0;
            for ((key, mine), (their_key, theirs)) in got.iter().zip(&expected) {
                assert_eq!(key, their_key);
                assert!(
                    (mine - theirs).abs() <= tolerance,
                    "{key}: {mine} vs {theirs}"
                );
                differ += usize::from(mine != theirs);
                if let Some(truth) = truth {
                    assert!((mine - truth).abs() < 10.0, "{key}: {mine}");
                }
            }
            // Not DataFusion's own accumulator under another name.
            assert!(differ > 0, "{sql}");
        }
    }

    #[tokio::test]
    async fn other_aggregations_are_left_alone() {
        let queries = [
            "SELECT service, count(DISTINCT d), count(DISTINCT status) FROM t GROUP BY 1",
            "SELECT service, array_agg(d ORDER BY d) FROM t WHERE d < 0 GROUP BY 1",
            "SELECT service, status, count(*) FROM t GROUP BY 1, 2",
            "SELECT service, route, approx_percentile_cont(d, 0.5) FROM t GROUP BY ROLLUP(service, route)",
            "SELECT status, count(*), count(service) FROM t GROUP BY 1 ORDER BY 1",
        ];
        for sql in queries {
            let (emitted, _) = assert_same(GroupByViews::default(), 20_000, 50, sql).await;
            assert_eq!(emitted, None, "{sql}");
        }
    }

    /// The physical plan of `sql`, as `EXPLAIN` shows it.
    async fn plan_text(ctx: &SessionContext, sql: &str) -> String {
        let plan = ctx.sql(sql).await.unwrap().create_physical_plan().await;
        let plan = plan.unwrap();
        datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string()
    }

    #[tokio::test]
    async fn not_null_filters_on_keys_are_skipped_rows() {
        let folded = [
            "SELECT route, avg(d) AS a, max(d), count(*) FROM t WHERE route IS NOT NULL GROUP BY 1",
            "SELECT service, route, count(*), sum(d) FROM t \
             WHERE route IS NOT NULL AND service IS NOT NULL GROUP BY 1, 2",
            "SELECT service, route, min(d) FROM t WHERE service IS NOT NULL GROUP BY 1, 2",
            "SELECT route, count(*) FILTER (WHERE status = 2), count(d) FROM t \
             WHERE route IS NOT NULL GROUP BY 1",
        ];
        let kept = [
            "SELECT route, count(*) FROM t WHERE service IS NOT NULL GROUP BY 1",
            "SELECT route, count(*) FROM t WHERE route IS NOT NULL AND d > 0 GROUP BY 1",
            "SELECT service, route, count(*) FROM t \
             WHERE route IS NOT NULL OR service IS NOT NULL GROUP BY 1, 2",
            "SELECT lower(route), count(*) FROM t WHERE route IS NOT NULL GROUP BY 1",
        ];
        let ctx = context(Some(GroupByViews::default()), table(20_000, 50));
        for (sql, fold) in folded
            .iter()
            .map(|q| (q, true))
            .chain(kept.iter().map(|q| (q, false)))
        {
            let (emitted, _) = assert_same(GroupByViews::default(), 20_000, 50, sql).await;
            assert!(emitted.is_some(), "{sql}");
            let plan = plan_text(&ctx, sql).await;
            assert_eq!(plan.contains("skip nulls of"), fold, "{sql}\n{plan}");
            assert_eq!(plan.contains("FilterExec"), !fold, "{sql}\n{plan}");
        }
    }

    #[tokio::test]
    async fn many_groups_are_emitted_early_and_merged() {
        let sql = "SELECT route, count(*), sum(d) FROM t GROUP BY 1";
        let (emitted, _) =
            assert_same(GroupByViews::with_max_groups(100), 30_000, 5_000, sql).await;
        // 5 000 groups, 2 partitions each holding at most 100 at a time:
        // groups were emitted more than once per partition.
        assert!(emitted.is_some_and(|n| n > 2 * 5_000), "{emitted:?}");
    }

    #[tokio::test]
    async fn a_rebuilt_plan_computes_the_same() {
        let sql = "SELECT service, count(*), max(route) FROM t GROUP BY 1";
        let ctx = context(Some(GroupByViews::default()), table(20_000, 50));
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        // Rebuild every node bottom-up from its children, as optimizers and
        // plan rewrites do.
        let rebuilt = plan
            .clone()
            .transform_up(|node| {
                let children = node.children().into_iter().cloned().collect();
                #[expect(deprecated)]
                let node = node.with_new_children(children)?;
                Ok(Transformed::yes(node))
            })
            .unwrap()
            .data;
        let rows = |batches: Vec<RecordBatch>| {
            let text = pretty_format_batches(&batches).unwrap().to_string();
            let mut rows: Vec<String> = text.lines().map(str::to_owned).collect();
            rows.sort();
            rows
        };
        let before = rows(collect(plan, ctx.task_ctx()).await.unwrap());
        let after = rows(collect(rebuilt.clone(), ctx.task_ctx()).await.unwrap());
        assert_eq!(before, after);
        assert!(view_grouped_rows(&rebuilt).is_some());
    }
}
