//! The fuzz harness behind `fuzz_readers.rs`: a recording allocator, the
//! mutation engine, the seeds, the targets, and the writers' round
//! trips.

#[allow(unsafe_code)]
pub mod alloc;
pub mod engine;
pub mod roundtrip;
pub mod seeds;
pub mod targets;
