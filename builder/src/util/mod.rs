//! Plumbing every step uses: exit-code error classes, running external
//! programs, progress output, sha256 digests and timestamps. Uses nothing
//! else in the crate.

pub mod digest;
pub mod error;
pub mod exec;
pub mod memo;
pub mod minisign;
pub mod progress;
pub mod record;
pub mod scratch;
pub mod time;
