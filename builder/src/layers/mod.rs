//! Building layer content that needs the outside world: mmdebstrap for base
//! layers (then stripped) and apt in a chroot for package layers.

pub mod apt;
pub mod aptlists;
pub mod downloads;
pub mod purge;
pub mod source;
