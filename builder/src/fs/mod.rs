//! Pure encoders and decoders of on-disk formats: the file tree and its
//! layer diff, the layer tar, ext4, FAT, GPT, dm-verity, cpio, the UKI (PE)
//! and kernel-module metadata. Bytes in, bytes out: no processes, no store.

pub mod cpio;
pub mod efivars;
pub mod ext4;
pub mod fat;
pub mod gpt;
pub mod kmod;
pub mod layer;
pub mod tree;
pub mod uki;
pub mod usrmerge;
pub mod verity;

/// Whether every byte of `bytes` is zero: 4 KiB at a time, each folded
/// whole (which the compiler vectorises; stopping at the first non-zero
/// byte would not be).
pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    bytes
        .chunks(4096)
        .all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0)
}
