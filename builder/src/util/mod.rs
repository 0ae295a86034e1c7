//! Plumbing every step uses: exit-code error classes, running external
//! programs, progress output, sha256 digests, timestamps and large
//! buffers on huge pages. Uses nothing
//! else in the crate.

pub mod digest;
pub mod error;
pub mod exec;
pub mod hugepages;
pub mod memo;
pub mod minisign;
pub mod printable;
pub mod progress;
pub mod record;
pub mod scratch;
pub mod time;
pub mod walk;
