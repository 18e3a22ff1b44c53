//! OTLP → Arrow: turns decoded export requests into one record batch per
//! table. Runs after the acknowledgement, off the request path.

mod columns;
mod logs;
mod metrics;
mod traces;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;

pub use columns::{any_value_fields, attributes_type, timestamp_type};
pub use logs::LogsBuilder;
pub use metrics::MetricsBuilder;
pub use traces::SpansBuilder;

use crate::otlp::Payload;
use crate::schema::Table;

/// Converts one request into record batches, one per table that has rows.
///
/// `received_at` (unix nanoseconds) stands in for log records that carry no
/// time at all.
pub fn convert(payload: &Payload, received_at: u64) -> Vec<(Table, RecordBatch)> {
    let out = match payload {
        Payload::Traces(req) => {
            let mut b = SpansBuilder::default();
            b.append_request(req);
            vec![(Table::Spans, b.finish())]
        }
        Payload::Logs(req) => {
            let mut b = LogsBuilder::default();
            b.append_request(req, received_at);
            vec![(Table::Logs, b.finish())]
        }
        Payload::Metrics(req) => {
            let mut b = MetricsBuilder::default();
            b.append_request(req);
            b.finish()
        }
    };
    out.into_iter().filter(|(_, b)| b.num_rows() > 0).collect()
}

/// An empty batch with the table's schema.
pub fn empty_batch(table: Table) -> RecordBatch {
    match table {
        Table::Spans => SpansBuilder::default().finish(),
        Table::Logs => LogsBuilder::default().finish(),
        t => MetricsBuilder::empty(t),
    }
}

/// Assembles a batch; the builders guarantee equal lengths and matching types,
/// so a failure here is a programming error.
fn batch_from_columns(cols: Vec<columns::Column>) -> RecordBatch {
    let (fields, arrays): (Vec<_>, Vec<_>) = cols.into_iter().unzip();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .expect("column builders produce consistent batches")
}
