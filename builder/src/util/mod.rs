//! TODO util

pub mod digest;
pub mod error;
pub mod exec;
pub mod memo;
pub mod progress;
pub mod time;
