//! TODO util

pub mod error;
pub mod exec;
pub mod progress;
