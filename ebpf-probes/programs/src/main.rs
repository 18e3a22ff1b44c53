//! Sightline's kernel-side programs. Field offsets of tracepoints come from
//! user space through the `CONFIG` map (read from tracefs at load time):
//! rustc emits no CO-RE relocations, and classic tracepoint formats can
//! move between kernels. Every probe counts into one histogram map
//! (`HIST`, keyed by probe, two dimensions and a log2 µs slot) that user
//! space drains.
#![no_std]
#![no_main]

use aya_ebpf::bindings::BPF_F_USER_STACK;
use aya_ebpf::helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns};
use aya_ebpf::macros::{map, perf_event, tracepoint};
use aya_ebpf::maps::{Array, HashMap, PerCpuHashMap, StackTrace};
use aya_ebpf::programs::tracing::StackIdContext;
use aya_ebpf::programs::{PerfEventContext, TracePointContext};
use ebpf_probes_common::{HistKey, ProfileKey, SUM_SLOT, block_op, config, log2_slot, probe};

/// Tracepoint field offsets (see `ebpf_probes_common::config`).
#[map]
static CONFIG: Array<u32> = Array::with_max_entries(config::LEN, 0);

/// Counts per probe, dimensions and slot; drained by user space.
#[map]
static HIST: PerCpuHashMap<HistKey, u64> = PerCpuHashMap::with_max_entries(65_536, 0);

/// When each runnable thread was enqueued (ns).
#[map]
static RUNQ_START: HashMap<u32, u64> = HashMap::with_max_entries(65_536, 0);

/// Block requests in flight: [dev, sector] → (issue time, operation). An
/// array key, not a tuple: a tuple's padding bytes would be hashed too.
#[map]
static BLOCK_START: HashMap<[u64; 2], (u64, u32)> = HashMap::with_max_entries(65_536, 0);

/// Syscalls in flight per thread: tid → (enter time, syscall number).
#[map]
static SYSCALL_START: HashMap<u32, (u64, u32)> = HashMap::with_max_entries(65_536, 0);

/// Connects in flight: socket address → SYN_SENT time.
#[map]
static CONNECT_START: HashMap<u64, u64> = HashMap::with_max_entries(65_536, 0);

#[inline(always)]
fn offset(i: u32) -> Option<usize> {
    CONFIG.get(i).map(|v| *v as usize)
}

#[inline(always)]
fn read<T>(ctx: &TracePointContext, field: u32) -> Option<T> {
    let off = offset(field)?;
    // SAFETY: offsets come from the tracepoint's format file.
    unsafe { ctx.read_at::<T>(off).ok() }
}

#[inline(always)]
fn now() -> u64 {
    unsafe { bpf_ktime_get_ns() }
}

/// Counts one observation of `ns` nanoseconds (and adds it to the sum).
#[inline(always)]
fn observe(probe: u32, a: u32, b: u32, ns: u64) {
    bump(HistKey { probe, a, b, slot: log2_slot(ns / 1000) }, 1);
    bump(HistKey { probe, a, b, slot: SUM_SLOT }, ns);
}

#[inline(always)]
fn bump(key: HistKey, by: u64) {
    match HIST.get_ptr_mut(&key) {
        // Per-CPU value: no other CPU writes it.
        Some(v) => unsafe { *v += by },
        None => {
            let _ = HIST.insert(&key, &by, 0);
        }
    }
}

// Run-queue latency.

#[tracepoint]
pub fn sched_wakeup(ctx: TracePointContext) -> u32 {
    if let Some(pid) = read::<u32>(&ctx, config::WAKEUP_PID) {
        enqueued(pid);
    }
    0
}

#[inline(always)]
fn enqueued(pid: u32) {
    if pid != 0 {
        let _ = RUNQ_START.insert(&pid, &now(), 0);
    }
}

#[tracepoint]
pub fn sched_switch(ctx: TracePointContext) -> u32 {
    // A preempted task (prev_state TASK_RUNNING, 0) goes back on the queue.
    if let Some(prev) = read::<u32>(&ctx, config::SWITCH_PREV_PID) {
        let wide = offset(config::SWITCH_PREV_STATE_SIZE).unwrap_or(8) == 8;
        let state = if wide {
            read::<u64>(&ctx, config::SWITCH_PREV_STATE)
        } else {
            read::<u32>(&ctx, config::SWITCH_PREV_STATE).map(u64::from)
        };
        if state == Some(0) {
            enqueued(prev);
        }
    }
    let Some(next) = read::<u32>(&ctx, config::SWITCH_NEXT_PID) else {
        return 0;
    };
    // SAFETY: the value is copied out before the entry is removed.
    let Some(start) = (unsafe { RUNQ_START.get(&next) }).copied() else {
        return 0;
    };
    let _ = RUNQ_START.remove(&next);
    observe(probe::RUNQUEUE, next, 0, now().saturating_sub(start));
    0
}

// Block I/O latency.

