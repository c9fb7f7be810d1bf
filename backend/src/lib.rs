//! veilshare: privacy-first peer-to-peer file sharing. The binary in `main.rs` is a thin shell
//! over this library; `ARCHITECTURE.md` maps the modules and their invariants.

pub mod admin;
pub mod cli;
pub mod events;
pub mod fetch;
pub mod headless;
pub mod mirror;
pub mod multi;
pub mod p2p;
pub mod policy;
pub mod public;
pub mod shares;
pub mod store;
pub mod tor;
pub mod ui;
