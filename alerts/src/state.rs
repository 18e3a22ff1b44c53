//! Alert states (inactive → pending → firing → resolved) and their
//! persistence, so a restart neither forgets a firing alert nor announces
//! it again as new: Alertmanager identifies an alert by its labels and
//! start time, which survive here.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Condition false.
    #[default]
    Inactive,
    /// Condition true for less than the alert's `for`.
    Pending,
    /// Condition true long enough: notified.
    Firing,
}

impl Phase {
    /// Prometheus API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Inactive => "inactive",
            Phase::Pending => "pending",
            Phase::Firing => "firing",
        }
    }
}

/// What a step changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing.
    None,
    /// Became pending.
    Pending,
    /// Started firing.
    Fired,
    /// Stopped firing.
    Resolved,
    /// Pending, then the condition went away before `for` passed.
    Cancelled,
}

/// The state of one alert of one SLO.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// Current phase.
    pub phase: Phase,
    /// When the condition became true (ms); Alertmanager's `startsAt`.
    pub active_at: Option<i64>,
    /// When it started firing (ms).
    pub fired_at: Option<i64>,
    /// The last firing episode that ended: `(active_at, resolved_at)`,
    /// announced as resolved for a while after (and after a restart).
    pub resolved: Option<(i64, i64)>,
    /// Burn rate of the pair that triggered (the smaller of its two).
    pub value: f64,
}

impl AlertState {
    /// Advances the state machine at `t` (ms) given the condition.
    pub fn step(&mut self, condition: bool, t: i64, for_ms: i64) -> Transition {
        match (self.phase, condition) {
            (Phase::Inactive, true) => {
                self.active_at = Some(t);
                if for_ms <= 0 {
                    self.fire(t)
                } else {
                    self.phase = Phase::Pending;
                    Transition::Pending
                }
            }
            (Phase::Pending, true) if t - self.active_at.unwrap_or(t) >= for_ms => self.fire(t),
            (Phase::Pending, false) => {
                self.phase = Phase::Inactive;
                self.active_at = None;
                Transition::Cancelled
            }
            (Phase::Firing, false) => {
                self.phase = Phase::Inactive;
                self.resolved = Some((self.active_at.unwrap_or(t), t));
                self.active_at = None;
                self.fired_at = None;
                Transition::Resolved
            }
            _ => Transition::None,
        }
    }

    fn fire(&mut self, t: i64) -> Transition {
        self.phase = Phase::Firing;
        self.fired_at = Some(t);
        Transition::Fired
    }
}

/// All alert states, keyed `<slo id>/<severity>`, in a JSON file.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    /// The states.
    pub alerts: BTreeMap<String, AlertState>,
}

impl StateFile {
    /// Loads the file; a missing file is an empty state. An unreadable one
    /// is moved aside (and logged) rather than stopping evaluation.
    pub fn load(path: &Path) -> StateFile {
        let alerts = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                let aside = path.with_extension("json.corrupt");
                tracing::error!(path = %path.display(), error = %e, aside = %aside.display(), "alert state unreadable; starting empty");
                let _ = std::fs::rename(path, aside);
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        StateFile {
            path: path.to_path_buf(),
            alerts,
        }
    }

    /// Writes the file atomically and durably (temp file, fsync, rename).
    pub fn save(&self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&self.alerts)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_then_firing_then_resolved() {
        let mut s = AlertState::default();
        assert_eq!(s.step(true, 0, 60_000), Transition::Pending);
        assert_eq!(s.step(true, 30_000, 60_000), Transition::None);
        assert_eq!(s.step(true, 60_000, 60_000), Transition::Fired);
        assert_eq!(s.phase, Phase::Firing);
        assert_eq!(s.step(false, 90_000, 60_000), Transition::Resolved);
        assert_eq!(s.resolved, Some((0, 90_000)));
        assert_eq!(s.phase, Phase::Inactive);
    }

    #[test]
    fn pending_cancelled_and_immediate_firing() {
        let mut s = AlertState::default();
        s.step(true, 0, 60_000);
        assert_eq!(s.step(false, 10_000, 60_000), Transition::Cancelled);
        assert_eq!(s.step(true, 20_000, 0), Transition::Fired);
        assert_eq!(s.active_at, Some(20_000));
    }

    #[test]
    fn state_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts/state.json");
        let mut f = StateFile::load(&path);
        let mut s = AlertState::default();
        s.step(true, 5, 0);
        f.alerts.insert("svc-slo/page".into(), s.clone());
        f.save().unwrap();
        assert_eq!(StateFile::load(&path).alerts["svc-slo/page"], s);
    }
}
