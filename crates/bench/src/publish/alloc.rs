//! A global allocator that can count the bytes the process holds, for `bytes_added`.
//!
//! [`CountingAlloc`] wraps [`System`]. Counting is off until the benchmark switches it on: then
//! the only cost of an allocation is one relaxed load. While it is on, every allocation adds its
//! size to one counter and every free subtracts it, so the counter's change over a window is the
//! change in bytes the whole process holds over that window (whatever thread allocated them, and
//! whenever the freed bytes were allocated).
//!
//! The binary must install it (`#[global_allocator]` in the `cairn` binary and in the test that
//! runs the benchmark); without it the memory figures are reported as not measured.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// Whether allocations are counted now.
static COUNTING: AtomicBool = AtomicBool::new(false);
/// Bytes allocated minus bytes freed while counting was on.
static COUNTED_BYTES: AtomicI64 = AtomicI64::new(0);

/// [`System`], counting the bytes held while [`start_counting`] is in effect. Install it with
/// `#[global_allocator] static ALLOC: cairn_bench::CountingAlloc = cairn_bench::CountingAlloc;`.
pub struct CountingAlloc;

fn count(bytes: usize, sign: i64) {
    if COUNTING.load(Ordering::Relaxed) {
        // A single allocation is at most isize::MAX bytes, so it fits.
        COUNTED_BYTES.fetch_add(sign * bytes as i64, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the counting touches only atomics and
// never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            count(layout.size(), 1);
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            count(layout.size(), 1);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` came from this allocator, that is from `System`, with `layout`.
        unsafe { System.dealloc(pointer, layout) };
        count(layout.size(), -1);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            count(new_size, 1);
            count(layout.size(), -1);
        }
        moved
    }
}

/// Switches counting on (from now, allocations and frees move [`counted_bytes`]).
pub(crate) fn start_counting() {
    COUNTING.store(true, Ordering::SeqCst);
}

/// Switches counting off.
pub(crate) fn stop_counting() {
    COUNTING.store(false, Ordering::SeqCst);
}

/// Bytes allocated minus bytes freed while counting was on, since the process started.
pub(crate) fn counted_bytes() -> i64 {
    COUNTED_BYTES.load(Ordering::SeqCst)
}

/// Whether [`CountingAlloc`] is the process's allocator: counting on, one allocation of a known
/// size must move the counter by at least that much.
pub(crate) fn installed() -> bool {
    const PROBE_BYTES: usize = 4096;
    let was_on = COUNTING.load(Ordering::SeqCst);
    start_counting();
    let before = counted_bytes();
    let probe = std::hint::black_box(vec![0u8; PROBE_BYTES]);
    let after = counted_bytes();
    drop(probe);
    if !was_on {
        stop_counting();
    }
    after - before >= PROBE_BYTES as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_the_allocator_installed_nothing_is_counted() {
        // The unit-test binary keeps the default allocator, so the probe sees nothing.
        assert!(!installed());
        start_counting();
        let before = counted_bytes();
        let held = std::hint::black_box(vec![1u8; 1 << 16]);
        assert_eq!(counted_bytes(), before);
        drop(held);
        stop_counting();
    }
}
