//! The records kiln writes and reads back: the image manifest (with the
//! disk facts and the checks it carries), the Debian package model, the SPDX
//! SBOM and the provenance statement.

pub mod checks;
pub mod deb;
pub mod disk;
pub mod manifest;
pub mod provenance;
pub mod sbom;
