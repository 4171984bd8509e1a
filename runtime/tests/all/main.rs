//! The runtime's integration tests, in one binary (as wasmtime's are): one
//! link instead of one per file, one shared engine and one OpenBao server
//! for all of them. `leaks.rs` keeps a binary of its own, because it counts
//! the whole process's file descriptors and memory.

mod common;

mod anomalies;
mod credentials;
mod egress;
mod env_and_network;
mod examples;
mod failures;
mod filesystem;
mod limits;
mod openbao;
mod oversight;
mod plain;
mod request_policy;
mod tasks;
mod token_exchange;
