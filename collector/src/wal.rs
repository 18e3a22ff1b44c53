//! The write-ahead log: every accepted request is appended here and fsync'd
//! before it is acknowledged.
//!
//! Records go into segment files named by the first log sequence number (LSN)
//! they hold (`<dir>/<lsn:020>.wal`), so the LSN range of every closed segment
//! is known from the names alone. One writer thread appends; concurrent
//! requests that arrive while an fsync is in progress are written and synced
//! together (group commit), so one fsync acknowledges many requests.
//!
//! A record stays referenced until every table it produced rows for has been
//! written to durable Parquet files; a segment is deleted once none of its
//! records is referenced.
//!
//! Record layout (little endian): `len: u32` (payload bytes), `crc32: u32`
//! (over everything after it), `lsn: u64`, `signal: u8`, `received_at: u64`
//! (unix ns), `payload` (protobuf export request).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::schema::Signal;
use crate::self_metrics::SelfMetrics;

const HEADER_LEN: usize = 4 + 4 + 8 + 1 + 8;
/// Records larger than this are treated as corruption when reading.
const MAX_RECORD: u32 = 1 << 30;
/// At most this many requests share one group commit.
const MAX_GROUP: usize = 1024;

/// When the WAL calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// fsync before every acknowledgement (group commit shares it between
    /// concurrent requests). Nothing acknowledged is lost on power failure.
    #[default]
    Always,
    /// Never fsync; the OS writes back when it likes. Survives a process
    /// crash but not a power failure or kernel panic.
    Never,
}

/// Write-ahead log settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalConfig {
    /// When to fsync (`always` or `never`).
    pub fsync: FsyncPolicy,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            fsync: FsyncPolicy::Always,
            segment_bytes: 64 << 20,
        }
    }
}

/// WAL failures.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// Reading or writing a segment failed.
    #[error("write-ahead log I/O error: {0}")]
    Io(#[from] io::Error),
    /// The writer thread has stopped (the process is shutting down).
    #[error("write-ahead log is closed")]
    Closed,
}

/// One record read back from the log.
#[derive(Debug, Clone)]
pub struct Record {
    /// Its sequence number.
    pub lsn: u64,
    /// The signal of the payload.
    pub signal: Signal,
    /// When the request was received (unix ns).
    pub received_at: u64,
    /// The protobuf-encoded export request.
    pub payload: Vec<u8>,
}

enum Msg {
    Append(Append),
    /// Close the active segment (if it holds records) so it can be deleted
    /// once its records are in Parquet; replies when done.
    Rotate(oneshot::Sender<Result<(), WalError>>),
}

struct Append {
    signal: Signal,
    received_at: u64,
    payload: Bytes,
    done: oneshot::Sender<Result<u64, WalError>>,
}

struct Segment {
    first_lsn: u64,
    path: PathBuf,
}

struct Shared {
    /// LSN → number of holders (pending conversion, or table buffers not yet flushed).
    refs: Mutex<BTreeMap<u64, u32>>,
    /// Segments oldest first; the last one is being written.
    segments: Mutex<Vec<Segment>>,
    dir: PathBuf,
}

/// Handle to the write-ahead log. Cheap to clone.
#[derive(Clone)]
pub struct Wal {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("{first_lsn:020}.wal"))
}

