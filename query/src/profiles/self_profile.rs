//! Sightline profiling itself (`GET /debug/pprof/profile?seconds=N`), the
//! way Go services do: the `pprof` crate samples this process with
//! `SIGPROF` and unwinds its stacks, whether or not the eBPF profiler runs.

use std::time::Duration;

use super::{Profile, Stack};

/// Sampling frequency, as Go's default.
pub const FREQUENCY_HZ: i32 = 100;

/// Why a self-profile could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum SelfProfileError {
    /// Another self-profile is running (there is one `SIGPROF` timer).
    #[error("a profile of this process is already being taken; retry when it ends")]
    Busy,
    /// The profiler failed.
    #[error("profiling failed: {0}")]
    Failed(String),
}

/// Samples this process for `duration` and returns its profile. Blocks the
/// calling thread: call it from `spawn_blocking`.
pub fn profile_self(duration: Duration) -> Result<Profile, SelfProfileError> {
    let started = std::time::SystemTime::now();
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY_HZ)
        // Unwinding through these while they hold locks can deadlock.
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .map_err(|e| match e {
            pprof::Error::Running => SelfProfileError::Busy,
            e => SelfProfileError::Failed(e.to_string()),
        })?;
    std::thread::sleep(duration);
    let report = guard
        .report()
        .build()
        .map_err(|e| SelfProfileError::Failed(e.to_string()))?;
    drop(guard);
    let stacks = report.data.iter().map(|(frames, count)| {
        let mut names = vec![frames.thread_name_or_id()];
        // pprof lists the leaf first, and inlined functions innermost first.
        for frame in frames.frames.iter().rev() {
            names.extend(frame.iter().rev().map(|s| s.name()));
        }
        Stack {
            frames: names,
            value: (*count).max(0) as u64,
        }
    });
    let start = started
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    Ok(Profile::from_stacks(
        stacks,
        1_000_000_000 / i64::from(FREQUENCY_HZ),
        start,
        duration.as_nanos() as i64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn spin_here(stop: &std::sync::atomic::AtomicBool) -> u64 {
        let mut x = 1u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        x
    }

    #[test]
    fn finds_a_busy_thread_and_refuses_a_second_profile() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let busy = std::thread::Builder::new()
            .name("busy-spinner".into())
            .spawn(move || spin_here(&flag))
            .unwrap();
        // Another profile keeps being asked for until the long one is over;
        // how long the long one takes to start (it reads the process's
        // mappings, slow in a debug build under load) does not matter.
        let long_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = long_done.clone();
        let second = std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Err(SelfProfileError::Busy) = profile_self(Duration::from_millis(10)) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        });
        let p = loop {
            // The short one may hold the timer for a moment.
            match profile_self(Duration::from_secs(2)) {
                Err(SelfProfileError::Busy) => std::thread::sleep(Duration::from_millis(5)),
                other => break other.unwrap(),
            }
        };
        long_done.store(true, std::sync::atomic::Ordering::Relaxed);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        busy.join().unwrap();
        assert!(second.join().unwrap(), "a second profile was never refused");
        let spinning: u64 = p
            .stacks
            .iter()
            .filter(|s| s.frames[0] == "busy-spinner")
            .map(|s| s.value)
            .sum();
        // SIGPROF counts this process's CPU time, so how many samples two
        // seconds give depends on the machine's load; the share does not:
        // the spinner is the only thread using CPU.
        assert!(
            spinning >= 10 && spinning * 10 >= p.total() * 8,
            "{spinning} samples of {}",
            p.total()
        );
        assert!(
            p.stacks
                .iter()
                .any(|s| s.frames.iter().any(|f| f.contains("spin_here"))),
            "{:?}",
            p.stacks
        );
    }
}
