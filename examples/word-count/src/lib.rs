//! `word-count`: counts the words, lines and bytes of a text. Pure compute:
//! its manifest grants nothing.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use toolcell_sdk::ToolError;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// The text to count.
    text: String,
}

#[derive(Serialize, JsonSchema)]
struct Counts {
    /// Bytes of UTF-8.
    bytes: usize,
    /// Lines, the last one counted even without a final newline.
    lines: usize,
    /// Runs of non-whitespace.
    words: usize,
}

/// Counts the words, lines and bytes of a text.
#[toolcell_sdk::tool]
fn word_count(input: Input) -> Result<Counts, ToolError> {
    let text = input.text;
    Ok(Counts { bytes: text.len(), lines: text.lines().count(), words: text.split_whitespace().count() })
}
