//! `http-get`: fetches one URL and returns its status, headers and body
//! (cut at `max_bytes`). Which URLs it may reach, and which credentials the
//! host adds on the way, are the manifest's business, not this code's: the
//! tool never sees a token.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use toolcell_sdk::ToolError;
use toolcell_sdk::http::Request;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// An http:// or https:// URL the manifest's egress rules allow.
    url: String,
    /// Body bytes to return at most (default 65536).
    #[serde(default = "default_max_bytes")]
    max_bytes: u32,
}

fn default_max_bytes() -> u32 {
    64 << 10
}

#[derive(Serialize, JsonSchema)]
struct Fetched {
    /// HTTP status.
    status: u16,
    /// Response headers (the last value of a repeated header).
    headers: BTreeMap<String, String>,
    /// The body as text (invalid UTF-8 replaced), at most `max_bytes`.
    body: String,
    /// True when the body was longer than `max_bytes`.
    truncated: bool,
}

/// Fetches a URL (from the manifest's allowlist) and returns its status, headers and body.
#[toolcell_sdk::tool]
fn http_get(input: Input) -> Result<Fetched, ToolError> {
    let response = Request::get(&input.url).max_body(input.max_bytes as usize).send()?;
    Ok(Fetched {
        status: response.status,
        headers: response.headers.into_iter().collect(),
        body: String::from_utf8_lossy(&response.body).into_owned(),
        truncated: response.truncated,
    })
}
