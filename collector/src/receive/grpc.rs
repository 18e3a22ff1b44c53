//! OTLP/gRPC receiver (tonic): `TraceService`, `MetricsService` and
//! `LogsService` `Export`, with gzip and zstd request compression.
//!
//! The services take the raw message bytes (a pass-through codec) and decode
//! them here, so a malformed body gets `INVALID_ARGUMENT` as the OTLP
//! specification asks (tonic's own decoding would answer `INTERNAL`) and is
//! counted in the self-metrics.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes};
use tonic::body::Body;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::Transport;
use super::status::{self, Outcome};
use crate::ingest::Ingest;
use crate::otlp::{Encoding, Payload};
use crate::schema::Signal;

/// Passes message bytes through untouched in both directions (also used by
/// load generators that send pre-encoded requests).
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Binds a marker type to one OTLP service.
pub trait OtlpService: Send + Sync + 'static {
    /// The signal the service receives.
    const SIGNAL: Signal;
    /// The fully qualified gRPC service name.
    const NAME: &'static str;
}

/// Marker for `opentelemetry.proto.collector.trace.v1.TraceService`.
#[derive(Debug, Clone, Copy)]
pub struct TraceService;
/// Marker for `opentelemetry.proto.collector.metrics.v1.MetricsService`.
#[derive(Debug, Clone, Copy)]
pub struct MetricsService;
/// Marker for `opentelemetry.proto.collector.logs.v1.LogsService`.
#[derive(Debug, Clone, Copy)]
pub struct LogsService;

impl OtlpService for TraceService {
    const SIGNAL: Signal = Signal::Traces;
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}
impl OtlpService for MetricsService {
    const SIGNAL: Signal = Signal::Metrics;
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}
impl OtlpService for LogsService {
    const SIGNAL: Signal = Signal::Logs;
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
}

/// One OTLP gRPC service.
pub struct ExportServer<S> {
    ingest: Ingest,
    max_request_bytes: usize,
    _service: PhantomData<S>,
}

impl<S> Clone for ExportServer<S> {
    fn clone(&self) -> Self {
        Self {
            ingest: self.ingest.clone(),
            max_request_bytes: self.max_request_bytes,
            _service: PhantomData,
        }
    }
}

impl<S: OtlpService> ExportServer<S> {
    /// A service exporting into `ingest`.
    pub fn new(ingest: Ingest, max_request_bytes: usize) -> Self {
        Self {
            ingest,
            max_request_bytes,
            _service: PhantomData,
        }
    }
}

impl<S: OtlpService> NamedService for ExportServer<S> {
    const NAME: &'static str = S::NAME;
}

struct ExportCall<S> {
    ingest: Ingest,
    _service: PhantomData<S>,
}

impl<S: OtlpService> UnaryService<Bytes> for ExportCall<S> {
    type Response = Bytes;
    type Future = BoxFuture<Response<Bytes>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let ingest = self.ingest.clone();
        Box::pin(async move {
            let body = request.into_inner();
            let len = body.len();
            let outcome = handle(&ingest, S::SIGNAL, body).await;
            outcome.emit(ingest.metrics(), S::SIGNAL, Transport::Grpc, len);
            outcome.into_grpc(S::SIGNAL)
        })
    }
}

async fn handle(ingest: &Ingest, signal: Signal, body: Bytes) -> Outcome {
    if let Err(e) = ingest.precheck(signal, Transport::Grpc, body.len()) {
        return Outcome::from_export(Err(e));
    }
    match Payload::decode(signal, Encoding::Protobuf, &body) {
        Ok(payload) => {
            Outcome::from_export(ingest.export(Transport::Grpc, payload, Some(body)).await)
        }
        Err(e) => Outcome::from_decode(&e),
    }
}

impl<S, B> Service<http::Request<B>> for ExportServer<S>
where
    S: OtlpService,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let expected = format!("/{}/Export", S::NAME);
        if req.uri().path() != expected {
            return Box::pin(async { Ok(status::grpc_unimplemented()) });
        }
        let call = ExportCall::<S> {
            ingest: self.ingest.clone(),
            _service: PhantomData,
        };
        let limit = self.max_request_bytes;
        Box::pin(async move {
            let mut grpc = Grpc::new(RawCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(limit);
            Ok(grpc.unary(call, req).await)
        })
    }
}

/// Serves the three OTLP gRPC services on `listener` until `shutdown` resolves.
pub async fn serve(
    ingest: Ingest,
    listener: tokio::net::TcpListener,
    max_request_bytes: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(ExportServer::<TraceService>::new(
            ingest.clone(),
            max_request_bytes,
        ))
        .add_service(ExportServer::<MetricsService>::new(
            ingest.clone(),
            max_request_bytes,
        ))
        .add_service(ExportServer::<LogsService>::new(ingest, max_request_bytes))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
}
