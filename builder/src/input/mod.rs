//! TODO input

pub mod epoch;
pub mod files;
pub mod layerdef;
pub mod lock;
pub mod plan;
pub mod recipe;
pub mod services;
pub mod source_file;