fn list_segments(dir: &Path) -> io::Result<Vec<Segment>> {
    let mut segs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let lsn = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first_lsn) = lsn {
            segs.push(Segment { first_lsn, path });
        }
    }
    segs.sort_by_key(|s| s.first_lsn);
    Ok(segs)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Wal {
    /// Opens the log in `dir`, returning the handle and the segments to replay
    /// (oldest first). A fresh segment is started for new appends.
    pub fn open(
        dir: &Path,
        config: &WalConfig,
        metrics: SelfMetrics,
    ) -> Result<(Wal, WalReplay), WalError> {
        fs::create_dir_all(dir)?;
        let old = list_segments(dir)?;
        let mut next_lsn = 1;
        if let Some(last) = old.last() {
            next_lsn = last.first_lsn;
            for rec in SegmentReader::open(&last.path)? {
                next_lsn = rec.lsn + 1;
            }
        }
        let replay_paths: Vec<PathBuf> = old.iter().map(|s| s.path.clone()).collect();
        let mut segments = old;
        // An empty last segment is simply reused as the active one.
        if segments.last().is_some_and(|s| s.first_lsn == next_lsn) {
            segments.pop();
        }
        let active = segment_path(dir, next_lsn);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&active)?;
        sync_dir(dir)?;
        segments.push(Segment {
            first_lsn: next_lsn,
            path: active,
        });
        let shared = Arc::new(Shared {
            refs: Mutex::new(BTreeMap::new()),
            segments: Mutex::new(segments),
            dir: dir.to_path_buf(),
        });
        let (tx, rx) = mpsc::channel(MAX_GROUP * 4);
        let writer = Writer {
            rx,
            file,
            written: 0,
            next_lsn,
            config: config.clone(),
            shared: shared.clone(),
            metrics,
            buf: Vec::new(),
        };
        std::thread::Builder::new()
            .name("sightline-wal".into())
            .spawn(move || writer.run())?;
        Ok((
            Wal { tx, shared },
            WalReplay {
                paths: replay_paths,
            },
        ))
    }

    /// Appends a record and waits until it is durable (per the fsync policy).
    /// Returns its LSN, which holds one reference until [`Wal::release`].
    pub async fn append(
        &self,
        signal: Signal,
        received_at: u64,
        payload: Bytes,
    ) -> Result<u64, WalError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Msg::Append(Append {
                signal,
                received_at,
                payload,
                done,
            }))
            .await
            .map_err(|_| WalError::Closed)?;
        rx.await.map_err(|_| WalError::Closed)?
    }

    /// Closes the active segment if it holds any record, so that a quiet log
    /// does not keep already-flushed records forever.
    pub async fn rotate(&self) -> Result<(), WalError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Msg::Rotate(done))
            .await
            .map_err(|_| WalError::Closed)?;
        rx.await.map_err(|_| WalError::Closed)?
    }

    /// Adds `n` references to a record (one per table buffer that holds its rows).
    pub fn retain(&self, lsn: u64, n: u32) {
        if n > 0 {
            *self
                .shared
                .refs
                .lock()
                .expect("wal refs lock")
                .entry(lsn)
                .or_default() += n;
        }
    }

    /// Drops one reference from each LSN. Records with none left are covered
    /// by durable Parquet files.
    pub fn release(&self, lsns: &[u64]) {
        let mut refs = self.shared.refs.lock().expect("wal refs lock");
        for lsn in lsns {
            if let Some(n) = refs.get_mut(lsn) {
                *n -= 1;
                if *n == 0 {
                    refs.remove(lsn);
                }
            }
        }
    }

    /// The oldest LSN still in the log (lower LSNs are all in Parquet).
    pub fn oldest_lsn(&self) -> u64 {
        self.shared
            .segments
            .lock()
            .expect("wal segments lock")
            .first()
            .map_or(0, |s| s.first_lsn)
    }

    /// Deletes closed segments none of whose records is still referenced.
    /// Returns how many were deleted.
    pub fn truncate(&self) -> Result<usize, WalError> {
        let low = self
            .shared
            .refs
            .lock()
            .expect("wal refs lock")
            .keys()
            .next()
            .copied()
            .unwrap_or(u64::MAX);
        let mut segs = self.shared.segments.lock().expect("wal segments lock");
        let mut deleted = 0;
        // A closed segment's last LSN is one below the next segment's first.
        while segs.len() > 1 && segs[1].first_lsn <= low {
            fs::remove_file(&segs[0].path)?;
            segs.remove(0);
            deleted += 1;
        }
        drop(segs);
        if deleted > 0 {
            sync_dir(&self.shared.dir)?;
        }
        Ok(deleted)
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.shared
            .segments
            .lock()
            .expect("wal segments lock")
            .len()
    }
}

/// The segments that existed when the log was opened, to be replayed.
pub struct WalReplay {
    paths: Vec<PathBuf>,
}

