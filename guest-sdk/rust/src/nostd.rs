//! What the standard library would otherwise provide a policy in the
//! sandbox: the panic handler, `cabi_realloc` and `memcmp`.
//!
//! The panic handler writes the message to stderr, where the host keeps it
//! for the failure detail (as the standard library's handler does), then
//! traps: the host applies the tenant's failure tier.

use alloc::alloc::{Layout, alloc, realloc};
use core::fmt::{self, Write};
use core::panic::PanicInfo;

mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "panic-output",
        generate_all,
    });
}

use bindings::wasi::cli::stderr::get_stderr;

/// Longest message written; the host keeps less than this anyway.
const MESSAGE_BYTES: usize = 2048;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    // No allocation: the panic may be the allocator's.
    let mut out = Message {
        bytes: [0; MESSAGE_BYTES],
        len: 0,
    };
    let _ = match info.location() {
        Some(at) => write!(
            out,
            "panicked at {}:{}:{}:\n{}\n",
            at.file(),
            at.line(),
            at.column(),
            info.message()
        ),
        None => write!(out, "panicked:\n{}\n", info.message()),
    };
    let _ = get_stderr().blocking_write_and_flush(&out.bytes[..out.len]);
    core::arch::wasm32::unreachable()
}

/// A fixed buffer that keeps what fits.
struct Message {
    bytes: [u8; MESSAGE_BYTES],
    len: usize,
}

impl Write for Message {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(MESSAGE_BYTES - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Without `std` nothing links the C library, whose `memcmp` the compiler
/// calls for comparisons of strings and slices.
///
/// # Safety
/// `a` and `b` must be readable for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: the caller guarantees both ranges are readable.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// How the host allocates the arguments of a call in the policy's memory
/// (the component model's canonical ABI).
///
/// # Safety
/// Called by the host as the canonical ABI specifies: `old` and `old_len`
/// describe an earlier allocation of alignment `align`, or `old_len` is 0.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    let ptr = if old_len == 0 {
        if new_len == 0 {
            return align as *mut u8;
        }
        // SAFETY: the canonical ABI passes a power-of-two alignment.
        unsafe { alloc(Layout::from_size_align_unchecked(new_len, align)) }
    } else {
        // SAFETY: as above, and `old` came from this allocator.
        unsafe {
            realloc(
                old,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if ptr.is_null() {
        // Out of memory while the host hands over arguments: trap, and the
        // host reports the refused growth.
        core::arch::wasm32::unreachable();
    }
    ptr
}
