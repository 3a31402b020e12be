//! The allocator the binary and the benchmarks install (mimalloc), and how soon it gives
//! freed memory back to the system.
//!
//! mimalloc 3 keeps a freed page a full second before it returns it (its `purge_delay`,
//! 1,000 ms by default; version 2 waited 10 ms). A poll cycle frees and allocates page
//! bodies, extraction buffers and store records by the hundred megabytes a second, so
//! that second of freed pages was most of the difference between the memory the daemon
//! uses and its resident size: 174–228 MB of peak RSS in the poll benchmark's first
//! cycle, 140–165 MB with the delay at 0, for about a tenth more CPU in that cycle and
//! none measurable per turn (BENCHMARKS.md, "Memory: mimalloc's purge delay").

use std::os::raw::{c_int, c_long};

/// The allocator to install with `#[global_allocator]`.
pub type Allocator = mimalloc::MiMalloc;

/// `mi_option_purge_delay`: its place in `mi_option_t` in the mimalloc 3 that
/// libmimalloc-sys bundles, which names no constant for it.
const PURGE_DELAY: c_int = 15;
/// The option's default there, by which it is recognised before it is changed: if a
/// newer mimalloc moved the options, the value found differs and nothing is set.
const PURGE_DELAY_DEFAULT: c_long = 1_000;

/// Has freed pages returned to the system at once rather than a second later. Returns
/// whether the delay is now 0; `false` when the option is not where this build expects it
/// or was set otherwise (`MIMALLOC_PURGE_DELAY` in the environment wins).
pub fn return_freed_memory_promptly() -> bool {
    // SAFETY: reading and setting one of mimalloc's integer options is sound at any
    // time, from any thread; any value is valid for the delay.
    unsafe {
        match libmimalloc_sys::mi_option_get(PURGE_DELAY) {
            0 => true,
            PURGE_DELAY_DEFAULT if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() => {
                libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
                libmimalloc_sys::mi_option_get(PURGE_DELAY) == 0
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_is_found_and_set_to_zero() {
        assert!(return_freed_memory_promptly());
        // SAFETY: as above.
        let (delay, verbose) = unsafe {
            (
                libmimalloc_sys::mi_option_get(PURGE_DELAY),
                libmimalloc_sys::mi_option_get(libmimalloc_sys::mi_option_verbose),
            )
        };
        assert_eq!(delay, 0);
        assert_eq!(verbose, 0, "no other option moved");
        assert!(return_freed_memory_promptly(), "a second call agrees");
    }
}
