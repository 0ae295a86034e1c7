//! TODO read

pub mod diff;
pub mod firstdiff;
pub mod imagefs;
pub mod inspect;
pub mod locate;
