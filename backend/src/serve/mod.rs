//! Serving: the public site of shares (plain listener and onion services), the onion publisher
//! and the direct (iroh) publisher. Each publisher attaches to the core's
//! [`crate::core::shares::Shares`] and carries shares over one transport; nothing here receives.

pub mod direct;
pub mod onion;
pub mod public;
