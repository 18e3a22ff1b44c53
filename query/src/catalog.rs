//! The DataFusion tables: each one unions the rows still in the ingest
//! buffer with the Parquet files of the manifest, so data is queryable as
//! soon as it is acknowledged.
//!
//! Scans prune in two steps: hour partitions from predicates on the table's
//! time column (here), then row groups, pages and the trace-id bloom filter
//! (DataFusion's Parquet source, from the same predicates).

use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use async_trait::async_trait;
use collector::Ingest;
use collector::schema::Table;
use collector::storage::DataFile;
use collector::storage::layout::Partition;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{DFSchema, Result as DfResult, ScalarValue};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;

use crate::hold::HoldFiles;
use crate::indexed_reader::IndexedReaderFactory;
use crate::{text, views};

/// The URL the store is registered under in DataFusion's runtime.
pub const STORE_URL: &str = "sightline://store/";

/// One Sightline table as DataFusion sees it.
pub struct StoreTable {
    table: Table,
    ingest: Ingest,
    /// As scanned: stored types, with strings as views ([`views::scan_type`]).
    scanned: SchemaRef,
    /// As queried: typed attribute values shown as text.
    shown: SchemaRef,
}

impl fmt::Debug for StoreTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreTable")
            .field("table", &self.table)
            .finish()
    }
}

impl StoreTable {
    /// The table `table` of `ingest`'s store.
    pub fn new(table: Table, ingest: Ingest) -> Self {
        let retyped = |f: &FieldRef, to: fn(&DataType) -> DataType| {
            f.as_ref().clone().with_data_type(to(f.data_type()))
        };
        let raw = table.schema();
        let scanned: Vec<Field> = raw
            .fields()
            .iter()
            .map(|f| retyped(f, views::scan_type))
            .collect();
        let shown: Vec<Field> = raw
            .fields()
            .iter()
            .map(|f| retyped(f, |dt| text::text_type(&views::scan_type(dt))))
            .collect();
        StoreTable {
            table,
            ingest,
            scanned: Arc::new(Schema::new(scanned)),
            shown: Arc::new(Schema::new(shown)),
        }
    }

