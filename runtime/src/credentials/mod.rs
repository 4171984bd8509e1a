//! Credentials: short-lived, task-scoped, minted just in time and revoked
//! when the invocation that minted them ends.
//!
//! - What a manifest says about a credential is grant vocabulary: [`crate::policy::credential`].
//! - [`config`]: the operator's providers (never a tool's business).
//! - [`issuer`]: the built-in Ed25519 RFC 9068 token issuer and its JWKS.
//! - `openbao`, `exchange`: the OpenBao and RFC 8693 providers.
//! - `providers` (the runtime's), `task_token` (a task's: its OpenBao child
//!   token) and `broker` (an invocation's: mints, serves the guest's
//!   `credentials` import and the egress hook's injection, revokes at
//!   teardown) — the three lifetimes credentials have.
//! - `revoke`, [`journal`]: revocation with retries, and the durable lease
//!   journal a restarted runtime recovers from.

pub(crate) mod broker;
pub mod config;
pub(crate) mod error;
pub(crate) mod exchange;
pub mod issuer;
pub mod journal;
pub(crate) mod openbao;
pub(crate) mod providers;
pub(crate) mod revoke;
pub(crate) mod task_token;
pub(crate) mod upstream;

pub use broker::CredentialView;
pub use error::{CredentialError, SecretError};
