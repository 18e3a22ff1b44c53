//! Types shared by the kernel-side programs (`ebpf-probes-programs`) and the
//! user-space loader (`ebpf-probes`). Everything is `#[repr(C)]` with
//! explicit padding so both sides agree on the layout.
#![no_std]

/// Indices into the `CONFIG` array map: values user space writes before
/// attaching (tracepoint field offsets read from tracefs `format` files,
/// so no kernel's layout is compiled in).
pub mod config {
    /// `sched:sched_wakeup[_new]` → `pid`.
    pub const WAKEUP_PID: u32 = 0;
    /// `sched:sched_switch` → `prev_pid`.
    pub const SWITCH_PREV_PID: u32 = 1;
    /// `sched:sched_switch` → `prev_state`.
    pub const SWITCH_PREV_STATE: u32 = 2;
    /// `sched:sched_switch` → `next_pid`.
    pub const SWITCH_NEXT_PID: u32 = 3;
    /// Size in bytes of `prev_state` (4 or 8 by kernel version).
    pub const SWITCH_PREV_STATE_SIZE: u32 = 4;
    /// Number of entries.
    pub const LEN: u32 = 8;
}

/// Log2 histogram slots: slot `s` counts latencies in `[2^s, 2^(s+1))`
/// microseconds (slot 0 also takes 0 µs), like `runqlat`.
pub const SLOTS: u32 = 32;

/// Key of a run-queue latency histogram bucket: which thread waited, and
/// in which log2 slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RunqKey {
    /// Thread id (kernel pid) of the task that waited.
    pub pid: u32,
    /// Log2 slot of the wait in microseconds.
    pub slot: u32,
}

#[cfg(feature = "user")]
// SAFETY: plain old data: two u32, no padding.
unsafe impl aya::Pod for RunqKey {}
