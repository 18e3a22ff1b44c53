//! The ingest pipeline: receivers hand decoded requests to [`Ingest::export`],
//! which validates them, makes them durable in the WAL, acknowledges, and
//! converts them to Arrow off the request path. Background tasks flush the
//! buffer to Parquet, truncate the WAL, compact and apply retention.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;

use crate::buffer::{Buffer, FlushPolicy, MemoryBudget, Taken};
use crate::convert::convert;
use crate::events;
use crate::otlp::{Encoding, Payload, Rejected};
use crate::receive::{OtlpConfig, Transport};
use crate::schema::{Signal, Table};
use crate::self_metrics::SelfMetrics;
use crate::storage::recovery::{self, Covered};
use crate::storage::{DataFile, Storage, StorageConfig, StorageError, compaction, retention};
use crate::wal::{Record, Wal, WalConfig, WalError, WalReplay};
use arrow::array::RecordBatch;

/// Everything the collector needs to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorConfig {
    /// Root of the WAL and the Parquet files.
    pub data_dir: PathBuf,
    /// Bytes of unflushed and in-flight data allowed before receivers refuse
    /// requests with a retryable error.
    pub memory_limit_bytes: u64,
    /// OTLP receivers.
    pub otlp: OtlpConfig,
    /// Write-ahead log.
    pub wal: WalConfig,
    /// Parquet flushing, compaction and retention.
    pub storage: StorageConfig,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./sightline-data"),
            memory_limit_bytes: 512 << 20,
            otlp: OtlpConfig::default(),
            wal: WalConfig::default(),
            storage: StorageConfig::default(),
        }
    }
}

/// Why an export was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The memory budget is exhausted; the client should retry later.
    #[error(
        "memory budget exhausted ({used} bytes of data, {resident} bytes resident, budget {limit} bytes); retry later"
    )]
    Overloaded {
        /// Bytes of data in use.
        used: i64,
        /// The process's resident size at the last sample (0 if unknown).
        resident: i64,
        /// The budget.
        limit: u64,
    },
    /// The WAL could not make the request durable.
    #[error(transparent)]
    Wal(#[from] WalError),
}

/// Start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The WAL could not be opened.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The Parquet store could not be opened or reconciled.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another sightline process (lock file {0}/LOCK)")]
    Locked(String),
    /// The lock file could not be created.
    #[error("cannot lock data directory {dir}: {source}")]
    Lock {
        /// The data directory.
        dir: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Takes an exclusive lock on `<data_dir>/LOCK`, held for the life of the
/// process: two writers on one WAL would corrupt it.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    let shown = dir.display().to_string();
    let io = |source| StartError::Lock {
        dir: shown.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::Locked(shown)),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// WAL records found at start, waiting to be replayed.
pub struct PendingReplay {
    replay: WalReplay,
    covered: Covered,
}

/// In-flight estimate, as a multiple of the protobuf size: until conversion
/// ends a request exists as its body, its decoded structs (several times
/// larger than the encoding) and its Arrow batches. Measured with
/// `sightline bench` under overload so that peak RSS stays within the budget.
const IN_FLIGHT_FACTOR: usize = 8;

struct Inner {
    config: CollectorConfig,
    wal: Wal,
    buffer: Buffer,
    budget: MemoryBudget,
    storage: Storage,
    metrics: SelfMetrics,
    /// Bounds CPU-heavy conversions so bursts cannot starve the runtime.
    convert_slots: Semaphore,
    pending: AtomicUsize,
    pending_done: Notify,
    /// Raised when the resident size is over its share: flush now, since
    /// admission stays closed until buffered data is written and freed.
    pressure: Notify,
    ready: AtomicBool,
    /// Serialises flushes so one table is never written twice at once.
    flush_lock: tokio::sync::Mutex<()>,
    /// The data directory lock, released when the pipeline is dropped.
    _lock: std::fs::File,
}

/// Handle to the running ingest pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    inner: Arc<Inner>,
}

