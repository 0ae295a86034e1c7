//! kiln bakes minimal, bootable, read-only OS disk images from layered recipes.
//!
//! The modules follow the data flow, and each may use only the modules listed
//! before it (`builder/ARCHITECTURE.md` draws the picture):
//! [`util`] → [`fs`] → [`model`] → [`input`] → [`store`] → [`registry`] → [`layers`] →
//! [`image`] → [`read`] → [`build`] → [`vm`] → [`publish`] → [`upkeep`] →
//! [`cli`].

pub mod build;
pub mod cli;
pub mod fs;
pub mod image;
pub mod input;
pub mod layers;
pub mod model;
pub mod publish;
pub mod read;
pub mod registry;
pub mod store;
pub mod upkeep;
pub mod util;
pub mod vm;

#[cfg(test)]
mod testutil;
