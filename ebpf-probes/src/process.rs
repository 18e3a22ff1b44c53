//! What a sampled process is: its service name, read from the
//! OpenTelemetry environment variables it was started with, so CPU
//! profiles can be filtered by the same `service.name` as its spans.

use std::collections::HashMap;

/// `service.name` from a process environment block (`NUL`-separated
/// `KEY=value` pairs): `OTEL_SERVICE_NAME` wins over `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES`, as in the OpenTelemetry SDKs.
pub fn service_name(environ: &[u8]) -> Option<String> {
    let mut from_attributes = None;
    for var in environ.split(|b| *b == 0) {
        let var = String::from_utf8_lossy(var);
        if let Some(v) = var.strip_prefix("OTEL_SERVICE_NAME=") {
            if !v.is_empty() {
                return Some(v.to_string());
            }
        } else if let Some(attrs) = var.strip_prefix("OTEL_RESOURCE_ATTRIBUTES=") {
            from_attributes = attrs
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| k.trim() == "service.name")
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty());
        }
    }
    from_attributes
}

/// Facts about processes read from `/proc` once per pid and forgotten
/// when the pid is gone (pids are reused).
#[derive(Debug)]
pub struct PidCache<T> {
    known: HashMap<u32, T>,
    read: fn(u32) -> T,
}

impl<T: Clone> PidCache<T> {
    /// A cache that reads a missing pid with `read`.
    pub fn new(read: fn(u32) -> T) -> Self {
        PidCache {
            known: HashMap::new(),
            read,
        }
    }

    /// The fact about `pid` (read from /proc the first time).
    pub fn get(&mut self, pid: u32) -> T {
        let read = self.read;
        self.known.entry(pid).or_insert_with(|| read(pid)).clone()
    }

    /// Forgets pids that no longer exist.
    pub fn prune(&mut self) {
        self.known
            .retain(|pid, _| std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}

/// The service `pid` belongs to, if its environment says.
pub fn read_service_name(pid: u32) -> Option<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .ok()
        .and_then(|e| service_name(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_name_from_either_variable() {
        assert_eq!(
            service_name(b"A=1\0OTEL_SERVICE_NAME=checkout\0"),
            Some("checkout".into())
        );
        assert_eq!(
            service_name(b"OTEL_RESOURCE_ATTRIBUTES=team=x, service.name=cart\0"),
            Some("cart".into())
        );
        assert_eq!(
            service_name(b"OTEL_RESOURCE_ATTRIBUTES=service.name=cart\0OTEL_SERVICE_NAME=web\0"),
            Some("web".into())
        );
        assert_eq!(service_name(b"PATH=/bin\0"), None);
    }
}
