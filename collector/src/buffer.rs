//! In-memory batches waiting to be flushed, per table, and the memory budget
//! that bounds them together with in-flight requests.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;

use crate::schema::Table;
use crate::self_metrics::SelfMetrics;

/// Share of the budget new requests may fill. The rest is headroom for what
/// admission cannot refuse: the extra copies a flush makes while encoding
/// (counted when they happen) and allocator slack, so that the process's
/// resident memory stays within the budget under overload.
const ADMISSION_SHARE: f64 = 0.6;

/// Share of the budget the process's resident memory may reach before new
/// requests are refused. Counting data bytes alone left the resident size
/// 30–60% above them (allocator slack, transport buffers, decoded requests
/// whose size is only estimated), so admission also watches the real figure.
const RESIDENT_SHARE: f64 = 0.75;

/// Least room kept between the resident limit and the budget. Once admission
/// closes, the resident size still grows by what it let in: the requests in
/// flight being converted and a flush's encoding, 50–70 MiB at 32 requests
/// in flight whatever the budget (docs/benchmarks.md, "Session 16"). A
/// quarter of a 256 MiB budget is less than that, and such a budget's peak
/// passed it; from 320 MiB up the quarter is larger and this changes nothing.
const RESIDENT_MARGIN_MIN: i64 = 80 << 20;

