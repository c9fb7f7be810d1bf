//! veilshare: privacy-first peer-to-peer file sharing. The binary in `main.rs` is a thin shell
//! over this library; `ARCHITECTURE.md` maps the layers and what each may import (checked by
//! `tests/architecture.rs`).

pub mod app;
pub mod cli;
pub mod core;
pub mod receive;
pub mod serve;
pub mod transport;
