//! `http-get`: fetches one URL and returns its status, headers and body
//! (cut at `max_bytes`). Which URLs it may reach, and which credentials the
//! host adds on the way, are the manifest's business, not this code's: the
//! tool never sees a token.

use serde_json::{Value, json};
use toolcell_sdk::http::{Error, Request};
use toolcell_sdk::{Guest, ToolError, ToolInfo};

struct HttpGet;

/// The most body bytes returned unless the input asks for fewer.
const DEFAULT_MAX_BYTES: u64 = 64 << 10;

impl Guest for HttpGet {
    fn describe() -> ToolInfo {
        ToolInfo {
            name: "http-get".into(),
            description: "Fetches a URL (from the manifest's allowlist) and returns its status, headers and body."
                .into(),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "url": { "type": "string", "description": "http:// or https:// URL" },
                    "max_bytes": { "type": "integer", "minimum": 0, "description": "body bytes to return (default 65536)" }
                },
                "required": ["url"],
                "additionalProperties": false
            })
            .to_string(),
            output_schema: Some(
                json!({
                    "type": "object",
                    "properties": {
                        "status": { "type": "integer" },
                        "headers": { "type": "object", "additionalProperties": { "type": "string" } },
                        "body": { "type": "string" },
                        "truncated": { "type": "boolean" }
                    },
                    "required": ["status", "headers", "body", "truncated"]
                })
                .to_string(),
            ),
        }
    }

    fn invoke(input: String) -> Result<String, ToolError> {
        let input: Value = serde_json::from_str(&input).map_err(|e| ToolError::InvalidInput(format!("not JSON: {e}")))?;
        let url = input["url"].as_str().ok_or_else(|| ToolError::InvalidInput("`url` must be a string".into()))?;
        let max_bytes = match &input["max_bytes"] {
            Value::Null => DEFAULT_MAX_BYTES,
            value => value.as_u64().ok_or_else(|| ToolError::InvalidInput("`max_bytes` must be a whole number".into()))?,
        };
        let response = Request::get(url).max_body(max_bytes as usize).send().map_err(|error| match error {
            Error::Invalid(reason) => ToolError::InvalidInput(reason),
            Error::Denied(reason) => ToolError::Denied(reason),
            Error::Failed(reason) => ToolError::Upstream(reason),
        })?;
        let headers: serde_json::Map<String, Value> =
            response.headers.iter().map(|(name, value)| (name.clone(), Value::String(value.clone()))).collect();
        Ok(json!({
            "status": response.status,
            "headers": headers,
            "body": String::from_utf8_lossy(&response.body),
            "truncated": response.truncated,
        })
        .to_string())
    }
}

toolcell_sdk::export_tool!(HttpGet);
