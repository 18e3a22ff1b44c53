//! Sightline's kernel view: eBPF programs (built from `programs/` with aya
//! and embedded when the `embed` feature is on) and the loader that
//! attaches them, drains their maps every `drain_interval` and writes the
//! results into the metric store as ordinary OTLP metrics.
//!
//! | probe | tracepoints | metric (PromQL) | labels |
//! |---|---|---|---|
//! | run queue | `sched:sched_wakeup[_new]`, `sched_switch` | `sightline_runqueue_latency_seconds` | `cgroup`, `container_id`, `k8s_pod_uid` |
//! | block I/O | `block:block_rq_issue`, `block_rq_complete` | `sightline_block_io_latency_seconds` | `device`, `operation` |
//! | syscalls | `raw_syscalls:sys_enter`, `sys_exit` | `sightline_syscall_latency_seconds` | `syscall`, `process`, `pid` (top N by time) |
//! | TCP | `sock:inet_sock_set_state`, `tcp:tcp_retransmit_skb` | `sightline_tcp_connect_latency_seconds`, `sightline_tcp_retransmits_total` | `port`; `address`, `port` |
//! | CPU profiler | `perf_event` `cpu-clock` | table `profile_samples` | `pid`, `comm`, `service_name`, `container_id` |
//!
//! Without privileges, tracefs or the programs themselves, one log line
//! says what is missing and which probes are off, `sightline_probe_up`
//! shows 0, and the rest of Sightline runs as usual.

pub mod attach;
pub mod cgroup;
pub mod elf;
pub mod histogram;
pub mod names;
pub mod process;
pub mod profile;
pub mod symbols;
pub mod tracefs;

use std::collections::BTreeMap;
use std::time::Duration;

use aya::Pod;
use aya::maps::{MapData, PerCpuHashMap};
use collector::Ingest;
use collector::convert::{ProfileSample, profile_batch};
use collector::otlp::Payload;
use collector::receive::Transport;
use ebpf_probes_common::{HistKey, SUM_SLOT, probe};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    Histogram, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::{Deserialize, Serialize};

use histogram::{Labels, Log2Histograms, kv};

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
    /// Run-queue latency per cgroup.
    pub runqueue: bool,
    /// Block I/O latency per device and operation.
    pub block_io: bool,
    /// Syscall latency per syscall and process. Off by default: it runs on
    /// every syscall of every process.
    pub syscalls: bool,
    /// TCP connect latency and retransmits.
    pub tcp: bool,
    /// Continuous CPU profiling into `profile_samples`.
    pub profiler: bool,
    /// Profiler samples per second per CPU.
    pub profiler_frequency: u64,
    /// Syscall series kept: the (syscall, process) pairs with the most time.
    pub syscalls_top_n: usize,
    /// How often the kernel maps are drained into the store.
    #[serde(with = "humantime_serde")]
    pub drain_interval: Duration,
}

impl Default for ProbesConfig {
    fn default() -> Self {
        ProbesConfig {
            enabled: true,
            runqueue: true,
            block_io: true,
            syscalls: false,
            tcp: true,
            profiler: true,
            profiler_frequency: 19,
            syscalls_top_n: 20,
            drain_interval: Duration::from_secs(5),
        }
    }
}

/// One probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Probe {
    /// Run-queue latency.
    RunQueue,
    /// Block I/O latency.
    BlockIo,
    /// Syscall latency.
    Syscalls,
    /// TCP connect latency and retransmits.
    Tcp,
    /// CPU profiler.
    Profiler,
}

impl Probe {
    /// Every probe.
    pub const ALL: [Probe; 5] = [
        Probe::RunQueue,
        Probe::BlockIo,
        Probe::Syscalls,
        Probe::Tcp,
        Probe::Profiler,
    ];

    /// Its name in config, logs and `sightline_probe_up{probe}`.
    pub fn name(self) -> &'static str {
        match self {
            Probe::RunQueue => "runqueue",
            Probe::BlockIo => "block_io",
            Probe::Syscalls => "syscalls",
            Probe::Tcp => "tcp",
            Probe::Profiler => "profiler",
        }
    }

    fn wanted(self, c: &ProbesConfig) -> bool {
        match self {
            Probe::RunQueue => c.runqueue,
            Probe::BlockIo => c.block_io,
            Probe::Syscalls => c.syscalls,
            Probe::Tcp => c.tcp,
            Probe::Profiler => c.profiler,
        }
    }
}

