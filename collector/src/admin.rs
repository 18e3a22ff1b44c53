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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CollectorConfig;
    use crate::self_metrics::SelfMetrics;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn status(ingest: &Ingest, path: &str) -> StatusCode {
        let req = Request::get(path).body(Body::empty()).unwrap();
        router(ingest.clone()).oneshot(req).await.unwrap().status()
    }

    #[tokio::test]
    async fn ready_only_between_replay_and_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let config = CollectorConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let (ingest, pending) = Ingest::open(config, SelfMetrics::new()).await.unwrap();
        assert_eq!(
            status(&ingest, "/-/ready").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(&ingest, "/-/healthy").await, StatusCode::OK);
        ingest.replay(pending).await.unwrap();
        assert_eq!(status(&ingest, "/-/ready").await, StatusCode::OK);
        ingest.set_draining();
        assert_eq!(
            status(&ingest, "/-/ready").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(status(&ingest, "/-/healthy").await, StatusCode::OK);
    }
}
