//! Human names for what the kernel hands over as numbers: block devices
//! (`dev_t` → `vda`), syscalls (x86-64 numbers → `read`) and processes
//! (tgid → `comm`).

/// `major:minor` of a kernel-internal `dev_t` (12-bit major, 20-bit minor).
pub fn dev_numbers(dev: u32) -> (u32, u32) {
    (dev >> 20, dev & 0xfffff)
}

/// The device name from `/sys/dev/block/<maj>:<min>/uevent`, else
/// `maj:min`.
pub fn device_name(dev: u32) -> String {
    let (major, minor) = dev_numbers(dev);
    std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("DEVNAME=").map(str::to_string))
        })
        .unwrap_or_else(|| format!("{major}:{minor}"))
}

/// x86-64 syscall names for the numbers seen most; others are `nr_<n>`.
pub fn syscall_name(nr: u32) -> String {
    const NAMES: &[(u32, &str)] = &[
        (0, "read"),
        (1, "write"),
        (2, "open"),
        (3, "close"),
        (4, "stat"),
        (5, "fstat"),
        (6, "lstat"),
        (7, "poll"),
        (8, "lseek"),
        (9, "mmap"),
        (10, "mprotect"),
        (11, "munmap"),
        (12, "brk"),
        (13, "rt_sigaction"),
        (14, "rt_sigprocmask"),
        (16, "ioctl"),
        (17, "pread64"),
        (18, "pwrite64"),
        (19, "readv"),
        (20, "writev"),
        (21, "access"),
        (22, "pipe"),
        (23, "select"),
        (24, "sched_yield"),
        (28, "madvise"),
        (32, "dup"),
        (33, "dup2"),
        (35, "nanosleep"),
        (39, "getpid"),
        (40, "sendfile"),
        (41, "socket"),
        (42, "connect"),
        (43, "accept"),
        (44, "sendto"),
        (45, "recvfrom"),
        (46, "sendmsg"),
        (47, "recvmsg"),
        (48, "shutdown"),
        (49, "bind"),
        (50, "listen"),
        (51, "getsockname"),
        (54, "setsockopt"),
        (55, "getsockopt"),
        (56, "clone"),
        (57, "fork"),
        (58, "vfork"),
        (59, "execve"),
        (60, "exit"),
        (61, "wait4"),
        (62, "kill"),
        (72, "fcntl"),
        (73, "flock"),
        (74, "fsync"),
        (75, "fdatasync"),
        (77, "ftruncate"),
        (78, "getdents"),
        (79, "getcwd"),
        (82, "rename"),
        (83, "mkdir"),
        (87, "unlink"),
        (89, "readlink"),
        (96, "gettimeofday"),
        (186, "gettid"),
        (202, "futex"),
        (217, "getdents64"),
        (228, "clock_gettime"),
        (230, "clock_nanosleep"),
        (231, "exit_group"),
        (232, "epoll_wait"),
        (233, "epoll_ctl"),
        (257, "openat"),
        (262, "newfstatat"),
        (270, "pselect6"),
        (271, "ppoll"),
        (281, "epoll_pwait"),
        (284, "eventfd"),
        (288, "accept4"),
        (290, "eventfd2"),
        (291, "epoll_create1"),
        (293, "pipe2"),
        (299, "recvmmsg"),
        (307, "sendmmsg"),
        (318, "getrandom"),
        (332, "statx"),
        (425, "io_uring_setup"),
        (426, "io_uring_enter"),
        (435, "clone3"),
        (436, "close_range"),
        (437, "openat2"),
        (441, "epoll_pwait2"),
    ];
    match NAMES.binary_search_by_key(&nr, |(n, _)| *n) {
        Ok(i) if cfg!(target_arch = "x86_64") => NAMES[i].1.to_string(),
        _ => format!("nr_{nr}"),
    }
}

/// `comm` of `tgid` (`unknown` once it is gone). Cached per pid by
/// [`crate::process::PidCache`].
pub fn read_comm(tgid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{tgid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// The operation label of a block request.
pub fn block_op(op: u32) -> &'static str {
    use ebpf_probes_common::block_op::*;
    match op {
        READ => "read",
        WRITE => "write",
        DISCARD => "discard",
        FLUSH => "flush",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(dev_numbers((253 << 20) | 1), (253, 1));
        if cfg!(target_arch = "x86_64") {
            assert_eq!(syscall_name(0), "read");
            assert_eq!(syscall_name(202), "futex");
        }
        assert_eq!(syscall_name(9999), "nr_9999");
        assert_eq!(block_op(2), "write");
    }
}
