//! Shipping verified images: minisign signatures, the release store with
//! channels and history, and OCI registry push and pull.

pub mod oci;
pub mod release;
#[cfg(test)]
mod release_tests;
pub mod sign;
