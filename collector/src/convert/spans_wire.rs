//! Borrowed views of the trace messages of an encoded
//! `ExportTraceServiceRequest` (trace/v1 field numbers), read with `wire`;
//! the shared ones are in `context_wire`. A view holds
//! slices of the request bytes; repeated fields go to reusable [`Scratch`]
//! vectors, so reading a span allocates nothing once they have grown.

use std::ops::Range;

use super::context_wire::{KvView, read_kv};
use super::wire::{Fields, Unusual, set_once};
use crate::otlp::check_id;

/// A `Span`; its attributes, events and links are in the [`Scratch`].
#[derive(Debug, Default)]
pub struct SpanView<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub trace_state: &'a str,
    pub parent_span_id: &'a [u8],
    pub flags: u32,
    pub name: &'a str,
    pub kind: i32,
    pub start: u64,
    pub end: u64,
    pub dropped_attributes: u32,
    pub dropped_events: u32,
    pub dropped_links: u32,
    pub status_code: i32,
    pub status_message: &'a str,
}

/// A `Span.Event`.
#[derive(Debug)]
pub struct EventView<'a> {
    pub time: u64,
    pub name: &'a str,
    /// Its range of [`Scratch::event_attributes`].
    pub attributes: Range<usize>,
    pub dropped: u32,
}

/// A `Span.Link`.
#[derive(Debug)]
pub struct LinkView<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub trace_state: &'a str,
    pub flags: u32,
    /// Its range of [`Scratch::link_attributes`].
    pub attributes: Range<usize>,
    pub dropped: u32,
}

impl SpanView<'_> {
    /// The checks `otlp::validate_traces` makes, so that a request passing
    /// them needs no validation of its own.
    pub fn ids_valid(&self, links: &[LinkView<'_>]) -> bool {
        check_id(self.trace_id, 16, true, "").is_ok()
            && check_id(self.span_id, 8, true, "").is_ok()
            && check_id(self.parent_span_id, 8, false, "").is_ok()
            && links.iter().all(|l| {
                check_id(l.trace_id, 16, true, "").is_ok()
                    && check_id(l.span_id, 8, true, "").is_ok()
            })
    }
}

/// Vectors reused across the messages of one request.
#[derive(Default)]
pub struct Scratch<'a> {
    /// The current span's.
    pub attributes: Vec<KvView<'a>>,
    pub events: Vec<EventView<'a>>,
    pub event_attributes: Vec<KvView<'a>>,
    pub links: Vec<LinkView<'a>>,
    pub link_attributes: Vec<KvView<'a>>,
}

