//! What `#[toolcell_sdk::tool]` expands to calls into: schemas from the
//! input and output types, input parsing whose errors name the field, and
//! the mapping of handler errors to `tool-error`.

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{ToolError, ToolInfo};

/// `describe()` of a typed handler.
pub fn describe<I: JsonSchema, O: JsonSchema>(name: &str, description: &str) -> ToolInfo {
    let output = schemars::schema_for!(O);
    ToolInfo {
        name: name.to_owned(),
        description: description.to_owned(),
        input_schema: schemars::schema_for!(I).as_value().to_string(),
        output_schema: Some(output.as_value().to_string()),
    }
}

/// `invoke()` of a typed handler: parse, call, serialise.
pub fn invoke<I, O, E>(input: &str, handler: fn(I) -> Result<O, E>) -> Result<String, ToolError>
where
    I: DeserializeOwned,
    O: Serialize,
    E: Into<ToolError>,
{
    let mut json = serde_json::Deserializer::from_str(input);
    let input: I = serde_path_to_error::deserialize(&mut json).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if path == "." {
            ToolError::InvalidInput(inner.to_string())
        } else {
            ToolError::InvalidInput(format!("field `{path}`: {inner}"))
        }
    })?;
    json.end().map_err(|error| ToolError::InvalidInput(error.to_string()))?;
    let output = handler(input).map_err(Into::into)?;
    serde_json::to_string(&output)
        .map_err(|error| ToolError::Failed(format!("the output cannot be serialised: {error}")))
}

impl From<crate::http::Error> for ToolError {
    fn from(error: crate::http::Error) -> ToolError {
        match error {
            crate::http::Error::Invalid(reason) => ToolError::InvalidInput(reason),
            crate::http::Error::Denied(reason) => ToolError::Denied(reason),
            crate::http::Error::Failed(reason) => ToolError::Upstream(reason),
        }
    }
}

impl From<crate::credentials::Error> for ToolError {
    fn from(error: crate::credentials::Error) -> ToolError {
        match error {
            crate::credentials::Error::Denied(reason) => ToolError::Denied(reason),
            crate::credentials::Error::Unavailable(reason) => ToolError::Upstream(reason),
        }
    }
}

impl From<std::io::Error> for ToolError {
    /// A path outside the grant reads as not found or permission denied.
    fn from(error: std::io::Error) -> ToolError {
        match error.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound => ToolError::Denied(error.to_string()),
            _ => ToolError::Failed(error.to_string()),
        }
    }
}
