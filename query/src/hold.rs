//! Keeps the files a scan reads from being deleted until its streams end.
//!
//! Compaction and retention retire files from the manifest but delete them
//! only when no one holds their [`DataFile`] any more; this plan node holds
//! them for as long as the plan or any of its output streams lives.

use std::fmt;
use std::sync::Arc;

use collector::storage::DataFile;
use datafusion::common::Result;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

/// Passes its input through, holding `files`.
#[derive(Debug)]
pub struct HoldFiles {
    input: Arc<dyn ExecutionPlan>,
    files: Arc<Vec<Arc<DataFile>>>,
}

impl HoldFiles {
    /// Wraps `input`, which reads `files`.
    pub fn new(input: Arc<dyn ExecutionPlan>, files: Vec<Arc<DataFile>>) -> Self {
        HoldFiles {
            input,
            files: Arc::new(files),
        }
    }
}

impl DisplayAs for HoldFiles {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HoldFiles: files={}", self.files.len())
    }
}

impl ExecutionPlan for HoldFiles {
    fn name(&self) -> &str {
        "HoldFiles"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(HoldFiles {
            input: children[0].clone(),
            files: self.files.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let stream = self.input.execute(partition, context)?;
        let files = self.files.clone();
        let schema = stream.schema();
        let held = stream.map(move |batch| {
            let _ = &files;
            batch
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, held)))
    }
}
