//! The partial aggregation that groups rows by string view columns.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::buffer::NullBuffer;
use arrow::compute::filter_record_batch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion::physical_plan::aggregates::{AggregateExec, aggregate_expressions, evaluate_many};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

use super::keys::GroupKeys;
use super::percentile::DigestGroups;

/// A partial [`AggregateExec`] keyed by `Utf8View` columns, computing the
/// same output with [`GroupKeys`] group ids and DataFusion's own groups
/// accumulators.
///
/// Build it with [`super::GroupByViews`], which checks that the aggregate
/// qualifies.
#[derive(Debug)]
pub struct ViewGroupedAggregateExec {
    aggregate: Arc<AggregateExec>,
    max_groups: usize,
    /// Positions of grouping keys whose null rows are skipped (a folded
    /// `WHERE key IS NOT NULL`).
    non_null_keys: Vec<usize>,
    metrics: ExecutionPlanMetricsSet,
}

impl ViewGroupedAggregateExec {
    /// Runs `aggregate` (partial, `Utf8View` keys, groups accumulators),
    /// emitting groups early once `max_groups` are held.
    pub(super) fn new(aggregate: Arc<AggregateExec>, max_groups: usize) -> Self {
        ViewGroupedAggregateExec {
            aggregate,
            max_groups,
            non_null_keys: Vec::new(),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// Also skips the rows where any of the grouping keys at `keys`
    /// (positions in the `GROUP BY`) is null, as a `WHERE key IS NOT NULL`
    /// below would.
    pub(super) fn skipping_null_keys(mut self, keys: Vec<usize>) -> Self {
        self.non_null_keys = keys;
        self
    }
}

impl DisplayAs for ViewGroupedAggregateExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let aggregate = &self.aggregate;
        let keys: Vec<&str> = aggregate
            .group_expr()
            .expr()
            .iter()
            .map(|(_, n)| n.as_str())
            .collect();
        let aggregates: Vec<&str> = aggregate.aggr_expr().iter().map(|a| a.name()).collect();
        write!(
            f,
            "ViewGroupedAggregateExec: gby=[{}], aggr=[{}]",
            keys.join(", "),
            aggregates.join(", ")
        )?;
        if !self.non_null_keys.is_empty() {
            let skipped: Vec<&str> = self.non_null_keys.iter().map(|k| keys[*k]).collect();
            write!(f, ", skip nulls of [{}]", skipped.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for ViewGroupedAggregateExec {
    fn name(&self) -> &str {
        "ViewGroupedAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.aggregate.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.aggregate.input()]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.aggregate.apply_expressions(f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Ok([input]) = <[_; 1]>::try_from(children) else {
            return internal_err!("ViewGroupedAggregateExec takes one input");
        };
        let old = &self.aggregate;
        let aggregate = AggregateExec::try_new(
            *old.mode(),
            old.group_expr().clone(),
            old.aggr_expr().to_vec(),
            old.filter_expr().to_vec(),
            input,
            old.input_schema(),
        )?;
        let exec = ViewGroupedAggregateExec::new(Arc::new(aggregate), self.max_groups);
        Ok(Arc::new(
            exec.skipping_null_keys(self.non_null_keys.clone()),
        ))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.aggregate.input().execute(partition, context.clone())?;
        let reservation = MemoryConsumer::new(format!("ViewGroupedAggregate[{partition}]"))
            .register(context.memory_pool());
        let arguments =
            aggregate_expressions(self.aggregate.aggr_expr(), self.aggregate.mode(), 0)?;
        let grouping = Grouping {
            input,
            plan: self.aggregate.clone(),
            arguments,
            keys: GroupKeys::new(self.aggregate.group_expr().expr().len()),
            non_null_keys: self.non_null_keys.clone(),
            accumulators: accumulators(&self.aggregate)?,
            ids: Vec::new(),
            max_groups: self.max_groups,
            reservation,
            metrics: BaselineMetrics::new(&self.metrics, partition),
            batch_size: context.session_config().batch_size(),
            pending: VecDeque::new(),
            input_done: false,
        };
        let schema = self.schema();
        let stream = futures::stream::try_unfold(grouping, Grouping::next);
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// One groups accumulator per aggregate, as DataFusion's own hash
/// aggregation makes them: the function's, or an adapter over its plain
/// accumulators; but [`DigestGroups`] for `approx_percentile_cont`, whose
/// adapter spent most of its time re-merging t-digests.
fn accumulators(aggregate: &AggregateExec) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
    aggregate
        .aggr_expr()
        .iter()
        .map(|a| match a.groups_accumulator_supported() {
            true => a.create_groups_accumulator(),
            false if let Some(digests) = DigestGroups::for_aggregate(a) => {
                Ok(Box::new(digests) as Box<dyn GroupsAccumulator>)
            }
            false => {
                let a = a.clone();
                let adapter = GroupsAccumulatorAdapter::new(move || a.create_accumulator());
                Ok(Box::new(adapter) as Box<dyn GroupsAccumulator>)
            }
        })
        .collect()
}

/// One partition's aggregation state.
struct Grouping {
    input: SendableRecordBatchStream,
    plan: Arc<AggregateExec>,
    /// Each aggregate's argument expressions, planned once.
    arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    keys: GroupKeys,
    non_null_keys: Vec<usize>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    ids: Vec<usize>,
    max_groups: usize,
    reservation: MemoryReservation,
    metrics: BaselineMetrics,
    batch_size: usize,
    pending: VecDeque<RecordBatch>,
    input_done: bool,
}

impl Grouping {
    async fn next(mut self) -> Result<Option<(RecordBatch, Grouping)>> {
        loop {
            if let Some(batch) = self.pending.pop_front() {
                self.metrics.record_output(batch.num_rows());
                return Ok(Some((batch, self)));
            }
            if self.input_done {
                self.metrics.done();
                return Ok(None);
            }
            match self.input.next().await {
                Some(batch) => self.aggregate(&batch?)?,
                None => {
                    self.input_done = true;
                    self.emit()?;
                }
            }
        }
    }

    /// Adds `batch`'s rows; emits the groups held when the memory pool
    /// refuses more or there are too many (partial results may repeat a
    /// group: the final aggregation merges them).
    fn aggregate(&mut self, batch: &RecordBatch) -> Result<()> {
        let timer = self.metrics.elapsed_compute().timer();
        let kept;
        let batch = match self.rows_with_keys(batch)? {
            Some(mask) => {
                kept = filter_record_batch(batch, &mask)?;
                &kept
            }
            None => batch,
        };
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let keys = self.keys_of(batch)?;
        let Some(keys) = keys
            .iter()
            .map(|k| k.as_string_view_opt())
            .collect::<Option<Vec<_>>>()
        else {
            return internal_err!("ViewGroupedAggregateExec: a group key is not a string view");
        };
        self.keys.intern(&keys, &mut self.ids);
        let groups = self.keys.len();
        let values = evaluate_many(&self.arguments, batch)?;
        for ((accumulator, values), filter) in self
            .accumulators
            .iter_mut()
            .zip(&values)
            .zip(self.plan.filter_expr())
        {
            let filter = filter
                .as_ref()
                .map(|f| f.evaluate(batch).and_then(|v| v.into_array(rows)))
                .transpose()?;
            let filter = filter.as_ref().map(|f| f.as_boolean());
            accumulator.update_batch(values, &self.ids, filter, groups)?;
        }
        timer.done();
        if groups >= self.max_groups || self.reservation.try_resize(self.size()).is_err() {
            self.emit()?;
        }
        Ok(())
    }

    fn keys_of(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        let rows = batch.num_rows();
        self.plan
            .group_expr()
            .expr()
            .iter()
            .map(|(key, _)| key.evaluate(batch).and_then(|k| k.into_array(rows)))
            .collect()
    }

    /// The rows to keep when some keys must not be null and some are:
    /// `None` when every row stays.
    fn rows_with_keys(&self, batch: &RecordBatch) -> Result<Option<BooleanArray>> {
        if self.non_null_keys.is_empty() {
            return Ok(None);
        }
        // Only the keys that must not be null: the others may be computed.
        let group_by = self.plan.group_expr().expr();
        let mut valid: Option<NullBuffer> = None;
        for k in &self.non_null_keys {
            let key = group_by[*k]
                .0
                .evaluate(batch)?
                .into_array(batch.num_rows())?;
            valid = NullBuffer::union(valid.as_ref(), key.logical_nulls().as_ref());
        }
        Ok(valid
            .filter(|v| v.null_count() > 0)
            .map(|v| BooleanArray::new(v.into_inner(), None)))
    }

    fn size(&self) -> usize {
        self.keys.size() + self.accumulators.iter().map(|a| a.size()).sum::<usize>()
    }

    /// Queues the groups held as output batches and starts over empty.
    fn emit(&mut self) -> Result<()> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let _timer = self.metrics.elapsed_compute().timer();
        let mut columns = self.keys.emit();
        for accumulator in &mut self.accumulators {
            columns.extend(accumulator.state(EmitTo::All)?);
        }
        self.accumulators = accumulators(&self.plan)?;
        let batch = RecordBatch::try_new(self.plan.schema(), columns)?;
        let mut offset = 0;
        while offset < batch.num_rows() {
            let len = self.batch_size.min(batch.num_rows() - offset);
            self.pending.push_back(batch.slice(offset, len));
            offset += len;
        }
        // Shrinking cannot fail.
        let _ = self.reservation.try_resize(self.size());
        Ok(())
    }
}
