//! Plain components: a component that exports ordinary functions (no
//! toolcell world) is one tool per function, with schemas from its WIT types
//! and JSON in and out of every kind of type.

use std::path::Path;

use crate::common::{Harness, guests};
use serde_json::json;
use toolcell_runtime::{Call, CallResult, InvokeError, Manifest, Shape, ToolError};

fn calc() -> Manifest {
    Manifest::ad_hoc(Path::new(guests::PLAIN_CALC))
}

#[tokio::test]
async fn every_exported_function_is_offered_with_schemas_from_its_wit_types() {
    let h = Harness::new();
    let tool = h.load(calc());
    assert_eq!(tool.component.shape, Shape::Plain);
    let names: Vec<&str> = tool.component.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["add", "divide", "find", "swap", "geometry.area", "geometry.midpoint", "geometry.styled"]);
    let function = |name: &str| tool.component.functions.iter().find(|f| f.name == name).unwrap().clone();
    let add = function("add");
    assert_eq!(add.signature, "add: func(a: u8, b: u8) -> u16");
    assert_eq!(add.input_schema["properties"]["a"], json!({ "type": "integer", "minimum": 0, "maximum": 255 }));
    assert_eq!(add.input_schema["required"], json!(["a", "b"]));
    assert_eq!(add.output_schema["properties"]["result"]["maximum"], 65535);
    let find = function("find");
    assert_eq!(find.input_schema["required"], json!(["items"]), "an option parameter may be left out");
    let area = function("geometry.area");
    let shape = &area.input_schema["properties"]["s"]["oneOf"];
    assert_eq!(shape[0]["properties"]["tag"], json!({ "const": "circle" }));
    assert_eq!(shape[1]["properties"]["value"]["prefixItems"][0]["required"], json!(["x", "y"]));
    assert_eq!(shape[2]["required"], json!(["tag"]));
    assert_eq!(area.input_schema["properties"]["unit"], json!({ "type": "string", "enum": ["mm", "cm", "m"] }));
    let styled = function("geometry.styled");
    assert_eq!(styled.input_schema["properties"]["style"]["items"]["enum"], json!(["bold", "dashed"]));
    let divide = function("divide");
    assert_eq!(divide.output_schema["properties"]["result"]["oneOf"][1]["properties"]["err"]["type"], "string");
}

#[tokio::test]
async fn json_goes_in_and_out_of_every_kind_of_type() {
    let h = Harness::new();
    let cases = [
        ("add", json!({ "a": 200, "b": 100 }), json!({ "result": 300 })),
        ("divide", json!({ "a": 7, "b": 2 }), json!({ "result": { "ok": 3 } })),
        ("divide", json!({ "a": 7, "b": 0 }), json!({ "result": { "err": "cannot divide 7 by 0" } })),
        ("find", json!({ "items": ["a", "b"], "needle": "b" }), json!({ "result": 1 })),
        ("find", json!({ "items": ["a", "b"] }), json!({ "result": null })),
        ("swap", json!({ "pair": [true, 2.5] }), json!({ "result": [2.5, true] })),
        (
            "geometry.area",
            json!({ "s": { "tag": "rect", "value": [{ "x": 0, "y": 0 }, { "x": 3, "y": 4 }] }, "unit": "cm" }),
            json!({ "result": "12 cm²" }),
        ),
        ("geometry.area", json!({ "s": { "tag": "empty" }, "unit": "m" }), json!({ "result": "0 m²" })),
        (
            "geometry.midpoint",
            json!({ "a": { "x": 0, "y": 10 }, "b": { "x": 4, "y": 20 } }),
            json!({ "result": { "x": 2, "y": 15 } }),
        ),
        ("geometry.styled", json!({ "style": ["dashed", "bold"] }), json!({ "result": ["bold", "dashed"] })),
    ];
    for (function, arguments, expected) in cases {
        let report = h.call(calc(), Call::function(function, arguments.to_string())).await.unwrap();
        match report.result {
            CallResult::Output(text) => {
                assert_eq!(serde_json::from_str::<serde_json::Value>(&text).unwrap(), expected, "{function}")
            }
            other => panic!("{function}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn bad_arguments_name_the_parameter_and_wrong_calls_are_refused() {
    let h = Harness::new();
    let refused = [
        ("add", json!({ "a": 300, "b": 1 }), "`a`: 300 is outside 0..=255"),
        ("add", json!({ "a": 1 }), "`b` is missing"),
        ("add", json!({ "a": 1, "b": 2, "c": 3 }), "`add` has no parameter `c`"),
        (
            "geometry.area",
            json!({ "s": { "tag": "square" }, "unit": "cm" }),
            "`s.tag`: `square` is not one of circle, rect, empty",
        ),
        ("geometry.area", json!({ "s": { "tag": "circle" }, "unit": "cm" }), "`s.value` is missing for case `circle`"),
        ("geometry.midpoint", json!({ "a": { "x": 1 }, "b": { "x": 1, "y": 1 } }), "`a.y` is missing"),
        ("geometry.styled", json!({ "style": ["italic"] }), "`style`: `italic` is not a flag"),
        ("swap", json!({ "pair": [true] }), "`pair`: expected 2 items, got 1"),
    ];
    for (function, arguments, message) in refused {
        let report = h.call(calc(), Call::function(function, arguments.to_string())).await.unwrap();
        assert_eq!(report.result, CallResult::ToolError(ToolError::InvalidInput(message.into())), "{function}");
    }
    let unknown = h.call(calc(), Call::function("multiply", "{}")).await.unwrap_err();
    assert!(matches!(&unknown, InvokeError::WrongShape(m) if m.contains("has no function `multiply`")), "{unknown}");
    let as_tool = h.call(calc(), Call::tool("{}")).await.unwrap_err();
    assert!(matches!(&as_tool, InvokeError::WrongShape(m) if m.contains("is a plain component")), "{as_tool}");
    let on_tool =
        h.call(Manifest::ad_hoc(Path::new(guests::WORD_COUNT)), Call::function("add", "{}")).await.unwrap_err();
    assert!(matches!(&on_tool, InvokeError::WrongShape(m) if m.contains("no functions to call by name")), "{on_tool}");
    h.still_serves().await;
}
