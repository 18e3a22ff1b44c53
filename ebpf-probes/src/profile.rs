//! The CPU profiler: a `perf_event` program on the software `cpu-clock`
//! event of every CPU samples who is on the CPU with their kernel and user
//! stacks (user stacks by frame pointers); user space counts the samples
//! per (thread, stacks) and names the frames with [`crate::symbols`]
//! (blazesym: ELF symbols, then DWARF, for user space, `/proc/kallsyms` for the
//! kernel, cached per build id). Rendering (flame graphs, pprof) is the
//! query layer's: `query::profiles`.

use std::collections::{BTreeMap, HashMap};

use aya::Ebpf;
use aya::maps::{Array, MapData, PerCpuHashMap, StackTraceMap};
use aya::programs::PerfEvent;
use aya::programs::perf_event::{PerfEventConfig, PerfEventScope, SamplePolicy, SoftwareEvent};
use ebpf_probes_common::{ProfileKey, config};

use crate::ProbeError;
use crate::symbols::Symbols;

/// One aggregated sample: a thread, its stack root to leaf, how often.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sample {
    /// Process id.
    pub tgid: u32,
    /// Thread name.
    pub comm: String,
    /// Frames from the root (`main`, `_start`, …) to the leaf; kernel
    /// frames last, suffixed `_[k]` as in Brendan Gregg's folded format.
    pub frames: Vec<String>,
    /// Samples with exactly this stack.
    pub count: u64,
}

/// What a drain found besides the samples.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DrainStats {
    /// Samples whose user stack was a single frame: the process was
    /// probably built without frame pointers, so only its leaf is shown.
    pub without_frame_pointers: u64,
    /// Samples with neither a user nor a kernel stack.
    pub without_stack: u64,
    /// All samples drained.
    pub samples: u64,
}

/// The attached profiler.
pub struct Profiler {
    counts: PerCpuHashMap<MapData, ProfileKey, u64>,
    stacks: StackTraceMap<MapData>,
    /// The symbol cache, kept across drains.
    pub symbols: Symbols,
    /// Stack ids in the kernel's stack map.
    stack_ids: std::collections::HashSet<i32>,
}

/// Entries of the kernel's `STACKS` map (`programs/src/main.rs`).
const STACK_MAP_ENTRIES: usize = 16_384;

/// The frame shown for user stacks that are only their leaf.
pub const NO_FRAME_POINTERS: &str = "[no frame pointers]";

/// The frame shown for samples with no readable stack at all.
pub const NO_STACK: &str = "[unknown stack]";

impl Profiler {
    /// Attaches to `cpu-clock` on every online CPU at `frequency` Hz,
    /// sampling only `tgid` when given.
    pub fn attach(
        ebpf: &mut Ebpf,
        frequency: u64,
        tgid: Option<u32>,
    ) -> Result<Profiler, ProbeError> {
        let map = ebpf
            .map_mut("CONFIG")
            .ok_or(ProbeError::MissingMap("CONFIG"))?;
        let mut cfg: Array<_, u32> = Array::try_from(map)?;
        cfg.set(config::PROFILE_TGID, tgid.unwrap_or(0), 0)?;
        let program: &mut PerfEvent = ebpf
            .program_mut("cpu_profile")
            .ok_or(ProbeError::MissingProgram("cpu_profile"))?
            .try_into()?;
        program.load()?;
        let cpus = aya::util::online_cpus()
            .map_err(|(what, e)| ProbeError::Cpus(format!("{what}: {e}")))?;
        for cpu in cpus {
            program.attach(
                PerfEventConfig::Software(SoftwareEvent::CpuClock),
                PerfEventScope::AllProcessesOneCpu { cpu },
                SamplePolicy::Frequency(frequency),
                false,
            )?;
        }
        let counts = ebpf
            .take_map("PROFILE")
            .ok_or(ProbeError::MissingMap("PROFILE"))?;
        let stacks = ebpf
            .take_map("STACKS")
            .ok_or(ProbeError::MissingMap("STACKS"))?;
        Ok(Profiler {
            counts: PerCpuHashMap::try_from(counts)?,
            stacks: StackTraceMap::try_from(stacks)?,
            symbols: Symbols::default(),
            stack_ids: Default::default(),
        })
    }

