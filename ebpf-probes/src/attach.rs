//! Per probe: write the tracepoint field offsets the programs read, then
//! load and attach the programs.

use aya::Ebpf;
use aya::maps::Array;
use aya::programs::TracePoint;
use ebpf_probes_common::config;

use crate::tracefs::{FieldLayout, field};
use crate::{Probe, ProbeError};

fn set(ebpf: &mut Ebpf, values: &[(u32, u32)]) -> Result<(), ProbeError> {
    let map = ebpf
        .map_mut("CONFIG")
        .ok_or(ProbeError::MissingMap("CONFIG"))?;
    let mut cfg: Array<_, u32> = Array::try_from(map)?;
    for (i, v) in values {
        cfg.set(*i, *v, 0)?;
    }
    Ok(())
}

fn tracepoints(
    ebpf: &mut Ebpf,
    programs: &[(&'static str, &str, &[&str])],
) -> Result<(), ProbeError> {
    for (program, category, events) in programs {
        let p: &mut TracePoint = ebpf
            .program_mut(program)
            .ok_or(ProbeError::MissingProgram(program))?
            .try_into()?;
        p.load()?;
        for event in *events {
            p.attach(category, event)?;
        }
    }
    Ok(())
}

fn off(f: FieldLayout) -> u32 {
    f.offset
}

/// Configures and attaches `probe`.
pub fn attach(ebpf: &mut Ebpf, probe: Probe) -> Result<(), ProbeError> {
    match probe {
        Probe::RunQueue => {
            let state = field("sched", "sched_switch", "prev_state")?;
            set(
                ebpf,
                &[
                    (
                        config::WAKEUP_PID,
                        off(field("sched", "sched_wakeup", "pid")?),
                    ),
                    (
                        config::SWITCH_PREV_PID,
                        off(field("sched", "sched_switch", "prev_pid")?),
                    ),
                    (config::SWITCH_PREV_STATE, state.offset),
                    (config::SWITCH_PREV_STATE_SIZE, state.size),
                    (
                        config::SWITCH_NEXT_PID,
                        off(field("sched", "sched_switch", "next_pid")?),
                    ),
                ],
            )?;
            tracepoints(
                ebpf,
                &[
                    (
                        "sched_wakeup",
                        "sched",
                        &["sched_wakeup", "sched_wakeup_new"],
                    ),
                    ("sched_switch", "sched", &["sched_switch"]),
                ],
            )
        }
        Probe::BlockIo => {
            set(
                ebpf,
                &[
                    (
                        config::ISSUE_DEV,
                        off(field("block", "block_rq_issue", "dev")?),
                    ),
                    (
                        config::ISSUE_SECTOR,
                        off(field("block", "block_rq_issue", "sector")?),
                    ),
                    (
                        config::ISSUE_RWBS,
                        off(field("block", "block_rq_issue", "rwbs")?),
                    ),
                    (
                        config::COMPLETE_DEV,
                        off(field("block", "block_rq_complete", "dev")?),
                    ),
                    (
                        config::COMPLETE_SECTOR,
                        off(field("block", "block_rq_complete", "sector")?),
                    ),
                ],
            )?;
            tracepoints(
                ebpf,
                &[
                    ("block_rq_issue", "block", &["block_rq_issue"]),
                    ("block_rq_complete", "block", &["block_rq_complete"]),
                ],
            )
        }
        Probe::Syscalls => {
            set(
                ebpf,
                &[(
                    config::SYS_ENTER_ID,
                    off(field("raw_syscalls", "sys_enter", "id")?),
                )],
            )?;
            tracepoints(
                ebpf,
                &[
                    ("sys_enter", "raw_syscalls", &["sys_enter"]),
                    ("sys_exit", "raw_syscalls", &["sys_exit"]),
                ],
            )
        }
        Probe::Tcp => {
            let ev = ("sock", "inet_sock_set_state");
            set(
                ebpf,
                &[
                    (config::SK_SKADDR, off(field(ev.0, ev.1, "skaddr")?)),
                    (config::SK_OLDSTATE, off(field(ev.0, ev.1, "oldstate")?)),
                    (config::SK_NEWSTATE, off(field(ev.0, ev.1, "newstate")?)),
                    (config::SK_DPORT, off(field(ev.0, ev.1, "dport")?)),
                    (config::SK_PROTOCOL, off(field(ev.0, ev.1, "protocol")?)),
                ],
            )?;
            tracepoints(
                ebpf,
                &[("inet_sock_set_state", "sock", &["inet_sock_set_state"])],
            )?;
            // Retransmits are a separate tracepoint some kernels lack; the
            // connect histogram works without it.
            let retransmits = (|| {
                set(
                    ebpf,
                    &[
                        (
                            config::RETR_DPORT,
                            off(field("tcp", "tcp_retransmit_skb", "dport")?),
                        ),
                        (
                            config::RETR_FAMILY,
                            off(field("tcp", "tcp_retransmit_skb", "family")?),
                        ),
                        (
                            config::RETR_DADDR,
                            off(field("tcp", "tcp_retransmit_skb", "daddr")?),
                        ),
                    ],
                )?;
                tracepoints(
                    ebpf,
                    &[("tcp_retransmit_skb", "tcp", &["tcp_retransmit_skb"])],
                )
            })();
            if let Err(e) = retransmits {
                tracing::warn!(probe = "tcp", error = %e, "TCP retransmit counting off; connect latency on");
            }
            Ok(())
        }
        // A perf event, not tracepoints: see `profile::Profiler::attach`.
        Probe::Profiler => Ok(()),
    }
}