impl<'a> Scratch<'a> {
    /// Reads one span, replacing the previous span's attributes, events and links.
    pub fn read_span(&mut self, buf: &'a [u8]) -> Result<SpanView<'a>, Unusual> {
        self.attributes.clear();
        self.events.clear();
        self.event_attributes.clear();
        self.links.clear();
        self.link_attributes.clear();
        let mut v = SpanView::default();
        let mut status = None;
        Fields::new(buf).for_each(|tag, f| {
            match tag {
                1 => v.trace_id = f.bytes(tag)?,
                2 => v.span_id = f.bytes(tag)?,
                3 => v.trace_state = f.str(tag)?,
                4 => v.parent_span_id = f.bytes(tag)?,
                5 => v.name = f.str(tag)?,
                6 => v.kind = f.int32(tag)?,
                7 => v.start = f.fixed64(tag)?,
                8 => v.end = f.fixed64(tag)?,
                9 => self.attributes.push(read_kv(f.bytes(tag)?)?),
                10 => v.dropped_attributes = f.uint32(tag)?,
                11 => {
                    let e = read_event(f.bytes(tag)?, &mut self.event_attributes)?;
                    self.events.push(e);
                }
                12 => v.dropped_events = f.uint32(tag)?,
                13 => {
                    let l = read_link(f.bytes(tag)?, &mut self.link_attributes)?;
                    self.links.push(l);
                }
                14 => v.dropped_links = f.uint32(tag)?,
                15 => set_once(&mut status, tag, f)?,
                16 => v.flags = f.fixed32(tag)?,
                _ => {}
            }
            Ok(())
        })?;
        if let Some(b) = status {
            Fields::new(b).for_each(|tag, f| {
                match tag {
                    2 => v.status_message = f.str(tag)?,
                    3 => v.status_code = f.int32(tag)?,
                    _ => {}
                }
                Ok(())
            })?;
        }
        Ok(v)
    }
}

fn read_event<'a>(buf: &'a [u8], attrs: &mut Vec<KvView<'a>>) -> Result<EventView<'a>, Unusual> {
    let first = attrs.len();
    let (mut time, mut name, mut dropped) = (0, "", 0);
    Fields::new(buf).for_each(|tag, f| {
        match tag {
            1 => time = f.fixed64(tag)?,
            2 => name = f.str(tag)?,
            3 => attrs.push(read_kv(f.bytes(tag)?)?),
            4 => dropped = f.uint32(tag)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(EventView {
        time,
        name,
        attributes: first..attrs.len(),
        dropped,
    })
}

fn read_link<'a>(buf: &'a [u8], attrs: &mut Vec<KvView<'a>>) -> Result<LinkView<'a>, Unusual> {
    let first = attrs.len();
    let mut l = LinkView {
        trace_id: &[],
        span_id: &[],
        trace_state: "",
        flags: 0,
        attributes: 0..0,
        dropped: 0,
    };
    Fields::new(buf).for_each(|tag, f| {
        match tag {
            1 => l.trace_id = f.bytes(tag)?,
            2 => l.span_id = f.bytes(tag)?,
            3 => l.trace_state = f.str(tag)?,
            4 => attrs.push(read_kv(f.bytes(tag)?)?),
            5 => l.dropped = f.uint32(tag)?,
            6 => l.flags = f.fixed32(tag)?,
            _ => {}
        }
        Ok(())
    })?;
    l.attributes = first..attrs.len();
    Ok(l)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;

    use crate::convert::oracle::{batch, direct_and_prost, kv};
    use crate::convert::wire::rewrite::{framed, reversed};
    use crate::otlp::{Encoding, Payload};
    use crate::schema::Signal;

    /// Every field the reader interprets, each value type, a promoted key
    /// with the wrong type, a resource-less group and an empty scope.
    fn rich_request() -> ExportTraceServiceRequest {
        let array = Value::ArrayValue(ArrayValue {
            values: vec![AnyValue {
                value: Some(Value::IntValue(3)),
            }],
        });
        let kvlist = Value::KvlistValue(KeyValueList {
            values: vec![kv("inner", Value::BoolValue(true))],
        });
        let span = |n: u8| Span {
            trace_id: vec![n; 16],
            span_id: vec![n; 8],
            parent_span_id: if n.is_multiple_of(2) {
                vec![n + 1; 8]
            } else {
                vec![]
            },
            trace_state: "k=v".into(),
            flags: 0x301,
            name: format!("span {n}"),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(n),
            end_time_unix_nano: 1_700_000_000_500_000_000,
            attributes: vec![
                kv("http.route", Value::StringValue("/a".into())),
                kv(
                    "http.response.status_code",
                    Value::StringValue("500".into()),
                ),
                kv("d", Value::DoubleValue(1.5)),
                kv("b", Value::BytesValue(vec![0, 1])),
                kv("array", array.clone()),
                kv("kvlist", kvlist.clone()),
                KeyValue {
                    key: "no value".into(),
                    ..Default::default()
                },
            ],
            dropped_attributes_count: 1,
            events: vec![Event {
                time_unix_nano: 5,
                name: "exception".into(),
                attributes: vec![kv("exception.type", Value::StringValue("E".into()))],
                dropped_attributes_count: 2,
            }],
            dropped_events_count: 3,
            links: vec![Link {
                trace_id: vec![9; 16],
                span_id: vec![8; 8],
                trace_state: "l=1".into(),
                attributes: vec![kv("link", Value::IntValue(-4))],
                dropped_attributes_count: 4,
                flags: 1,
            }],
            dropped_links_count: 5,
            status: Some(Status {
                message: "boom".into(),
                code: 2,
            }),
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![
                            kv("service.name", Value::StringValue("checkout".into())),
                            kv("host.name", Value::IntValue(7)),
                            kv("custom", array.clone()),
                        ],
                        dropped_attributes_count: 6,
                        ..Default::default()
                    }),
                    scope_spans: vec![
                        ScopeSpans {
                            scope: Some(InstrumentationScope {
                                name: "lib".into(),
                                version: "1.0".into(),
                                attributes: vec![kv("s", Value::StringValue("x".into()))],
                                dropped_attributes_count: 7,
                            }),
                            spans: vec![span(1), span(2)],
                            schema_url: "https://scope".into(),
                        },
                        ScopeSpans::default(),
                    ],
                    schema_url: "https://resource".into(),
                },
                ResourceSpans {
                    resource: None,
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span(3)],
                        ..Default::default()
                    }],
                    schema_url: String::new(),
                },
            ],
        }
    }

    #[test]
    fn reading_the_wire_gives_what_prost_decodes() {
        let (fast, slow) = direct_and_prost(Signal::Traces, rich_request().encode_to_vec());
        let fast = fast.expect("a valid request takes the direct path");
        assert_eq!(batch(&fast), batch(&slow));
        assert_eq!(fast.item_count(), 3);
    }

    /// Field order, unknown fields and a scalar sent twice are prost's to
    /// define; the reader must agree with it on all of them.
    #[test]
    fn any_field_order_and_unknown_fields_read_as_prost_reads_them() {
        // depth 0: request (1 → resource spans), 1: resource spans (1 →
        // resource, 2 → scope spans), 2: scope spans (2 → span), 3: span
        // (9 → attribute, 11 → event, 13 → link, 15 → status).
        let nested = |key: u32| match key {
            1 => Some(1),
            101 => Some(4),
            102 => Some(2),
            202 => Some(3),
            309 | 311 | 313 | 315 => Some(4),
            _ => None,
        };
        let mut body = reversed(&rich_request().encode_to_vec(), &nested, 0);
        // A second resource spans whose span carries its name twice.
        let mut span = Span {
            trace_id: vec![4; 16],
            span_id: vec![4; 8],
            name: "first".into(),
            ..Default::default()
        }
        .encode_to_vec();
        span.extend(framed(5, b"second"));
        let scope = framed(2, &span);
        body.extend(framed(1, &framed(2, &scope)));
        let (fast, slow) = direct_and_prost(Signal::Traces, body);
        let fast = fast.expect("a valid request takes the direct path");
        let (fast, slow) = (batch(&fast), batch(&slow));
        assert_eq!(fast, slow);
        let names = fast.column_by_name("name").unwrap();
        let names = arrow::array::AsArray::as_string::<i32>(names.as_ref());
        assert_eq!(names.value(fast.num_rows() - 1), "second");
        assert_eq!(fast.num_rows(), 4);
    }

    #[test]
    fn merged_messages_and_invalid_ids_go_to_prost() {
        // `status` sent twice: protobuf merges the two messages.
        let mut span = Span {
            trace_id: vec![4; 16],
            span_id: vec![4; 8],
            status: Some(Status {
                message: "m".into(),
                code: 0,
            }),
            ..Default::default()
        }
        .encode_to_vec();
        span.extend(framed(
            15,
            &Status {
                message: String::new(),
                code: 2,
            }
            .encode_to_vec(),
        ));
        let body = framed(1, &framed(2, &framed(2, &span)));
        let (fast, slow) = direct_and_prost(Signal::Traces, body);
        assert!(fast.is_none());
        let Payload::Traces(req) = &slow else {
            unreachable!()
        };
        let status = req.resource_spans[0].scope_spans[0].spans[0]
            .status
            .clone()
            .unwrap();
        assert_eq!((status.message.as_str(), status.code), ("m", 2));

        let mut req = rich_request();
        req.resource_spans[1].scope_spans[0].spans[0].links[0].span_id = vec![1; 7];
        let body = Bytes::from(req.encode_to_vec());
        let mut p = Payload::decode(Signal::Traces, Encoding::Protobuf, &body).unwrap();
        assert!(matches!(p, Payload::Traces(_)));
        assert_eq!(p.validate().count, 1);
        assert_eq!(p.item_count(), 2);
    }

    #[test]
    fn malformed_bodies_get_prost_s_error() {
        let body = rich_request().encode_to_vec();
        let cut = Bytes::copy_from_slice(&body[..body.len() - 3]);
        let err = Payload::decode(Signal::Traces, Encoding::Protobuf, &cut).unwrap_err();
        assert!(err.to_string().starts_with("invalid protobuf"), "{err}");
        let mut bad_utf8 = Span {
            trace_id: vec![4; 16],
            span_id: vec![4; 8],
            ..Default::default()
        }
        .encode_to_vec();
        bad_utf8.extend(framed(5, &[0xff, 0xfe]));
        let body = Bytes::from(framed(1, &framed(2, &framed(2, &bad_utf8))));
        assert!(Payload::decode(Signal::Traces, Encoding::Protobuf, &body).is_err());
    }
}