    /// The `projection` of buffered rows, strings as views like scanned
    /// files (only the projected columns are converted), and its schema.
    fn as_scanned(
        &self,
        batches: Vec<RecordBatch>,
        projection: Option<&Vec<usize>>,
    ) -> DfResult<(Vec<RecordBatch>, SchemaRef)> {
        let indices: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.scanned.fields().len()).collect(),
        };
        let schema = Arc::new(self.scanned.project(&indices)?);
        let batches = batches
            .iter()
            .map(|b| {
                let columns = indices.iter().map(|i| b.column(*i));
                views::conform(columns, &schema, b.num_rows())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((batches, schema))
    }

    /// Whether the column at `i` is shown converted (so filters on it cannot
    /// go to the Parquet reader).
    fn converted(&self, i: usize) -> bool {
        self.scanned.field(i).data_type() != self.shown.field(i).data_type()
    }

    fn parquet_exec(
        &self,
        state: &dyn Session,
        files: &[Arc<DataFile>],
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        rows: RowFiltering,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let pushable: Vec<Expr> = filters
            .iter()
            .filter(|f| self.parquet_can_evaluate(f))
            .cloned()
            .collect();
        // Filtering rows while decoding pays off for selective filters
        // (`trace_id = …`, `service_name = …`, metric names): the other
        // columns are decoded only for matching rows. For the rest
        // (`http_route IS NOT NULL`, wide time ranges) it decodes the
        // filter's columns twice: 7× slower on the SQL bench.
        let row_filter = rows == RowFiltering::Exact && pushable.iter().any(is_selective);
        // The page index prunes pages only for predicates that bound a
        // column's values (equality, IN, ranges); loading it for every
        // column was most of opening a file, so `IS NOT NULL` and friends
        // (which keep most pages) go without it.
        let page_index = pushable.iter().any(bounds_values);
        // Footers, with their page index once a scan wanted it, are cached
        // in the runtime: files never change.
        let runtime = state.runtime_env();
        let store = runtime.object_store(ObjectStoreUrl::parse(STORE_URL)?)?;
        let readers = IndexedReaderFactory::new(
            store,
            runtime.cache_manager.get_file_metadata_cache(),
            page_index,
        );
        let mut source = ParquetSource::new(self.scanned.clone())
            .with_parquet_file_reader_factory(Arc::new(readers))
            .with_enable_page_index(page_index)
            .with_bloom_filter_on_read(true)
            .with_pushdown_filters(row_filter);
        if let Some(pred) = conjunction(pushable) {
            let df_schema = DFSchema::try_from(self.scanned.as_ref().clone())?;
            source = source.with_predicate(state.create_physical_expr(pred, &df_schema)?);
        }
        let groups = file_groups(files, state.config().target_partitions());
        let config =
            FileScanConfigBuilder::new(ObjectStoreUrl::parse(STORE_URL)?, Arc::new(source))
                .with_file_groups(groups)
                .with_projection_indices(projection.cloned())?
                .build();
        Ok(DataSourceExec::from_data_source(config))
    }

    fn parquet_can_evaluate(&self, e: &Expr) -> bool {
        e.column_refs().iter().all(|c| {
            self.scanned
                .index_of(c.name())
                .is_ok_and(|i| !self.converted(i))
        })
    }

    /// Shows typed columns as text on top of `input` (whose columns are the
    /// raw columns selected by `projection`).
    fn show(
        &self,
        input: Arc<dyn ExecutionPlan>,
        projection: Option<&Vec<usize>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let indices: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.scanned.fields().len()).collect(),
        };
        if !indices.iter().any(|i| self.converted(*i)) {
            return Ok(input);
        }
        let exprs = indices.iter().enumerate().map(|(pos, i)| {
            let name = self.scanned.field(*i).name().clone();
            let col = Arc::new(datafusion::physical_expr::expressions::Column::new(
                &name, pos,
            ));
            let expr: Arc<dyn datafusion::physical_expr::PhysicalExpr> = if self.converted(*i) {
                Arc::new(text::TextExpr::new(
                    col,
                    self.shown.field(*i).data_type().clone(),
                ))
            } else {
                col
            };
            (expr, name)
        });
        Ok(Arc::new(ProjectionExec::try_new(exprs, input)?))
    }
}

/// Whether `e` keeps few rows: an equality or `IN` list on a column, or
/// a conjunction holding one.
fn is_selective(e: &Expr) -> bool {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => matches!(
            (left.as_ref(), right.as_ref()),
            (Expr::Column(_), Expr::Literal(..)) | (Expr::Literal(..), Expr::Column(_))
        ),
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => is_selective(left) || is_selective(right),
        Expr::InList(list) => !list.negated && matches!(list.expr.as_ref(), Expr::Column(_)),
        _ => false,
    }
}

/// Whether `e` bounds a column's values (so page min/max can rule pages
/// out): a selective filter, a comparison with a literal or a `BETWEEN`,
/// or a conjunction holding one.
fn bounds_values(e: &Expr) -> bool {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And => bounds_values(left) || bounds_values(right),
            Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => matches!(
                (left.as_ref(), right.as_ref()),
                (Expr::Column(_), Expr::Literal(..)) | (Expr::Literal(..), Expr::Column(_))
            ),
            _ => is_selective(e),
        },
        Expr::Between(b) => !b.negated && matches!(b.expr.as_ref(), Expr::Column(_)),
        _ => is_selective(e),
    }
}

