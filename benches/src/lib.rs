//! Benches only; see `benches/per_call.rs` and the README.
#![forbid(unsafe_code)]
