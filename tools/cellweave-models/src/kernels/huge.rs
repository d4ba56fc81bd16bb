//! A global allocator that asks the kernel for transparent huge pages (2 MiB) under every
//! allocation of at least 1 MiB (placed on whole, aligned huge pages): the training steps stream through a few dozen megabytes
//! per step (weights, Adam moments, gradients, the batch), and with 4 KiB pages those
//! passes and the matrix products' packing miss the TLB. On Linux with transparent huge
//! pages set to `madvise` (the common default) nothing uses them unless asked.
//!
//! Only the placement of memory changes, never a value. Binaries opt in with
//! `#[global_allocator] static ALLOC: HugePageAlloc = HugePageAlloc;`, and the placement
//! starts only when [`enable`] is called (CLAIRE's fused CPU step, whose buffers live for
//! the whole run): the candle models allocate fresh tensors of a few megabytes for every
//! operation, and a huge page zeroed by the kernel for each of those cost a MEDL run on
//! kang_ifnb 1.7 s of system CPU per 30 steps against 0.7 s with plain pages.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Whether large blocks go on huge pages (see [`enable`]).
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Large blocks allocated before [`enable`] (then it stays off: a block is freed with the
/// placement it was allocated with).
static LARGE_BEFORE: AtomicUsize = AtomicUsize::new(0);

/// Place the blocks of 1 MiB or more allocated from now on on huge pages. It takes effect
/// only while no such block has been allocated yet: call it at the start of a run, before
/// other threads allocate. Returns whether the placement is on.
pub fn enable() -> bool {
    if LARGE_BEFORE.load(Ordering::SeqCst) == 0 {
        ENABLED.store(true, Ordering::SeqCst);
    }
    ENABLED.load(Ordering::SeqCst)
}

/// The huge page size: large allocations are aligned to it, rounded up to it and advised
/// as huge pages.
const HUGE: usize = 2 << 20;
/// Allocations from this size on are placed on huge pages (at most twice their size).
const LARGE: usize = 1 << 20;

/// [`System`], with large allocations 2 MiB-aligned and advised `MADV_HUGEPAGE`.
pub struct HugePageAlloc;

/// The layout actually requested from [`System`] for `l`.
#[inline]
fn placed(l: Layout) -> Layout {
    if l.size() >= LARGE && l.align() <= HUGE && ENABLED.load(Ordering::Relaxed) {
        // Whole huge pages: a block's tail gets one too. (A size rounded up to a multiple
        // of a power of two, with that alignment: valid unless it overflows.)
        Layout::from_size_align(l.size().next_multiple_of(HUGE), HUGE).unwrap_or(l)
    } else {
        l
    }
}

#[inline]
fn advise(p: *mut u8, size: usize) {
    #[cfg(target_os = "linux")]
    if !p.is_null() && size >= LARGE && (p as usize).is_multiple_of(HUGE) {
        // SAFETY: the range is the allocation just made (page-aligned start); the advice
        // changes how pages are backed, never their contents. Failure is harmless.
        unsafe {
            libc::madvise(p.cast(), size, libc::MADV_HUGEPAGE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (p, size);
}

/// Count a large block placed without huge pages (before [`enable`]).
#[inline]
fn note_plain_large(l: Layout, pl: Layout) {
    if l.size() >= LARGE && pl == l && !ENABLED.load(Ordering::Relaxed) {
        LARGE_BEFORE.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every block comes from `System` with the layout `placed(l)`, and goes back to
// it with the same layout (a function of the caller's layout only).
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let pl = placed(l);
        note_plain_large(l, pl);
        // SAFETY: `pl` has a non-zero size (that of `l`, as the caller guarantees).
        let p = unsafe { System.alloc(pl) };
        advise(p, pl.size());
        p
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let pl = placed(l);
        note_plain_large(l, pl);
        // SAFETY: as in `alloc`.
        let p = unsafe { System.alloc_zeroed(pl) };
        advise(p, pl.size());
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` was allocated by `alloc` or `alloc_zeroed` with `placed(l)`.
        unsafe { System.dealloc(p, placed(l)) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align(new_size, l.align()).unwrap_or(l);
        if placed(l) == l && placed(new) == new {
            // Small before and after: the system's own reallocation.
            // SAFETY: `p` came from `System` with layout `l`; `new_size` is valid (caller).
            return unsafe { System.realloc(p, l, new_size) };
        }
        // SAFETY: a fresh block of the new layout, the common prefix copied, the old one
        // returned with its own layout.
        unsafe {
            let q = self.alloc(new);
            if !q.is_null() {
                std::ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
                self.dealloc(p, l);
            }
            q
        }
    }
}

/// Make glibc's `malloc` keep freed large blocks for reuse (blocks up to 512 MiB from the
/// heap, not from their own `mmap`; the heap trimmed only past 1 GiB free at its top)
/// instead of returning them to the kernel after every use. The candle models allocate
/// fresh tensors of a few megabytes for every operation: by default each came from a new
/// mapping whose pages the kernel zeroed on first touch, and a MEDL step on kang_ifnb
/// (1,267 genes, 512 cells) spent more CPU in the kernel than in the model (6.8 s system
/// vs 6.6 s user for 30 steps; with this 0.5-0.9 s system, half the wall time). Only where
/// memory comes from changes, never a value. No effect except with glibc on Linux.
pub fn reuse_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any thread starts
    // allocating heavily, and a refused setting (return 0) leaves the default.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_and_small_blocks_round_trip() {
        // No block of this test binary went through `HugePageAlloc` yet: placement starts.
        assert!(enable());
        let a = HugePageAlloc;
        for &(size, align) in &[
            (16usize, 8usize),
            (HUGE, 4),
            (3 * HUGE + 5, 64),
            (100, 4096),
        ] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero sizes; every block is written inside its size and freed once.
            unsafe {
                let p = a.alloc_zeroed(l);
                assert!(!p.is_null() && (p as usize).is_multiple_of(align));
                assert_eq!(*p.add(size - 1), 0);
                *p = 7;
                // Grow across the threshold and back.
                let q = a.realloc(p, l, size * 2 + HUGE);
                assert_eq!(*q, 7);
                let l2 = Layout::from_size_align(size * 2 + HUGE, align).unwrap();
                let r = a.realloc(q, l2, size);
                assert_eq!(*r, 7);
                a.dealloc(r, l);
            }
        }
    }
}