/// Spreads files over `n` groups of similar total size.
fn file_groups(files: &[Arc<DataFile>], n: usize) -> Vec<FileGroup> {
    let n = n.max(1).min(files.len().max(1));
    let mut sorted: Vec<&Arc<DataFile>> = files.iter().collect();
    sorted.sort_by_key(|f| std::cmp::Reverse(f.meta.size));
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> = (0..n).map(|_| (0, Vec::new())).collect();
    for f in sorted {
        let g = groups.iter_mut().min_by_key(|g| g.0).expect("n >= 1");
        g.0 += f.meta.size;
        g.1.push(PartitionedFile::from(f.meta.clone()));
    }
    groups
        .into_iter()
        .filter(|g| !g.1.is_empty())
        .map(|g| FileGroup::new(g.1))
        .collect()
}

#[async_trait]
impl TableProvider for StoreTable {
    fn schema(&self) -> SchemaRef {
        self.shown.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        // Pruning is by statistics, so every filter is applied again above.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.scan_rows(state, projection, filters, limit, RowFiltering::Exact)
    }
}

/// How far a scan applies its filters to rows inside the files it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowFiltering {
    /// Row by row, while decoding (the rows are still filtered again above
    /// the scan).
    Exact,
    /// Only to skip partitions, row groups and pages: the caller checks the
    /// rows itself, and no column is decoded just to evaluate a filter.
    Pruning,
}

impl StoreTable {
    /// The rows of the partitions, row groups and pages `filters` cannot
    /// rule out, buffered rows included, and none filtered row by row:
    /// for readers that check each row anyway (PromQL loading its points).
    pub fn scan_pruned(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.scan_rows(state, projection, filters, None, RowFiltering::Pruning)
    }

    /// The rows of `files` only (no buffered rows) that `filters` select:
    /// for work that follows the files themselves, such as reading a new
    /// file's series labels ahead of queries.
    pub fn scan_files(
        &self,
        state: &dyn Session,
        files: Vec<Arc<DataFile>>,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let scan = self.parquet_exec(state, &files, projection, filters, RowFiltering::Exact)?;
        self.show(Arc::new(HoldFiles::new(scan, files)), projection)
    }

    fn scan_rows(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
        rows: RowFiltering,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let (files, batches) = self.ingest.view(self.table);
        let range = TimeRange::from_filters(self.table.time_column(), filters);
        let files: Vec<Arc<DataFile>> = files
            .into_iter()
            .filter(|f| range.overlaps_hour(f.partition))
            .collect();
        let mut inputs: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !files.is_empty() {
            let scan = self.parquet_exec(state, &files, projection, filters, rows)?;
            inputs.push(Arc::new(HoldFiles::new(scan, files)));
        }
        if !batches.is_empty() || inputs.is_empty() {
            let (batches, schema) = self.as_scanned(batches, projection)?;
            let mem = MemorySourceConfig::try_new(&[batches], schema, None)?
                // A limit is only safe when no filter runs above the scan.
                .with_limit(limit.filter(|_| filters.is_empty()));
            inputs.push(DataSourceExec::from_data_source(mem));
        }
        let plan = UnionExec::try_new(inputs)?;
        self.show(plan, projection)
    }
}

/// Bounds on a table's time column implied by a query's filters
/// (nanoseconds, inclusive).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeRange {
    /// Lowest time a row can have.
    pub min: i64,
    /// Highest time a row can have.
    pub max: i64,
}

impl TimeRange {
    /// Every time.
    pub const ALL: TimeRange = TimeRange {
        min: i64::MIN,
        max: i64::MAX,
    };

    /// The bounds `filters` (ANDed) put on `column`.
    pub fn from_filters(column: &str, filters: &[Expr]) -> TimeRange {
        let mut r = TimeRange::ALL;
        for f in filters {
            r.narrow(column, f);
        }
        r
    }

