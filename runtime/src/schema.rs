//! JSON Schemas and JSON values for plain components: a component that
//! exports ordinary functions becomes one tool per function, its input and
//! output schemas derived from the WIT types, its arguments and results
//! converted between JSON and component values.
//!
//! The JSON shape of each WIT type:
//!
//! | WIT | JSON |
//! |---|---|
//! | `bool`, `string`, `char` | boolean, string, one-character string |
//! | `u8` … `s64` | integer, with the type's minimum and maximum |
//! | `f32`, `f64` | number |
//! | `list<T>` | array |
//! | `tuple<A, B>` | array of exactly those items |
//! | `record` | object with one property per field (kebab-case names as in WIT) |
//! | `variant` | `{"tag": case}` or `{"tag": case, "value": payload}` |
//! | `enum` | string, one of the cases |
//! | `flags` | array of flag names |
//! | `option<T>` | `T` or `null` |
//! | `result<T, E>` | `{"ok": T}` or `{"err": E}` (`null` without a payload) |
//!
//! Resources, streams, futures and maps have no JSON form: a function using
//! them is not offered, and the reason is reported.

use serde_json::{Map, Value, json};
use wasmtime::component::Val;
use wasmtime::component::types::Type;

/// The JSON Schema of a WIT type, or why it has none.
pub(crate) fn schema_of(ty: &Type) -> Result<Value, String> {
    let integer = |min: i128, max: i128| json!({ "type": "integer", "minimum": min, "maximum": max });
    Ok(match ty {
        Type::Bool => json!({ "type": "boolean" }),
        Type::S8 => integer(i8::MIN.into(), i8::MAX.into()),
        Type::U8 => integer(0, u8::MAX.into()),
        Type::S16 => integer(i16::MIN.into(), i16::MAX.into()),
        Type::U16 => integer(0, u16::MAX.into()),
        Type::S32 => integer(i32::MIN.into(), i32::MAX.into()),
        Type::U32 => integer(0, u32::MAX.into()),
        Type::S64 => integer(i64::MIN.into(), i64::MAX.into()),
        Type::U64 => integer(0, u64::MAX.into()),
        Type::Float32 | Type::Float64 => json!({ "type": "number" }),
        Type::Char => json!({ "type": "string", "minLength": 1, "maxLength": 1 }),
        Type::String => json!({ "type": "string" }),
        Type::List(list) => json!({ "type": "array", "items": schema_of(&list.ty())? }),
        Type::Tuple(tuple) => {
            let items = tuple.types().map(|t| schema_of(&t)).collect::<Result<Vec<_>, _>>()?;
            json!({ "type": "array", "prefixItems": items, "minItems": items.len(), "maxItems": items.len() })
        }
        Type::Record(record) => {
            let mut properties = Map::new();
            let mut required = Vec::new();
            for field in record.fields() {
                if !matches!(field.ty, Type::Option(_)) {
                    required.push(field.name.to_owned());
                }
                properties.insert(field.name.to_owned(), schema_of(&field.ty)?);
            }
            json!({ "type": "object", "properties": properties, "required": required, "additionalProperties": false })
        }
        Type::Variant(variant) => {
            let cases = variant
                .cases()
                .map(|case| {
                    let mut properties = Map::new();
                    properties.insert("tag".into(), json!({ "const": case.name }));
                    let mut required = vec!["tag"];
                    if let Some(payload) = &case.ty {
                        properties.insert("value".into(), schema_of(payload)?);
                        required.push("value");
                    }
                    Ok(json!({ "type": "object", "properties": properties, "required": required, "additionalProperties": false }))
                })
                .collect::<Result<Vec<_>, String>>()?;
            json!({ "oneOf": cases })
        }
        Type::Enum(cases) => json!({ "type": "string", "enum": cases.names().collect::<Vec<_>>() }),
        Type::Flags(flags) => json!({
            "type": "array",
            "items": { "type": "string", "enum": flags.names().collect::<Vec<_>>() },
            "uniqueItems": true
        }),
        Type::Option(option) => json!({ "anyOf": [schema_of(&option.ty())?, { "type": "null" }] }),
        Type::Result(result) => {
            let side = |ty: Option<Type>| ty.map_or(Ok(json!({ "type": "null" })), |t| schema_of(&t));
            json!({ "oneOf": [
                { "type": "object", "properties": { "ok": side(result.ok())? }, "required": ["ok"], "additionalProperties": false },
                { "type": "object", "properties": { "err": side(result.err())? }, "required": ["err"], "additionalProperties": false }
            ] })
        }
        Type::Own(_) | Type::Borrow(_) => return Err("resources have no JSON form".into()),
        Type::Map(_) => return Err("maps are not supported".into()),
        Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            return Err("async types (future, stream, error-context) have no JSON form".into());
        }
        Type::FixedLengthList(_) => return Err("fixed-length lists are not supported".into()),
    })
}

