//! Decoded OTLP export requests: decoding (protobuf and JSON), validation with
//! partial success, and the responses the OTLP specification prescribes.

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::{Exemplar, Metric, metric::Data};
use prost::Message;

use crate::convert::wire::Unusual;
use crate::convert::{LogsBuilder, SpansBuilder};

use crate::schema::{Signal, Table};

/// A string attribute (`key = "value"`), the kind Sightline attaches to
/// the metrics it makes itself.
pub fn string_kv(key: &str, value: &str) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Binary protobuf (`application/x-protobuf`, gRPC).
    Protobuf,
    /// OTLP/JSON (`application/json`).
    Json,
}

/// A request body that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The protobuf was malformed or truncated.
    #[error("invalid protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The JSON was malformed or did not follow the OTLP/JSON mapping.
    #[error("invalid OTLP/JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// An internal record's Arrow IPC stream was malformed.
    #[error("invalid Arrow IPC: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Profiles are recorded by Sightline itself, not received.
    #[error("profiles cannot be sent as OTLP/JSON")]
    NotOtlp,
    /// An OTLP/JSON trace request whose protobuf form does not read back.
    /// Only a value nested deeper than prost decodes (100 messages) could
    /// do that, and serde_json's own limit (128 JSON levels) refuses such
    /// bodies first; kept so that no such request is acknowledged and then
    /// lost in conversion.
    #[error("invalid OTLP/JSON: its protobuf form does not decode ({0})")]
    Unreadable(Unusual),
    /// The request's resource and scope, copied to every item they cover,
    /// would exceed [`MAX_CONTEXT_BYTES`].
    #[error(
        "the request's resources and scopes, copied to each of its {items} items, come to \
         {bytes} bytes, over the limit of {MAX_CONTEXT_BYTES}: send fewer items per request \
         or smaller resource and scope attributes"
    )]
    ContextTooLarge {
        /// The copied bytes.
        bytes: u64,
        /// The request's items.
        items: u64,
    },
}

impl DecodeError {
    /// Whether the request is refused for its size (HTTP 413) rather than
    /// its content (HTTP 400).
    pub fn is_too_large(&self) -> bool {
        matches!(self, DecodeError::ContextTooLarge { .. })
    }
}

/// The most bytes of resource and scope (and, for metrics, metric
/// description) one request may have copied to its rows. Every span, log
/// record or data point carries its resource's attributes, so a large
/// resource over many small items multiplies: a 20 MiB request could
/// otherwise expand to terabytes. 64 MiB is some 500 times what a 512-span
/// request with a 256-byte resource needs.
pub const MAX_CONTEXT_BYTES: u64 = 64 << 20;

/// One decoded export request of any signal.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// `ExportTraceServiceRequest`.
    Traces(ExportTraceServiceRequest),
    /// `ExportMetricsServiceRequest`.
    Metrics(ExportMetricsServiceRequest),
    /// `ExportLogsServiceRequest`.
    Logs(ExportLogsServiceRequest),
    /// A `profile_samples` batch from Sightline's own profiler; stored in
    /// the WAL as an Arrow IPC stream.
    Profiles(RecordBatch),
    /// A trace or logs request whose items can all be stored as they are,
    /// converted while it was read (see `convert::wire`), with its encoding.
    Converted(Converted),
}

/// A protobuf request and the batch of its items.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// [`Signal::Traces`] (a `spans` batch) or [`Signal::Logs`] (`logs`).
    pub signal: Signal,
    /// The request's protobuf encoding.
    pub body: Bytes,
    /// Its items.
    pub batch: RecordBatch,
    /// Its [`Payload::context_bytes`].
    pub context_bytes: u64,
}

impl Converted {
    /// Reads `body` straight into a batch, when every item can be stored
    /// as read and the context is within [`MAX_CONTEXT_BYTES`].
    fn read(signal: Signal, body: &Bytes) -> Option<Converted> {
        let (batch, appended) = match signal {
            Signal::Traces => SpansBuilder::decode_valid(body, MAX_CONTEXT_BYTES)?,
            Signal::Logs => LogsBuilder::decode_valid(body, MAX_CONTEXT_BYTES)?,
            Signal::Metrics | Signal::Profiles => return None,
        };
        Some(Converted {
            signal,
            body: body.clone(),
            batch,
            context_bytes: appended.context_bytes,
        })
    }

