//! A global allocator that passes every request to the system allocator
//! and remembers, per thread, the largest single request since the last
//! [`reset`]; a request over [`REFUSE_ABOVE`] is refused (null: the process
//! aborts, after this module names the case that asked for it), so a
//! reader asking for terabytes fails the run at once instead of swapping.
//!
//! The only unsafe code of the fuzz harness: implementing [`GlobalAlloc`]
//! is unsafe by definition and no safe crate records single requests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;

/// Requests larger than this are refused (2 GiB).
pub const REFUSE_ABOVE: usize = 2 << 30;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static CASE: Cell<Option<(&'static str, u64, u64)>> = const { Cell::new(None) };
}

/// Starts recording for case `case` of `target` (random run `seed`).
pub fn reset(target: &'static str, seed: u64, case: u64) {
    LARGEST.with(|l| l.set(0));
    CASE.with(|c| c.set(Some((target, seed, case))));
}

/// The largest single request on this thread since [`reset`].
pub fn largest() -> usize {
    LARGEST.with(Cell::get)
}

/// Records a request of `size` bytes; false when it must be refused.
fn note(size: usize) -> bool {
    // try_with: the thread-locals are gone while a thread shuts down.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    if size <= REFUSE_ABOVE {
        return true;
    }
    let case = CASE.try_with(Cell::get).ok().flatten();
    let mut buf = StackBuf::new();
    let _ = match case {
        Some((t, seed, n)) => writeln!(
            buf,
            "fuzz {t}: case {n} of seed {seed:#x} asked for {size} bytes in one allocation"
        ),
        None => writeln!(buf, "fuzz: an allocation of {size} bytes was refused"),
    };
    let _ = std::io::stderr().write_all(buf.bytes());
    false
}

/// A message formatted without allocating.
struct StackBuf {
    buf: [u8; 256],
    len: usize,
}

impl StackBuf {
    fn new() -> Self {
        StackBuf {
            buf: [0; 256],
            len: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::io::Write for StackBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = b.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
        self.len += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The recording allocator; install with `#[global_allocator]`.
pub struct Tracking;

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold; refusing a request by
// returning null is allowed by the `GlobalAlloc` contract.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout, passed on as `GlobalAlloc::alloc` requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size()) {
            return std::ptr::null_mut();
        }
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !note(new_size) {
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` came from `System` with `layout`; the caller
        // upholds `realloc`'s requirements on `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
