//! OTLP receivers: gRPC ([`grpc`]) and HTTP ([`http`]), both handing decoded
//! requests to [`crate::ingest::Ingest::export`]. [`status`] maps outcomes to
//! the error shapes the OTLP specification prescribes.

pub mod grpc;
pub mod http;
pub mod remote_write;
pub mod status;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Which transport a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP.
    Http,
    /// Prometheus remote write (converted to OTLP metrics on receipt).
    RemoteWrite,
    /// Metrics Sightline derives itself (SLO evaluation, kernel probes).
    Internal,
}

impl Transport {
    /// Label used in self-metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
            Transport::RemoteWrite => "remote_write",
            Transport::Internal => "internal",
        }
    }
}

/// OTLP receiver settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// OTLP/gRPC listen address.
    pub grpc_addr: SocketAddr,
    /// OTLP/HTTP listen address.
    pub http_addr: SocketAddr,
    /// Largest accepted request body, after decompression.
    pub max_request_bytes: usize,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            grpc_addr: ([0, 0, 0, 0], 4317).into(),
            http_addr: ([0, 0, 0, 0], 4318).into(),
            max_request_bytes: 20 << 20,
        }
    }
}