    /// The table its batch goes to.
    pub fn table(&self) -> Table {
        match self.signal {
            Signal::Logs => Table::Logs,
            _ => Table::Spans,
        }
    }
}

fn len_of<M: Message>(m: Option<&M>) -> usize {
    m.map_or(0, Message::encoded_len)
}

fn times(bytes: usize, items: u64) -> u64 {
    (bytes as u64).saturating_mul(items)
}

fn sum(parts: impl Iterator<Item = u64>) -> u64 {
    parts.fold(0, u64::saturating_add)
}

/// What validation removed from a request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Items (spans, data points, log records) removed.
    pub count: u64,
    /// A human-readable reason, naming the first problems found.
    pub message: String,
}

impl Rejected {
    fn add(&mut self, what: impl FnOnce() -> String) {
        self.count += 1;
        // Keep the message short: the first few reasons are enough to debug.
        if self.count <= 3 {
            if !self.message.is_empty() {
                self.message.push_str("; ");
            }
            self.message.push_str(&what());
        }
    }

    fn finish(mut self) -> Rejected {
        if self.count > 3 {
            self.message
                .push_str(&format!("; and {} more", self.count - 3));
        }
        self
    }
}

impl Payload {
    /// Decodes a body of the given signal and encoding.
    ///
    /// A protobuf trace or logs request whose items can all be stored as
    /// they are is converted to Arrow as it is read ([`Payload::Converted`]):
    /// decoding it into structs first cost more than the conversion. Others
    /// are decoded by prost, for validation with partial success or prost's
    /// error.
    pub fn decode(
        signal: Signal,
        encoding: Encoding,
        body: &Bytes,
    ) -> Result<Payload, DecodeError> {
        if encoding == Encoding::Protobuf
            && let Some(c) = Converted::read(signal, body)
        {
            return Ok(Payload::Converted(c));
        }
        let raw = &body[..];
        let payload = match (signal, encoding) {
            (Signal::Traces, Encoding::Protobuf) => Payload::Traces(Message::decode(raw)?),
            (Signal::Metrics, Encoding::Protobuf) => Payload::Metrics(Message::decode(raw)?),
            (Signal::Logs, Encoding::Protobuf) => Payload::Logs(Message::decode(raw)?),
            (Signal::Traces, Encoding::Json) => Payload::Traces(serde_json::from_slice(raw)?),
            (Signal::Metrics, Encoding::Json) => Payload::Metrics(serde_json::from_slice(raw)?),
            (Signal::Logs, Encoding::Json) => Payload::Logs(serde_json::from_slice(raw)?),
            (Signal::Profiles, Encoding::Protobuf) => Payload::Profiles(decode_ipc(raw)?),
            (Signal::Profiles, Encoding::Json) => return Err(DecodeError::NotOtlp),
        };
        payload.check_context()?;
        match payload {
            Payload::Traces(req) if encoding == Encoding::Json => Payload::json_traces(req),
            p => Ok(p),
        }
    }

    /// An OTLP/JSON trace request, converted now (as protobuf ones are) so
    /// that a value too deep for its protobuf form is refused before it is
    /// acknowledged; requests with invalid ids stay decoded for validation.
    fn json_traces(req: ExportTraceServiceRequest) -> Result<Payload, DecodeError> {
        let body = Bytes::from(req.encode_to_vec());
        let (mut b, appended) = SpansBuilder::read(&body).map_err(DecodeError::Unreadable)?;
        Ok(if appended.invalid {
            Payload::Traces(req)
        } else {
            Payload::Converted(Converted {
                signal: Signal::Traces,
                body,
                batch: b.finish(),
                context_bytes: appended.context_bytes,
            })
        })
    }

    /// Refuses a request whose context would expand past [`MAX_CONTEXT_BYTES`].
    fn check_context(&self) -> Result<(), DecodeError> {
        let bytes = self.context_bytes();
        if bytes > MAX_CONTEXT_BYTES {
            return Err(DecodeError::ContextTooLarge {
                bytes,
                items: self.item_count(),
            });
        }
        Ok(())
    }

