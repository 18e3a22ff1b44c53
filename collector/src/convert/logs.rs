//! OTLP log records → the `logs` table.

use std::sync::Arc;

use arrow::array::{
    Int32Builder, RecordBatch, StringBuilder, TimestampNanosecondBuilder, UInt32Builder,
};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

use super::columns::{
    AnyValueBuilder, AttributesBuilder, Column, ColumnsExt, Context, ContextBuilder, IdBuilder,
    append_opt_str, append_time, timestamp_builder,
};

/// Builds the `logs` table.
pub struct LogsBuilder {
    time: TimestampNanosecondBuilder,
    observed_time: TimestampNanosecondBuilder,
    severity_number: Int32Builder,
    severity_text: StringBuilder,
    body: AnyValueBuilder,
    context: ContextBuilder,
    attributes: AttributesBuilder,
    dropped_attributes: UInt32Builder,
    flags: UInt32Builder,
    trace_id: IdBuilder,
    span_id: IdBuilder,
    event_name: StringBuilder,
}

impl Default for LogsBuilder {
    fn default() -> Self {
        Self {
            time: timestamp_builder(),
            observed_time: timestamp_builder(),
            severity_number: Int32Builder::with_capacity(0),
            severity_text: StringBuilder::with_capacity(0, 0),
            body: AnyValueBuilder::default(),
            context: ContextBuilder::default(),
            attributes: AttributesBuilder::default(),
            dropped_attributes: UInt32Builder::with_capacity(0),
            flags: UInt32Builder::with_capacity(0),
            trace_id: IdBuilder::new(16),
            span_id: IdBuilder::new(8),
            event_name: StringBuilder::with_capacity(0, 0),
        }
    }
}

impl LogsBuilder {
    /// Appends every log record of a request. A record without `time_unix_nano`
    /// gets its observed time (or `received_at` when that is missing too) in
    /// `time`, as the OTLP data model recommends; `observed_time` keeps the
    /// original value so nothing is lost.
    pub fn append_request(&mut self, req: &ExportLogsServiceRequest, received_at: u64) {
        for rl in &req.resource_logs {
            for sl in &rl.scope_logs {
                let ctx = Context {
                    resource: rl.resource.as_ref(),
                    resource_schema_url: &rl.schema_url,
                    scope: sl.scope.as_ref(),
                    scope_schema_url: &sl.schema_url,
                };
                for rec in &sl.log_records {
                    self.context.append(&ctx);
                    let time = [rec.time_unix_nano, rec.observed_time_unix_nano, received_at]
                        .into_iter()
                        .find(|t| *t != 0)
                        .unwrap_or(0);
                    append_time(&mut self.time, time);
                    append_time(&mut self.observed_time, rec.observed_time_unix_nano);
                    self.severity_number.append_value(rec.severity_number);
                    append_opt_str(&mut self.severity_text, &rec.severity_text);
                    self.body.append_any(rec.body.as_ref());
                    self.attributes.append(&rec.attributes);
                    self.dropped_attributes
                        .append_value(rec.dropped_attributes_count);
                    self.flags.append_value(rec.flags);
                    self.trace_id.append(&rec.trace_id);
                    self.span_id.append(&rec.span_id);
                    append_opt_str(&mut self.event_name, &rec.event_name);
                }
            }
        }
    }

    /// Finishes the record batch.
    pub fn finish(&mut self) -> RecordBatch {
        let mut cols: Vec<Column> = Vec::new();
        cols.add("time", true, Arc::new(self.time.finish()));
        cols.add("observed_time", true, Arc::new(self.observed_time.finish()));
        self.context.finish_promoted(&mut cols);
        cols.add(
            "severity_number",
            false,
            Arc::new(self.severity_number.finish()),
        );
        cols.add("severity_text", true, Arc::new(self.severity_text.finish()));
        cols.add("body", true, Arc::new(self.body.finish()));
        cols.add("attributes", false, Arc::new(self.attributes.finish()));
        cols.add(
            "dropped_attributes_count",
            false,
            Arc::new(self.dropped_attributes.finish()),
        );
        cols.add("flags", false, Arc::new(self.flags.finish()));
        cols.add("trace_id", true, self.trace_id.finish());
        cols.add("span_id", true, self.span_id.finish());
        cols.add("event_name", true, Arc::new(self.event_name.finish()));
        self.context.finish_rest(&mut cols);
        super::batch_from_columns(cols)
    }
}
