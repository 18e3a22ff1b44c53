//! OTLP metric and attribute names as Prometheus names, following the
//! OpenTelemetry "Prometheus and OpenMetrics compatibility" specification:
//! invalid characters become `_`, the unit becomes a suffix (`s` →
//! `_seconds`, `By` → `_bytes`, `1` on gauges → `_ratio`, `a/b` →
//! `_a_per_b`), monotonic sums end in `_total`.

/// What kind of OTLP metric a name belongs to (affects its suffixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Gauge or non-monotonic sum.
    Gauge,
    /// Monotonic sum.
    Counter,
    /// Histogram, exponential histogram or summary (`_bucket`/`_sum`/`_count`
    /// are added by the caller).
    Distribution,
}

/// Replaces characters Prometheus does not allow in a metric name.
pub fn sanitize_metric(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut last_underscore = false;
    for c in name.chars() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || c == ':';
        let c = if ok { c } else { '_' };
        // Runs of replaced characters collapse into one underscore.
        if c == '_' && last_underscore && !ok {
            continue;
        }
        last_underscore = c == '_';
        out.push(c);
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A label name Prometheus accepts for attribute key `key`.
pub fn sanitize_label(key: &str) -> String {
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    }
    out
}

fn unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tebibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

fn per_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// The name suffix for an OTLP unit (`None` for no suffix).
pub fn unit_suffix(unit: &str, kind: Kind) -> Option<String> {
    let unit = unit.trim();
    // Annotations like `{requests}` carry no unit.
    let unit = strip_annotations(unit);
    if unit.is_empty() {
        return None;
    }
    if unit == "1" {
        return (kind == Kind::Gauge).then(|| "ratio".to_string());
    }
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m, Some(p)),
        None => (unit.as_str(), None),
    };
    let mut parts = Vec::new();
    if !main.is_empty() {
        parts.push(unit_word(main).map_or_else(|| sanitize_metric(main), str::to_string));
    }
    if let Some(p) = per.filter(|p| !p.is_empty()) {
        parts.push(format!(
            "per_{}",
            per_word(p).map_or_else(|| sanitize_metric(p), str::to_string)
        ));
    }
    let s = parts.join("_");
    let s = s.trim_matches('_').to_string();
    (!s.is_empty()).then_some(s)
}

fn strip_annotations(unit: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

/// The Prometheus base name of an OTLP metric (before `_bucket`, `_sum`,
/// `_count` for distributions).
pub fn metric_name(name: &str, unit: &str, kind: Kind) -> String {
    let mut base = sanitize_metric(name);
    let counter = kind == Kind::Counter;
    if counter && let Some(stripped) = base.strip_suffix("_total") {
        base = stripped.to_string();
    }
    if let Some(suffix) = unit_suffix(unit, kind)
        && !base.ends_with(&format!("_{suffix}"))
        && base != suffix
    {
        base = format!("{base}_{suffix}");
    }
    if counter {
        base.push_str("_total");
    }
    base
}

/// `job` for a resource: `service.namespace/service.name`, or the name.
pub fn job(service_namespace: Option<&str>, service_name: Option<&str>) -> Option<String> {
    match (service_namespace, service_name) {
        (Some(ns), Some(n)) if !ns.is_empty() => Some(format!("{ns}/{n}")),
        (_, Some(n)) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_otel_prometheus_specification() {
        assert_eq!(
            metric_name("http.server.request.duration", "s", Kind::Distribution),
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            metric_name("http.server.requests", "{request}", Kind::Counter),
            "http_server_requests_total"
        );
        assert_eq!(
            metric_name("process.memory.usage", "By", Kind::Gauge),
            "process_memory_usage_bytes"
        );
        assert_eq!(
            metric_name("system.cpu.utilization", "1", Kind::Gauge),
            "system_cpu_utilization_ratio"
        );
        assert_eq!(
            metric_name("requests_total", "", Kind::Counter),
            "requests_total"
        );
        assert_eq!(
            metric_name("io", "By/s", Kind::Gauge),
            "io_bytes_per_second"
        );
        assert_eq!(
            metric_name("latency_seconds", "s", Kind::Gauge),
            "latency_seconds"
        );
        assert_eq!(metric_name("up", "", Kind::Gauge), "up");
        assert_eq!(metric_name("2xx..count", "", Kind::Gauge), "_2xx_count");
        assert_eq!(sanitize_label("http.route"), "http_route");
        assert_eq!(sanitize_label("9lives"), "key_9lives");
        assert_eq!(
            job(Some("shop"), Some("cart")).as_deref(),
            Some("shop/cart")
        );
    }
}