    /// Bytes of resource, scope (and metric) fields that conversion copies
    /// to every item they cover: how much larger than the request its
    /// batches can grow.
    pub fn context_bytes(&self) -> u64 {
        match self {
            Payload::Traces(r) => sum(r.resource_spans.iter().map(|rs| {
                let res = len_of(rs.resource.as_ref()) + rs.schema_url.len();
                sum(rs.scope_spans.iter().map(|ss| {
                    let scope = len_of(ss.scope.as_ref()) + ss.schema_url.len();
                    times(res + scope, ss.spans.len() as u64)
                }))
            })),
            Payload::Logs(r) => sum(r.resource_logs.iter().map(|rl| {
                let res = len_of(rl.resource.as_ref()) + rl.schema_url.len();
                sum(rl.scope_logs.iter().map(|sl| {
                    let scope = len_of(sl.scope.as_ref()) + sl.schema_url.len();
                    times(res + scope, sl.log_records.len() as u64)
                }))
            })),
            Payload::Metrics(r) => sum(r.resource_metrics.iter().map(|rm| {
                let res = len_of(rm.resource.as_ref()) + rm.schema_url.len();
                sum(rm.scope_metrics.iter().map(|sm| {
                    let scope = len_of(sm.scope.as_ref()) + sm.schema_url.len();
                    sum(sm.metrics.iter().map(|m| {
                        let metric = m.name.len() + m.description.len() + m.unit.len();
                        times(res + scope + metric, data_point_count(m).max(1))
                    }))
                }))
            })),
            Payload::Profiles(_) => 0,
            Payload::Converted(c) => c.context_bytes,
        }
    }

    /// The payload that `bytes`, its protobuf encoding, stands for: a trace
    /// or logs request becomes [`Payload::Converted`], read from those
    /// bytes, so that conversion does not encode it once more.
    pub fn encoded_as(self, bytes: &Bytes) -> Payload {
        let signal = self.signal();
        match self {
            p @ (Payload::Traces(_) | Payload::Logs(_)) => match Converted::read(signal, bytes) {
                Some(c) => Payload::Converted(c),
                None => p,
            },
            other => other,
        }
    }

    /// The request's signal.
    pub fn signal(&self) -> Signal {
        match self {
            Payload::Traces(_) => Signal::Traces,
            Payload::Converted(c) => c.signal,
            Payload::Metrics(_) => Signal::Metrics,
            Payload::Logs(_) => Signal::Logs,
            Payload::Profiles(_) => Signal::Profiles,
        }
    }

    /// Protobuf encoding (what the WAL stores).
    pub fn encode_to_vec(&self) -> Vec<u8> {
        match self {
            Payload::Traces(r) => r.encode_to_vec(),
            Payload::Metrics(r) => r.encode_to_vec(),
            Payload::Logs(r) => r.encode_to_vec(),
            Payload::Profiles(b) => encode_ipc(b),
            Payload::Converted(c) => c.body.to_vec(),
        }
    }

    /// Number of items: spans, metric data points or log records.
    pub fn item_count(&self) -> u64 {
        match self {
            Payload::Traces(r) => r
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len() as u64)
                .sum(),
            Payload::Metrics(r) => r
                .resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .map(|m| data_point_count(m).max(1))
                .sum(),
            Payload::Logs(r) => r
                .resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .map(|sl| sl.log_records.len() as u64)
                .sum(),
            Payload::Profiles(b) => b.num_rows() as u64,
            Payload::Converted(c) => c.batch.num_rows() as u64,
        }
    }

    /// Removes invalid items in place and says what was removed. Valid items
    /// in the same request are kept (OTLP partial success).
    pub fn validate(&mut self) -> Rejected {
        let mut rej = Rejected::default();
        match self {
            Payload::Traces(r) => validate_traces(r, &mut rej),
            Payload::Metrics(r) => validate_metrics(r, &mut rej),
            Payload::Logs(r) => validate_logs(r, &mut rej),
            // Built by Sightline with the table's own builder.
            Payload::Profiles(_) => {}
            // Only built when every item passed these checks.
            Payload::Converted(_) => {}
        }
        rej.finish()
    }

    /// The success response for this signal, with partial success filled in
    /// when items were rejected.
    pub fn response(signal: Signal, rejected: &Rejected) -> Response {
        let partial = rejected.count > 0;
        let msg = rejected.message.clone();
        let n = i64::try_from(rejected.count).unwrap_or(i64::MAX);
        match signal {
            Signal::Traces => Response::Traces(ExportTraceServiceResponse {
                partial_success: partial.then_some(ExportTracePartialSuccess {
                    rejected_spans: n,
                    error_message: msg,
                }),
            }),
            Signal::Metrics => Response::Metrics(ExportMetricsServiceResponse {
                partial_success: partial.then_some(ExportMetricsPartialSuccess {
                    rejected_data_points: n,
                    error_message: msg,
                }),
            }),
            Signal::Logs => Response::Logs(ExportLogsServiceResponse {
                partial_success: partial.then_some(ExportLogsPartialSuccess {
                    rejected_log_records: n,
                    error_message: msg,
                }),
            }),
            Signal::Profiles => Response::Internal,
        }
    }
}

