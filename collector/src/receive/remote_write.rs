//! Prometheus remote write 1.0 (`POST /api/v1/write`, snappy-compressed
//! protobuf `WriteRequest`).
//!
//! Samples are converted to OTLP gauges and go through the same path as
//! OTLP metrics (WAL, buffer, Parquet), so they are as durable and as
//! queryable. The conversion is chosen so the PromQL view gives back exactly
//! the series that were written: the `job` label becomes `service.name`,
//! `instance` becomes `service.instance.id`, every other label a data-point
//! attribute, the metric keeps its name and has no unit. Stale markers (a
//! special NaN) are kept bit for bit.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::Transport;
use super::status::Outcome;
use crate::ingest::{ExportError, Ingest};
use crate::otlp::Payload;

/// `prometheus.WriteRequest` (the fields Sightline reads).
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// The series.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Labels, `__name__` included.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples in time order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Clone)]
struct WriteState {
    ingest: Ingest,
    max_request_bytes: usize,
}

/// The remote-write route.
pub fn router(ingest: Ingest, max_request_bytes: usize) -> Router {
    Router::new()
        .route("/api/v1/write", post(write))
        .with_state(WriteState {
            ingest,
            max_request_bytes,
        })
}

fn text(status: StatusCode, msg: String) -> Response {
    (status, msg).into_response()
}

async fn write(State(st): State<WriteState>, headers: HeaderMap, body: Body) -> Response {
    let metrics = st.ingest.metrics().clone();
    let result = receive(&st, &headers, body).await;
    let outcome = match &result {
        Ok(n) => {
            metrics
                .remote_write_samples
                .with_label_values(&["accepted"])
                .inc_by(*n);
            return StatusCode::NO_CONTENT.into_response();
        }
        Err(o) => o,
    };
    metrics
        .remote_write_samples
        .with_label_values(&["refused"])
        .inc();
    tracing::debug!(?outcome, "remote write refused");
    match result {
        Ok(_) => unreachable!("handled above"),
        Err(Outcome::Invalid(m)) => text(StatusCode::BAD_REQUEST, m),
        Err(Outcome::TooLarge(m)) => text(StatusCode::PAYLOAD_TOO_LARGE, m),
        Err(Outcome::Unsupported(m)) => text(StatusCode::UNSUPPORTED_MEDIA_TYPE, m),
        // Prometheus retries 5xx and 429 with backoff.
        Err(Outcome::Overloaded(m)) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "1")],
            m,
        )
            .into_response(),
        Err(Outcome::Unavailable(m)) => text(StatusCode::SERVICE_UNAVAILABLE, m),
        Err(Outcome::Accepted(_)) => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Decodes, converts and exports one request; returns the samples accepted.
async fn receive(st: &WriteState, headers: &HeaderMap, body: Body) -> Result<u64, Outcome> {
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("snappy");
    if !enc.eq_ignore_ascii_case("snappy") {
        return Err(Outcome::Unsupported(format!(
            "unsupported content encoding {enc:?}: remote write bodies are snappy-compressed"
        )));
    }
    let limit = st.max_request_bytes;
    let wire = axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| Outcome::TooLarge(format!("cannot read body within {limit} bytes: {e}")))?;
    let len = snap::raw::decompress_len(&wire)
        .map_err(|e| Outcome::Invalid(format!("invalid snappy body: {e}")))?;
    if len > limit {
        return Err(Outcome::TooLarge(format!(
            "request body decompresses to {len} bytes, over the limit of {limit}"
        )));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(&wire)
        .map_err(|e| Outcome::Invalid(format!("invalid snappy body: {e}")))?;
    let req = WriteRequest::decode(raw.as_slice())
        .map_err(|e| Outcome::Invalid(format!("invalid WriteRequest protobuf: {e}")))?;
    let otlp = to_otlp(req).map_err(Outcome::Invalid)?;
    let samples = count_points(&otlp);
    let payload = Payload::Metrics(otlp);
    st.ingest
        .precheck(
            crate::schema::Signal::Metrics,
            Transport::RemoteWrite,
            raw.len(),
        )
        .map_err(|e| Outcome::from_export(Err(e)))?;
    match st
        .ingest
        .export(Transport::RemoteWrite, payload, None)
        .await
    {
        Ok(rej) if rej.count > 0 => Err(Outcome::Invalid(rej.message)),
        Ok(_) => Ok(samples),
        Err(e @ ExportError::Overloaded { .. }) => Err(Outcome::Overloaded(e.to_string())),
        Err(e) => Err(Outcome::Unavailable(e.to_string())),
    }
}

