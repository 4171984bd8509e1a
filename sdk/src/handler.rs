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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Input {
        /// A nested value.
        inner: Inner,
    }

    #[derive(serde::Deserialize, JsonSchema)]
    struct Inner {
        count: u32,
    }

    #[derive(Serialize, JsonSchema)]
    struct Output {
        doubled: u32,
    }

    fn double(input: Input) -> Result<Output, ToolError> {
        match input.inner.count {
            0 => Err(ToolError::InvalidInput("count must be positive".into())),
            n => Ok(Output { doubled: n * 2 }),
        }
    }

    #[test]
    fn input_errors_name_the_field_and_handler_errors_pass_through() {
        assert_eq!(invoke(r#"{"inner":{"count":21}}"#, double), Ok(r#"{"doubled":42}"#.to_owned()));
        let Err(ToolError::InvalidInput(message)) = invoke(r#"{"inner":{"count":"x"}}"#, double) else {
            panic!("a wrong type is invalid input")
        };
        assert!(message.starts_with("field `inner.count`: invalid type: string \"x\""), "{message}");
        let Err(ToolError::InvalidInput(message)) = invoke(r#"{"inner":{}}"#, double) else { panic!() };
        assert!(message.starts_with("field `inner`: missing field `count`"), "{message}");
        let Err(ToolError::InvalidInput(message)) = invoke(r#"{"inner":{"count":1}} trailing"#, double) else {
            panic!()
        };
        assert!(message.contains("trailing characters"), "{message}");
        assert_eq!(
            invoke(r#"{"inner":{"count":0}}"#, double),
            Err(ToolError::InvalidInput("count must be positive".into()))
        );
    }

    #[test]
    fn describe_carries_both_schemas_and_their_doc_comments() {
        let info = describe::<Input, Output>("double", "Doubles a count.");
        let input: serde_json::Value = serde_json::from_str(&info.input_schema).unwrap();
        assert_eq!(input["properties"]["inner"]["description"], "A nested value.");
        assert_eq!(input["additionalProperties"], false);
        let output: serde_json::Value = serde_json::from_str(info.output_schema.as_deref().unwrap()).unwrap();
        assert_eq!(output["required"], serde_json::json!(["doubled"]));
        assert_eq!((info.name.as_str(), info.description.as_str()), ("double", "Doubles a count."));
    }

    #[test]
    fn io_and_http_errors_map_to_tool_errors() {
        let denied = ToolError::from(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(matches!(denied, ToolError::Denied(_)));
        let refused = ToolError::from(crate::http::Error::Denied("denied by toolcell egress policy: x".into()));
        assert_eq!(refused, ToolError::Denied("denied by toolcell egress policy: x".into()));
        assert!(matches!(ToolError::from(crate::http::Error::Failed("reset".into())), ToolError::Upstream(_)));
    }
}
