//! Allocator settings.
//!
//! mimalloc keeps freed memory resident for a second (its `purge_delay`)
//! and purges only when the allocator runs again, so after a burst of
//! ingest the process held ~540 MiB with 44 MiB of live data. The memory
//! budget promises a bounded resident size, so freed pages go back to the
//! kernel at once: measured with `sightline bench` at no loss of throughput
//! (docs/benchmarks.md).

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (the same position in
/// mimalloc 2 and 3; the test below checks it against the documented default).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes mimalloc return freed memory to the kernel immediately, unless the
/// operator chose a delay with `MIMALLOC_PURGE_DELAY`.
pub fn purge_promptly() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: setting an allocator option is thread-safe and takes a plain integer.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_delay_is_the_option_it_names() {
        // mimalloc 3 documents a default purge delay of 1000 ms, mimalloc 2
        // one of 10 ms; any other option at this position has neither.
        // SAFETY: reading an allocator option has no preconditions.
        let default = unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert!(matches!(default, 1000 | 10), "option 15 is {default}");
            purge_promptly();
            // SAFETY: as above.
            assert_eq!(unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }, 0);
        }
    }
}
