//! Booting images in QEMU: the VM itself (UEFI firmware, accelerator probe,
//! QMP) and `kiln test`, which judges the booted image from outside.

pub mod boottest;
pub mod console;
pub mod firmware;
pub mod hostcheck;
pub mod output;
pub mod probe;
pub mod qemu;
pub mod secureboot;
