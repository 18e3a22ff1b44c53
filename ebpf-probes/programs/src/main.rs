//! Sightline's kernel-side programs. Field offsets of tracepoints come from
//! user space through the `CONFIG` map (read from tracefs at load time):
//! rustc emits no CO-RE relocations, and classic tracepoint formats can
//! move between kernels.
#![no_std]
#![no_main]

use aya_ebpf::helpers::bpf_ktime_get_ns;
use aya_ebpf::macros::{map, tracepoint};
use aya_ebpf::maps::{Array, HashMap, PerCpuHashMap};
use aya_ebpf::programs::TracePointContext;
use ebpf_probes_common::{RunqKey, SLOTS, config};

/// Tracepoint field offsets (see `ebpf_probes_common::config`).
#[map]
static CONFIG: Array<u32> = Array::with_max_entries(config::LEN, 0);

/// When each runnable thread was enqueued (ns).
#[map]
static RUNQ_START: HashMap<u32, u64> = HashMap::with_max_entries(65_536, 0);

/// Run-queue latency counts per (thread, log2 µs slot); drained by user space.
#[map]
static RUNQ_HIST: PerCpuHashMap<RunqKey, u64> = PerCpuHashMap::with_max_entries(65_536, 0);

#[inline(always)]
fn offset(i: u32) -> Option<usize> {
    CONFIG.get(i).map(|v| *v as usize)
}

#[inline(always)]
fn read_u32(ctx: &TracePointContext, field: u32) -> Option<u32> {
    let off = offset(field)?;
    // SAFETY: the offset comes from the tracepoint's format file.
    unsafe { ctx.read_at::<u32>(off).ok() }
}

#[tracepoint]
pub fn sched_wakeup(ctx: TracePointContext) -> u32 {
    if let Some(pid) = read_u32(&ctx, config::WAKEUP_PID) {
        enqueued(pid);
    }
    0
}

#[inline(always)]
fn enqueued(pid: u32) {
    if pid != 0 {
        let now = unsafe { bpf_ktime_get_ns() };
        let _ = RUNQ_START.insert(&pid, &now, 0);
    }
}

#[tracepoint]
pub fn sched_switch(ctx: TracePointContext) -> u32 {
    // A preempted task (prev_state TASK_RUNNING, 0) goes back on the queue.
    if let (Some(prev), Some(off)) = (
        read_u32(&ctx, config::SWITCH_PREV_PID),
        offset(config::SWITCH_PREV_STATE),
    ) {
        let size = offset(config::SWITCH_PREV_STATE_SIZE).unwrap_or(8);
        let state = unsafe {
            if size == 8 {
                ctx.read_at::<u64>(off).unwrap_or(1)
            } else {
                ctx.read_at::<u32>(off).map(u64::from).unwrap_or(1)
            }
        };
        if state == 0 {
            enqueued(prev);
        }
    }
    let Some(next) = read_u32(&ctx, config::SWITCH_NEXT_PID) else {
        return 0;
    };
    // SAFETY: the value is copied out before the entry is removed.
    let Some(start) = (unsafe { RUNQ_START.get(&next) }).copied() else {
        return 0;
    };
    let _ = RUNQ_START.remove(&next);
    let now = unsafe { bpf_ktime_get_ns() };
    let key = RunqKey {
        pid: next,
        slot: log2_slot(now.saturating_sub(start) / 1000),
    };
    match RUNQ_HIST.get_ptr_mut(&key) {
        // Per-CPU value: no other CPU writes it.
        Some(count) => unsafe { *count += 1 },
        None => {
            let _ = RUNQ_HIST.insert(&key, &1, 0);
        }
    }
    0
}

/// floor(log2(v)) for v ≥ 1, 0 for 0; bounded loop for the verifier.
#[inline(always)]
fn log2_slot(mut v: u64) -> u32 {
    let mut slot = 0;
    while slot < SLOTS - 1 && v > 1 {
        v >>= 1;
        slot += 1;
    }
    slot
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
