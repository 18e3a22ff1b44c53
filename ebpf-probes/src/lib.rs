//! Sightline's kernel view: eBPF programs (built from `programs/` with aya
//! and embedded when the `embed` feature is on) and the loader that
//! attaches them, drains their maps every `drain_interval` and writes the
//! results into the metric store as ordinary OTLP metrics.
//!
//! Probes so far: run-queue latency ([`runqueue`]). Each probe can be
//! switched off; without privileges, BTF-free tracefs or the programs
//! themselves, one log line says what is missing, `sightline_probe_up`
//! shows 0 and the rest of Sightline runs as usual.

pub mod cgroup;
pub mod histogram;
pub mod runqueue;
pub mod tracefs;

use std::time::Duration;

use collector::Ingest;
use collector::otlp::Payload;
use collector::receive::Transport;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    Histogram, Metric, ResourceMetrics, ScopeMetrics, metric,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::{Deserialize, Serialize};

use histogram::kv;

/// The kernel-side object, when built with the `embed` feature.
#[cfg(feature = "embed")]
pub static PROGRAMS: Option<&[u8]> = Some(aya::include_bytes_aligned!(concat!(
    env!("OUT_DIR"),
    "/sightline-probes.o"
)));

/// The kernel-side object, when built with the `embed` feature.
#[cfg(not(feature = "embed"))]
pub static PROGRAMS: Option<&[u8]> = None;

/// Probe settings (`probes:` in the config file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbesConfig {
    /// Load any probe at all.
    pub enabled: bool,
    /// Run-queue latency histograms per cgroup.
    pub runqueue: bool,
    /// How often the kernel maps are drained into the store.
    #[serde(with = "humantime_serde")]
    pub drain_interval: Duration,
}

impl Default for ProbesConfig {
    fn default() -> Self {
        ProbesConfig {
            enabled: true,
            runqueue: true,
            drain_interval: Duration::from_secs(5),
        }
    }
}

/// Why a probe is off.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Built without the `embed` feature.
    #[error(
        "this build has no eBPF programs (build with `--features ebpf`; scripts/setup.sh does when the nightly toolchain and bpf-linker are installed)"
    )]
    NotBuilt,
    /// Loading the object failed (privileges, kernel support).
    #[error("cannot load the eBPF programs: {0} (needs root, or CAP_BPF and CAP_PERFMON)")]
    Load(#[from] aya::EbpfError),
    /// A program failed to load or attach.
    #[error("{0}")]
    Program(#[from] aya::programs::ProgramError),
    /// A map operation failed.
    #[error("{0}")]
    Map(#[from] aya::maps::MapError),
    /// A tracepoint or field is missing.
    #[error("{0}")]
    Format(#[from] tracefs::FormatError),
    /// The object lacks a program (a build mismatch).
    #[error("the eBPF object has no program {0}")]
    MissingProgram(&'static str),
    /// The object lacks a map (a build mismatch).
    #[error("the eBPF object has no map {0}")]
    MissingMap(&'static str),
}

/// The running probes.
pub struct Probes {
    // Dropping the object detaches the programs.
    _ebpf: aya::Ebpf,
    runqueue: Option<runqueue::RunQueue>,
    start_ns: u64,
    host: String,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The machine's host name (`host.name` of every probe metric).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

impl Probes {
    /// Loads the programs and attaches the enabled probes. Probes that fail
    /// are logged and reported off; `Err` only when none could start.
    pub fn start(
        config: &ProbesConfig,
        metrics: &collector::self_metrics::SelfMetrics,
    ) -> Result<Probes, ProbeError> {
        let up = |probe: &str, on: bool| {
            metrics
                .probe_up
                .with_label_values(&[probe])
                .set(i64::from(on))
        };
        up("runqueue", false);
        let Some(object) = PROGRAMS else {
            return Err(ProbeError::NotBuilt);
        };
        tracefs::ensure_mounted();
        let mut ebpf = aya::Ebpf::load(object)?;
        let runqueue = match config.runqueue {
            false => None,
            true => match runqueue::RunQueue::attach(&mut ebpf) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(probe = "runqueue", error = %e, "probe off");
                    None
                }
            },
        };
        up("runqueue", runqueue.is_some());
        Ok(Probes {
            _ebpf: ebpf,
            runqueue,
            start_ns: now_ns(),
            host: host_name(),
        })
    }

    /// Drains every probe; returns the metrics to store (none yet: `None`).
    pub fn drain(&mut self) -> Option<ExportMetricsServiceRequest> {
        let now = now_ns();
        let mut metrics = Vec::new();
        if let Some(r) = &mut self.runqueue {
            r.drain();
            if !r.totals.is_empty() {
                metrics.push(Metric {
                    name: "sightline.runqueue.latency".into(),
                    description: "Time runnable threads waited for a CPU, per cgroup (eBPF, sched tracepoints).".into(),
                    unit: "s".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: r.totals.points(self.start_ns, now),
                        aggregation_temporality: 2,
                    })),
                    ..Default::default()
                });
            }
        }
        (!metrics.is_empty()).then(|| ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", "sightline"), kv("host.name", &self.host)],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    /// The run-queue probe, for tests and one-shot tools.
    pub fn runqueue(&mut self) -> Option<&mut runqueue::RunQueue> {
        self.runqueue.as_mut()
    }

    /// Drains every `drain_interval` into `ingest` until `stop`.
    pub async fn run(
        mut self,
        ingest: Ingest,
        interval: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            if let Some(req) = self.drain()
                && let Err(e) = ingest
                    .export(Transport::Internal, Payload::Metrics(req), None)
                    .await
            {
                tracing::warn!(error = %e, "probe metrics not stored this round");
            }
        }
    }
}

/// Starts the probes `config` enables in the background; logs one line
/// and keeps going when they cannot run.
pub fn spawn(
    ingest: &Ingest,
    config: &ProbesConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if !config.enabled {
        return None;
    }
    match Probes::start(config, ingest.metrics()) {
        Ok(p) => {
            tracing::info!("eBPF probes running: runqueue");
            Some(tokio::spawn(p.run(
                ingest.clone(),
                config.drain_interval,
                stop,
            )))
        }
        Err(e) => {
            tracing::warn!(error = %e, "eBPF probes off (runqueue); everything else runs");
            None
        }
    }
}
