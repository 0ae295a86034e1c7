//! TODO image

pub mod disk;
pub mod initramfs;
