//! Multi-window, multi-burn-rate alert windows (Google SRE Workbook, ch. 5).
//!
//! For a 30-day period the defaults are the workbook's: page when the burn
//! rate is ≥ 14.4 over 1 h and 5 m or ≥ 6 over 6 h and 30 m; ticket when
//! ≥ 3 over 1 d and 2 h or ≥ 1 over 3 d and 6 h. Each pair spends a fixed
//! share of the budget (2 %, 5 %, 10 %, 10 %) before it alerts. For other
//! periods the windows scale with the period and the factors stay, so each
//! alert still fires after the same share of the budget is gone (7 days:
//! page over 14 m / 70 s and 84 m / 7 m; 28 days: 56 m / 4 m 40 s, …).

use crate::spec::Severity;

const DAY_MS: i64 = 86_400_000;

/// One window pair: alert when both windows burn at `factor` or faster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnWindow {
    /// Long window in milliseconds (detects significant budget spend).
    pub long_ms: i64,
    /// Short window (resets the alert soon after recovery), usually long/12.
    pub short_ms: i64,
    /// Burn rate threshold: 1 spends exactly the budget over the period.
    pub factor: f64,
}

/// (budget share, long window for a 30-day period, factor) per severity.
fn workbook(severity: Severity) -> [(f64, i64, f64); 2] {
    match severity {
        Severity::Page => [(0.02, 3_600_000, 14.4), (0.05, 6 * 3_600_000, 6.0)],
        Severity::Ticket => [(0.10, DAY_MS, 3.0), (0.10, 3 * DAY_MS, 1.0)],
    }
}

/// The default window pairs of `severity` for a period of `period_ms`.
pub fn defaults(severity: Severity, period_ms: i64) -> Vec<BurnWindow> {
    workbook(severity)
        .into_iter()
        .map(|(_, long30, factor)| {
            // Scale to the period, to whole seconds.
            let long_ms =
                ((long30 as i128 * period_ms as i128 / (30 * DAY_MS) as i128) / 1000 * 1000) as i64;
            BurnWindow {
                long_ms: long_ms.max(60_000),
                short_ms: (long_ms / 12 / 1000 * 1000).max(10_000),
                factor,
            }
        })
        .collect()
}

/// Every distinct window the alerts of an SLO read, shortest first.
pub fn distinct(windows: impl IntoIterator<Item = BurnWindow>) -> Vec<i64> {
    let mut out: Vec<i64> = windows
        .into_iter()
        .flat_map(|w| [w.long_ms, w.short_ms])
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Formats milliseconds as a Prometheus duration (`5m`, `1h10m`, `3d`).
pub fn format_duration(ms: i64) -> String {
    if ms <= 0 {
        return "0s".into();
    }
    let units = [
        ("w", 7 * DAY_MS),
        ("d", DAY_MS),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    // Prometheus prefers days to weeks unless it is whole weeks only.
    let start = usize::from(ms % (7 * DAY_MS) != 0);
    let mut rest = ms;
    let mut out = String::new();
    for (unit, size) in &units[start..] {
        if rest >= *size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_days_gives_the_workbook_windows() {
        let page = defaults(Severity::Page, 30 * DAY_MS);
        assert_eq!(
            page,
            vec![
                BurnWindow {
                    long_ms: 3_600_000,
                    short_ms: 300_000,
                    factor: 14.4
                },
                BurnWindow {
                    long_ms: 21_600_000,
                    short_ms: 1_800_000,
                    factor: 6.0
                },
            ]
        );
        let ticket = defaults(Severity::Ticket, 30 * DAY_MS);
        assert_eq!(ticket[0].long_ms, DAY_MS);
        assert_eq!(ticket[0].short_ms, 2 * 3_600_000);
        assert_eq!(ticket[1].long_ms, 3 * DAY_MS);
        assert_eq!(ticket[1].short_ms, 6 * 3_600_000);
    }

    #[test]
    fn shorter_periods_scale_the_windows() {
        let page = defaults(Severity::Page, 7 * DAY_MS);
        assert_eq!(page[0].long_ms, 14 * 60_000);
        assert_eq!(page[0].short_ms, 70_000);
        assert_eq!(page[0].factor, 14.4);
        let page28 = defaults(Severity::Page, 28 * DAY_MS);
        assert_eq!(page28[0].long_ms, 56 * 60_000);
    }

    #[test]
    fn durations_format_like_prometheus() {
        assert_eq!(format_duration(300_000), "5m");
        assert_eq!(format_duration(3 * DAY_MS), "3d");
        assert_eq!(format_duration(7 * DAY_MS), "1w");
        assert_eq!(format_duration(70_000), "1m10s");
        assert_eq!(format_duration(30 * DAY_MS), "30d");
    }
}
