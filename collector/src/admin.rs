//! The admin endpoints on the HTTP API address: `GET /-/healthy`,
//! `GET /-/ready` (ready once WAL replay has finished) and `GET /metrics`.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::ingest::Ingest;

/// The admin routes.
pub fn router(ingest: Ingest) -> Router {
    Router::new()
        .route("/-/healthy", get(|| async { "Sightline is Healthy.\n" }))
        .route("/-/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(ingest)
}

async fn ready(State(ingest): State<Ingest>) -> impl IntoResponse {
    if ingest.is_ready() {
        (StatusCode::OK, "Sightline is Ready.\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Replaying the write-ahead log.\n",
        )
    }
}

async fn metrics(State(ingest): State<Ingest>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ingest.metrics().render(),
    )
}
