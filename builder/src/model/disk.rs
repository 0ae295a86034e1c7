//! The disk part of an image manifest: kernel, command line, root hash and
//! the GPT partitions (UAPI Discoverable Partitions Specification) with the
//! sha256 of each.

use serde::{Deserialize, Serialize};

/// The disk part of an image manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DiskInfo {
    /// Kernel release (`uname -r`).
    pub kernel_version: String,
    /// The full kernel command line in the UKI.
    pub cmdline: String,
    /// dm-verity root hash (hex).
    pub root_hash: String,
    /// Modules the initramfs loads, in order.
    pub initrd_modules: Vec<String>,
    /// `sha256:` of the UKI.
    pub uki_digest: String,
    /// `sha256:` of the kiln-init binary in the initramfs.
    pub init_digest: String,
    /// The partitions.
    pub partitions: Vec<PartitionInfo>,
    /// Disk GUID.
    pub disk_guid: String,
}

/// One partition of the disk.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartitionInfo {
    /// 1-based number.
    pub index: u32,
    /// GPT label.
    pub name: String,
    /// Type GUID.
    pub type_guid: String,
    /// Partition GUID.
    pub uuid: String,
    /// Byte offset on the disk.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// `sha256:` of the partition's bytes.
    pub sha256: String,
}
