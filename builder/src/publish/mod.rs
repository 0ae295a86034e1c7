//! Shipping verified images: minisign signatures, the release store with
//! channels and history, and OCI registry push and pull.

pub mod oci;
pub mod release;
#[cfg(test)]
mod release_tests;
pub mod sign;

use std::path::PathBuf;

use serde::Serialize;

/// One published file.
#[derive(Debug, Clone, Serialize)]
pub struct PublishedFile {
    /// Path.
    pub path: PathBuf,
    /// Its signature.
    pub signature: PathBuf,
    /// `sha256:` of the file.
    pub digest: crate::util::digest::Digest,
    /// Whether it was already published (and left untouched).
    pub existed: bool,
}
