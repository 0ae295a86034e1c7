//! The one place kiln-init talks to device-mapper: it hands the buffers that
//! [`crate::dm`] builds to `ioctl(2)` on `/dev/mapper/control`. There is no
//! safe wrapper for these ioctls in `nix` or `libc`, hence the `unsafe`.
#![allow(unsafe_code)]

use crate::dm::{self, Command};
use std::fs::File;
use std::os::fd::AsRawFd;

/// The device-mapper control node devtmpfs creates once dm-mod is loaded.
pub const CONTROL: &str = "/dev/mapper/control";

/// An open `/dev/mapper/control`.
pub struct Control(File);

impl Control {
    /// Open the control node read-write.
    pub fn open() -> std::io::Result<Self> {
        File::options()
            .read(true)
            .write(true)
            .open(CONTROL)
            .map(Control)
    }

    /// Issue `cmd` with `buf` (a `struct dm_ioctl` and its payload, as
    /// built by [`crate::dm`]); the kernel writes its reply into `buf`.
    pub fn ioctl(&self, cmd: Command, buf: &mut [u8]) -> std::io::Result<()> {
        if buf.len() < dm::DM_IOCTL_SIZE {
            return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
        }
        // SAFETY: `buf` is a live, exclusively borrowed buffer of `buf.len()`
        // bytes that starts with a `struct dm_ioctl` whose `data_size` is
        // `buf.len()` (the dm builders set it so), so the kernel reads and
        // writes only inside it; the fd is open for the call's duration.
        // The request number encodes `sizeof(struct dm_ioctl)` as the kernel
        // expects, and the kernel needs no alignment of the buffer (it copies
        // it with copy_from_user/copy_to_user).
        let rc = unsafe {
            libc::ioctl(
                self.0.as_raw_fd(),
                // The 32-bit request number, whatever width libc gives it.
                cmd.request() as libc::Ioctl,
                buf.as_mut_ptr(),
            )
        };
        if rc < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}
