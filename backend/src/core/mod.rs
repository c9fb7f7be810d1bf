//! The core: what a share is and how it lives, knowing no transport. Policy (pure rules), the
//! store (blobs and catalog), the share lifecycle with its publishers' trait, the event bus and
//! bao range maths. Imports nothing else of the crate; transports attach to
//! [`shares::Shares`] through [`shares::Publisher`].

pub mod audit;
pub mod bao;
pub mod body;
pub mod crash;
pub mod events;
pub mod metadata;
pub mod policy;
pub mod shares;
pub mod store;

use veilshare_shared::ShareId;

/// How logs name a share. Its id is the whole secret of its plain link, and logs end up in
/// terminals, journals and bug reports: they carry `s-` and 8 hex digits derived from the id
/// instead (the same on every run, so one share's lines can be followed; 32 bits of a
/// one-way hash, which leave the id's other 96 random bits unknown).
pub fn log_id(id: &ShareId) -> String {
    let key = blake3::derive_key("veilshare 2026-11 log id", id.as_str().as_bytes());
    format!("s-{}", data_encoding::HEXLOWER.encode(&key[..4]))
}
