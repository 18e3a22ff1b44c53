//! Outcomes of an export request and their OTLP error shapes: HTTP status
//! codes with a `google.rpc.Status` body, and gRPC status codes.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use bytes::Bytes;
use prost::Message;
use tonic::codegen::http;
use tonic_types::{ErrorDetails, StatusExt};

use super::Transport;
use crate::events::RequestCompleted;
use crate::ingest::ExportError;
use crate::otlp::{DecodeError, Encoding, Payload, Rejected};
use crate::schema::Signal;
use crate::self_metrics::SelfMetrics;

/// How long clients are asked to wait before retrying when overloaded.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The result of one export request.
#[derive(Debug)]
pub enum Outcome {
    /// Accepted; items listed in the rejection were invalid and dropped.
    Accepted(Rejected),
    /// The body could not be decoded (HTTP 400, gRPC `INVALID_ARGUMENT`).
    Invalid(String),
    /// The body exceeds the size limit (HTTP 413).
    TooLarge(String),
    /// Unsupported content type or encoding (HTTP 415).
    Unsupported(String),
    /// The memory budget is exhausted (HTTP 503 + `Retry-After`, gRPC `UNAVAILABLE` + `RetryInfo`).
    Overloaded(String),
    /// The request could not be made durable (HTTP 503, gRPC `UNAVAILABLE`).
    Unavailable(String),
}

impl Outcome {
    /// Maps the result of [`crate::ingest::Ingest::export`].
    pub fn from_export(r: Result<Rejected, ExportError>) -> Outcome {
        match r {
            Ok(rej) => Outcome::Accepted(rej),
            Err(e @ ExportError::Overloaded { .. }) => Outcome::Overloaded(e.to_string()),
            Err(e @ ExportError::Wal(_)) => Outcome::Unavailable(e.to_string()),
        }
    }

    /// Maps a body that [`Payload::decode`] refused: too large once its
    /// context is copied to every item (HTTP 413), or invalid (HTTP 400).
    pub fn from_decode(e: &DecodeError) -> Outcome {
        if e.is_too_large() {
            Outcome::TooLarge(e.to_string())
        } else {
            Outcome::Invalid(e.to_string())
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Outcome::Accepted(r) if r.count > 0 => "partial",
            Outcome::Accepted(_) => "ok",
            Outcome::Invalid(_) => "invalid",
            Outcome::TooLarge(_) => "too_large",
            Outcome::Unsupported(_) => "unsupported",
            Outcome::Overloaded(_) => "overloaded",
            Outcome::Unavailable(_) => "error",
        }
    }

    /// Logs and counts the request.
    pub fn emit(&self, m: &SelfMetrics, signal: Signal, transport: Transport, bytes: usize) {
        if let Outcome::Invalid(msg) | Outcome::TooLarge(msg) | Outcome::Unsupported(msg) = self {
            tracing::debug!(%signal, transport = transport.as_str(), error = %msg, "bad export request");
        }
        RequestCompleted {
            signal,
            transport,
            outcome: self.label(),
            bytes,
        }
        .emit(m);
    }

    /// The gRPC response.
    pub fn into_grpc(self, signal: Signal) -> Result<tonic::Response<Bytes>, tonic::Status> {
        match self {
            Outcome::Accepted(rej) => Ok(tonic::Response::new(Bytes::from(
                Payload::response(signal, &rej).encode(Encoding::Protobuf),
            ))),
            Outcome::Invalid(m) | Outcome::Unsupported(m) => {
                Err(tonic::Status::invalid_argument(m))
            }
            Outcome::TooLarge(m) => Err(tonic::Status::resource_exhausted(m)),
            Outcome::Overloaded(m) | Outcome::Unavailable(m) => {
                Err(tonic::Status::with_error_details(
                    tonic::Code::Unavailable,
                    m,
                    ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
                ))
            }
        }
    }

    /// The HTTP response, encoded like the request.
    pub fn into_http(self, signal: Signal, encoding: Encoding) -> HttpResponse {
        let (code, grpc_code, msg) = match self {
            Outcome::Accepted(rej) => {
                let body = Payload::response(signal, &rej).encode(encoding);
                return with_type(StatusCode::OK, encoding, body);
            }
            Outcome::Invalid(m) => (StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument, m),
            Outcome::TooLarge(m) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                tonic::Code::ResourceExhausted,
                m,
            ),
            Outcome::Unsupported(m) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                tonic::Code::InvalidArgument,
                m,
            ),
            Outcome::Overloaded(m) | Outcome::Unavailable(m) => {
                (StatusCode::SERVICE_UNAVAILABLE, tonic::Code::Unavailable, m)
            }
        };
        let mut resp = with_type(code, encoding, status_body(grpc_code, &msg, encoding));
        if code == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(RETRY_AFTER.as_secs()),
            );
        }
        resp
    }
}

fn with_type(code: StatusCode, encoding: Encoding, body: Vec<u8>) -> HttpResponse {
    let ct = match encoding {
        Encoding::Protobuf => "application/x-protobuf",
        Encoding::Json => "application/json",
    };
    (code, [(header::CONTENT_TYPE, ct)], body).into_response()
}

/// A `google.rpc.Status` body, as OTLP/HTTP error responses carry.
fn status_body(code: tonic::Code, message: &str, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => tonic_types::Status {
            code: code as i32,
            message: message.into(),
            details: vec![],
        }
        .encode_to_vec(),
        Encoding::Json => {
            serde_json::to_vec(&serde_json::json!({ "code": code as i32, "message": message }))
                .unwrap_or_default()
        }
    }
}

/// The response tonic's generated servers give for unknown methods.
pub fn grpc_unimplemented() -> http::Response<tonic::body::Body> {
    tonic::Status::unimplemented("unknown method").into_http()
}
