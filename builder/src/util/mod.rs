//! TODO util

pub mod digest;
pub mod error;
pub mod exec;
pub mod progress;
pub mod time;
