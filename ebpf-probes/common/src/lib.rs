//! Types shared by the kernel-side programs (`ebpf-probes-programs`) and the
//! user-space loader (`ebpf-probes`). Everything is `#[repr(C)]` with
//! explicit padding so both sides agree on the layout.
#![no_std]

/// Indices into the `CONFIG` array map: tracepoint field offsets user
/// space reads from tracefs `format` files before attaching, so no kernel's
/// layout is compiled in.
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
    /// `block:block_rq_issue` → `dev`.
    pub const ISSUE_DEV: u32 = 5;
    /// `block:block_rq_issue` → `sector`.
    pub const ISSUE_SECTOR: u32 = 6;
    /// `block:block_rq_issue` → `rwbs`.
    pub const ISSUE_RWBS: u32 = 7;
    /// `block:block_rq_complete` → `dev`.
    pub const COMPLETE_DEV: u32 = 8;
    /// `block:block_rq_complete` → `sector`.
    pub const COMPLETE_SECTOR: u32 = 9;
    /// `raw_syscalls:sys_enter` → `id`.
    pub const SYS_ENTER_ID: u32 = 10;
    /// `sock:inet_sock_set_state` → `skaddr`.
    pub const SK_SKADDR: u32 = 11;
    /// `sock:inet_sock_set_state` → `oldstate`.
    pub const SK_OLDSTATE: u32 = 12;
    /// `sock:inet_sock_set_state` → `newstate`.
    pub const SK_NEWSTATE: u32 = 13;
    /// `sock:inet_sock_set_state` → `dport`.
    pub const SK_DPORT: u32 = 14;
    /// `sock:inet_sock_set_state` → `protocol`.
    pub const SK_PROTOCOL: u32 = 15;
    /// `tcp:tcp_retransmit_skb` → `dport`.
    pub const RETR_DPORT: u32 = 16;
    /// `tcp:tcp_retransmit_skb` → `family`.
    pub const RETR_FAMILY: u32 = 17;
    /// `tcp:tcp_retransmit_skb` → `daddr`.
    pub const RETR_DADDR: u32 = 18;
    /// Profile only this process (tgid); 0 profiles every process.
    pub const PROFILE_TGID: u32 = 19;
    /// Number of entries.
    pub const LEN: u32 = 32;
}

/// Which probe a histogram entry belongs to ([`HistKey::probe`]).
pub mod probe {
    /// Run-queue latency: `a` = thread id.
    pub const RUNQUEUE: u32 = 1;
    /// Block I/O latency: `a` = device (kernel `dev_t`), `b` = operation.
    pub const BLOCK: u32 = 2;
    /// Syscall latency: `a` = syscall number, `b` = process id (tgid).
    pub const SYSCALL: u32 = 3;
    /// TCP connect latency: `a` = remote port.
    pub const TCP_CONNECT: u32 = 4;
    /// TCP retransmits (a counter in slot 0): `a` = remote IPv4 address
    /// (network order, 0 for IPv6), `b` = remote port.
    pub const TCP_RETRANSMIT: u32 = 5;
}

/// Block operations ([`HistKey::b`] of [`probe::BLOCK`]).
pub mod block_op {
    /// Read.
    pub const READ: u32 = 1;
    /// Write.
    pub const WRITE: u32 = 2;
    /// Discard.
    pub const DISCARD: u32 = 3;
    /// Flush only.
    pub const FLUSH: u32 = 4;
    /// Anything else.
    pub const OTHER: u32 = 0;
}

/// Log2 histogram slots: slot `s` counts latencies in `[2^s, 2^(s+1))`
/// microseconds (slot 0 also takes 0 µs), like `runqlat`.
pub const SLOTS: u32 = 32;

/// The slot holding the sum of the observed latencies in nanoseconds.
pub const SUM_SLOT: u32 = 255;

/// Key of one histogram bucket of one probe.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HistKey {
    /// [`probe`] id.
    pub probe: u32,
    /// First dimension (see [`probe`]).
    pub a: u32,
    /// Second dimension (see [`probe`]).
    pub b: u32,
    /// Log2 µs slot, or [`SUM_SLOT`].
    pub slot: u32,
}

#[cfg(feature = "user")]
// SAFETY: plain old data: four u32, no padding.
unsafe impl aya::Pod for HistKey {}

/// Key of the CPU profiler's sample counts: who was on the CPU and the
/// ids of its user and kernel stacks in the stack-trace map (negative: no
/// stack, e.g. a kernel thread has no user stack).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProfileKey {
    /// Process id.
    pub tgid: u32,
    /// Thread id.
    pub pid: u32,
    /// User stack id, or a negative errno.
    pub user_stack: i32,
    /// Kernel stack id, or a negative errno.
    pub kernel_stack: i32,
    /// Thread name, NUL-padded.
    pub comm: [u8; 16],
}

#[cfg(feature = "user")]
// SAFETY: plain old data: 4 × 4 bytes and 16 bytes, no padding.
unsafe impl aya::Pod for ProfileKey {}

/// floor(log2(v)) for v ≥ 1, 0 for 0, capped at `SLOTS - 1`; a bounded
/// loop the verifier accepts.
#[inline(always)]
pub fn log2_slot(mut v: u64) -> u32 {
    let mut slot = 0;
    while slot < SLOTS - 1 && v > 1 {
        v >>= 1;
        slot += 1;
    }
    slot
}
