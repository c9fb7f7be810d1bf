//! End-to-end tests live in `tests/`. This library holds what they share with the backend's
//! own tests: sample files made on the spot.

pub mod samples;
