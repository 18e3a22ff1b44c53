//! OTLP log records → the `logs` table.

use std::sync::Arc;

use arrow::array::{
    Int32Builder, RecordBatch, StringBuilder, TimestampNanosecondBuilder, UInt32Builder,
};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

use super::Appended;
use super::columns::{
    AnyValueBuilder, AttributesBuilder, Column, ColumnsExt, Context, ContextBuilder, IdBuilder,
    append_opt_str, append_time, timestamp_builder,
};
use super::context_wire::{KvView, for_each_group};
use super::logs_wire::{LogView, read_log};
use super::wire::Unusual;

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

    /// Appends every log record of an encoded `ExportLogsServiceRequest`,
    /// read straight from its bytes (see `convert::wire`). A record with no
    /// time at all is appended with a null `time` and marks the result
    /// `invalid`: it needs `append_request` and the time of receipt. On
    /// `Err` the builder may hold part of the request and must be dropped.
    pub fn append_encoded(&mut self, body: &[u8]) -> Result<Appended, Unusual> {
        let mut attrs = Vec::new();
        let mut out = Appended::default();
        out.context_bytes = for_each_group(body, |group, records| {
            self.context.start_group(group);
            for rec in records {
                let v = read_log(rec, &mut attrs)?;
                out.invalid |= !v.storable();
                self.append_log(&v, &attrs);
                out.items += 1;
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Builds the batch of an encoded request when every record can be
    /// stored as read and its context expands to at most `max_context`
    /// bytes; `None` when it needs prost's decoding.
    pub fn decode_valid(body: &[u8], max_context: u64) -> Option<(RecordBatch, Appended)> {
        let mut b = LogsBuilder::default();
        match b.append_encoded(body) {
            Ok(a) if !a.invalid && a.context_bytes <= max_context => Some((b.finish(), a)),
            _ => None,
        }
    }

    fn append_log(&mut self, v: &LogView<'_>, attrs: &[KvView<'_>]) {
        self.context.push_row();
        let time = if v.time != 0 { v.time } else { v.observed_time };
        append_time(&mut self.time, time);
        append_time(&mut self.observed_time, v.observed_time);
        self.severity_number.append_value(v.severity_number);
        append_opt_str(&mut self.severity_text, v.severity_text);
        self.body.append(v.body);
        self.attributes.append(attrs);
        self.dropped_attributes.append_value(v.dropped_attributes);
        self.flags.append_value(v.flags);
        self.trace_id.append(v.trace_id);
        self.span_id.append(v.span_id);
        append_opt_str(&mut self.event_name, v.event_name);
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
