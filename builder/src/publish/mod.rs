//! TODO publish

pub mod oci;
pub mod release;
pub mod sign;