impl Ingest {
    /// Opens the WAL and storage under `config.data_dir` and reconciles them.
    /// The returned handle is not ready until [`Ingest::replay`] has run.
    pub async fn open(
        config: CollectorConfig,
        metrics: SelfMetrics,
    ) -> Result<(Ingest, PendingReplay), StartError> {
        let lock = lock_data_dir(&config.data_dir)?;
        let (wal, replay) = Wal::open(&config.data_dir.join("wal"), &config.wal, metrics.clone())?;
        metrics.wal_segments.set(wal.segment_count() as i64);
        let storage = Storage::local(config.data_dir.join("tables"), metrics.clone())?;
        storage.remove_staged_uploads()?;
        let covered = recovery::recover(&storage, wal.oldest_lsn()).await?;
        storage.load_manifest().await?;
        let footprint = crate::buffer::resident_bytes();
        warn_if_budget_small(footprint, config.memory_limit_bytes);
        let budget = MemoryBudget::new(config.memory_limit_bytes, metrics.clone());
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let ingest = Ingest {
            inner: Arc::new(Inner {
                budget,
                config,
                wal,
                buffer: Buffer::default(),
                storage,
                metrics,
                convert_slots: Semaphore::new(workers),
                pending: AtomicUsize::new(0),
                pending_done: Notify::new(),
                pressure: Notify::new(),
                ready: AtomicBool::new(false),
                flush_lock: tokio::sync::Mutex::new(()),
                _lock: lock,
            }),
        };
        Ok((ingest, PendingReplay { replay, covered }))
    }