/// The operation from `rwbs` ("R", "WS", "FWS", "D", …).
#[inline(always)]
fn block_op(rwbs: [u8; 8]) -> u32 {
    let mut op = block_op::OTHER;
    let mut i = 0;
    while i < 8 {
        match rwbs[i] {
            b'D' => return block_op::DISCARD,
            b'R' => return block_op::READ,
            b'W' => return block_op::WRITE,
            b'F' if op == block_op::OTHER => op = block_op::FLUSH,
            0 => break,
            _ => {}
        }
        i += 1;
    }
    op
}

#[tracepoint]
pub fn block_rq_issue(ctx: TracePointContext) -> u32 {
    let (Some(dev), Some(sector), Some(rwbs)) = (
        read::<u32>(&ctx, config::ISSUE_DEV),
        read::<u64>(&ctx, config::ISSUE_SECTOR),
        read::<[u8; 8]>(&ctx, config::ISSUE_RWBS),
    ) else {
        return 0;
    };
    let _ = BLOCK_START.insert(&[u64::from(dev), sector], &(now(), block_op(rwbs)), 0);
    0
}

#[tracepoint]
pub fn block_rq_complete(ctx: TracePointContext) -> u32 {
    let (Some(dev), Some(sector)) = (
        read::<u32>(&ctx, config::COMPLETE_DEV),
        read::<u64>(&ctx, config::COMPLETE_SECTOR),
    ) else {
        return 0;
    };
    let key = [u64::from(dev), sector];
    let Some((start, op)) = (unsafe { BLOCK_START.get(&key) }).copied() else {
        return 0;
    };
    let _ = BLOCK_START.remove(&key);
    observe(probe::BLOCK, dev, op, now().saturating_sub(start));
    0
}

// Syscall latency.

#[tracepoint]
pub fn sys_enter(ctx: TracePointContext) -> u32 {
    let Some(id) = read::<u64>(&ctx, config::SYS_ENTER_ID) else {
        return 0;
    };
    let tid = bpf_get_current_pid_tgid() as u32;
    let _ = SYSCALL_START.insert(&tid, &(now(), id as u32), 0);
    0
}

#[tracepoint]
pub fn sys_exit(_ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tid = pid_tgid as u32;
    let Some((start, id)) = (unsafe { SYSCALL_START.get(&tid) }).copied() else {
        return 0;
    };
    let _ = SYSCALL_START.remove(&tid);
    observe(probe::SYSCALL, id, (pid_tgid >> 32) as u32, now().saturating_sub(start));
    0
}

// TCP.

const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const IPPROTO_TCP: u16 = 6;

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    if read::<u16>(&ctx, config::SK_PROTOCOL) != Some(IPPROTO_TCP) {
        return 0;
    }
    let (Some(sk), Some(old), Some(new)) = (
        read::<u64>(&ctx, config::SK_SKADDR),
        read::<i32>(&ctx, config::SK_OLDSTATE),
        read::<i32>(&ctx, config::SK_NEWSTATE),
    ) else {
        return 0;
    };
    if new == TCP_SYN_SENT {
        let _ = CONNECT_START.insert(&sk, &now(), 0);
        return 0;
    }
    if old != TCP_SYN_SENT {
        return 0;
    }
    let start = unsafe { CONNECT_START.get(&sk) }.copied();
    let _ = CONNECT_START.remove(&sk);
    if let (Some(start), true) = (start, new == TCP_ESTABLISHED) {
        // The tracepoint stores ports in host order (ntohs).
        let port = read::<u16>(&ctx, config::SK_DPORT).unwrap_or(0);
        observe(probe::TCP_CONNECT, u32::from(port), 0, now().saturating_sub(start));
    }
    0
}

const AF_INET: u16 = 2;

#[tracepoint]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    let port = read::<u16>(&ctx, config::RETR_DPORT).unwrap_or(0);
    let addr = match read::<u16>(&ctx, config::RETR_FAMILY) {
        Some(AF_INET) => read::<u32>(&ctx, config::RETR_DADDR).unwrap_or(0),
        _ => 0,
    };
    bump(HistKey { probe: probe::TCP_RETRANSMIT, a: addr, b: u32::from(port), slot: 0 }, 1);
    0
}

// CPU profiler.

/// Kernel and user stacks of the samples, by id.
#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(16_384, 0);

/// Samples per (thread, stacks); drained by user space.
#[map]
static PROFILE: PerCpuHashMap<ProfileKey, u64> = PerCpuHashMap::with_max_entries(16_384, 0);

#[perf_event]
pub fn cpu_profile(ctx: PerfEventContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if tgid == 0 {
        return 0; // The idle task: no one was waiting for this CPU.
    }
    let target = CONFIG.get(config::PROFILE_TGID).copied().unwrap_or(0);
    if target != 0 && target != tgid {
        return 0;
    }
    let user_stack = ctx.get_stackid(&STACKS, u64::from(BPF_F_USER_STACK)).map_or(-1, |id| id as i32);
    let kernel_stack = ctx.get_stackid(&STACKS, 0).map_or(-1, |id| id as i32);
    let key = ProfileKey {
        tgid,
        pid: pid_tgid as u32,
        user_stack,
        kernel_stack,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    match PROFILE.get_ptr_mut(&key) {
        Some(v) => unsafe { *v += 1 },
        None => {
            let _ = PROFILE.insert(&key, &1, 0);
        }
    }
    0
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
