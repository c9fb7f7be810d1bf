//! Receiving: fetching a share from a link (plain HTTP or an onion service), from a ticket
//! (iroh), or from several sources at once, every byte verified against BLAKE3 before a file
//! gets its name. Knows nothing of serving: it may use the core's types and the transports.

pub mod error;
pub mod link;
pub mod local;
pub mod multi;
pub mod send;
pub mod ticket;