fn count_points(r: &ExportMetricsServiceRequest) -> u64 {
    r.resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.len() as u64,
            _ => 0,
        })
        .sum()
}

/// Converts a write request to OTLP: one resource per (job, instance), one
/// gauge per metric name.
pub fn to_otlp(req: WriteRequest) -> Result<ExportMetricsServiceRequest, String> {
    type Key = (Option<String>, Option<String>);
    let mut resources: BTreeMap<Key, BTreeMap<String, Vec<NumberDataPoint>>> = BTreeMap::new();
    for ts in req.timeseries {
        let mut name = None;
        let mut job = None;
        let mut instance = None;
        let mut attributes = Vec::new();
        for l in ts.labels {
            if l.value.is_empty() {
                continue; // An empty label value means the label is absent.
            }
            match l.name.as_str() {
                "__name__" => name = Some(l.value),
                "job" => job = Some(l.value),
                "instance" => instance = Some(l.value),
                _ => attributes.push(crate::otlp::string_kv(&l.name, &l.value)),
            }
        }
        let name = name.ok_or_else(|| "a series has no __name__ label".to_string())?;
        let points = resources
            .entry((job, instance))
            .or_default()
            .entry(name)
            .or_default();
        for s in ts.samples {
            let nanos = s
                .timestamp
                .checked_mul(1_000_000)
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| format!("sample timestamp {} ms is out of range", s.timestamp))?;
            points.push(NumberDataPoint {
                attributes: attributes.clone(),
                time_unix_nano: nanos,
                value: Some(number_data_point::Value::AsDouble(s.value)),
                ..Default::default()
            });
        }
    }
    let resource_metrics = resources
        .into_iter()
        .map(|((job, instance), metrics)| {
            let mut attributes = Vec::new();
            if let Some(j) = job {
                attributes.push(crate::otlp::string_kv("service.name", &j));
            }
            if let Some(i) = instance {
                attributes.push(crate::otlp::string_kv("service.instance.id", &i));
            }
            ResourceMetrics {
                resource: Some(Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: metrics
                        .into_iter()
                        .map(|(name, data_points)| Metric {
                            name,
                            data: Some(metric::Data::Gauge(Gauge { data_points })),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    Ok(ExportMetricsServiceRequest { resource_metrics })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_and_instance_become_the_resource_and_stale_markers_survive() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "up".into(),
                    },
                    Label {
                        name: "job".into(),
                        value: "api".into(),
                    },
                    Label {
                        name: "instance".into(),
                        value: "h:1".into(),
                    },
                    Label {
                        name: "zone".into(),
                        value: "a".into(),
                    },
                ],
                samples: vec![
                    Sample {
                        value: 1.0,
                        timestamp: 1000,
                    },
                    Sample {
                        value: stale,
                        timestamp: 2000,
                    },
                ],
            }],
        };
        let otlp = to_otlp(req).unwrap();
        let rm = &otlp.resource_metrics[0];
        let res = &rm.resource.as_ref().unwrap().attributes;
        assert_eq!(res[0].key, "service.name");
        assert_eq!(res[1].key, "service.instance.id");
        let m = &rm.scope_metrics[0].metrics[0];
        assert_eq!(m.name, "up");
        let Some(metric::Data::Gauge(g)) = &m.data else {
            panic!("gauge")
        };
        assert_eq!(g.data_points[0].time_unix_nano, 1_000_000_000);
        assert_eq!(g.data_points[0].attributes[0].key, "zone");
        let Some(number_data_point::Value::AsDouble(v)) = g.data_points[1].value else {
            panic!()
        };
        assert_eq!(v.to_bits(), stale.to_bits());
    }

    #[test]
    fn a_series_without_a_name_is_refused() {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label {
                    name: "job".into(),
                    value: "x".into(),
                }],
                samples: vec![],
            }],
        };
        assert!(to_otlp(req).unwrap_err().contains("__name__"));
    }
}
