//! Prost as the oracle for the direct readers: helpers for tests that
//! compare a request read from its bytes with the same request decoded.

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use prost::Message;

use crate::convert::convert;
use crate::otlp::{Encoding, Payload};
use crate::schema::Signal;

/// An attribute.
pub fn kv(key: &str, v: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// `body` as `Payload::decode` reads it (`None` unless it took the direct
/// path) and as prost decodes it.
pub fn direct_and_prost(signal: Signal, body: Vec<u8>) -> (Option<Payload>, Payload) {
    let body = Bytes::from(body);
    let direct = Payload::decode(signal, Encoding::Protobuf, &body).unwrap();
    let prost = match signal {
        Signal::Traces => Payload::Traces(ExportTraceServiceRequest::decode(&body[..]).unwrap()),
        Signal::Logs => Payload::Logs(ExportLogsServiceRequest::decode(&body[..]).unwrap()),
        _ => unimplemented!("no direct reader for {signal}"),
    };
    let direct = matches!(direct, Payload::Converted(_)).then_some(direct);
    (direct, prost)
}

/// The one batch a payload converts to, received at time 42.
pub fn batch(p: &Payload) -> arrow::array::RecordBatch {
    convert(p, 42).remove(0).1
}