/// An export response of any signal.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// `ExportTraceServiceResponse`.
    Traces(ExportTraceServiceResponse),
    /// `ExportMetricsServiceResponse`.
    Metrics(ExportMetricsServiceResponse),
    /// `ExportLogsServiceResponse`.
    Logs(ExportLogsServiceResponse),
    /// Internal records (profiles) have no OTLP response.
    Internal,
}

impl Response {
    /// Encodes the response in the request's encoding.
    pub fn encode(&self, encoding: Encoding) -> Vec<u8> {
        match (self, encoding) {
            (Response::Traces(r), Encoding::Protobuf) => r.encode_to_vec(),
            (Response::Metrics(r), Encoding::Protobuf) => r.encode_to_vec(),
            (Response::Logs(r), Encoding::Protobuf) => r.encode_to_vec(),
            // Serialising plain generated structs to JSON cannot fail.
            (Response::Traces(r), Encoding::Json) => serde_json::to_vec(r).unwrap_or_default(),
            (Response::Metrics(r), Encoding::Json) => serde_json::to_vec(r).unwrap_or_default(),
            (Response::Logs(r), Encoding::Json) => serde_json::to_vec(r).unwrap_or_default(),
            (Response::Internal, _) => Vec::new(),
        }
    }
}

fn encode_ipc(batch: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing a valid batch to memory cannot fail.
    if let Ok(mut w) = StreamWriter::try_new(&mut out, &batch.schema()) {
        let _ = w.write(batch);
        let _ = w.finish();
    }
    out
}

fn decode_ipc(body: &[u8]) -> Result<RecordBatch, DecodeError> {
    let reader = StreamReader::try_new(body, None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    Ok(arrow::compute::concat_batches(&schema, &batches)?)
}

fn data_point_count(m: &Metric) -> u64 {
    (match &m.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }) as u64
}

/// Checks an id: `required` ids must be present; present ids must have the
/// right width and not be all zeros (the OTLP "invalid id").
pub(crate) fn check_id(id: &[u8], width: usize, required: bool, what: &str) -> Result<(), String> {
    if id.is_empty() {
        return if required {
            Err(format!("{what} is required"))
        } else {
            Ok(())
        };
    }
    if id.len() != width {
        return Err(format!("{what} must be {width} bytes, got {}", id.len()));
    }
    if id.iter().all(|b| *b == 0) {
        return Err(format!("{what} must not be all zeros"));
    }
    Ok(())
}

fn validate_traces(r: &mut ExportTraceServiceRequest, rej: &mut Rejected) {
    for rs in &mut r.resource_spans {
        for ss in &mut rs.scope_spans {
            ss.spans.retain(|s| {
                let res = check_id(&s.trace_id, 16, true, "trace_id")
                    .and_then(|_| check_id(&s.span_id, 8, true, "span_id"))
                    .and_then(|_| check_id(&s.parent_span_id, 8, false, "parent_span_id"))
                    .and_then(|_| {
                        s.links.iter().try_for_each(|l| {
                            check_id(&l.trace_id, 16, true, "link trace_id")
                                .and_then(|_| check_id(&l.span_id, 8, true, "link span_id"))
                        })
                    });
                match res {
                    Ok(()) => true,
                    Err(e) => {
                        rej.add(|| format!("span {:?}: {e}", s.name));
                        false
                    }
                }
            });
        }
    }
}

fn validate_logs(r: &mut ExportLogsServiceRequest, rej: &mut Rejected) {
    for rl in &mut r.resource_logs {
        for sl in &mut rl.scope_logs {
            sl.log_records.retain(|l| {
                let res = check_id(&l.trace_id, 16, false, "trace_id")
                    .and_then(|_| check_id(&l.span_id, 8, false, "span_id"));
                match res {
                    Ok(()) => true,
                    Err(e) => {
                        rej.add(|| format!("log record: {e}"));
                        false
                    }
                }
            });
        }
    }
}

