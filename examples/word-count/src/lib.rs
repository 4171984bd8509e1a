//! `word-count`: counts the words, lines and bytes of `{"text": string}`.
//! Pure compute: its manifest grants nothing.

use serde_json::{Value, json};
use toolcell_sdk::{Guest, ToolError, ToolInfo};

struct WordCount;

impl Guest for WordCount {
    fn describe() -> ToolInfo {
        ToolInfo {
            name: "word-count".into(),
            description: "Counts the words, lines and bytes of a text.".into(),
            input_schema: json!({
                "type": "object",
                "properties": { "text": { "type": "string", "description": "The text to count." } },
                "required": ["text"],
                "additionalProperties": false
            })
            .to_string(),
            output_schema: Some(
                json!({
                    "type": "object",
                    "properties": {
                        "words": { "type": "integer" },
                        "lines": { "type": "integer" },
                        "bytes": { "type": "integer" }
                    },
                    "required": ["words", "lines", "bytes"]
                })
                .to_string(),
            ),
        }
    }

    fn invoke(input: String) -> Result<String, ToolError> {
        let input: Value = serde_json::from_str(&input)
            .map_err(|error| ToolError::InvalidInput(format!("input is not JSON: {error}")))?;
        let text = input
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| ToolError::InvalidInput("field `text` must be a string".into()))?;
        let output = json!({
            "words": text.split_whitespace().count(),
            "lines": text.lines().count(),
            "bytes": text.len(),
        });
        Ok(output.to_string())
    }
}

toolcell_sdk::export_tool!(WordCount);
