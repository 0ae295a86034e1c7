//! Reading images back: partitions and filesystems of a disk image, file-
//! and package-level diffs, the first byte-level difference of two images,
//! and the data `kiln inspect` and `kiln ls` report.

pub mod diff;
#[cfg(test)]
mod diff_tests;
pub mod disk;
pub mod firstdiff;
pub mod imagefs;
pub mod inspect;
pub mod locate;
