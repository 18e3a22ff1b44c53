//! The query engine: one DataFusion session over Sightline's tables, with
//! the limits every query runs under.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use collector::Ingest;
use collector::schema::Table;
use collector::storage::DataFile;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::optimizer::Analyzer;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{DataFrame, Expr, SQLOptions, SessionConfig, SessionContext};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::catalog::{STORE_URL, StoreTable};
use crate::error::QueryError;
use crate::hex_ids::HexIdLiterals;
use crate::promql::label_cache::LabelCache;
use crate::promql::metric_lists::MetricLists;
use crate::view_groups::GroupByViews;
use crate::views;

/// Limits and defaults of the query layer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// A query running longer than this is cancelled.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Memory all running queries may use together; sorts and aggregations
    /// spill to disk beyond it, and a query that still does not fit fails
    /// with a "resources exhausted" error.
    pub memory_limit_bytes: usize,
    /// Rows a SQL query may return.
    pub max_rows: usize,
    /// Series a PromQL query may return or hold in one step.
    pub max_series: usize,
    /// Samples a PromQL query may load.
    pub max_samples: usize,
    /// How far back an instant vector selector looks for a sample (PromQL
    /// `--query.lookback-delta`).
    #[serde(with = "humantime_serde")]
    pub lookback_delta: Duration,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            timeout: Duration::from_secs(120),
            memory_limit_bytes: 1 << 30,
            max_rows: 100_000,
            max_series: 50_000,
            max_samples: 50_000_000,
            lookback_delta: Duration::from_secs(300),
        }
    }
}

/// What [`QueryEngine::for_each_store_batch`] reads of a table.
pub enum StoreScan<'a> {
    /// Buffered rows and files, from the partitions, row groups and pages
    /// the filters do not rule out, without filtering rows (see
    /// [`StoreTable::scan_pruned`]): the caller checks them.
    Pruned(&'a [Expr]),
    /// The rows of these files only that pass the filters.
    Files(Vec<Arc<DataFile>>, &'a [Expr]),
}

/// Runs queries against the store of one [`Ingest`].
#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
    config: Arc<QueryConfig>,
    ingest: Ingest,
    labels: Arc<LabelCache>,
    metric_lists: Arc<MetricLists>,
}

