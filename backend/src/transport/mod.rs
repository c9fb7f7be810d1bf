//! Transports: the Tor client (onion hosting given a router, probing, client keys) and iroh
//! endpoints (configuration, leases, keys, tickets). They carry bytes and know nothing of
//! shares: they import nothing else of the crate.

pub mod iroh;
pub mod tor;