impl WalReplay {
    /// Reads every record, oldest first. A torn or corrupt record ends its
    /// segment (everything before it was acknowledged; it was not).
    pub fn records(self) -> impl Iterator<Item = Record> {
        self.paths
            .into_iter()
            .flat_map(|p| match SegmentReader::open(&p) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::error!(path = %p.display(), error = %e, "cannot read WAL segment");
                    None
                }
            })
            .flatten()
    }
}

/// Iterates the valid records of one segment.
pub struct SegmentReader {
    reader: BufReader<File>,
    path: PathBuf,
}

impl SegmentReader {
    /// Opens a segment file.
    pub fn open(path: &Path) -> io::Result<SegmentReader> {
        Ok(SegmentReader {
            reader: BufReader::new(File::open(path)?),
            path: path.to_path_buf(),
        })
    }

    fn read_one(&mut self) -> io::Result<Option<Record>> {
        let mut header = [0u8; HEADER_LEN];
        match self.reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        if len > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "record length out of range",
            ));
        }
        let mut payload = vec![0u8; len as usize];
        self.reader.read_exact(&mut payload)?;
        let mut h = crc32fast::Hasher::new();
        h.update(&header[8..]);
        h.update(&payload);
        if h.finalize() != crc {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "checksum mismatch",
            ));
        }
        let lsn = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        let signal = Signal::from_code(header[16])
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown signal"))?;
        let received_at = u64::from_le_bytes(header[17..25].try_into().expect("8 bytes"));
        Ok(Some(Record {
            lsn,
            signal,
            received_at,
            payload,
        }))
    }
}

impl Iterator for SegmentReader {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        match self.read_one() {
            Ok(r) => r,
            Err(e) => {
                // A torn tail is expected after a crash; anything else is logged loudly too.
                tracing::warn!(path = %self.path.display(), error = %e, "WAL segment ends in a torn or corrupt record; stopping there");
                None
            }
        }
    }
}

