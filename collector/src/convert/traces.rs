//! OTLP spans → the `spans` table, read straight from the encoded request
//! (`spans_wire` reads the messages, this module appends them).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampNanosecondBuilder,
    UInt32Builder,
};
use arrow::datatypes::DataType;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::Appended;
use super::columns::{
    AttributesBuilder, Column, ColumnsExt, ContextBuilder, IdBuilder, PromotedBuilder,
    append_opt_str, append_time, attributes_type, field, list_of_structs, nanos_i64,
    timestamp_builder, timestamp_type,
};
use super::context_wire::{KvView, for_each_group};
use super::spans_wire::{EventView, LinkView, Scratch, SpanView};
use super::wire::Unusual;
use crate::schema::PROMOTED_SPAN_KEYS;

/// Builds the `spans` table.
pub struct SpansBuilder {
    start_time: TimestampNanosecondBuilder,
    duration: Int64Builder,
    trace_id: IdBuilder,
    span_id: IdBuilder,
    parent_span_id: IdBuilder,
    trace_state: StringBuilder,
    flags: UInt32Builder,
    name: StringBuilder,
    kind: Int32Builder,
    status_code: Int32Builder,
    status_message: StringBuilder,
    context: ContextBuilder,
    promoted: PromotedBuilder,
    attributes: AttributesBuilder,
    dropped_attributes: UInt32Builder,
    events: EventsBuilder,
    dropped_events: UInt32Builder,
    links: LinksBuilder,
    dropped_links: UInt32Builder,
}

impl Default for SpansBuilder {
    fn default() -> Self {
        Self {
            start_time: timestamp_builder(),
            duration: Int64Builder::with_capacity(0),
            trace_id: IdBuilder::new(16),
            span_id: IdBuilder::new(8),
            parent_span_id: IdBuilder::new(8),
            trace_state: StringBuilder::with_capacity(0, 0),
            flags: UInt32Builder::with_capacity(0),
            name: StringBuilder::with_capacity(0, 0),
            kind: Int32Builder::with_capacity(0),
            status_code: Int32Builder::with_capacity(0),
            status_message: StringBuilder::with_capacity(0, 0),
            context: ContextBuilder::default(),
            promoted: PromotedBuilder::new(PROMOTED_SPAN_KEYS),
            attributes: AttributesBuilder::default(),
            dropped_attributes: UInt32Builder::with_capacity(0),
            events: EventsBuilder::default(),
            dropped_events: UInt32Builder::with_capacity(0),
            links: LinksBuilder::default(),
            dropped_links: UInt32Builder::with_capacity(0),
        }
    }
}

impl SpansBuilder {
    /// Appends every span of a decoded request.
    pub fn append_request(&mut self, req: &ExportTraceServiceRequest) {
        // prost's own encoding has none of the shapes the reader refuses
        // but one, an array or key-value list nested deeper than prost
        // decodes (100 levels), and `Payload::decode` refuses those.
        if let Err(e) = self.append_encoded(&req.encode_to_vec()) {
            tracing::error!(error = %e, "a decoded trace request did not convert in full");
            debug_assert!(false, "{e}");
        }
    }

