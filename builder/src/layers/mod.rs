//! TODO layers

pub mod apt;
pub mod source;
