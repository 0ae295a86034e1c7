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
