//! TODO fs

pub mod cpio;
pub mod ext4;
pub mod fat;
pub mod gpt;
pub mod kmod;
pub mod layer;
pub mod tree;
pub mod uki;
pub mod verity;