    /// Appends every span of an encoded `ExportTraceServiceRequest`, read
    /// straight from its bytes (see `convert::wire`). On `Err` the builder
    /// may hold part of the request and must be dropped.
    pub fn append_encoded(&mut self, body: &[u8]) -> Result<Appended, Unusual> {
        let mut s = Scratch::default();
        let mut out = Appended::default();
        out.context_bytes = for_each_group(body, |group, spans| {
            self.context.start_group(group);
            for span in spans {
                let v = s.read_span(span)?;
                out.invalid |= !v.ids_valid(&s.links);
                self.append_span(&v, &s);
                out.items += 1;
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Reads an encoded request into a new builder.
    pub fn read(body: &[u8]) -> Result<(SpansBuilder, Appended), Unusual> {
        let mut b = SpansBuilder::default();
        let appended = b.append_encoded(body)?;
        Ok((b, appended))
    }

    /// Builds the batch of an encoded request when every span in it is
    /// valid and its context expands to at most `max_context` bytes;
    /// `None` when it needs prost's decoding (for its validation with
    /// partial success, its error, or a shape the reader refuses).
    pub fn decode_valid(body: &[u8], max_context: u64) -> Option<(RecordBatch, Appended)> {
        match SpansBuilder::read(body) {
            Ok((mut b, a)) if !a.invalid && a.context_bytes <= max_context => Some((b.finish(), a)),
            _ => None,
        }
    }

    fn append_span(&mut self, v: &SpanView<'_>, s: &Scratch<'_>) {
        self.context.push_row();
        self.start_time.append_value(nanos_i64(v.start));
        self.duration
            .append_value(nanos_i64(v.end).wrapping_sub(nanos_i64(v.start)));
        self.trace_id.append(v.trace_id);
        self.span_id.append(v.span_id);
        self.parent_span_id.append(v.parent_span_id);
        append_opt_str(&mut self.trace_state, v.trace_state);
        self.flags.append_value(v.flags);
        self.name.append_value(v.name);
        self.kind.append_value(v.kind);
        self.status_code.append_value(v.status_code);
        append_opt_str(&mut self.status_message, v.status_message);
        self.promoted.append(&s.attributes, &mut self.attributes);
        self.dropped_attributes.append_value(v.dropped_attributes);
        self.events.append(&s.events, &s.event_attributes);
        self.dropped_events.append_value(v.dropped_events);
        self.links.append(&s.links, &s.link_attributes);
        self.dropped_links.append_value(v.dropped_links);
    }

    /// Finishes the record batch.
    pub fn finish(&mut self) -> RecordBatch {
        let mut cols: Vec<Column> = Vec::new();
        cols.add("start_time", false, Arc::new(self.start_time.finish()));
        cols.add("duration_ns", false, Arc::new(self.duration.finish()));
        self.context.finish_promoted(&mut cols);
        cols.add("trace_id", true, self.trace_id.finish());
        cols.add("span_id", true, self.span_id.finish());
        cols.add("parent_span_id", true, self.parent_span_id.finish());
        cols.add("trace_state", true, Arc::new(self.trace_state.finish()));
        cols.add("flags", false, Arc::new(self.flags.finish()));
        cols.add("name", false, Arc::new(self.name.finish()));
        cols.add("kind", false, Arc::new(self.kind.finish()));
        cols.add("status_code", false, Arc::new(self.status_code.finish()));
        cols.add(
            "status_message",
            true,
            Arc::new(self.status_message.finish()),
        );
        self.promoted.finish(&mut cols);
        cols.add("attributes", false, Arc::new(self.attributes.finish()));
        cols.add(
            "dropped_attributes_count",
            false,
            Arc::new(self.dropped_attributes.finish()),
        );
        cols.push(self.events.finish());
        cols.add(
            "dropped_events_count",
            false,
            Arc::new(self.dropped_events.finish()),
        );
        cols.push(self.links.finish());
        cols.add(
            "dropped_links_count",
            false,
            Arc::new(self.dropped_links.finish()),
        );
        self.context.finish_rest(&mut cols);
        super::batch_from_columns(cols)
    }
}

struct EventsBuilder {
    offsets: Vec<i32>,
    time: TimestampNanosecondBuilder,
    name: StringBuilder,
    attributes: AttributesBuilder,
    dropped: UInt32Builder,
}

impl Default for EventsBuilder {
    fn default() -> Self {
        Self {
            offsets: vec![0],
            time: timestamp_builder(),
            name: StringBuilder::with_capacity(0, 0),
            attributes: AttributesBuilder::default(),
            dropped: UInt32Builder::with_capacity(0),
        }
    }
}

impl EventsBuilder {
    fn append(&mut self, events: &[EventView<'_>], attributes: &[KvView<'_>]) {
        for e in events {
            append_time(&mut self.time, e.time);
            self.name.append_value(e.name);
            self.attributes.append(&attributes[e.attributes.clone()]);
            self.dropped.append_value(e.dropped);
        }
        let last = *self.offsets.last().unwrap_or(&0);
        self.offsets.push(last + events.len() as i32);
    }

    fn finish(&mut self) -> Column {
        let children = vec![
            (
                field("time", timestamp_type(), true),
                Arc::new(self.time.finish()) as ArrayRef,
            ),
            (
                field("name", DataType::Utf8, false),
                Arc::new(self.name.finish()),
            ),
            (
                field("attributes", attributes_type(), false),
                Arc::new(self.attributes.finish()),
            ),
            (
                field("dropped_attributes_count", DataType::UInt32, false),
                Arc::new(self.dropped.finish()),
            ),
        ];
        list_of_structs(
            "events",
            children,
            std::mem::replace(&mut self.offsets, vec![0]),
        )
    }
}

struct LinksBuilder {
    offsets: Vec<i32>,
    trace_id: IdBuilder,
    span_id: IdBuilder,
    trace_state: StringBuilder,
    flags: UInt32Builder,
    attributes: AttributesBuilder,
    dropped: UInt32Builder,
}

impl Default for LinksBuilder {
    fn default() -> Self {
        Self {
            offsets: vec![0],
            trace_id: IdBuilder::new(16),
            span_id: IdBuilder::new(8),
            trace_state: StringBuilder::with_capacity(0, 0),
            flags: UInt32Builder::with_capacity(0),
            attributes: AttributesBuilder::default(),
            dropped: UInt32Builder::with_capacity(0),
        }
    }
}

impl LinksBuilder {
    fn append(&mut self, links: &[LinkView<'_>], attributes: &[KvView<'_>]) {
        for l in links {
            self.trace_id.append(l.trace_id);
            self.span_id.append(l.span_id);
            append_opt_str(&mut self.trace_state, l.trace_state);
            self.flags.append_value(l.flags);
            self.attributes.append(&attributes[l.attributes.clone()]);
            self.dropped.append_value(l.dropped);
        }
        let last = *self.offsets.last().unwrap_or(&0);
        self.offsets.push(last + links.len() as i32);
    }

    fn finish(&mut self) -> Column {
        let children = vec![
            (
                field("trace_id", DataType::FixedSizeBinary(16), true),
                self.trace_id.finish(),
            ),
            (
                field("span_id", DataType::FixedSizeBinary(8), true),
                self.span_id.finish(),
            ),
            (
                field("trace_state", DataType::Utf8, true),
                Arc::new(self.trace_state.finish()) as ArrayRef,
            ),
            (
                field("flags", DataType::UInt32, false),
                Arc::new(self.flags.finish()),
            ),
            (
                field("attributes", attributes_type(), false),
                Arc::new(self.attributes.finish()),
            ),
            (
                field("dropped_attributes_count", DataType::UInt32, false),
                Arc::new(self.dropped.finish()),
            ),
        ];
        list_of_structs(
            "links",
            children,
            std::mem::replace(&mut self.offsets, vec![0]),
        )
    }
}