/// Bytes of unflushed and in-flight data, against a fixed limit.
pub struct MemoryBudget {
    used: AtomicI64,
    admission_limit: i64,
    /// The process's resident bytes as last sampled (0: never sampled).
    resident: AtomicI64,
    resident_limit: i64,
    /// Data always admitted whatever the resident size (see `admits`).
    floor: i64,
    /// The whole budget.
    limit: i64,
    metrics: SelfMetrics,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64, metrics: SelfMetrics) -> Self {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        metrics.memory_limit_bytes.set(limit);
        Self {
            used: AtomicI64::new(0),
            admission_limit: (limit as f64 * ADMISSION_SHARE) as i64,
            resident: AtomicI64::new(0),
            resident_limit: resident_limit(limit),
            floor: limit / 8,
            limit,
            metrics,
        }
    }

    /// Whether a request needing `n` bytes would be admitted now (without
    /// reserving anything): lets receivers refuse before decoding.
    pub fn has_room(&self, n: usize) -> bool {
        self.admits(self.used.load(Ordering::Relaxed), n as i64)
    }

    /// The admission rule: data within the admission share and the resident
    /// size within its share. Two exceptions keep a small budget serving: an
    /// empty budget admits any request (one larger than the budget is not
    /// refused forever), and data up to an eighth of the budget is admitted
    /// whatever the resident size — with a budget close to the process's own
    /// footprint (~80 MiB) the resident size never falls below the limit and
    /// refusing would only stop ingest (`sightline bench` at 128 MiB fell to
    /// 1% of its rate).
    fn admits(&self, used: i64, n: i64) -> bool {
        let total = used + n;
        used == 0
            || total <= self.floor
            || (total <= self.admission_limit && self.resident() <= self.resident_limit)
    }

    /// The resident size at the last sample (0 if never sampled).
    pub fn resident(&self) -> i64 {
        self.resident.load(Ordering::Relaxed)
    }

    /// Whether the resident size is over its share while data is held that a
    /// flush would free.
    pub fn resident_pressure(&self) -> bool {
        self.used() > 0 && self.resident() > self.resident_limit
    }

    /// Records the process's resident size, sampled by the pipeline.
    pub fn set_resident(&self, bytes: i64) {
        self.resident.store(bytes, Ordering::Relaxed);
    }

    /// Reserves `n` bytes for a new request if [`MemoryBudget::has_room`].
    pub fn try_reserve(&self, n: usize) -> bool {
        self.reserve_if(n, |cur, n| self.admits(cur, n))
    }

    /// Reserves `n` bytes for the node's own signals (probe metrics and
    /// profiles: a few KiB every few seconds) while data stays within the
    /// whole budget, whatever the admission share or the resident size:
    /// the kernel view matters most while the node is overloaded.
    pub fn try_reserve_priority(&self, n: usize) -> bool {
        self.reserve_if(n, |cur, n| cur == 0 || cur + n <= self.limit)
    }

    fn reserve_if(&self, n: usize, admits: impl Fn(i64, i64) -> bool) -> bool {
        let n = n as i64;
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            if !admits(cur, n) {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(cur, cur + n, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.metrics.memory_bytes.set(cur + n);
                    return true;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Adds bytes unconditionally (data already accepted must be kept).
    pub fn add(&self, n: usize) {
        let v = self.used.fetch_add(n as i64, Ordering::AcqRel) + n as i64;
        self.metrics.memory_bytes.set(v);
    }

    /// Releases bytes.
    pub fn release(&self, n: usize) {
        let v = self.used.fetch_sub(n as i64, Ordering::AcqRel) - n as i64;
        self.metrics.memory_bytes.set(v);
    }

    /// Bytes in use.
    pub fn used(&self) -> i64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// The resident size above which requests are refused: the
/// [`RESIDENT_SHARE`] of the budget, or less for small budgets so that
/// [`RESIDENT_MARGIN_MIN`] stays free, but never under half the budget (with
/// a budget near the process's own footprint the data floor in `admits`
/// keeps ingest going).
fn resident_limit(limit: i64) -> i64 {
    let margin = ((limit as f64 * (1.0 - RESIDENT_SHARE)) as i64).max(RESIDENT_MARGIN_MIN);
    (limit - margin).max(limit / 2)
}

/// The resident set size of this process (`VmRSS` in `/proc/self/status`;
/// `None` where there is no procfs): what the budget promises to bound,
/// including the binary's own mapped code (~40 MiB).
pub fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Batches of one table taken out for a flush.
pub struct Taken {
    /// The table.
    pub table: Table,
    /// The batches.
    pub batches: Vec<RecordBatch>,
    /// One entry per batch: the WAL record it came from.
    pub lsns: Vec<u64>,
    /// Arrow bytes held.
    pub bytes: usize,
    /// Rows held.
    pub rows: usize,
}

impl Taken {
    /// The distinct LSNs.
    pub fn lsn_set(&self) -> BTreeSet<u64> {
        self.lsns.iter().copied().collect()
    }
}

#[derive(Default)]
struct TableBuffer {
    batches: Vec<RecordBatch>,
    lsns: Vec<u64>,
    bytes: usize,
    rows: usize,
    oldest: Option<Instant>,
    /// Batches being written right now; still visible to snapshots.
    flushing: Vec<RecordBatch>,
}

/// When a table's buffer is due for a flush.
#[derive(Debug, Clone, Copy)]
pub struct FlushPolicy {
    /// Row threshold.
    pub rows: usize,
    /// Byte threshold.
    pub bytes: usize,
    /// Age threshold of the oldest row.
    pub age: Duration,
}

/// The per-table buffers.
#[derive(Default)]
pub struct Buffer {
    tables: Mutex<HashMap<Table, TableBuffer>>,
}

impl Buffer {
    /// Adds a converted batch (from WAL record `lsn`).
    pub fn push(&self, table: Table, batch: RecordBatch, lsn: u64) -> usize {
        let bytes = batch.get_array_memory_size();
        let mut tables = self.tables.lock().expect("buffer lock");
        let t = tables.entry(table).or_default();
        t.rows += batch.num_rows();
        t.bytes += bytes;
        t.batches.push(batch);
        t.lsns.push(lsn);
        t.oldest.get_or_insert_with(Instant::now);
        bytes
    }

    /// Takes the tables that are due (or all non-empty tables when `all`).
    /// Taken batches stay visible to [`Buffer::snapshot`] until
    /// [`Buffer::finish_flush`] or [`Buffer::restore`].
    pub fn take_due(&self, policy: &FlushPolicy, all: bool) -> Vec<Taken> {
        let mut tables = self.tables.lock().expect("buffer lock");
        let mut out = Vec::new();
        for (table, t) in tables.iter_mut() {
            let due = t.rows >= policy.rows
                || t.bytes >= policy.bytes
                || t.oldest.is_some_and(|o| o.elapsed() >= policy.age);
            if t.batches.is_empty() || !(due || all) || !t.flushing.is_empty() {
                continue;
            }
            t.flushing = t.batches.clone();
            out.push(Taken {
                table: *table,
                batches: std::mem::take(&mut t.batches),
                lsns: std::mem::take(&mut t.lsns),
                bytes: std::mem::take(&mut t.bytes),
                rows: std::mem::take(&mut t.rows),
            });
            t.oldest = None;
        }
        out
    }

    /// Marks a flush done: its batches are in Parquet now.
    pub fn finish_flush(&self, table: Table) {
        if let Some(t) = self.tables.lock().expect("buffer lock").get_mut(&table) {
            t.flushing.clear();
        }
    }

    /// Puts a failed flush's batches back in front, to be retried.
    pub fn restore(&self, taken: Taken) {
        let mut tables = self.tables.lock().expect("buffer lock");
        let t = tables.entry(taken.table).or_default();
        t.flushing.clear();
        let mut batches = taken.batches;
        batches.append(&mut t.batches);
        t.batches = batches;
        let mut lsns = taken.lsns;
        lsns.append(&mut t.lsns);
        t.lsns = lsns;
        t.bytes += taken.bytes;
        t.rows += taken.rows;
        t.oldest = Some(Instant::now() - Duration::from_secs(3600));
    }

    /// The batches of a table not yet in Parquet (buffered or being flushed).
    pub fn snapshot(&self, table: Table) -> Vec<RecordBatch> {
        let tables = self.tables.lock().expect("buffer lock");
        tables
            .get(&table)
            .map(|t| t.flushing.iter().chain(&t.batches).cloned().collect())
            .unwrap_or_default()
    }

    /// Rows buffered per table (not counting those being flushed).
    pub fn rows(&self) -> Vec<(Table, usize)> {
        let tables = self.tables.lock().expect("buffer lock");
        tables.iter().map(|(t, b)| (*t, b.rows)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_size_over_its_share_refuses_requests_until_it_falls() {
        // In MiB, of a budget large enough for the share to apply.
        const M: usize = 1 << 20;
        let budget = MemoryBudget::new(1000 * M as u64, SelfMetrics::new());
        assert!(budget.try_reserve(200 * M));
        budget.set_resident(800 * M as i64);
        assert!(!budget.has_room(10 * M), "resident 800 of a 1000 budget");
        assert!(!budget.try_reserve(10 * M));
        assert!(budget.resident_pressure());
        budget.set_resident(700 * M as i64);
        assert!(!budget.resident_pressure());
        assert!(budget.try_reserve(10 * M));
        // An empty budget admits one request whatever the resident size, and
        // so does one with data under an eighth of the budget.
        budget.release(210 * M);
        budget.set_resident(5000 * M as i64);
        assert!(budget.try_reserve(100 * M));
        assert!(budget.try_reserve(25 * M));
        assert!(!budget.try_reserve(1), "125 MiB + 1 > 1000 MiB / 8");
    }

    #[test]
    fn small_budgets_keep_a_fixed_margin_under_the_resident_limit() {
        const MIB: i64 = 1 << 20;
        assert_eq!(resident_limit(512 * MIB), 384 * MIB, "the share");
        assert_eq!(resident_limit(1024 * MIB), 768 * MIB);
        assert_eq!(resident_limit(256 * MIB), 176 * MIB, "80 MiB kept free");
        assert_eq!(resident_limit(128 * MIB), 64 * MIB, "never under half");
        let budget = MemoryBudget::new(256 * MIB as u64, SelfMetrics::new());
        assert!(budget.try_reserve(40 * MIB as usize));
        budget.set_resident(180 * MIB);
        assert!(!budget.has_room(1), "resident 180 MiB of a 256 MiB budget");
    }

    #[test]
    fn the_nodes_own_signals_are_admitted_up_to_the_whole_budget() {
        let budget = MemoryBudget::new(1000, SelfMetrics::new());
        assert!(budget.try_reserve(500));
        budget.set_resident(5000);
        assert!(!budget.try_reserve(10));
        assert!(budget.try_reserve_priority(400), "900 of 1000");
        assert!(!budget.try_reserve_priority(200), "1100 > 1000");
    }

    #[test]
    fn data_over_the_admission_share_refuses_requests() {
        let budget = MemoryBudget::new(1000, SelfMetrics::new());
        assert!(budget.try_reserve(500));
        assert!(!budget.try_reserve(200), "500 + 200 > 60% of 1000");
        assert!(budget.try_reserve(50));
    }

    #[test]
    fn resident_bytes_reads_this_process() {
        if std::path::Path::new("/proc/self/status").exists() {
            let rss = resident_bytes().expect("VmRSS in /proc/self/status");
            assert!(rss > 1 << 20, "a test process holds more than 1 MiB: {rss}");
        }
    }
}
