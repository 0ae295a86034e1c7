//! The device-mapper ioctl interface, as byte buffers.
//!
//! Layout: `include/uapi/linux/dm-ioctl.h`, interface version 4. Every ioctl
//! on `/dev/mapper/control` takes one buffer that starts with a
//! `struct dm_ioctl` (312 bytes) and may carry a payload after it at
//! `data_start`; `DM_TABLE_LOAD`'s payload is a `struct dm_target_spec`
//! (40 bytes) per target, each followed by its NUL-terminated parameter
//! string padded to 8 bytes, `next` giving the distance to the next spec.
//! This module builds and reads those buffers as plain bytes; only
//! [`crate::dmctl`] hands them to the kernel.

/// `sizeof(struct dm_ioctl)`.
pub const DM_IOCTL_SIZE: usize = 312;
/// `sizeof(struct dm_target_spec)`.
pub const TARGET_SPEC_SIZE: usize = 40;
/// `DM_NAME_LEN`, including the terminating NUL.
pub const NAME_LEN: usize = 128;
/// `DM_UUID_LEN`, including the terminating NUL.
pub const UUID_LEN: usize = 129;
/// `DM_MAX_TYPE_NAME`.
pub const TYPE_NAME_LEN: usize = 16;
/// `DM_VERSION_MAJOR`; the kernel accepts any minor not newer than its own.
pub const VERSION: [u32; 3] = [4, 0, 0];
/// `DM_IOCTL`, the ioctl type byte.
pub const DM_IOCTL_TYPE: u8 = 0xfd;
/// `DM_READONLY_FLAG`: load the table read-only.
pub const DM_READONLY_FLAG: u32 = 1 << 0;

/// Offsets in `struct dm_ioctl`.
mod off {
    pub const VERSION: usize = 0;
    pub const DATA_SIZE: usize = 12;
    pub const DATA_START: usize = 16;
    pub const TARGET_COUNT: usize = 20;
    pub const FLAGS: usize = 28;
    pub const DEV: usize = 40;
    pub const NAME: usize = 48;
    pub const UUID: usize = 176;
    /// Offsets in `struct dm_target_spec`.
    pub const SPEC_SECTOR_START: usize = 0;
    pub const SPEC_LENGTH: usize = 8;
    pub const SPEC_NEXT: usize = 20;
    pub const SPEC_TYPE: usize = 24;
}

/// The ioctl commands kiln-init uses (`enum` in dm-ioctl.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `DM_DEV_CREATE_CMD`: make a device with no table.
    DevCreate = 3,
    /// `DM_DEV_SUSPEND_CMD`: suspend, or without `DM_SUSPEND_FLAG` resume
    /// (which makes a loaded table live).
    DevSuspend = 6,
    /// `DM_TABLE_LOAD_CMD`: load an inactive table.
    TableLoad = 9,
}

impl Command {
    /// The ioctl request number: `_IOWR(DM_IOCTL, cmd, struct dm_ioctl)`.
    pub fn request(self) -> u32 {
        const IOC_READ_WRITE: u32 = 3;
        (IOC_READ_WRITE << 30)
            | ((DM_IOCTL_SIZE as u32) << 16)
            | (u32::from(DM_IOCTL_TYPE) << 8)
            | self as u32
    }
}

/// A bad name, uuid or parameter for a dm buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmError(pub &'static str);

impl std::fmt::Display for DmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "device-mapper request: {}", self.0)
    }
}

/// The header's `data_size`: how many bytes of the buffer the kernel reads
/// and may write. `None` when `b` is shorter than the header.
pub fn data_size(b: &[u8]) -> Option<usize> {
    if b.len() < DM_IOCTL_SIZE {
        return None;
    }
    let field = b.get(off::DATA_SIZE..off::DATA_SIZE + 4)?;
    usize::try_from(u32::from_ne_bytes(field.try_into().ok()?)).ok()
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

fn put_str(b: &mut [u8], at: usize, max: usize, s: &str) -> Result<(), DmError> {
    if s.len() >= max || s.contains('\0') {
        return Err(DmError(
            "name, uuid or target type too long or contains NUL",
        ));
    }
    b[at..at + s.len()].copy_from_slice(s.as_bytes());
    Ok(())
}

/// A `struct dm_ioctl` for device `name` followed by `payload`.
fn header(name: &str, flags: u32, target_count: u32, payload: &[u8]) -> Result<Vec<u8>, DmError> {
    let mut b = vec![0u8; DM_IOCTL_SIZE + payload.len()];
    for (i, v) in VERSION.iter().enumerate() {
        put32(&mut b, off::VERSION + 4 * i, *v);
    }
    let size = u32::try_from(b.len()).map_err(|_| DmError("buffer too large"))?;
    put32(&mut b, off::DATA_SIZE, size);
    put32(&mut b, off::DATA_START, DM_IOCTL_SIZE as u32);
    put32(&mut b, off::TARGET_COUNT, target_count);
    put32(&mut b, off::FLAGS, flags);
    put_str(&mut b, off::NAME, NAME_LEN, name)?;
    b[DM_IOCTL_SIZE..].copy_from_slice(payload);
    Ok(b)
}

/// `DM_DEV_CREATE` for a device `name` with the given dm uuid.
pub fn dev_create(name: &str, uuid: &str) -> Result<Vec<u8>, DmError> {
    let mut b = header(name, 0, 0, &[])?;
    put_str(&mut b, off::UUID, UUID_LEN, uuid)?;
    Ok(b)
}

/// `DM_TABLE_LOAD` of one read-only target covering sectors `0..sectors`.
pub fn table_load(
    name: &str,
    sectors: u64,
    target_type: &str,
    params: &str,
) -> Result<Vec<u8>, DmError> {
    if params.contains('\0') {
        return Err(DmError("target parameters contain NUL"));
    }
    // Spec, parameters, NUL, padded to 8 bytes as libdevmapper does.
    let len = (TARGET_SPEC_SIZE + params.len() + 1).next_multiple_of(8);
    let mut spec = vec![0u8; len];
    put64(&mut spec, off::SPEC_SECTOR_START, 0);
    put64(&mut spec, off::SPEC_LENGTH, sectors);
    put32(
        &mut spec,
        off::SPEC_NEXT,
        u32::try_from(len).map_err(|_| DmError("target parameters too long"))?,
    );
    put_str(&mut spec, off::SPEC_TYPE, TYPE_NAME_LEN, target_type)?;
    spec[TARGET_SPEC_SIZE..TARGET_SPEC_SIZE + params.len()].copy_from_slice(params.as_bytes());
    header(name, DM_READONLY_FLAG, 1, &spec)
}

/// `DM_DEV_SUSPEND` without `DM_SUSPEND_FLAG`: resume `name`, making its
/// loaded table live.
pub fn dev_resume(name: &str) -> Result<Vec<u8>, DmError> {
    header(name, 0, 0, &[])
}

/// The `dev` field the kernel wrote back, as (major, minor).
pub fn reply_dev(b: &[u8]) -> (u32, u32) {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off::DEV..off::DEV + 8]);
    decode_dev(u64::from_ne_bytes(a))
}

