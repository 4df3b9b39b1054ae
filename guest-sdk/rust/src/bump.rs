//! The policy's memory allocator inside the sandbox: a bump allocator.
//!
//! The host runs every call in a fresh instance and throws it away after,
//! so freeing memory only matters within one call. Handing out memory by
//! moving a pointer forward (and taking back the most recent allocation when
//! it is freed or grown) does the same work as a general allocator in a
//! fraction of the instructions, and starts from a static arena so a
//! typical call never grows the linear memory. A policy that allocates
//! more than it frees in a long loop reaches the host's memory limit
//! sooner; such a policy can turn the `bump-allocator` feature off and use
//! the standard allocator.
//!
//! When every allocation has been freed (after a call's answer is taken
//! back, normally) the next one starts from the arena again, so an instance
//! that does serve several calls does not grow with each of them.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

/// Memory available before the linear memory has to grow. Small on purpose:
/// the host resets a sandbox's whole initial memory after every call, and
/// an arena reaching past the pages it keeps resident costs page faults on
/// every call. With 24 KiB the example policies (64 KiB of stack, about
/// 36 KiB of data) start with two pages of memory, 128 KiB; 32 KiB made it
/// three, and a decision 6% slower.
const ARENA_BYTES: usize = 24 << 10;
const PAGE: usize = 64 << 10;

#[repr(C, align(16))]
struct Arena(UnsafeCell<[u8; ARENA_BYTES]>);

// SAFETY: a policy instance is single-threaded (wasm32 without threads).
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; ARENA_BYTES]));

/// Where the next allocation may start, where the usable memory ends, and
/// how many allocations are live.
struct Cursor(UnsafeCell<(usize, usize, usize)>);

// SAFETY: as above, one thread.
unsafe impl Sync for Cursor {}

static CURSOR: Cursor = Cursor(UnsafeCell::new((0, 0, 0)));

pub struct Bump;

impl Bump {
    /// Makes `[next, next + size)` usable, growing the memory if needed.
    fn reserve(next: &mut usize, end: &mut usize, layout: Layout) -> *mut u8 {
        if *end == 0 {
            *next = ARENA.0.get() as usize;
            *end = *next + ARENA_BYTES;
        }
        let start = (*next + layout.align() - 1) & !(layout.align() - 1);
        let Some(stop) = start.checked_add(layout.size()) else {
            return core::ptr::null_mut();
        };
        if stop > *end {
            // Past the arena: continue in fresh pages at the end of memory.
            let pages = layout.size().div_ceil(PAGE) + 1;
            let old = core::arch::wasm32::memory_grow(0, pages);
            if old == usize::MAX {
                return core::ptr::null_mut();
            }
            let base = old * PAGE;
            *next = base;
            *end = base + pages * PAGE;
            return Self::reserve(next, end, layout);
        }
        *next = stop;
        start as *mut u8
    }
}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: one thread, and no allocation call re-enters another.
        let (next, end, live) = unsafe { &mut *CURSOR.0.get() };
        let ptr = Self::reserve(next, end, layout);
        if !ptr.is_null() {
            *live += 1;
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `alloc`.
        let (next, end, live) = unsafe { &mut *CURSOR.0.get() };
        *live -= 1;
        if *live == 0 {
            // Nothing is in use: start over from the arena.
            *end = 0;
        } else if ptr as usize + layout.size() == *next {
            // Only the most recent allocation can be taken back.
            *next = ptr as usize;
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let (next, end, _) = unsafe { &mut *CURSOR.0.get() };
        // The most recent allocation grows or shrinks where it is.
        if ptr as usize + layout.size() == *next && ptr as usize + new_size <= *end {
            *next = ptr as usize + new_size;
            return ptr;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        let new = Self::reserve(next, end, new_layout);
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller size and distinct.
            unsafe { core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
        }
        new
    }
}