/// Why probes are off.
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
    /// The probe thread could not run.
    #[error("probe thread: {0}")]
    Thread(String),
    /// The online CPUs could not be read.
    #[error("cannot list the online CPUs: {0}")]
    Cpus(String),
}

/// Loads the eBPF object (for one-shot tools such as `sightline profile`).
pub fn load() -> Result<aya::Ebpf, ProbeError> {
    let object = PROGRAMS.ok_or(ProbeError::NotBuilt)?;
    tracefs::ensure_mounted();
    Ok(aya::Ebpf::load(object)?)
}

/// What the probes counted since start.
#[derive(Debug, Default)]
pub struct Totals {
    /// Run-queue latency per cgroup.
    pub runqueue: Log2Histograms,
    /// Block I/O latency per device and operation.
    pub block_io: Log2Histograms,
    /// Syscall latency per syscall and process.
    pub syscalls: Log2Histograms,
    /// TCP connect latency per remote port.
    pub tcp_connect: Log2Histograms,
    /// TCP retransmits per remote address and port.
    pub tcp_retransmits: BTreeMap<Labels, u64>,
}

/// The running probes.
pub struct Probes {
    // Dropping the object detaches the programs.
    _ebpf: aya::Ebpf,
    hist: PerCpuHashMap<MapData, HistKey, u64>,
    running: Vec<Probe>,
    /// Counts since start.
    pub totals: Totals,
    cgroups: process::PidCache<cgroup::Placement>,
    comms: process::PidCache<String>,
    devices: BTreeMap<u32, String>,
    start_ns: u64,
    host: String,
    top_n: usize,
    profiler: Option<profile::Profiler>,
    profiler_period_ns: i64,
    services: process::PidCache<Option<String>>,
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

fn labels(pairs: &[(&str, String)]) -> Labels {
    let mut l: Labels = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    l.sort();
    l
}

impl Probes {
    /// Loads the programs and attaches the probes `config` wants. A probe
    /// that cannot attach (say, a tracepoint this kernel lacks) is logged
    /// and off; `Err` when nothing could be loaded at all.
    pub fn start(
        config: &ProbesConfig,
        metrics: &collector::self_metrics::SelfMetrics,
    ) -> Result<Probes, ProbeError> {
        for p in Probe::ALL {
            metrics.probe_up.with_label_values(&[p.name()]).set(0);
        }
        let object = PROGRAMS.ok_or(ProbeError::NotBuilt)?;
        tracefs::ensure_mounted();
        let mut ebpf = aya::Ebpf::load(object)?;
        let mut running = Vec::new();
        let mut profiler = None;
        for p in Probe::ALL.into_iter().filter(|p| p.wanted(config)) {
            let attached = match p {
                Probe::Profiler => {
                    profile::Profiler::attach(&mut ebpf, config.profiler_frequency, None)
                        .map(|prof| profiler = Some(prof))
                }
                _ => attach::attach(&mut ebpf, p),
            };
            match attached {
                Ok(()) => {
                    metrics.probe_up.with_label_values(&[p.name()]).set(1);
                    running.push(p);
                }
                Err(e) => tracing::warn!(probe = p.name(), error = %e, "probe off"),
            }
        }
        let map = ebpf
            .take_map("HIST")
            .ok_or(ProbeError::MissingMap("HIST"))?;
        Ok(Probes {
            hist: PerCpuHashMap::try_from(map)?,
            _ebpf: ebpf,
            running,
            totals: Totals::default(),
            cgroups: process::PidCache::new(cgroup::read_placement),
            comms: process::PidCache::new(names::read_comm),
            devices: BTreeMap::new(),
            start_ns: now_ns(),
            host: host_name(),
            top_n: config.syscalls_top_n,
            profiler,
            profiler_period_ns: 1_000_000_000 / config.profiler_frequency.max(1) as i64,
            services: process::PidCache::new(process::read_service_name),
        })
    }

    /// The probes that attached.
    pub fn running(&self) -> &[Probe] {
        &self.running
    }

    /// Moves the kernel's counts into [`Probes::totals`] and empties the
    /// map. An increment landing between a read and its delete is lost; at
    /// drain intervals of seconds that is a few events in millions.
    pub fn collect(&mut self) {
        for (key, n) in take_counts(&mut self.hist) {
            self.record(key, n);
        }
        self.cgroups.prune();
        self.comms.prune();
    }