    /// Moves the samples out of the kernel, symbolized.
    ///
    /// Stacks stay in the kernel's stack map between drains: a hot stack
    /// is sampled again while we drain, under the same id, and removing it
    /// would leave those samples without a stack. Stack ids are content
    /// hashes (no `BPF_F_REUSE_STACKID`), so an id keeps meaning the same
    /// stack until removed. Once half the map is in use the stacks are
    /// removed in one go, so new stacks do not collide with old ones; only
    /// samples taken during that moment can lose their stack.
    pub fn drain(&mut self) -> (Vec<Sample>, DrainStats) {
        let drained = crate::take_counts(&mut self.counts);
        let user = self.user_stacks(&drained);
        let mut kernel: HashMap<i32, Vec<String>> = HashMap::new();
        let mut merged: BTreeMap<(u32, String, Vec<String>), u64> = BTreeMap::new();
        let mut stats = DrainStats::default();
        for (key, n) in drained {
            stats.samples += n;
            let mut frames = user
                .get(&(key.tgid, key.user_stack))
                .cloned()
                .unwrap_or_default();
            if frames.len() == 1 {
                stats.without_frame_pointers += n;
                frames.insert(0, NO_FRAME_POINTERS.to_string());
            }
            let names = kernel
                .entry(key.kernel_stack)
                .or_insert_with(|| self.kernel_frames(key.kernel_stack));
            frames.extend(names.iter().cloned());
            if frames.is_empty() {
                // Neither stack could be read (the kernel failed to walk
                // it, e.g. mid-exec): keep the sample, say so.
                stats.without_stack += n;
                frames.push(NO_STACK.to_string());
            }
            self.stack_ids.extend(
                [key.user_stack, key.kernel_stack]
                    .into_iter()
                    .filter(|id| *id >= 0),
            );
            let comm = comm(&key.comm);
            *merged.entry((key.tgid, comm, frames)).or_default() += n;
        }
        if self.stack_ids.len() > STACK_MAP_ENTRIES / 2 {
            for id in std::mem::take(&mut self.stack_ids) {
                let _ = self.stacks.remove(&(id as u32));
            }
        }
        let samples = merged
            .into_iter()
            .map(|((tgid, comm, frames), count)| Sample {
                tgid,
                comm,
                frames,
                count,
            })
            .collect();
        (samples, stats)
    }

    /// Names of every user stack drained, by (process, stack id).
    ///
    /// One symbolizer call per process: each call reads the process's
    /// memory map, which costs more than naming a cached address.
    fn user_stacks(&mut self, drained: &[(ProfileKey, u64)]) -> HashMap<(u32, i32), Vec<String>> {
        let mut by_process: HashMap<u32, Vec<i32>> = HashMap::new();
        for (key, _) in drained {
            let ids = by_process.entry(key.tgid).or_default();
            if key.user_stack >= 0 && !ids.contains(&key.user_stack) {
                ids.push(key.user_stack);
            }
        }
        let mut out = HashMap::new();
        for (tgid, ids) in by_process {
            let stacks: Vec<Vec<u64>> = ids.iter().map(|id| self.ips(*id)).collect();
            let all: Vec<u64> = stacks.iter().flatten().copied().collect();
            if all.is_empty() {
                continue;
            }
            let mut names = self.symbols.user(tgid, &all).into_iter();
            for (id, ips) in ids.into_iter().zip(stacks) {
                out.insert((tgid, id), names.by_ref().take(ips.len()).collect());
            }
        }
        out
    }

    fn ips(&self, id: i32) -> Vec<u64> {
        if id < 0 {
            return Vec::new();
        }
        match self.stacks.get(&(id as u32), 0) {
            // The map lists leaf first.
            Ok(trace) => trace.frames().iter().rev().map(|f| f.ip).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn kernel_frames(&mut self, id: i32) -> Vec<String> {
        let ips = self.ips(id);
        if ips.is_empty() {
            return Vec::new();
        }
        self.symbols.kernel(&ips)
    }
}

fn comm(raw: &[u8; 16]) -> String {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}
