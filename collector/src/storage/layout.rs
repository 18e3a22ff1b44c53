//! Where files go: `<table>/date=YYYY-MM-DD/hour=HH/<time-ordered id>.parquet`
//! (Hive-style, so DuckDB, pyarrow and DataFusion read the partitions as
//! columns with no extra code), and the key-value metadata each file carries.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Timelike, Utc};
use object_store::path::Path;

use crate::schema::Table;

/// Nanoseconds in one hour.
pub const HOUR_NANOS: i64 = 3_600_000_000_000;

/// Key of the LSN set a file covers (`1-5,7,9-12`).
pub const META_LSNS: &str = "sightline.lsns";
/// Key of the id of the flush that wrote the file.
pub const META_FLUSH_ID: &str = "sightline.flush_id";
/// Key of the number of files that flush wrote (one per partition).
pub const META_FLUSH_FILES: &str = "sightline.flush_files";
/// Key of the files a compaction merged into this one (comma separated).
pub const META_COMPACTED_FROM: &str = "sightline.compacted_from";

/// An hour-long partition, as hours since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition(pub i64);

impl Partition {
    /// The partition a timestamp (unix ns) falls in.
    pub fn of_nanos(ts: i64) -> Partition {
        Partition(ts.div_euclid(HOUR_NANOS))
    }

    /// Start of the partition.
    pub fn start(self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.0.saturating_mul(3600), 0).unwrap_or_default()
    }

    /// `date=YYYY-MM-DD/hour=HH` relative path.
    pub fn dir(self) -> String {
        let t = self.start();
        format!(
            "date={:04}-{:02}-{:02}/hour={:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour()
        )
    }

    /// Parses `date=YYYY-MM-DD` and `hour=HH` path segments.
    pub fn parse(date: &str, hour: &str) -> Option<Partition> {
        let date = date.strip_prefix("date=")?;
        let hour: u32 = hour.strip_prefix("hour=")?.parse().ok()?;
        let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
        let t = day.and_hms_opt(hour, 0, 0)?.and_utc();
        Some(Partition(t.timestamp().div_euclid(3600)))
    }

    /// The object-store prefix of this partition of `table`.
    pub fn prefix(self, table: Table) -> Path {
        Path::from(format!("{}/{}", table.name(), self.dir()))
    }
}

/// A file name that sorts by creation time: `<unix ms:013>-<id:016x>.parquet`.
pub fn file_name(unix_ms: i64, id: u64) -> String {
    format!("{unix_ms:013}-{id:016x}.parquet")
}

/// Table and partition of a data file path, if it is one.
pub fn parse_path(path: &Path) -> Option<(Table, Partition)> {
    let parts: Vec<_> = path.parts().collect();
    if parts.len() != 4 || !parts[3].as_ref().ends_with(".parquet") {
        return None;
    }
    let table = Table::from_name(parts[0].as_ref())?;
    Some((
        table,
        Partition::parse(parts[1].as_ref(), parts[2].as_ref())?,
    ))
}

/// Encodes a set of LSNs as compact ranges: `1-5,7,9-12`.
pub fn encode_lsns(lsns: &BTreeSet<u64>) -> String {
    let mut out = String::new();
    let mut iter = lsns.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
    }
    out
}

/// Inverse of [`encode_lsns`]. Returns `None` for malformed input.
pub fn decode_lsns(s: &str) -> Option<BTreeSet<u64>> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 100_000_000 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => {
                out.insert(part.parse().ok()?);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_ranges_round_trip() {
        let set: BTreeSet<u64> = [1, 2, 3, 5, 7, 8].into();
        assert_eq!(encode_lsns(&set), "1-3,5,7-8");
        assert_eq!(decode_lsns("1-3,5,7-8").unwrap(), set);
        assert!(decode_lsns("3-1").is_none());
    }

    #[test]
    fn partitions_round_trip_through_paths() {
        let p = Partition::of_nanos(1_700_000_000_000_000_000);
        assert_eq!(p.dir(), "date=2023-11-14/hour=22");
        let path = Path::from(format!("spans/{}/{}", p.dir(), file_name(1, 2)));
        assert_eq!(parse_path(&path), Some((Table::Spans, p)));
    }
}
