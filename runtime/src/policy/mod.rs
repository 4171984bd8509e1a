//! The grant vocabulary: what a manifest, a narrowing and a grant are made
//! of — directories, environment variables, raw sockets, egress rules,
//! credentials and limits — and the pure decisions on them (does this rule
//! allow this request line, what class is this address). No wasmtime, no
//! I/O: everything above (manifests, grants, capabilities) reads these
//! types, and nothing here reads anything above.

pub mod credential;
pub mod dir;
pub mod egress;
pub mod env;
pub mod limits;
pub mod socket;
