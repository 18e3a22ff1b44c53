//! tracefs and bpffs: mounting them when absent, and reading tracepoint
//! field offsets from `events/<category>/<event>/format`.

use std::path::{Path, PathBuf};

/// Where tracefs is (or was mounted).
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// One field of a tracepoint's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLayout {
    /// Byte offset in the record.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// Why a tracepoint field could not be found.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The format file is missing: the kernel lacks the tracepoint, or
    /// tracefs is not mounted.
    #[error("tracepoint {0} not found ({1})")]
    Missing(String, std::io::Error),
    /// The tracepoint has no such field.
    #[error("tracepoint {0} has no field {1}")]
    NoField(String, String),
}

/// Mounts tracefs and bpffs where they are missing (and we may).
pub fn ensure_mounted() {
    mount_if_absent("tracefs", Path::new(TRACEFS), "events");
    mount_if_absent("bpf", Path::new("/sys/fs/bpf"), "");
}

fn mount_if_absent(fs: &str, at: &Path, probe: &str) {
    let mounted = std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(&at.display().to_string()))
        })
        .unwrap_or(false);
    if mounted || (!probe.is_empty() && at.join(probe).exists()) {
        return;
    }
    let ok = std::process::Command::new("mount")
        .args(["-t", fs, fs])
        .arg(at)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        tracing::info!(fs, at = %at.display(), "mounted");
    }
}

fn format_path(category: &str, event: &str) -> PathBuf {
    Path::new(TRACEFS)
        .join("events")
        .join(category)
        .join(event)
        .join("format")
}

/// The layout of `field` in tracepoint `category:event`.
pub fn field(category: &str, event: &str, field: &str) -> Result<FieldLayout, FormatError> {
    let name = format!("{category}:{event}");
    let text = std::fs::read_to_string(format_path(category, event))
        .map_err(|e| FormatError::Missing(name.clone(), e))?;
    parse_field(&text, field).ok_or(FormatError::NoField(name, field.to_string()))
}

/// Finds `field` in a format file's text: lines like
/// `field:pid_t pid; offset:24; size:4; signed:1;` (tab-separated).
pub fn parse_field(format: &str, field: &str) -> Option<FieldLayout> {
    format.lines().find_map(|line| {
        let mut parts = line.trim().split(';').map(str::trim);
        let decl = parts.next()?.strip_prefix("field:")?;
        let name = decl
            .rsplit(|c: char| c.is_whitespace() || c == '*')
            .next()?;
        let name = name.split('[').next()?;
        if name != field {
            return None;
        }
        let mut offset = None;
        let mut size = None;
        for p in parts {
            if let Some(v) = p.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = p.strip_prefix("size:") {
                size = v.parse().ok();
            }
        }
        Some(FieldLayout {
            offset: offset?,
            size: size?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWITCH: &str = "name: sched_switch\nID: 316\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;\n\
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;\n\
\tfield:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;\n";

    #[test]
    fn fields_are_found_by_exact_name() {
        assert_eq!(
            parse_field(SWITCH, "prev_pid"),
            Some(FieldLayout {
                offset: 24,
                size: 4
            })
        );
        assert_eq!(
            parse_field(SWITCH, "prev_state"),
            Some(FieldLayout {
                offset: 32,
                size: 8
            })
        );
        assert_eq!(
            parse_field(SWITCH, "prev_comm"),
            Some(FieldLayout {
                offset: 8,
                size: 16
            })
        );
        assert_eq!(parse_field(SWITCH, "pid"), None);
    }

    #[test]
    fn this_kernel_has_the_scheduler_tracepoints() {
        ensure_mounted();
        if !Path::new(TRACEFS).join("events").exists() {
            return; // No tracefs in this sandbox: covered by the parser test.
        }
        let f = field("sched", "sched_switch", "next_pid").unwrap();
        assert_eq!(f.size, 4);
    }
}
