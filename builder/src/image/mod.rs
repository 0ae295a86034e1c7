//! Assembling the bootable disk from a composed root: initramfs, UKI, ext4
//! root, dm-verity, ESP and GPT, offline and without privileges.

pub mod disk;
pub mod initramfs;
pub mod secureboot;
pub mod volatile;