    fn record(&mut self, key: HistKey, n: u64) {
        let (l, hist) = match key.probe {
            probe::RUNQUEUE => {
                let place = self.cgroups.get(key.a);
                let mut pairs = vec![("cgroup", place.cgroup)];
                pairs.extend(place.container_id.map(|c| ("container.id", c)));
                pairs.extend(place.pod_uid.map(|u| ("k8s.pod.uid", u)));
                (labels(&pairs), &mut self.totals.runqueue)
            }
            probe::BLOCK => {
                let dev = self
                    .devices
                    .entry(key.a)
                    .or_insert_with(|| names::device_name(key.a))
                    .clone();
                (
                    labels(&[
                        ("device", dev),
                        ("operation", names::block_op(key.b).into()),
                    ]),
                    &mut self.totals.block_io,
                )
            }
            probe::SYSCALL => {
                let comm = self.comms.get(key.b);
                let l = labels(&[
                    ("syscall", names::syscall_name(key.a)),
                    ("process", comm),
                    ("pid", key.b.to_string()),
                ]);
                (l, &mut self.totals.syscalls)
            }
            probe::TCP_CONNECT => (
                labels(&[("port", key.a.to_string())]),
                &mut self.totals.tcp_connect,
            ),
            probe::TCP_RETRANSMIT => {
                let addr = match key.a {
                    0 => "ipv6".to_string(),
                    a => std::net::Ipv4Addr::from(a.to_le_bytes()).to_string(),
                };
                *self
                    .totals
                    .tcp_retransmits
                    .entry(labels(&[("address", addr), ("port", key.b.to_string())]))
                    .or_default() += n;
                return;
            }
            _ => return,
        };
        if key.slot == SUM_SLOT {
            hist.add_sum(l, n);
        } else {
            hist.add(l, key.slot, n);
        }
    }

    /// Drains the kernel maps and returns every probe metric, cumulative
    /// since start (`None` before anything was seen).
    pub fn drain(&mut self) -> Option<ExportMetricsServiceRequest> {
        self.collect();
        let now = now_ns();
        let t = &self.totals;
        let mut metrics = Vec::new();
        let histograms = [
            (
                "sightline.runqueue.latency",
                "Time runnable threads waited for a CPU, per cgroup (eBPF, sched tracepoints).",
                &t.runqueue,
            ),
            (
                "sightline.block.io.latency",
                "Block I/O request latency from issue to completion, per device and operation (eBPF).",
                &t.block_io,
            ),
            (
                "sightline.tcp.connect.latency",
                "TCP active connect latency, SYN_SENT to ESTABLISHED, per remote port (eBPF).",
                &t.tcp_connect,
            ),
        ];
        let top = t.syscalls.top_by_sum(self.top_n);
        for (name, description, h) in histograms.into_iter().chain([(
            "sightline.syscall.latency",
            "Syscall latency per syscall and process, the top N pairs by total time (eBPF, raw_syscalls).",
            &top,
        )]) {
            if !h.is_empty() {
                metrics.push(Metric {
                    name: name.into(),
                    description: description.into(),
                    unit: "s".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: h.points(self.start_ns, now),
                        aggregation_temporality: 2,
                    })),
                    ..Default::default()
                });
            }
        }
        if !t.tcp_retransmits.is_empty() {
            metrics.push(Metric {
                name: "sightline.tcp.retransmits".into(),
                description: "TCP segments retransmitted, per remote address and port (eBPF)."
                    .into(),
                unit: "{segment}".into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: t
                        .tcp_retransmits
                        .iter()
                        .map(|(l, n)| NumberDataPoint {
                            attributes: l.iter().map(|(k, v)| kv(k, v)).collect(),
                            start_time_unix_nano: self.start_ns,
                            time_unix_nano: now,
                            value: Some(number_data_point::Value::AsInt(*n as i64)),
                            ..Default::default()
                        })
                        .collect(),
                    aggregation_temporality: 2,
                    is_monotonic: true,
                })),
                ..Default::default()
            });
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

    /// Drains the profiler: one sample row per (process, stack) since the
    /// last drain, counted in `metrics`.
    pub fn drain_profiles(
        &mut self,
        metrics: &collector::self_metrics::SelfMetrics,
    ) -> Vec<ProfileSample> {
        let Some(profiler) = self.profiler.as_mut() else {
            return Vec::new();
        };
        let before = profiler.symbols.stats;
        let (samples, stats) = profiler.drain();
        let after = profiler.symbols.stats;
        let lookups = &metrics.profile_symbol_lookups;
        lookups
            .with_label_values(&["hit"])
            .inc_by(after.hits - before.hits);
        lookups
            .with_label_values(&["miss"])
            .inc_by(after.misses - before.misses);
        let counted = &metrics.profile_samples;
        counted
            .with_label_values(&["no_frame_pointers"])
            .inc_by(stats.without_frame_pointers);
        counted
            .with_label_values(&["none"])
            .inc_by(stats.without_stack);
        counted
            .with_label_values(&["walked"])
            .inc_by(stats.samples - stats.without_frame_pointers - stats.without_stack);
        let now = now_ns() as i64;
        let rows = samples
            .into_iter()
            .map(|s| {
                let place = self.cgroups.get(s.tgid);
                ProfileSample {
                    time_unix_nano: now,
                    host_name: self.host.clone(),
                    service_name: self.services.get(s.tgid),
                    pid: s.tgid,
                    comm: s.comm,
                    container_id: place.container_id,
                    k8s_pod_uid: place.pod_uid,
                    stack: s.frames,
                    count: s.count,
                    period_nanos: self.profiler_period_ns,
                }
            })
            .collect();
        self.services.prune();
        rows
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
            let samples = self.drain_profiles(ingest.metrics());
            if !samples.is_empty()
                && let Err(e) = ingest
                    .export(
                        Transport::Internal,
                        Payload::Profiles(profile_batch(&samples)),
                        None,
                    )
                    .await
            {
                tracing::warn!(error = %e, samples = samples.len(), "profile samples not stored this round");
            }
        }
    }
}