/// Decode the kernel's `huge_encode_dev` (the `new_encode_dev` format):
/// minor bits 0-7 in bits 0-7, major in bits 8-19, minor bits 8-19 in bits 20-31.
pub fn decode_dev(dev: u64) -> (u32, u32) {
    let dev = dev as u32;
    ((dev >> 8) & 0xfff, (dev & 0xff) | ((dev >> 12) & 0xfff00))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get32(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn request_numbers_match_the_header() {
        // _IOWR(0xfd, n, struct dm_ioctl) with sizeof == 312 (0x138), as
        // strace and libdevmapper show them.
        for (cmd, want) in [
            (Command::DevCreate, 0xc138_fd03u32),
            (Command::DevSuspend, 0xc138_fd06),
            (Command::TableLoad, 0xc138_fd09),
        ] {
            assert_eq!(cmd.request(), want, "{cmd:?}");
        }
        // Offsets: version[3] u32, data_size, data_start, target_count,
        // open_count, flags, event_nr, padding, dev u64, name[128], uuid[129], data[7].
        assert_eq!(off::DEV, 4 * 10);
        assert_eq!(off::NAME, off::DEV + 8);
        assert_eq!(off::UUID, off::NAME + NAME_LEN);
        assert_eq!(off::UUID + UUID_LEN + 7, DM_IOCTL_SIZE);
        // dm_target_spec: sector_start u64, length u64, status s32, next u32, target_type[16].
        assert_eq!(off::SPEC_TYPE + TYPE_NAME_LEN, TARGET_SPEC_SIZE);
    }

    #[test]
    fn create_and_resume_buffers() {
        let b = dev_create("root", "KILN-VERITY-root").unwrap();
        assert_eq!(b.len(), DM_IOCTL_SIZE);
        assert_eq!((get32(&b, 0), get32(&b, 4), get32(&b, 8)), (4, 0, 0));
        assert_eq!(get32(&b, off::DATA_SIZE), 312);
        assert_eq!(get32(&b, off::DATA_START), 312);
        assert_eq!(&b[48..53], b"root\0");
        assert_eq!(&b[176..193], b"KILN-VERITY-root\0");
        let r = dev_resume("root").unwrap();
        assert_eq!(get32(&r, off::FLAGS), 0);
        assert_eq!(get32(&r, off::TARGET_COUNT), 0);
        assert!(dev_create(&"x".repeat(128), "").is_err());
        assert!(dev_create("ok", &"u".repeat(128)).is_ok());
        assert!(dev_create("a\0b", "").is_err());
    }

    #[test]
    fn table_load_buffer() {
        let params = "1 8:2 8:3 4096 4096 256 1 sha256 00 -";
        let b = table_load("root", 2048, "verity", params).unwrap();
        let spec_len = (40 + params.len() + 1).next_multiple_of(8);
        assert_eq!(b.len(), 312 + spec_len);
        assert_eq!(get32(&b, off::DATA_SIZE) as usize, b.len());
        assert_eq!(get32(&b, off::TARGET_COUNT), 1);
        assert_eq!(get32(&b, off::FLAGS), DM_READONLY_FLAG);
        let s = &b[312..];
        assert_eq!(u64::from_ne_bytes(s[0..8].try_into().unwrap()), 0);
        assert_eq!(u64::from_ne_bytes(s[8..16].try_into().unwrap()), 2048);
        assert_eq!(get32(s, 20) as usize, spec_len);
        assert_eq!(&s[24..31], b"verity\0");
        assert_eq!(&s[40..40 + params.len()], params.as_bytes());
        assert_eq!(s[40 + params.len()], 0);
        assert!(table_load("root", 1, "a-very-long-target-name", "").is_err());
    }

    #[test]
    fn dev_numbers() {
        for (enc, want) in [
            (0x0000_fe00u64, (254, 0)),
            (0x0000_fe05, (254, 5)),
            (0x0010_0803, (8, 259)),
            (0x0000_0801, (8, 1)),
        ] {
            assert_eq!(decode_dev(enc), want, "{enc:#x}");
        }
        let mut b = dev_resume("x").unwrap();
        b[40..48].copy_from_slice(&0xfe01u64.to_ne_bytes());
        assert_eq!(reply_dev(&b), (254, 1));
    }
}
