//! kiln bakes minimal, bootable, read-only OS disk images from layered recipes.
//!
//! The data flows one way, and the modules follow it:
//! recipe ([`recipe`], [`layerdef`]) → validated plan ([`plan`]) → layers built
//! or taken from the content-addressed [`store`] ([`layer`], [`source`], and [`apt`] for package layers) →
//! composed root [`tree`] → filesystem images ([`ext4`], [`verity`], [`fat`],
//! [`cpio`], [`initramfs`], [`uki`]) → disk ([`gpt`]) → manifest ([`manifest`]).
//! [`build`] drives that pipeline; [`cli`] is the command-line front end.
//! Publication: [`sign`] (minisign keys and signatures), [`provenance`]
//! (in-toto/SLSA), [`release`] (release store, channels, publish) and [`oci`]
//! (push to and pull from OCI registries).

pub mod apt;
pub mod boottest;
pub mod build;
pub mod cli;
pub mod cpio;
pub mod diff;
pub mod disk;
pub mod epoch;
pub mod error;
pub mod exec;
pub mod ext4;
pub mod fat;
pub mod firstdiff;
pub mod gpt;
pub mod imagefs;
pub mod initramfs;
pub mod inspect;
pub mod kmod;
pub mod layer;
pub mod layerdef;
pub mod lock;
pub mod manifest;
pub mod oci;
pub mod output;
pub mod plan;
pub mod progress;
pub mod provenance;
pub mod qemu;
pub mod recipe;
pub mod release;
pub mod reproducible;
pub mod sbom;
pub mod sign;
pub mod source;
pub mod source_file;
pub mod store;
pub mod tree;
pub mod uki;
pub mod verdict;
pub mod verity;

#[cfg(test)]
mod testutil;
