//! Run-queue latency (`sched:sched_wakeup`, `sched_wakeup_new`,
//! `sched_switch`): how long runnable threads wait for a CPU, as a log2
//! histogram per cgroup — what `runqlat -c` shows, as a metric.

use aya::Ebpf;
use aya::maps::{Array, MapData, PerCpuHashMap};
use aya::programs::TracePoint;
use ebpf_probes_common::{RunqKey, config};

use crate::ProbeError;
use crate::cgroup;
use crate::histogram::Log2Histograms;
use crate::tracefs;

/// The attached probe and what it has counted so far.
pub struct RunQueue {
    hist: PerCpuHashMap<MapData, RunqKey, u64>,
    /// Counts since start per cgroup.
    pub totals: Log2Histograms,
    cgroups: cgroup::Cache,
}

/// Writes the tracepoint field offsets the programs read.
fn configure(ebpf: &mut Ebpf) -> Result<(), ProbeError> {
    let wakeup = tracefs::field("sched", "sched_wakeup", "pid")?;
    let prev_pid = tracefs::field("sched", "sched_switch", "prev_pid")?;
    let prev_state = tracefs::field("sched", "sched_switch", "prev_state")?;
    let next_pid = tracefs::field("sched", "sched_switch", "next_pid")?;
    let map = ebpf
        .map_mut("CONFIG")
        .ok_or(ProbeError::MissingMap("CONFIG"))?;
    let mut cfg: Array<_, u32> = Array::try_from(map)?;
    cfg.set(config::WAKEUP_PID, wakeup.offset, 0)?;
    cfg.set(config::SWITCH_PREV_PID, prev_pid.offset, 0)?;
    cfg.set(config::SWITCH_PREV_STATE, prev_state.offset, 0)?;
    cfg.set(config::SWITCH_NEXT_PID, next_pid.offset, 0)?;
    cfg.set(config::SWITCH_PREV_STATE_SIZE, prev_state.size, 0)?;
    Ok(())
}

impl RunQueue {
    /// Configures, loads and attaches the scheduler programs.
    pub fn attach(ebpf: &mut Ebpf) -> Result<RunQueue, ProbeError> {
        configure(ebpf)?;
        for (program, events) in [
            ("sched_wakeup", &["sched_wakeup", "sched_wakeup_new"][..]),
            ("sched_switch", &["sched_switch"][..]),
        ] {
            let p: &mut TracePoint = ebpf
                .program_mut(program)
                .ok_or(ProbeError::MissingProgram(program))?
                .try_into()?;
            p.load()?;
            for event in events {
                p.attach("sched", event)?;
            }
        }
        let map = ebpf
            .take_map("RUNQ_HIST")
            .ok_or(ProbeError::MissingMap("RUNQ_HIST"))?;
        Ok(RunQueue {
            hist: PerCpuHashMap::try_from(map)?,
            totals: Log2Histograms::default(),
            cgroups: cgroup::Cache::default(),
        })
    }

    /// Moves the kernel's counts into `totals` (per cgroup) and empties the
    /// map. An increment landing between a read and its delete is lost;
    /// at drain intervals of seconds that is a few events in millions.
    pub fn drain(&mut self) -> u64 {
        let keys: Vec<RunqKey> = self.hist.keys().filter_map(Result::ok).collect();
        let mut n = 0;
        for key in keys {
            let Ok(values) = self.hist.get(&key, 0) else {
                continue;
            };
            let _ = self.hist.remove(&key);
            let count: u64 = values.iter().sum();
            if count == 0 {
                continue;
            }
            let place = self.cgroups.get(key.pid);
            let mut labels = vec![("cgroup".to_string(), place.cgroup)];
            if let Some(id) = place.container_id {
                labels.push(("container.id".into(), id));
            }
            if let Some(uid) = place.pod_uid {
                labels.push(("k8s.pod.uid".into(), uid));
            }
            labels.sort();
            self.totals.add(labels, key.slot, count);
            n += count;
        }
        self.cgroups.prune();
        n
    }
}