fn check_exemplars(ex: &[Exemplar]) -> Result<(), String> {
    ex.iter().try_for_each(|e| {
        check_id(&e.trace_id, 16, false, "exemplar trace_id")
            .and_then(|_| check_id(&e.span_id, 8, false, "exemplar span_id"))
    })
}

fn check_time(t: u64) -> Result<(), String> {
    if t == 0 {
        Err("time_unix_nano is required".into())
    } else {
        Ok(())
    }
}

/// Keeps the points for which `check` passes, recording the others.
fn retain_points<P>(
    points: &mut Vec<P>,
    metric: &str,
    rej: &mut Rejected,
    check: impl Fn(&P) -> Result<(), String>,
) {
    points.retain(|p| match check(p) {
        Ok(()) => true,
        Err(e) => {
            rej.add(|| format!("metric {metric:?}: {e}"));
            false
        }
    });
}

fn validate_metric(m: &mut Metric, rej: &mut Rejected) -> bool {
    let name = m.name.clone();
    if name.is_empty() {
        for _ in 0..data_point_count(m).max(1) {
            rej.add(|| "metric without a name".into());
        }
        return false;
    }
    match &mut m.data {
        None => {
            rej.add(|| format!("metric {name:?} has no data"));
            return false;
        }
        Some(Data::Gauge(g)) => retain_points(&mut g.data_points, &name, rej, |p| {
            check_time(p.time_unix_nano).and_then(|_| check_exemplars(&p.exemplars))
        }),
        Some(Data::Sum(s)) => retain_points(&mut s.data_points, &name, rej, |p| {
            check_time(p.time_unix_nano).and_then(|_| check_exemplars(&p.exemplars))
        }),
        Some(Data::Histogram(h)) => retain_points(&mut h.data_points, &name, rej, |p| {
            check_time(p.time_unix_nano)?;
            check_exemplars(&p.exemplars)?;
            if !p.bucket_counts.is_empty() && p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
                return Err(format!(
                    "histogram has {} bucket counts for {} bounds (want bounds + 1)",
                    p.bucket_counts.len(),
                    p.explicit_bounds.len()
                ));
            }
            Ok(())
        }),
        Some(Data::ExponentialHistogram(h)) => retain_points(&mut h.data_points, &name, rej, |p| {
            check_time(p.time_unix_nano).and_then(|_| check_exemplars(&p.exemplars))
        }),
        Some(Data::Summary(s)) => retain_points(&mut s.data_points, &name, rej, |p| {
            check_time(p.time_unix_nano)
        }),
    }
    true
}

