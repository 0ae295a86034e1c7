//! TODO model

pub mod checks;
pub mod deb;
pub mod disk;
pub mod manifest;
pub mod provenance;
pub mod sbom;