impl QueryEngine {
    /// An engine over `ingest`'s tables.
    pub fn new(ingest: Ingest, config: QueryConfig) -> Result<QueryEngine, QueryError> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(config.memory_limit_bytes)))
            .build_arc()?;
        let url = url::Url::parse(STORE_URL).expect("static URL");
        runtime.register_object_store(&url, ingest.storage().object_store());
        let session = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("sightline", "public");
        let mut rules = vec![Arc::new(HexIdLiterals) as _];
        rules.extend(Analyzer::new().rules);
        let state = SessionStateBuilder::new()
            .with_config(session)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_analyzer_rules(rules)
            .with_physical_optimizer_rule(Arc::new(GroupByViews::default()))
            .build();
        let ctx = SessionContext::new_with_state(state);
        for table in Table::ALL {
            ctx.register_table(
                table.name(),
                Arc::new(StoreTable::new(table, ingest.clone())),
            )?;
        }
        Ok(QueryEngine {
            ctx,
            config: Arc::new(config),
            ingest,
            labels: Default::default(),
            metric_lists: Default::default(),
        })
    }

    /// The engine's limits.
    pub fn config(&self) -> &QueryConfig {
        &self.config
    }

    /// The ingest pipeline whose data this engine reads.
    pub fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    /// Labels of stored series ids PromQL has read, for later queries.
    pub fn label_cache(&self) -> &LabelCache {
        &self.labels
    }

    /// The metrics each stored file holds, for PromQL's metric catalog.
    pub fn metric_lists(&self) -> &MetricLists {
        &self.metric_lists
    }

    /// The DataFusion session (for callers that build plans themselves).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Plans `sql`, refusing anything but queries (no DDL, DML, `SET` or
    /// `COPY`).
    pub async fn plan_sql(&self, sql: &str) -> Result<DataFrame, QueryError> {
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        Ok(self.ctx.sql_with_options(sql, options).await?)
    }

    /// Runs `sql` under the timeout and row cap; returns the schema and rows.
    pub async fn sql(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        let df = self.plan_sql(sql).await?;
        self.collect(df).await
    }

    /// Runs a planned query under the timeout and row cap.
    pub async fn collect(
        &self,
        df: DataFrame,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), QueryError> {
        let schema = views::plain_schema(df.schema().as_arrow());
        let max = self.config.max_rows;
        let run = async {
            let mut stream = df.execute_stream().await?;
            let mut out = Vec::new();
            let mut rows = 0;
            while let Some(batch) = stream.try_next().await? {
                rows += batch.num_rows();
                if rows > max {
                    return Err(QueryError::TooManyRows(max));
                }
                out.push(plain_strings(&batch, &schema)?);
            }
            Ok::<_, QueryError>(out)
        };
        let batches = self.with_timeout(run).await?;
        Ok((schema, batches))
    }

    /// Runs `df`, handing each batch to `f`, the whole scan under the query
    /// timeout.
    pub async fn for_each_batch(
        &self,
        df: DataFrame,
        mut f: impl FnMut(&RecordBatch) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        self.with_timeout(async {
            let mut stream = df.execute_stream().await?;
            let schema = views::plain_schema(&stream.schema());
            while let Some(batch) = stream.try_next().await? {
                f(&plain_strings(&batch, &schema)?)?;
            }
            Ok(())
        })
        .await
    }

    /// Calls `f` with each batch of `columns` of `table` that `scan` reads,
    /// the whole scan under the query timeout.
    pub async fn for_each_store_batch(
        &self,
        table: Table,
        columns: &[&str],
        scan: StoreScan<'_>,
        mut f: impl FnMut(&RecordBatch) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        let provider = self.context().table_provider(table.name()).await?;
        let store = provider
            .downcast_ref::<StoreTable>()
            .ok_or_else(|| QueryError::Execution(format!("{table} is not a store table")))?;
        let schema = provider.schema();
        let projection = columns
            .iter()
            .map(|c| schema.index_of(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| QueryError::Execution(e.to_string()))?;
        let state = self.context().state();
        let plan = match scan {
            StoreScan::Pruned(filters) => store.scan_pruned(&state, Some(&projection), filters)?,
            StoreScan::Files(files, filters) => {
                store.scan_files(&state, files, Some(&projection), filters)?
            }
        };
        self.drain_plan(plan, &mut f).await
    }

    /// Runs `plan` under the query timeout, handing each batch to `f`.
    async fn drain_plan(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        f: &mut impl FnMut(&RecordBatch) -> Result<(), QueryError>,
    ) -> Result<(), QueryError> {
        self.with_timeout(async {
            let mut stream =
                datafusion::physical_plan::execute_stream(plan, self.context().task_ctx())?;
            let schema = views::plain_schema(&stream.schema());
            while let Some(batch) = stream.try_next().await? {
                f(&plain_strings(&batch, &schema)?)?;
            }
            Ok(())
        })
        .await
    }

    /// Runs `fut` under the query timeout.
    pub async fn with_timeout<T>(
        &self,
        fut: impl Future<Output = Result<T, QueryError>>,
    ) -> Result<T, QueryError> {
        match tokio::time::timeout(self.config.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(QueryError::Timeout(self.config.timeout)),
        }
    }
}

/// `b` in `plain` (its schema from [`views::plain_schema`]).
fn plain_strings(b: &RecordBatch, plain: &SchemaRef) -> Result<RecordBatch, QueryError> {
    if b.schema().fields() == plain.fields() {
        return Ok(b.clone());
    }
    views::conform(b.columns(), plain, b.num_rows())
        .map_err(|e| QueryError::Execution(e.to_string()))
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        QueryError::from_datafusion(e)
    }
}
