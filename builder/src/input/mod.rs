//! What the user hands kiln, checked before anything runs: recipe and layer
//! files (with their line and field for errors), a layer's `[files]`, the
//! lock, SOURCE_DATE_EPOCH, and the validated plan with each layer's key.

pub mod checks;
pub mod epoch;
pub mod files;
pub mod layerdef;
pub mod lock;
pub mod plan;
pub mod recipe;
pub mod services;
pub mod source_file;
