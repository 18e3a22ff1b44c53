//! OTLP/HTTP receiver (axum): `POST /v1/traces`, `/v1/metrics`, `/v1/logs`
//! with `application/x-protobuf` or `application/json` bodies, optionally
//! gzip- or zstd-compressed. Responses use the request's encoding.

use std::io::Read;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;

use super::Transport;
use super::status::Outcome;
use crate::ingest::Ingest;
use crate::otlp::{Encoding, Payload};
use crate::schema::Signal;

#[derive(Clone)]
struct HttpState {
    ingest: Ingest,
    max_request_bytes: usize,
}

/// The OTLP/HTTP routes.
pub fn router(ingest: Ingest, max_request_bytes: usize) -> Router {
    let state = HttpState {
        ingest,
        max_request_bytes,
    };
    Router::new()
        .route(
            "/v1/traces",
            post(|s, h, b| export(s, h, b, Signal::Traces)),
        )
        .route(
            "/v1/metrics",
            post(|s, h, b| export(s, h, b, Signal::Metrics)),
        )
        .route("/v1/logs", post(|s, h, b| export(s, h, b, Signal::Logs)))
        .with_state(state)
}

async fn export(
    State(st): State<HttpState>,
    headers: HeaderMap,
    body: Body,
    signal: Signal,
) -> Response {
    // Errors before the content type is known are answered in protobuf, the OTLP default.
    let encoding = match content_type(&headers) {
        Ok(e) => e,
        Err(o) => return finish(&st, signal, Encoding::Protobuf, 0, o),
    };
    let bytes = match read_body(&headers, body, st.max_request_bytes).await {
        Ok(b) => b,
        Err(o) => return finish(&st, signal, encoding, 0, o),
    };
    if let Err(e) = st.ingest.precheck(signal, Transport::Http, bytes.len()) {
        return finish(
            &st,
            signal,
            encoding,
            bytes.len(),
            Outcome::from_export(Err(e)),
        );
    }
    let original = (encoding == Encoding::Protobuf).then(|| bytes.clone());
    let outcome = match Payload::decode(signal, encoding, &bytes) {
        Ok(payload) => {
            Outcome::from_export(st.ingest.export(Transport::Http, payload, original).await)
        }
        Err(e) => Outcome::from_decode(&e),
    };
    finish(&st, signal, encoding, bytes.len(), outcome)
}

fn finish(
    st: &HttpState,
    signal: Signal,
    encoding: Encoding,
    len: usize,
    outcome: Outcome,
) -> Response {
    outcome.emit(st.ingest.metrics(), signal, Transport::Http, len);
    outcome.into_http(signal, encoding)
}

fn content_type(headers: &HeaderMap) -> Result<Encoding, Outcome> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(Outcome::Unsupported(format!(
            "unsupported content type {raw:?}: use application/x-protobuf or application/json"
        ))),
    }
}

fn too_large(limit: usize) -> Outcome {
    Outcome::TooLarge(format!("request body exceeds the limit of {limit} bytes"))
}

/// Reads and decompresses the body, enforcing `limit` on both the wire size
/// and the decompressed size (so a small gzip bomb is refused too).
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Outcome> {
    let enc = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    if !matches!(enc.as_str(), "identity" | "" | "gzip" | "x-gzip" | "zstd") {
        return Err(Outcome::Unsupported(format!(
            "unsupported content encoding {enc:?}: use gzip, zstd or none"
        )));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let wire = axum::body::to_bytes(body, limit).await.map_err(|e| {
        if is_length_limit(&e) {
            too_large(limit)
        } else {
            Outcome::Invalid(format!("cannot read request body: {e}"))
        }
    })?;
    let mut out = Vec::new();
    let read = match enc.as_str() {
        "gzip" | "x-gzip" => flate2::read::MultiGzDecoder::new(&wire[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
        "zstd" => zstd::stream::read::Decoder::new(&wire[..])
            .and_then(|d| d.take(limit as u64 + 1).read_to_end(&mut out)),
        _ => return Ok(wire),
    };
    read.map_err(|e| Outcome::Invalid(format!("cannot decompress {enc} body: {e}")))?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(Bytes::from(out))
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        src = s.source();
    }
    false
}
