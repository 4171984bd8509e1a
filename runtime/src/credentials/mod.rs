//! Credentials: short-lived, task-scoped, minted just in time and revoked
//! when the invocation that minted them ends. This module holds the
//! providers; the broker that hands credentials to guests and injects them
//! at the egress hook builds on them.

pub mod issuer;
pub mod spec;