/// Converts JSON to a value of `ty`; errors name the path (`a.b[2]`).
pub(crate) fn to_val(ty: &Type, value: &Value, path: &str) -> Result<Val, String> {
    let wrong = |expected: &str| format!("`{path}`: expected {expected}, got {}", kind(value));
    let int = |min: i128, max: i128| -> Result<i128, String> {
        let n = value
            .as_i64()
            .map(i128::from)
            .or_else(|| value.as_u64().map(i128::from))
            .ok_or_else(|| wrong("an integer"))?;
        if n < min || n > max {
            return Err(format!("`{path}`: {n} is outside {min}..={max}"));
        }
        Ok(n)
    };
    Ok(match ty {
        Type::Bool => Val::Bool(value.as_bool().ok_or_else(|| wrong("a boolean"))?),
        Type::S8 => Val::S8(int(i8::MIN.into(), i8::MAX.into())? as i8),
        Type::U8 => Val::U8(int(0, u8::MAX.into())? as u8),
        Type::S16 => Val::S16(int(i16::MIN.into(), i16::MAX.into())? as i16),
        Type::U16 => Val::U16(int(0, u16::MAX.into())? as u16),
        Type::S32 => Val::S32(int(i32::MIN.into(), i32::MAX.into())? as i32),
        Type::U32 => Val::U32(int(0, u32::MAX.into())? as u32),
        Type::S64 => Val::S64(int(i64::MIN.into(), i64::MAX.into())? as i64),
        Type::U64 => Val::U64(int(0, u64::MAX.into())? as u64),
        Type::Float32 => Val::Float32(value.as_f64().ok_or_else(|| wrong("a number"))? as f32),
        Type::Float64 => Val::Float64(value.as_f64().ok_or_else(|| wrong("a number"))?),
        Type::Char => {
            let text = value.as_str().ok_or_else(|| wrong("a one-character string"))?;
            let mut chars = text.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => return Err(wrong("a one-character string")),
            }
        }
        Type::String => Val::String(value.as_str().ok_or_else(|| wrong("a string"))?.to_owned()),
        Type::List(list) => {
            let items = value.as_array().ok_or_else(|| wrong("an array"))?;
            let ty = list.ty();
            Val::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| to_val(&ty, v, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Tuple(tuple) => {
            let items = value.as_array().ok_or_else(|| wrong("an array"))?;
            if items.len() != tuple.types().len() {
                return Err(format!("`{path}`: expected {} items, got {}", tuple.types().len(), items.len()));
            }
            Val::Tuple(
                tuple
                    .types()
                    .zip(items)
                    .enumerate()
                    .map(|(i, (t, v))| to_val(&t, v, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Record(record) => {
            let object = value.as_object().ok_or_else(|| wrong("an object"))?;
            if let Some(unknown) = object.keys().find(|k| record.fields().all(|f| f.name != k.as_str())) {
                return Err(format!("`{path}`: unknown field `{unknown}`"));
            }
            let mut fields = Vec::new();
            for field in record.fields() {
                let child = format!("{path}.{}", field.name);
                let value = match object.get(field.name) {
                    Some(value) => to_val(&field.ty, value, &child)?,
                    None if matches!(field.ty, Type::Option(_)) => Val::Option(None),
                    None => return Err(format!("`{child}` is missing")),
                };
                fields.push((field.name.to_owned(), value));
            }
            Val::Record(fields)
        }
        Type::Variant(variant) => {
            let tag = value.get("tag").and_then(Value::as_str).ok_or_else(|| wrong("an object with a `tag`"))?;
            let case = variant.cases().find(|c| c.name == tag).ok_or_else(|| {
                let names: Vec<&str> = variant.cases().map(|c| c.name).collect();
                format!("`{path}.tag`: `{tag}` is not one of {}", names.join(", "))
            })?;
            let payload = match (&case.ty, value.get("value")) {
                (Some(ty), Some(v)) => Some(Box::new(to_val(ty, v, &format!("{path}.value"))?)),
                (Some(_), None) => return Err(format!("`{path}.value` is missing for case `{tag}`")),
                (None, _) => None,
            };
            Val::Variant(tag.to_owned(), payload)
        }
        Type::Enum(cases) => {
            let name = value.as_str().ok_or_else(|| wrong("a string"))?;
            if !cases.names().any(|n| n == name) {
                return Err(format!(
                    "`{path}`: `{name}` is not one of {}",
                    cases.names().collect::<Vec<_>>().join(", ")
                ));
            }
            Val::Enum(name.to_owned())
        }
        Type::Flags(flags) => {
            let names = value.as_array().ok_or_else(|| wrong("an array of flag names"))?;
            let mut set = Vec::new();
            for name in names {
                let name = name.as_str().ok_or_else(|| wrong("an array of flag names"))?;
                if !flags.names().any(|n| n == name) {
                    return Err(format!("`{path}`: `{name}` is not a flag"));
                }
                set.push(name.to_owned());
            }
            Val::Flags(set)
        }
        Type::Option(option) => match value {
            Value::Null => Val::Option(None),
            other => Val::Option(Some(Box::new(to_val(&option.ty(), other, path)?))),
        },
        Type::Result(result) => {
            let object = value.as_object().ok_or_else(|| wrong("an object with `ok` or `err`"))?;
            let side = |ty: Option<Type>, v: &Value, child: String| -> Result<Option<Box<Val>>, String> {
                ty.map(|t| to_val(&t, v, &child).map(Box::new)).transpose()
            };
            match (object.get("ok"), object.get("err")) {
                (Some(v), None) => Val::Result(Ok(side(result.ok(), v, format!("{path}.ok"))?)),
                (None, Some(v)) => Val::Result(Err(side(result.err(), v, format!("{path}.err"))?)),
                _ => return Err(wrong("an object with exactly one of `ok` and `err`")),
            }
        }
        other => return Err(format!("`{path}`: {other:?} has no JSON form")),
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Converts a component value to JSON (the inverse of [`to_val`]).
pub(crate) fn from_val(value: &Val) -> Value {
    match value {
        Val::Bool(b) => json!(b),
        Val::S8(n) => json!(n),
        Val::U8(n) => json!(n),
        Val::S16(n) => json!(n),
        Val::U16(n) => json!(n),
        Val::S32(n) => json!(n),
        Val::U32(n) => json!(n),
        Val::S64(n) => json!(n),
        Val::U64(n) => json!(n),
        Val::Float32(n) => json!(n),
        Val::Float64(n) => json!(n),
        Val::Char(c) => json!(c.to_string()),
        Val::String(s) => json!(s),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            Value::Array(items.iter().map(from_val).collect())
        }
        Val::Record(fields) => Value::Object(fields.iter().map(|(k, v)| (k.clone(), from_val(v))).collect()),
        Val::Variant(tag, payload) => match payload {
            Some(payload) => json!({ "tag": tag, "value": from_val(payload) }),
            None => json!({ "tag": tag }),
        },
        Val::Enum(name) => json!(name),
        Val::Flags(names) => json!(names),
        Val::Option(inner) => inner.as_deref().map_or(Value::Null, from_val),
        Val::Result(Ok(ok)) => json!({ "ok": ok.as_deref().map_or(Value::Null, from_val) }),
        Val::Result(Err(err)) => json!({ "err": err.as_deref().map_or(Value::Null, from_val) }),
        Val::Map(pairs) => Value::Array(pairs.iter().map(|(k, v)| json!([from_val(k), from_val(v)])).collect()),
        Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => Value::Null,
    }
}
