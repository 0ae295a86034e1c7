//! The on-disk layouts that kiln (the builder) writes and kiln-init (the
//! initramfs's `/init`) reads back at boot, declared once so the two cannot
//! drift apart: the GPT header and partition entry (UEFI Specification
//! 2.10, section 5.3), the Discoverable Partitions Specification's type
//! GUIDs and the verity partition GUIDs taken from the root hash, and
//! cryptsetup's dm-verity superblock.
//!
//! Each structure is a table of named [`Field`]s (offset, and length as part of the type) that
//! both its encoder and its decoder use. Decoders take untrusted bytes and
//! return an error, never panic. The crate has no dependencies, so
//! kiln-init stays a small static binary.

pub mod field;
pub mod gpt;
pub mod gpt_entry;
pub mod guid;
pub mod verity;

pub use field::{Field, Span};
