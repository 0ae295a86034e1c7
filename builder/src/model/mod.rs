//! TODO model

pub mod manifest;
pub mod provenance;
pub mod sbom;
