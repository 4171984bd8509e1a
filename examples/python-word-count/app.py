"""word-count, written in Python: counts the words, lines and bytes of a text.

The same contract as the Rust word-count: `{"text": string}` in, the counts
out, pure compute, granted nothing. Built into a component by componentize-py
against toolcell's WIT (see README.md).
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import toolcell_tool_types as types

INPUT_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string", "description": "The text to count."}},
    "required": ["text"],
    "additionalProperties": False,
}

OUTPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "bytes": {"type": "integer", "minimum": 0},
        "lines": {"type": "integer", "minimum": 0},
        "words": {"type": "integer", "minimum": 0},
    },
    "required": ["bytes", "lines", "words"],
}


def invalid(message: str) -> Err:
    return Err(types.ToolError_InvalidInput(message))


class WitWorld(wit_world.WitWorld):
    def describe(self) -> types.ToolInfo:
        return types.ToolInfo(
            name="word-count-py",
            description="Counts the words, lines and bytes of a text (written in Python).",
            input_schema=json.dumps(INPUT_SCHEMA),
            output_schema=json.dumps(OUTPUT_SCHEMA),
        )

    def invoke(self, input: str) -> str:
        try:
            data = json.loads(input)
        except ValueError as error:
            raise invalid(f"input is not JSON: {error}")
        if not isinstance(data, dict):
            raise invalid("input must be a JSON object")
        unknown = sorted(set(data) - {"text"})
        if unknown:
            raise invalid(f"field `{unknown[0]}`: unknown field, expected `text`")
        if "text" not in data:
            raise invalid("missing field `text`")
        text = data["text"]
        if not isinstance(text, str):
            raise invalid("field `text`: expected a string")
        counts = {
            "bytes": len(text.encode("utf-8")),
            "lines": len(text.splitlines()),
            "words": len(text.split()),
        }
        return json.dumps(counts, separators=(",", ":"), sort_keys=True)
