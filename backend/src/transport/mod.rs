//! Transports: the Tor client (onion hosting given a router, probing, client keys), iroh
//! endpoints (configuration, leases, keys, tickets), and serving HTTP to strangers under
//! deadlines and a connection cap. They carry bytes and know nothing of shares: they import
//! nothing else of the crate.

pub mod bridges;
pub mod coalesce;
pub mod http;
pub mod iroh;
pub mod tor;