    fn narrow(&mut self, column: &str, e: &Expr) {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if *op == Operator::And {
                    self.narrow(column, left);
                    self.narrow(column, right);
                    return;
                }
                let (op, lit) = match (left.as_ref(), right.as_ref()) {
                    (Expr::Column(c), Expr::Literal(v, _)) if c.name == column => (*op, v),
                    (Expr::Literal(v, _), Expr::Column(c)) if c.name == column => match op.swap() {
                        Some(op) => (op, v),
                        None => return,
                    },
                    _ => return,
                };
                let Some(t) = nanos(lit) else { return };
                match op {
                    Operator::Gt | Operator::GtEq => self.min = self.min.max(t),
                    Operator::Lt | Operator::LtEq => self.max = self.max.min(t),
                    Operator::Eq => {
                        self.min = self.min.max(t);
                        self.max = self.max.min(t);
                    }
                    _ => {}
                }
            }
            Expr::Between(b) if !b.negated => {
                if let (Expr::Column(c), Expr::Literal(lo, _), Expr::Literal(hi, _)) =
                    (b.expr.as_ref(), b.low.as_ref(), b.high.as_ref())
                    && c.name == column
                {
                    if let Some(lo) = nanos(lo) {
                        self.min = self.min.max(lo);
                    }
                    if let Some(hi) = nanos(hi) {
                        self.max = self.max.min(hi);
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether any time of hour partition `p` is in the range.
    pub fn overlaps_hour(&self, p: Partition) -> bool {
        let start = p.0.saturating_mul(collector::storage::layout::HOUR_NANOS);
        let end = start.saturating_add(collector::storage::layout::HOUR_NANOS - 1);
        start <= self.max && end >= self.min
    }
}

fn nanos(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampNanosecond(Some(t), _) => Some(*t),
        ScalarValue::TimestampMicrosecond(Some(t), _) => t.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(t), _) => t.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(t), _) => t.checked_mul(1_000_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    #[test]
    fn only_selective_filters_run_while_decoding() {
        assert!(is_selective(&col("trace_id").eq(lit("ab"))));
        assert!(is_selective(&lit(1).eq(col("status_code"))));
        assert!(is_selective(
            &col("time")
                .gt(lit(5))
                .and(col("metric_name").in_list(vec![lit("up")], false))
        ));
        assert!(!is_selective(&col("http_route").is_not_null()));
        assert!(!is_selective(&col("time").gt(lit(5))));
        assert!(!is_selective(&col("name").in_list(vec![lit("x")], true)));
        assert!(!is_selective(&col("a").eq(col("b"))));
    }

    #[test]
    fn the_page_index_is_read_only_for_filters_that_bound_values() {
        assert!(bounds_values(&col("trace_id").eq(lit("ab"))));
        assert!(bounds_values(&col("time").gt_eq(lit(5))));
        assert!(bounds_values(&lit(5).lt(col("time"))));
        assert!(bounds_values(&col("time").between(lit(1), lit(2))));
        assert!(bounds_values(
            &col("http_route").is_not_null().and(col("time").lt(lit(9)))
        ));
        assert!(!bounds_values(&col("http_route").is_not_null()));
        assert!(!bounds_values(&col("time").not_between(lit(1), lit(2))));
        assert!(!bounds_values(&col("a").lt(col("b"))));
    }

    fn ts(ns: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(
            Some(ns),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn time_predicates_bound_the_partitions_read() {
        let hour = collector::storage::layout::HOUR_NANOS;
        let f = col("time")
            .gt_eq(ts(10 * hour + 5))
            .and(col("time").lt(ts(12 * hour)));
        let r = TimeRange::from_filters("time", &[f, col("metric_name").eq(lit("x"))]);
        assert_eq!(
            r,
            TimeRange {
                min: 10 * hour + 5,
                max: 12 * hour
            }
        );
        assert!(!r.overlaps_hour(Partition(9)));
        assert!(r.overlaps_hour(Partition(10)));
        assert!(r.overlaps_hour(Partition(12)));
        assert!(!r.overlaps_hour(Partition(13)));
        let other = TimeRange::from_filters("start_time", &[col("time").gt(ts(0))]);
        assert_eq!(other, TimeRange::ALL);
    }
}
