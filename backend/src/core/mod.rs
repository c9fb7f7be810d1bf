//! The core: what a share is and how it lives, knowing no transport. Policy (pure rules), the
//! store (blobs and catalog), the share lifecycle with its publishers' trait, the event bus and
//! bao range maths. Imports nothing else of the crate; transports attach to
//! [`shares::Shares`] through [`shares::Publisher`].

pub mod bao;
pub mod events;
pub mod policy;
pub mod shares;
pub mod store;
