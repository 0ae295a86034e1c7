//! Large buffers backed by transparent huge pages where the kernel offers
//! them (`/sys/kernel/mm/transparent_hugepage/enabled` set to `madvise`,
//! as on Debian and most distributions; see the kernel's
//! `admin-guide/mm/transhuge.rst`).
//!
//! A buffer of tens of MB that is filled once (a kernel image read from a
//! layer, the ESP) otherwise costs one page fault per 4 KiB: thousands of
//! faults, which on a virtual machine are most of the time an app-only
//! rebuild spends outside hashing. With `MADV_HUGEPAGE` it costs one per
//! 2 MiB. The advice changes neither the memory's contents nor its
//! lifetime; where the kernel refuses it, the buffer is used as it is.

/// Below this a buffer is left alone: it would not span a whole huge page.
const HUGE_PAGE: usize = 2 << 20;
/// madvise(2) wants page-aligned addresses.
const PAGE: usize = 4096;

/// An empty buffer with room for `capacity` bytes, advised huge pages.
pub fn with_capacity(capacity: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(capacity);
    let spare = v.spare_capacity_mut();
    advise(spare.as_mut_ptr().cast(), spare.len());
    v
}

/// `len` zero bytes, advised huge pages before anything touches them.
pub fn zeroed(len: usize) -> Vec<u8> {
    // A large zeroed allocation is fresh, untouched memory from mmap(2)
    // (calloc does not write it), so the advice still applies to all of it.
    let mut v = vec![0u8; len];
    advise(v.as_mut_ptr(), v.len());
    v
}

/// MADV_HUGEPAGE for the whole pages inside `len` bytes at `start`.
#[allow(unsafe_code)]
fn advise(start: *mut u8, len: usize) {
    if len < HUGE_PAGE {
        return;
    }
    let addr = start as usize;
    let first = addr.next_multiple_of(PAGE);
    let end = (addr + len) / PAGE * PAGE;
    let Some(ptr) = std::ptr::NonNull::new(first as *mut std::ffi::c_void) else {
        return;
    };
    // SAFETY: [first, end) lies inside one live allocation of ours (the
    // caller's buffer, rounded inwards to whole pages). MADV_HUGEPAGE only
    // tells the kernel how to back those pages when they are first
    // touched: it never changes, frees or unmaps memory, so no Rust
    // reference to it is affected.
    let advised = unsafe {
        nix::sys::mman::madvise(ptr, end - first, nix::sys::mman::MmapAdvise::MADV_HUGEPAGE)
    };
    if let Err(e) = advised {
        tracing::trace!("madvise(MADV_HUGEPAGE) of {} bytes: {e}", end - first);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_usable_whatever_the_kernel_says() {
        let mut v = with_capacity(5 << 20);
        assert!(v.is_empty() && v.capacity() >= 5 << 20);
        v.resize(5 << 20, 7);
        assert!(v.iter().all(|&b| b == 7));
        let z = zeroed((3 << 20) + 123);
        assert_eq!(z.len(), (3 << 20) + 123);
        assert!(z.iter().all(|&b| b == 0));
        // Small ones are left alone.
        assert_eq!(zeroed(10), vec![0u8; 10]);
    }
}