fn encode_record(buf: &mut Vec<u8>, lsn: u64, a: &Append) {
    let start = buf.len();
    buf.extend_from_slice(&(a.payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&lsn.to_le_bytes());
    buf.push(a.signal.code());
    buf.extend_from_slice(&a.received_at.to_le_bytes());
    buf.extend_from_slice(&a.payload);
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

struct Writer {
    rx: mpsc::Receiver<Msg>,
    file: File,
    written: u64,
    next_lsn: u64,
    config: WalConfig,
    shared: Arc<Shared>,
    metrics: SelfMetrics,
    buf: Vec<u8>,
}

impl Writer {
    fn run(mut self) {
        let mut group = Vec::new();
        while let Some(msg) = self.rx.blocking_recv() {
            let mut rotate = None;
            match msg {
                Msg::Append(a) => group.push(a),
                Msg::Rotate(done) => rotate = Some(done),
            }
            while rotate.is_none() && group.len() < MAX_GROUP {
                match self.rx.try_recv() {
                    Ok(Msg::Append(a)) => group.push(a),
                    Ok(Msg::Rotate(done)) => rotate = Some(done),
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                self.commit(std::mem::take(&mut group));
            }
            if let Some(done) = rotate {
                let result = if self.written > 0 {
                    self.rotate()
                } else {
                    Ok(())
                };
                let _ = done.send(result.map_err(WalError::Io));
            }
        }
        let _ = self.file.sync_all();
    }

    fn commit(&mut self, group: Vec<Append>) {
        self.buf.clear();
        let first_lsn = self.next_lsn;
        for (i, a) in group.iter().enumerate() {
            encode_record(&mut self.buf, first_lsn + i as u64, a);
        }
        self.next_lsn += group.len() as u64;
        // Reference the records before anyone can learn their LSNs, so a
        // concurrent truncate never deletes them.
        {
            let mut refs = self.shared.refs.lock().expect("wal refs lock");
            for i in 0..group.len() as u64 {
                *refs.entry(first_lsn + i).or_default() += 1;
            }
        }
        let result = self.write_and_sync();
        let failed = result.is_err();
        if failed {
            let mut refs = self.shared.refs.lock().expect("wal refs lock");
            for lsn in first_lsn..self.next_lsn {
                refs.remove(&lsn);
            }
        }
        if !failed
            && self.written >= self.config.segment_bytes
            && let Err(e) = self.rotate()
        {
            tracing::error!(error = %e, "cannot start a new WAL segment; continuing in the current one");
        }
        for (i, a) in group.into_iter().enumerate() {
            let reply = match &result {
                Ok(()) => Ok(first_lsn + i as u64),
                Err(e) => Err(WalError::Io(io::Error::new(e.kind(), e.to_string()))),
            };
            let _ = a.done.send(reply);
        }
    }

    fn write_and_sync(&mut self) -> io::Result<()> {
        self.file.write_all(&self.buf)?;
        self.written += self.buf.len() as u64;
        self.metrics.wal_bytes_written.inc_by(self.buf.len() as u64);
        if self.config.fsync == FsyncPolicy::Always {
            let start = Instant::now();
            self.file.sync_data()?;
            self.metrics
                .wal_fsync_seconds
                .observe(start.elapsed().as_secs_f64());
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let path = segment_path(&self.shared.dir, self.next_lsn);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)?;
        sync_dir(&self.shared.dir)?;
        self.file.sync_all()?;
        self.file = file;
        self.written = 0;
        self.shared
            .segments
            .lock()
            .expect("wal segments lock")
            .push(Segment {
                first_lsn: self.next_lsn,
                path,
            });
        self.metrics.wal_segments.inc();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, segment_bytes: u64) -> (Wal, Vec<Record>) {
        let cfg = WalConfig {
            fsync: FsyncPolicy::Always,
            segment_bytes,
        };
        let (wal, replay) = Wal::open(dir, &cfg, SelfMetrics::new()).unwrap();
        (wal, replay.records().collect())
    }

    #[tokio::test]
    async fn appended_records_are_replayed_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, old) = open(dir.path(), 1 << 20);
        assert!(old.is_empty());
        let a = wal
            .append(Signal::Traces, 5, Bytes::from_static(b"one"))
            .await
            .unwrap();
        let b = wal
            .append(Signal::Logs, 6, Bytes::from_static(b"two"))
            .await
            .unwrap();
        assert_eq!((a, b), (1, 2));
        drop(wal);
        let (wal, old) = open(dir.path(), 1 << 20);
        let got: Vec<_> = old
            .iter()
            .map(|r| (r.lsn, r.signal, r.received_at, r.payload.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, Signal::Traces, 5, b"one".to_vec()),
                (2, Signal::Logs, 6, b"two".to_vec())
            ]
        );
        assert_eq!(
            wal.append(Signal::Metrics, 7, Bytes::from(vec![]))
                .await
                .unwrap(),
            3
        );
    }

    #[tokio::test]
    async fn torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open(dir.path(), 1 << 20);
        wal.append(Signal::Traces, 1, Bytes::from(vec![1; 100]))
            .await
            .unwrap();
        wal.append(Signal::Traces, 1, Bytes::from(vec![2; 100]))
            .await
            .unwrap();
        drop(wal);
        let seg = list_segments(dir.path()).unwrap().pop().unwrap();
        let len = fs::metadata(&seg.path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&seg.path)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        let (wal, old) = open(dir.path(), 1 << 20);
        assert_eq!(old.len(), 1);
        assert_eq!(
            wal.append(Signal::Traces, 1, Bytes::from(vec![]))
                .await
                .unwrap(),
            2
        );
    }

    #[tokio::test]
    async fn segments_are_deleted_only_when_unreferenced() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = open(dir.path(), 10);
        let mut lsns = vec![];
        for _ in 0..3 {
            lsns.push(
                wal.append(Signal::Traces, 1, Bytes::from(vec![0; 20]))
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(wal.segment_count(), 4);
        wal.release(&lsns[1..]);
        assert_eq!(wal.truncate().unwrap(), 0, "record 1 is still referenced");
        wal.release(&lsns[..1]);
        assert_eq!(wal.truncate().unwrap(), 3);
        assert_eq!(wal.oldest_lsn(), 4);
    }
}
