//! Allocator settings.
//!
//! mimalloc keeps freed memory resident for a second (its `purge_delay`)
//! and purges only when the allocator runs again, so after a burst of
//! ingest the process held ~540 MiB with 44 MiB of live data. The memory
//! budget promises a bounded resident size, so freed pages go back to the
//! kernel after 10 ms instead ([`PURGE_DELAY_MS`]), and transparent huge
//! pages are off, so that a retained or reused range costs the pages
//! touched, not 2 MiB each (docs/benchmarks.md, "Session 11").

/// How long freed memory stays resident before mimalloc returns it.
///
/// At 0 every query batch's buffers went back to the kernel and came back
/// as fresh pages that the kernel zeroes: a fifth of a scan's CPU. 10 ms
/// keeps them across the batches of one query; with huge pages on it broke
/// the memory budget in 2 of 7 ingest runs, with them off it held in 10 of
/// 10 (peak 401–467 MiB of 512).
pub const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (the same position in
/// mimalloc 2 and 3; the test below checks it against the documented default).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// `mi_option_allow_thp` in mimalloc 3's `mi_option_e` (checked below).
const ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// Turns transparent huge pages off for the process, unless the operator
/// chose with `MIMALLOC_ALLOW_THP`.
///
/// mimalloc asks for huge pages on its arenas (`MADV_HUGEPAGE`). With
/// freed memory purged at once (as before [`PURGE_DELAY_MS`]), every reuse
/// of a purged range faulted in a whole 2 MiB page and the kernel zeroed
/// all of it, however little was touched: 10 % of the server's CPU under ingest was that zeroing, and
/// one `sightline bench` run peaked at 605 MiB with the 512 MiB budget.
/// With 4 KiB pages the same runs used 10 % less CPU per span and peaked
/// at 405–414 MiB (docs/benchmarks.md, "Session 11").
///
/// mimalloc reads its option when it starts, before `main`, so this sets
/// it for later arenas and also disables huge pages for the whole process
/// with `prctl(PR_SET_THP_DISABLE)` (inherited by child processes), which
/// overrides the advice already given.
pub fn no_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // SAFETY: as in `purge_soon`.
    unsafe { libmimalloc_sys::mi_option_set(ALLOW_THP, 0) };
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "could not disable transparent huge pages"
        );
    }
}

/// Makes mimalloc return freed memory to the kernel after
/// [`PURGE_DELAY_MS`], unless the operator chose a delay with
/// `MIMALLOC_PURGE_DELAY`.
pub fn purge_soon() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: setting an allocator option is thread-safe and takes a plain integer.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) };
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
            purge_soon();
            // SAFETY: as above.
            assert_eq!(
                unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) },
                PURGE_DELAY_MS
            );
        }
    }

    #[test]
    fn huge_pages_are_off_for_the_process() {
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
            return;
        }
        // mimalloc 3 allows huge pages by default: the option at 43 is
        // `allow_thp` if its default is 1. (The process flag may already be
        // set by a parent: it is inherited.)
        // SAFETY: reading an option has no preconditions.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(ALLOW_THP) }, 1);
        no_transparent_huge_pages();
        // SAFETY: as above.
        let (allowed, disabled) = unsafe {
            (
                libmimalloc_sys::mi_option_get(ALLOW_THP),
                libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0),
            )
        };
        assert_eq!((allowed, disabled), (0, 1));
    }
}