    /// Replays every acknowledged WAL record not yet in Parquet, then marks
    /// the pipeline ready.
    pub async fn replay(&self, pending: PendingReplay) -> Result<(), StartError> {
        let replayed = self
            .replay_records(pending.replay.records(), &pending.covered)
            .await;
        tracing::info!(
            records = replayed,
            covered = pending.covered.len(),
            "WAL replay finished"
        );
        self.inner.wal.truncate()?;
        self.inner.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// [`Ingest::open`] followed by [`Ingest::replay`].
    pub async fn start(
        config: CollectorConfig,
        metrics: SelfMetrics,
    ) -> Result<Ingest, StartError> {
        let (ingest, pending) = Ingest::open(config, metrics).await?;
        ingest.replay(pending).await?;
        Ok(ingest)
    }

    async fn replay_records(
        &self,
        records: impl Iterator<Item = Record>,
        covered: &Covered,
    ) -> usize {
        let mut n = 0;
        for rec in records {
            let body = Bytes::from(rec.payload);
            let payload = match Payload::decode(rec.signal, Encoding::Protobuf, &body) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(lsn = rec.lsn, error = %e, "undecodable WAL record; skipping it");
                    continue;
                }
            };
            self.inner.wal.retain(rec.lsn, 1);
            let batches = convert(&payload, rec.received_at);
            for (table, batch) in batches {
                if !covered.contains(table, rec.lsn) {
                    self.push(table, batch, rec.lsn);
                }
            }
            self.inner.wal.release(&[rec.lsn]);
            self.inner.metrics.wal_replayed_records.inc();
            n += 1;
            // Replay runs before the receivers, so flushing inline keeps it
            // within the memory budget.
            if self.inner.budget.used() > (self.inner.config.memory_limit_bytes / 2) as i64 {
                self.flush(true).await;
            }
        }
        n
    }

    fn push(&self, table: Table, batch: arrow::array::RecordBatch, lsn: u64) {
        self.inner.wal.retain(lsn, 1);
        let bytes = self.inner.buffer.push(table, batch, lsn);
        self.inner.budget.add(bytes);
    }

    /// Marks the pipeline not ready (shutting down), so `/-/ready` tells
    /// load balancers to stop sending before the receivers close.
    pub fn set_draining(&self) {
        self.inner.ready.store(false, Ordering::Release);
    }

    /// Whether WAL replay has finished and shutdown has not begun.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// The self-metrics.
    pub fn metrics(&self) -> &SelfMetrics {
        &self.inner.metrics
    }

    /// Data not yet in Parquet.
    pub fn buffer(&self) -> &Buffer {
        &self.inner.buffer
    }

    /// The Parquet store.
    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    /// The configuration in force.
    pub fn config(&self) -> &CollectorConfig {
        &self.inner.config
    }

    /// Refuses a request of `body_len` protobuf bytes before it is decoded
    /// when the memory budget could not take it anyway: decoding it would
    /// only cost CPU and memory under overload.
    pub fn precheck(
        &self,
        signal: Signal,
        transport: Transport,
        body_len: usize,
    ) -> Result<(), ExportError> {
        if self.inner.budget.has_room(body_len * IN_FLIGHT_FACTOR) {
            return Ok(());
        }
        Err(self.overloaded(signal, transport))
    }

    /// Counts an overload refusal and builds its error.
    fn overloaded(&self, signal: Signal, transport: Transport) -> ExportError {
        let labels = [signal.as_str(), transport.as_str()];
        self.inner
            .metrics
            .overload_rejections
            .with_label_values(&labels)
            .inc();
        ExportError::Overloaded {
            used: self.inner.budget.used(),
            resident: self.inner.budget.resident(),
            limit: self.inner.config.memory_limit_bytes,
        }
    }

    /// What a query of `table` reads: the visible Parquet files and the
    /// batches not yet in them, taken in one step so no row is seen twice or
    /// missed. Holding the files keeps compaction from deleting them.
    pub fn view(&self, table: Table) -> (Vec<Arc<DataFile>>, Vec<RecordBatch>) {
        self.inner
            .storage
            .manifest()
            .view(table, || self.inner.buffer.snapshot(table))
    }

    /// Validates, persists and acknowledges one request. On `Ok`, every item
    /// not listed in the returned rejection is durable and will be stored.
    ///
    /// `original` is the request's protobuf encoding when the caller has it:
    /// if validation removes nothing, the WAL stores it as is instead of
    /// encoding the payload again.
    pub async fn export(
        &self,
        transport: Transport,
        mut payload: Payload,
        original: Option<Bytes>,
    ) -> Result<Rejected, ExportError> {
        let signal = payload.signal();
        let m = &self.inner.metrics;
        let received = payload.item_count();
        let labels = [signal.as_str(), transport.as_str()];
        m.items_received.with_label_values(&labels).inc_by(received);
        let reject = |reason, count, message: &str| {
            events::ItemsRejected {
                signal,
                transport,
                reason,
                count,
                message,
            }
            .emit(m)
        };
        let rejected = payload.validate();
        if rejected.count > 0 {
            reject("invalid", rejected.count, &rejected.message);
        }
        let accepted = received.saturating_sub(rejected.count);
        if accepted == 0 {
            return Ok(rejected);
        }
        // What the WAL stores (the body itself when every item was kept);
        // its length sizes the reservation.
        let bytes = match original {
            Some(b) if rejected.count == 0 => b,
            _ => Bytes::from(payload.encode_to_vec()),
        };
        let payload = payload.encoded_as(&bytes);
        // A large resource over many items grows the batches past any
        // multiple of the request's size: count those copies too.
        let estimate = bytes.len() * IN_FLIGHT_FACTOR + payload.context_bytes() as usize;
        let reserved = match transport {
            Transport::Internal => self.inner.budget.try_reserve_priority(estimate),
            _ => self.inner.budget.try_reserve(estimate),
        };
        if !reserved {
            let err = self.overloaded(signal, transport);
            reject("overloaded", accepted, &err.to_string());
            return Err(err);
        }
        let received_at = now_nanos();
        let lsn = match self.inner.wal.append(signal, received_at, bytes).await {
            Ok(lsn) => lsn,
            Err(e) => {
                self.inner.budget.release(estimate);
                reject("wal_error", accepted, &e.to_string());
                return Err(e.into());
            }
        };
        m.items_accepted.with_label_values(&labels).inc_by(accepted);
        self.spawn_convert(payload, lsn, received_at, estimate);
        Ok(rejected)
    }

    fn spawn_convert(&self, payload: Payload, lsn: u64, received_at: u64, estimate: usize) {
        self.inner.pending.fetch_add(1, Ordering::AcqRel);
        let this = self.clone();
        tokio::spawn(async move {
            let batches = match this.inner.convert_slots.acquire().await {
                Ok(_permit) => {
                    tokio::task::spawn_blocking(move || convert(&payload, received_at)).await
                }
                Err(_) => unreachable!("the conversion semaphore is never closed"),
            };
            match batches {
                Ok(batches) => {
                    for (table, batch) in batches {
                        this.push(table, batch, lsn);
                    }
                }
                // The WAL keeps the record (its reference is never dropped),
                // so the next start replays it: nothing is lost.
                Err(e) => {
                    tracing::error!(lsn, error = %e, "conversion panicked; the record stays in the WAL")
                }
            }
            this.inner.wal.release(&[lsn]);
            this.inner.budget.release(estimate);
            if this.inner.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
                this.inner.pending_done.notify_waiters();
            }
        });
    }

    fn flush_policy(&self) -> FlushPolicy {
        let s = &self.inner.config.storage;
        // A flush needs about three times its data while it encodes (see
        // `flush_one`); keeping flushes to an eighth of the budget keeps that
        // peak well inside it even with a small budget.
        let cap = (self.inner.config.memory_limit_bytes / 8).max(1 << 20) as usize;
        FlushPolicy {
            rows: s.flush_rows,
            bytes: s.flush_bytes.min(cap),
            age: s.flush_interval,
        }
    }

    /// Flushes the tables that are due (or all when `all`).
    pub async fn flush(&self, all: bool) {
        self.flush_with(&self.flush_policy(), all).await;
    }

    /// Flushes early when the resident size is over its share: tables holding
    /// at least a sixty-fourth of the budget (1 MiB at least), so memory is
    /// freed without a storm of tiny files when the pressure has another cause.
    async fn flush_for_pressure(&self) {
        let policy = FlushPolicy {
            bytes: (self.inner.config.memory_limit_bytes / 64).max(1 << 20) as usize,
            ..self.flush_policy()
        };
        self.flush_with(&policy, false).await;
    }

    async fn flush_with(&self, policy: &FlushPolicy, all: bool) {
        let _guard = self.inner.flush_lock.lock().await;
        for taken in self.inner.buffer.take_due(policy, all) {
            self.flush_one(taken).await;
        }
        for (table, rows) in self.inner.buffer.rows() {
            self.inner
                .metrics
                .buffer_rows
                .with_label_values(&[table.name()])
                .set(rows as i64);
        }
    }

    async fn flush_one(&self, taken: Taken) {
        let table = taken.table;
        let timer = self
            .inner
            .metrics
            .flush_seconds
            .with_label_values(&[table.name()])
            .start_timer();
        let lsns = taken.lsn_set();
        // Count what encoding needs besides the buffered batches, so receivers
        // back off instead of the RSS growing past the budget.
        let working_set = flush_working_set(table, taken.bytes);
        self.inner.budget.add(working_set);
        let result = self
            .inner
            .storage
            .write_flush(table, taken.batches.clone(), &lsns, now_nanos() as i64)
            .await;
        self.inner.budget.release(working_set);
        match result {
            Ok(files) => {
                timer.observe_duration();
                let file_count = files.len();
                self.inner
                    .storage
                    .manifest()
                    .publish(table, files, || self.inner.buffer.finish_flush(table));
                self.inner.wal.release(&taken.lsns);
                self.inner.budget.release(taken.bytes);
                match self.inner.wal.truncate() {
                    Ok(n) if n > 0 => self
                        .inner
                        .metrics
                        .wal_segments
                        .set(self.inner.wal.segment_count() as i64),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot delete WAL segments; will retry"),
                }
                tracing::debug!(%table, rows = taken.rows, files = file_count, "flushed");
            }
            Err(e) => {
                timer.stop_and_discard();
                self.inner
                    .metrics
                    .flush_errors
                    .with_label_values(&[table.name()])
                    .inc();
                tracing::error!(%table, error = %e, "flush failed; the rows stay buffered and will be retried");
                self.inner.buffer.restore(taken);
            }
        }
    }

    fn truncate_wal(&self) {
        match self.inner.wal.truncate() {
            Ok(_) => self
                .inner
                .metrics
                .wal_segments
                .set(self.inner.wal.segment_count() as i64),
            Err(e) => tracing::warn!(error = %e, "cannot delete WAL segments; will retry"),
        }
    }

    /// Runs flushing, compaction and retention until `stop` turns true.
    pub fn spawn_background(&self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        self.spawn_resident_sampler(stop.clone());
        let this = self.clone();
        tokio::spawn(async move {
            let mut flush_tick = tokio::time::interval(Duration::from_millis(500));
            let mut maint_tick =
                tokio::time::interval(this.inner.config.storage.compaction_interval);
            flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            maint_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = flush_tick.tick() => this.flush(false).await,
                    _ = this.inner.pressure.notified() => this.flush_for_pressure().await,
                    // A merge can take a while; shutdown must not wait for
                    // it. Dropping it is safe: the merged file is either not
                    // published, or published with its sources listed, which
                    // recovery deletes at the next start.
                    _ = maint_tick.tick() => tokio::select! {
                        _ = this.maintain() => {}
                        _ = stop.changed() => break,
                    },
                }
            }
        })
    }

    /// Samples the resident size for admission on its own task, so that a
    /// long flush or compaction does not leave admission with a stale figure.
    fn spawn_resident_sampler(&self, mut stop: watch::Receiver<bool>) {
        let this = self.clone();
        tokio::spawn(async move {
            // Often enough that a burst cannot outrun it: at 200k spans/s
            // about 10 MiB of data arrives between two samples.
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = tick.tick() => {
                        if let Some(bytes) = crate::buffer::resident_bytes() {
                            this.inner.budget.set_resident(bytes);
                        }
                        if this.inner.budget.resident_pressure() {
                            this.inner.pressure.notify_one();
                        }
                    }
                }
            }
        });
    }

    /// One round of compaction and retention.
    pub async fn maintain(&self) {
        let cfg = &self.inner.config.storage;
        // Compaction only merges files whose records have left the WAL, so
        // close the active segment and drop what is already in Parquet.
        if let Err(e) = self.inner.wal.rotate().await {
            tracing::warn!(error = %e, "cannot rotate the WAL; will retry");
        }
        self.truncate_wal();
        if let Err(e) =
            retention::apply(&self.inner.storage, cfg.retention, now_nanos() as i64).await
        {
            tracing::warn!(error = %e, "retention failed; will retry");
        }
        for table in Table::ALL {
            let oldest = self.inner.wal.oldest_lsn();
            let memory = compaction::CompactionMemory {
                budget: &self.inner.budget,
                chunk_bytes: self.compaction_chunk_bytes(),
            };
            if let Err(e) =
                compaction::compact_table(&self.inner.storage, table, cfg, oldest, memory).await
            {
                tracing::warn!(%table, error = %e, "compaction failed; will retry");
            }
        }
    }

    /// Arrow bytes one compaction chunk (one row group of the merged file)
    /// holds: a sixteenth of the budget, so a merge (about twice its chunk
    /// while sorting) stays within the eighth a flush may take.
    fn compaction_chunk_bytes(&self) -> usize {
        let share = self.inner.config.memory_limit_bytes / 16;
        share.clamp(4 << 20, 256 << 20) as usize
    }

    /// Waits for in-flight conversions, then flushes everything.
    pub async fn shutdown(&self) {
        loop {
            let notified = self.inner.pending_done.notified();
            if self.inner.pending.load(Ordering::Acquire) == 0 {
                break;
            }
            notified.await;
        }
        self.flush(true).await;
    }
}

/// The budget bounds the whole resident size, so it must leave room for data
/// beyond the process's own footprint (~80 MiB with the probes loaded).
fn warn_if_budget_small(footprint: Option<i64>, limit: u64) {
    let Some(resident) = footprint else {
        return;
    };
    if resident as u64 > limit / 4 {
        tracing::warn!(
            resident_bytes = resident,
            memory_limit_bytes = limit,
            "the memory budget is less than four times the process's resident size at start, \
             which it also covers: little is left for data. Raise --memory-limit-bytes"
        );
    }
}

/// Memory a flush of `bytes` of Arrow data needs while it encodes. Tables
/// sorted at flush concatenate and then reorder their rows: two more copies.
/// The others stream their batches into the writer, which holds only the
/// encoded pages of one row group and the file (a few bytes per row against
/// hundreds in Arrow): an eighth is a generous bound, and counting the full
/// two copies there closed admission for the whole of every flush, idling a
/// third of the CPU under sustained load (docs/benchmarks.md).
fn flush_working_set(table: Table, bytes: usize) -> usize {
    if table.sorts_rows() {
        bytes * 2
    } else {
        bytes / 8
    }
}

/// Unix time in nanoseconds.
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
