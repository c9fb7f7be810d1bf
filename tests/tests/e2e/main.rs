//! End-to-end tests: one test binary, one module per area, shared helpers in `util`.

mod crash;
mod dropbox;
mod flood;
mod foundation;
mod get;
mod hostile;
mod p2p;
mod tor;
mod util;
