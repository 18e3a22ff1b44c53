//! A borrowed view of one `LogRecord` of an encoded
//! `ExportLogsServiceRequest` (logs/v1 field numbers), read with `wire`.

use super::columns::Value;
use super::context_wire::{KvView, read_any_value, read_kv};
use super::wire::{Fields, Unusual, set_once};
use crate::otlp::check_id;

/// A `LogRecord`; its attributes go to a scratch vector.
#[derive(Debug, Default)]
pub struct LogView<'a> {
    pub time: u64,
    pub observed_time: u64,
    pub severity_number: i32,
    pub severity_text: &'a str,
    pub body: Option<Value<'a>>,
    pub dropped_attributes: u32,
    pub flags: u32,
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub event_name: &'a str,
}

impl LogView<'_> {
    /// Whether the record can be stored as read: its ids pass the checks
    /// `otlp::validate_logs` makes, and it has a time of its own (one
    /// without takes the time the request is received, chosen later).
    pub fn storable(&self) -> bool {
        check_id(self.trace_id, 16, false, "").is_ok()
            && check_id(self.span_id, 8, false, "").is_ok()
            && (self.time != 0 || self.observed_time != 0)
    }
}

/// Reads one log record, its attributes into `attrs` (cleared first).
pub fn read_log<'a>(buf: &'a [u8], attrs: &mut Vec<KvView<'a>>) -> Result<LogView<'a>, Unusual> {
    attrs.clear();
    let mut v = LogView::default();
    let mut body = None;
    Fields::new(buf).for_each(|tag, f| {
        match tag {
            1 => v.time = f.fixed64(tag)?,
            2 => v.severity_number = f.int32(tag)?,
            3 => v.severity_text = f.str(tag)?,
            5 => set_once(&mut body, tag, f)?,
            6 => attrs.push(read_kv(f.bytes(tag)?)?),
            7 => v.dropped_attributes = f.uint32(tag)?,
            8 => v.flags = f.fixed32(tag)?,
            9 => v.trace_id = f.bytes(tag)?,
            10 => v.span_id = f.bytes(tag)?,
            11 => v.observed_time = f.fixed64(tag)?,
            12 => v.event_name = f.str(tag)?,
            _ => {}
        }
        Ok(())
    })?;
    v.body = body.map(read_any_value).transpose()?.flatten();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
    };
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message;

    use crate::convert::oracle::{batch, direct_and_prost, kv};
    use crate::convert::wire::rewrite::{framed, reversed};
    use crate::otlp::Payload;
    use crate::schema::Signal;

    fn record(n: u8, body: Option<Value>) -> LogRecord {
        LogRecord {
            // One record has only its observed time.
            time_unix_nano: if n == 2 {
                0
            } else {
                1_700_000_000_000_000_000 + u64::from(n)
            },
            observed_time_unix_nano: 1_700_000_001_000_000_000,
            severity_number: 17,
            severity_text: if n == 1 {
                String::new()
            } else {
                "ERROR".into()
            },
            body: body.map(|v| AnyValue { value: Some(v) }),
            attributes: vec![
                kv("code.lineno", Value::IntValue(-i64::from(n))),
                kv("d", Value::DoubleValue(0.25)),
                kv("ok", Value::BoolValue(false)),
                KeyValue {
                    key: "no value".into(),
                    ..Default::default()
                },
            ],
            dropped_attributes_count: u32::from(n),
            flags: 1,
            trace_id: if n == 3 { vec![] } else { vec![n; 16] },
            span_id: if n == 3 { vec![] } else { vec![n; 8] },
            event_name: if n == 1 { "e".into() } else { String::new() },
        }
    }

    /// Every field, each body type (and none), a resource-less group and
    /// an empty scope.
    fn rich_request() -> ExportLogsServiceRequest {
        let array = Value::ArrayValue(ArrayValue {
            values: vec![AnyValue {
                value: Some(Value::StringValue("a".into())),
            }],
        });
        let kvlist = Value::KvlistValue(KeyValueList {
            values: vec![kv("k", Value::IntValue(1))],
        });
        ExportLogsServiceRequest {
            resource_logs: vec![
                ResourceLogs {
                    resource: Some(Resource {
                        attributes: vec![
                            kv("service.name", Value::StringValue("api".into())),
                            kv("host.name", Value::IntValue(3)),
                            kv("custom", array.clone()),
                        ],
                        dropped_attributes_count: 2,
                        ..Default::default()
                    }),
                    scope_logs: vec![
                        ScopeLogs {
                            scope: Some(InstrumentationScope {
                                name: "logger".into(),
                                version: "2".into(),
                                attributes: vec![kv("s", Value::StringValue("x".into()))],
                                dropped_attributes_count: 1,
                            }),
                            log_records: vec![
                                record(1, Some(Value::StringValue("hello".into()))),
                                record(2, Some(kvlist)),
                                record(3, Some(Value::BytesValue(vec![1, 2]))),
                            ],
                            schema_url: "https://scope".into(),
                        },
                        ScopeLogs::default(),
                    ],
                    schema_url: "https://resource".into(),
                },
                ResourceLogs {
                    scope_logs: vec![ScopeLogs {
                        log_records: vec![record(4, Some(array)), record(5, None)],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
        }
    }

    #[test]
    fn reading_logs_from_the_wire_gives_what_prost_decodes() {
        let (direct, prost) = direct_and_prost(Signal::Logs, rich_request().encode_to_vec());
        let direct = direct.expect("records with times and valid ids take the direct path");
        assert_eq!(batch(&direct), batch(&prost));
        assert_eq!(direct.item_count(), 5);
    }

    #[test]
    fn any_field_order_and_unknown_fields_read_as_prost_reads_them() {
        // depth 0: request (1 → resource logs), 1: resource logs (1 →
        // resource, 2 → scope logs), 2: scope logs (1 → scope, 2 →
        // record), 3: record (5 → body, 6 → attribute).
        let nested = |key: u32| match key {
            1 => Some(1),
            101 | 201 | 305 | 306 => Some(4),
            102 => Some(2),
            202 => Some(3),
            _ => None,
        };
        let mut body = reversed(&rich_request().encode_to_vec(), &nested, 0);
        // A record whose severity text is sent twice: the last one wins.
        let mut rec = record(6, None).encode_to_vec();
        rec.extend(framed(3, b"WARN"));
        body.extend(framed(1, &framed(2, &framed(2, &rec))));
        let (direct, prost) = direct_and_prost(Signal::Logs, body);
        let direct = direct.expect("valid records take the direct path");
        let (direct, prost) = (batch(&direct), batch(&prost));
        assert_eq!(direct, prost);
        let text = direct.column_by_name("severity_text").unwrap();
        let text = arrow::array::AsArray::as_string::<i32>(text.as_ref());
        assert_eq!(text.value(direct.num_rows() - 1), "WARN");
        assert_eq!(direct.num_rows(), 6);
    }

    #[test]
    fn records_without_a_time_or_with_invalid_ids_go_to_prost() {
        let mut req = rich_request();
        let records = &mut req.resource_logs[1].scope_logs[0].log_records;
        records[0].time_unix_nano = 0;
        records[0].observed_time_unix_nano = 0;
        let (direct, prost) = direct_and_prost(Signal::Logs, req.encode_to_vec());
        assert!(direct.is_none());
        // The time of receipt stands in for the missing one.
        let times = batch(&prost).column_by_name("time").unwrap().clone();
        let times = arrow::array::AsArray::as_primitive::<arrow::datatypes::TimestampNanosecondType>(
            times.as_ref(),
        );
        assert_eq!(times.value(3), 42);

        let mut req = rich_request();
        req.resource_logs[0].scope_logs[0].log_records[0].span_id = vec![1; 7];
        let (direct, mut prost) = direct_and_prost(Signal::Logs, req.encode_to_vec());
        assert!(direct.is_none());
        assert_eq!(prost.validate().count, 1);
        let bytes = Bytes::from(prost.encode_to_vec());
        let kept = prost.encoded_as(&bytes);
        assert!(matches!(kept, Payload::Converted(_)), "{kept:?}");
        assert_eq!(kept.item_count(), 4);
    }
}
