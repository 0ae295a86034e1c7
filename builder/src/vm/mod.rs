//! TODO vm

pub mod boottest;
pub mod qemu;