fn validate_metrics(r: &mut ExportMetricsServiceRequest, rej: &mut Rejected) {
    for rm in &mut r.resource_metrics {
        for sm in &mut rm.scope_metrics {
            sm.metrics.retain_mut(|m| validate_metric(m, rej));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn span(trace_id: Vec<u8>, name: &str) -> Span {
        Span {
            trace_id,
            span_id: vec![1; 8],
            name: name.into(),
            start_time_unix_nano: 1,
            ..Default::default()
        }
    }

    #[test]
    fn invalid_spans_are_removed_and_valid_ones_kept() {
        let mut p = Payload::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![
                        span(vec![7; 16], "ok"),
                        span(vec![7; 8], "short"),
                        span(vec![0; 16], "zero"),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        });
        let rej = p.validate();
        assert_eq!(rej.count, 2);
        assert!(
            rej.message.contains("trace_id must be 16 bytes, got 8"),
            "{}",
            rej.message
        );
        assert!(rej.message.contains("all zeros"), "{}", rej.message);
        assert_eq!(p.item_count(), 1);
    }

    #[test]
    fn json_accepts_hex_ids_and_string_or_number_int64() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "name":"GET /","kind":2,"startTimeUnixNano":"1544712660000000000",
            "endTimeUnixNano":1544712661000000000,
            "attributes":[{"key":"n","value":{"intValue":"42"}},{"key":"m","value":{"intValue":7}}]}]}]}]}"#;
        let p = Payload::decode(Signal::Traces, Encoding::Json, &Bytes::from_static(body)).unwrap();
        // Converted while decoded, as a valid protobuf request is.
        let Payload::Converted(spans) = p else {
            panic!("{p:?}")
        };
        let decoded = ExportTraceServiceRequest::decode(&spans.body[..]).unwrap();
        let s = &decoded.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.trace_id[..2], [0x5b, 0x8e]);
        assert_eq!(s.trace_id.len(), 16);
        assert_eq!(s.start_time_unix_nano, 1544712660000000000);
        assert_eq!(s.end_time_unix_nano, 1544712661000000000);
        assert_eq!(s.kind, 2);
        let ints: Vec<_> = s.attributes.iter().map(|kv| kv.value.clone()).collect();
        assert_eq!(
            ints,
            [42, 7].map(|i| Some(AnyValue {
                value: Some(any_value::Value::IntValue(i))
            }))
        );
        assert_eq!(spans.batch.num_rows(), 1);
    }

    #[test]
    fn json_with_an_invalid_id_stays_decoded_for_partial_success() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"ok"},
            {"traceId":"5b8e","spanId":"eee19b7ec3c1b174","name":"short"}]}]}]}"#;
        let mut p =
            Payload::decode(Signal::Traces, Encoding::Json, &Bytes::from_static(body)).unwrap();
        assert!(matches!(p, Payload::Traces(_)), "{p:?}");
        assert_eq!(p.validate().count, 1);
        let bytes = Bytes::from(p.encode_to_vec());
        let p = p.encoded_as(&bytes);
        let Payload::Converted(spans) = p else {
            panic!("{p:?}")
        };
        assert_eq!(spans.batch.num_rows(), 1);
    }

    #[test]
    fn json_with_wrong_types_is_a_decode_error() {
        let body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":12}]}]}]}"#;
        assert!(
            Payload::decode(Signal::Traces, Encoding::Json, &Bytes::from_static(body)).is_err()
        );
    }

    fn big_resource(bytes: usize) -> Option<opentelemetry_proto::tonic::resource::v1::Resource> {
        Some(opentelemetry_proto::tonic::resource::v1::Resource {
            attributes: vec![string_kv("process.command_args", &"a".repeat(bytes))],
            ..Default::default()
        })
    }

    fn traces_with(resource_bytes: usize, spans: usize) -> Bytes {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: big_resource(resource_bytes),
                scope_spans: vec![ScopeSpans {
                    spans: (0..spans).map(|_| span(vec![7; 16], "s")).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        Bytes::from(req.encode_to_vec())
    }

    #[test]
    fn a_context_copied_past_the_limit_is_refused_as_too_large() {
        // 1 MiB of resource over 100 spans: 100 MiB once every span has it.
        let body = traces_with(1 << 20, 100);
        let err = Payload::decode(Signal::Traces, Encoding::Protobuf, &body).unwrap_err();
        assert!(err.is_too_large(), "{err}");
        let DecodeError::ContextTooLarge { bytes, items } = err else {
            unreachable!()
        };
        assert_eq!(items, 100);
        assert!(bytes > 100 << 20 && bytes < 101 << 20, "{bytes}");

        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        let logs = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: big_resource(1 << 20),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord::default(); 100],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let body = Bytes::from(logs.encode_to_vec());
        let err = Payload::decode(Signal::Logs, Encoding::Protobuf, &body).unwrap_err();
        assert!(err.is_too_large(), "{err}");

        use opentelemetry_proto::tonic::metrics::v1::{
            Gauge, NumberDataPoint, ResourceMetrics, ScopeMetrics,
        };
        let metrics = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "m".into(),
                        description: "d".repeat(1 << 20),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint::default(); 100],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let body = Bytes::from(metrics.encode_to_vec());
        let err = Payload::decode(Signal::Metrics, Encoding::Protobuf, &body).unwrap_err();
        assert!(err.is_too_large(), "{err}");
    }

    #[test]
    fn a_large_context_within_the_limit_is_read_and_counted() {
        let body = traces_with(1 << 20, 10);
        let p = Payload::decode(Signal::Traces, Encoding::Protobuf, &body).unwrap();
        let prost = Payload::Traces(Message::decode(&body[..]).unwrap());
        let Payload::Converted(spans) = &p else {
            panic!("{p:?}")
        };
        assert_eq!(spans.batch.num_rows(), 10);
        // The direct reader and the decoded request count the same bytes.
        assert_eq!(p.context_bytes(), prost.context_bytes());
        assert!(p.context_bytes() > 10 << 20, "{}", p.context_bytes());
    }
}
