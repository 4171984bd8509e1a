//! The `toolcell` binary's integration tests, in one binary (one link, one
//! OpenBao server for all of them): the CLI end to end, credentials and
//! signals through real processes, `toolcell serve` driven by MCP clients,
//! and `toolcell new`.

mod common;

mod cli;
mod credentials;
mod governance;
mod identity;
mod mcp;
mod new;
mod oversight;
mod policies;
