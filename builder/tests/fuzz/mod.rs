//! The fuzz harness behind `fuzz_readers.rs`: a recording allocator, the
//! mutation engine, the seeds and the targets.

#[allow(unsafe_code)]
pub mod alloc;
pub mod engine;
pub mod seeds;
pub mod targets;
