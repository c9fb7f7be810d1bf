//! End-to-end tests: one test binary, one module per area, shared helpers in `util`.

mod audit;
mod bridges;
mod crash;
#[path = "../../benches/common/ctor.rs"]
#[allow(dead_code)] // the control port is for the benchmarks' OnionShare
mod ctor;
mod dropbox;
mod dropbox_cli;
mod flood;
mod foundation;
mod get;
mod gets;
mod hostile;
mod metadata;
mod p2p;
mod tor;
mod util;