/// Starts the probes `config` enables on their own thread (the symbolizer
/// is not `Send`); logs one line and keeps going when they cannot run.
/// Must be called inside the tokio runtime, which stores what they drain.
pub fn spawn(
    ingest: &Ingest,
    config: &ProbesConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Option<std::thread::JoinHandle<()>> {
    if !config.enabled {
        return None;
    }
    let wanted: Vec<&str> = Probe::ALL
        .iter()
        .filter(|p| p.wanted(config))
        .map(|p| p.name())
        .collect();
    let runtime = tokio::runtime::Handle::current();
    let (started_tx, started) = std::sync::mpsc::channel();
    let (ingest, config) = (ingest.clone(), config.clone());
    let thread = std::thread::Builder::new()
        .name("sightline-probes".into())
        .spawn(move || match Probes::start(&config, ingest.metrics()) {
            Ok(p) => {
                let names: Vec<&str> = p.running().iter().map(|p| p.name()).collect();
                let _ = started_tx.send(Ok(names));
                runtime.block_on(p.run(ingest, config.drain_interval, stop));
            }
            Err(e) => {
                let _ = started_tx.send(Err(e));
            }
        });
    let outcome = match &thread {
        Ok(_) => started
            .recv()
            .unwrap_or_else(|_| Err(ProbeError::Thread("it ended while starting".into()))),
        Err(e) => Err(ProbeError::Thread(e.to_string())),
    };
    match outcome {
        Ok(names) => {
            tracing::info!(probes = ?names, "eBPF probes running");
            thread.ok()
        }
        Err(e) => {
            tracing::warn!(error = %e, "eBPF probes off ({}); everything else runs", wanted.join(", "));
            None
        }
    }
}

/// Empties a per-CPU counter map, returning each key's count summed over
/// CPUs (keys counted zero times are left out). An increment landing
/// between a read and its delete is lost; at drain intervals of seconds
/// that is a few events in millions.
pub(crate) fn take_counts<K: Pod>(map: &mut PerCpuHashMap<MapData, K, u64>) -> Vec<(K, u64)> {
    let keys: Vec<K> = map.keys().filter_map(Result::ok).collect();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let Ok(values) = map.get(&key, 0) else {
            continue;
        };
        let _ = map.remove(&key);
        let n: u64 = values.iter().sum();
        if n > 0 {
            out.push((key, n));
        }
    }
    out
}
