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
    /// A buffer shorter than the header, or whose header's `data_size` is
    /// not its length, is refused (`InvalidInput`) before the kernel sees it.
    pub fn ioctl(&self, cmd: Command, buf: &mut [u8]) -> std::io::Result<()> {
        if dm::data_size(buf) != Some(buf.len()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "dm_ioctl buffer of {} bytes whose header's data_size is {:?}",
                    buf.len(),
                    dm::data_size(buf)
                ),
            ));
        }
        // SAFETY: `buf` is a live, exclusively borrowed buffer of `buf.len()`
        // bytes (at least `sizeof(struct dm_ioctl)`) that starts with a
        // `struct dm_ioctl` whose `data_size` is `buf.len()` (checked above),
        // so the kernel reads and writes only inside it; the fd is open for
        // the call's duration.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `/dev/null` stands in for the control node: an ioctl that reaches it
    /// fails with ENOTTY, one refused before the kernel with `InvalidInput`.
    fn null() -> Control {
        Control(File::open("/dev/null").expect("/dev/null"))
    }

    #[test]
    fn data_size_must_be_the_buffer_length() {
        let good = dm::dev_resume("root").unwrap();
        let mut buf = good.clone();
        let e = null().ioctl(Command::DevSuspend, &mut buf).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(libc::ENOTTY),
            "a good buffer reaches the fd"
        );

        // Claiming more than the buffer holds, less, or a buffer cut short.
        let mut longer = good.clone();
        longer[12..16].copy_from_slice(&(good.len() as u32 + 1).to_ne_bytes());
        let mut shorter = good.clone();
        shorter[12..16].copy_from_slice(&(good.len() as u32 - 8).to_ne_bytes());
        let mut cut = good[..good.len() - 1].to_vec();
        for (what, buf) in [
            ("longer", &mut longer),
            ("shorter", &mut shorter),
            ("cut", &mut cut),
        ] {
            let e = null().ioctl(Command::DevSuspend, buf).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{what}: {e}");
        }
    }
}
