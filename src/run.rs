//! `sightline run`: wires the receivers, the ingest pipeline and the HTTP API,
//! and owns the process lifecycle (signals, graceful shutdown).

use std::future::IntoFuture;

use anyhow::Context;
use collector::Ingest;
use collector::receive::{grpc, http};
use collector::self_metrics::SelfMetrics;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for {what}"))
}

/// Resolves when SIGTERM or SIGINT arrives. The handlers are installed when
/// this is called (not when first polled), so a signal during start-up is a
/// graceful stop too, not the default immediate exit.
fn termination() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    async move {
        tokio::select! {
            _ = recv(term.as_mut()) => {},
            _ = recv(int.as_mut()) => {},
        }
    }
}

async fn recv(s: Option<&mut tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

async fn until(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Loads the SLO files: a broken file is logged and skipped, the others
/// are evaluated.
fn slo_evaluator(config: &Config, engine: &query::QueryEngine) -> alerts::Evaluator {
    let (slos, errors) = alerts::evaluator::load_files(&config.slo.files);
    if !config.slo.files.is_empty() {
        tracing::info!(
            slos = slos.len(),
            refused = errors.len(),
            "SLO files loaded"
        );
    }
    alerts::Evaluator::new(
        engine.clone(),
        slos,
        errors,
        config.slo.clone(),
        config.data_dir.join("alerts").join("state.json"),
    )
}

/// Runs until a termination signal, then shuts down gracefully.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let signals = termination();
    let metrics = SelfMetrics::new();
    // Bind everything first so a taken port fails the start at once.
    let api = bind(config.http.addr, "the HTTP API").await?;
    let otlp_grpc = bind(config.otlp.grpc_addr, "OTLP/gRPC").await?;
    let otlp_http = bind(config.otlp.http_addr, "OTLP/HTTP").await?;
    let postgres = match config.postgres.enabled {
        true => Some(bind(config.postgres.addr, "the PostgreSQL wire protocol").await?),
        false => None,
    };
    let (ingest, pending) = Ingest::open(config.collector(), metrics)
        .await
        .context("cannot open the data directory")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let engine = query::QueryEngine::new(ingest.clone(), config.query.clone())
        .context("cannot start the query engine")?;
    let evaluator = slo_evaluator(&config, &engine);
    let api_routes = collector::admin::router(ingest.clone())
        .merge(query::sql::router(engine.clone()))
        .merge(query::prometheus::router(engine.clone()))
        .merge(query::profiles::api::router(engine.clone()))
        .merge(collector::receive::remote_write::router(
            ingest.clone(),
            config.otlp.max_request_bytes,
        ))
        .merge(alerts::api::router(evaluator.status()));

    // The API answers /-/healthy and /-/ready (503) while the WAL replays.
    tracing::info!(addr = %api.local_addr()?, "HTTP API listening");
    let api_task = tokio::spawn(
        axum::serve(api, api_routes)
            .with_graceful_shutdown(until(stop_rx.clone()))
            .into_future(),
    );
    ingest.replay(pending).await.context("WAL replay failed")?;
    let background = ingest.spawn_background(stop_rx.clone());
    let notifier = alerts::notify::Notifier::new(
        config.slo.alertmanager_urls.clone(),
        config.slo.webhook_urls.clone(),
        ingest.metrics().clone(),
    );
    let slo_task = tokio::spawn(evaluator.run(notifier, stop_rx.clone()));
    let probes_task = ebpf_probes::spawn(&ingest, &config.probes, stop_rx.clone());
    let warm_task =
        tokio::spawn(query::promql::warm::Warmer::new(engine.clone()).run(stop_rx.clone()));

    let max = config.otlp.max_request_bytes;
    tracing::info!(addr = %otlp_grpc.local_addr()?, "OTLP/gRPC receiver listening");
    let grpc_task = tokio::spawn(grpc::serve(
        ingest.clone(),
        otlp_grpc,
        max,
        until(stop_rx.clone()),
    ));
    tracing::info!(addr = %otlp_http.local_addr()?, "OTLP/HTTP receiver listening");
    let http_task = tokio::spawn(
        axum::serve(otlp_http, http::router(ingest.clone(), max))
            .with_graceful_shutdown(until(stop_rx.clone()))
            .into_future(),
    );

    let pg_task = match postgres {
        Some(listener) => {
            let handlers = std::sync::Arc::new(
                query::pgwire::Handlers::new(&engine)
                    .context("cannot start the PostgreSQL protocol")?,
            );
            tracing::info!(addr = %listener.local_addr()?, "PostgreSQL wire protocol listening");
            Some(tokio::spawn(query::pgwire::serve(
                listener,
                handlers,
                until(stop_rx.clone()),
            )))
        }
        None => None,
    };

    signals.await;
    tracing::info!(timeout = ?config.shutdown_timeout, "shutting down: refusing new requests and flushing");
    ingest.set_draining();
    let _ = stop_tx.send(true);
    let drain = async {
        let _ = grpc_task.await;
        let _ = http_task.await;
        if let Some(t) = pg_task {
            let _ = t.await;
        }
        let _ = slo_task.await;
        let _ = warm_task.await;
        if let Some(t) = probes_task {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        let _ = background.await;
        ingest.shutdown().await;
        let _ = api_task.await;
    };
    if tokio::time::timeout(config.shutdown_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            "shutdown deadline passed before the flush finished; unflushed data stays in the WAL and is replayed at the next start"
        );
    } else {
        tracing::info!("shutdown complete");
    }
    Ok(())
}
