//! Checks that constrained decoding over a schema always terminates: every string has a
//! `maxLength` (or is an enum/const), every number a `minimum` and a `maximum`, every array a
//! `maxItems`, every object closes its property set.

use serde_json::{Map, Value};

/// Returns `(json pointer, reason)` for the first unbounded subschema.
pub fn check_bounds(schema: &Value) -> Result<(), (String, String)> {
    walk(schema, "")
}

fn fail(pointer: &str, message: &str) -> Result<(), (String, String)> {
    Err((pointer.to_owned(), message.to_owned()))
}

fn types_of(map: &Map<String, Value>) -> Vec<&str> {
    match map.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn walk(schema: &Value, pointer: &str) -> Result<(), (String, String)> {
    let map = match schema {
        Value::Object(map) => map,
        Value::Bool(false) => return Ok(()),
        Value::Bool(true) => return fail(pointer, "`true` schema accepts unbounded values"),
        _ => return fail(pointer, "a schema must be an object"),
    };
    let enumerated = map.contains_key("enum") || map.contains_key("const");
    let types = types_of(map);
    let composite = ["anyOf", "oneOf", "allOf", "$ref"]
        .iter()
        .any(|k| map.contains_key(*k));
    if types.is_empty() && !enumerated && !composite {
        return fail(pointer, "every schema needs a `type`, `enum` or `const`");
    }
    if !enumerated {
        for t in &types {
            match *t {
                "string" if !map.contains_key("maxLength") => {
                    return fail(pointer, "string without `maxLength`");
                }
                "number" | "integer" if !(has_lower(map) && has_upper(map)) => {
                    return fail(pointer, "number without both a minimum and a maximum");
                }
                "array" if !map.contains_key("maxItems") => {
                    return fail(pointer, "array without `maxItems`");
                }
                "object" if map.get("additionalProperties") != Some(&Value::Bool(false)) => {
                    return fail(pointer, "object without `\"additionalProperties\": false`");
                }
                _ => {}
            }
        }
    }
    if let Some(Value::Object(props)) = map.get("properties") {
        for (name, sub) in props {
            walk(sub, &format!("{pointer}/properties/{}", escape(name)))?;
        }
    }
    if let Some(Value::Object(defs)) = map.get("$defs") {
        for (name, sub) in defs {
            walk(sub, &format!("{pointer}/$defs/{}", escape(name)))?;
        }
    }
    if let Some(items) = map.get("items") {
        walk(items, &format!("{pointer}/items"))?;
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(subs)) = map.get(key) {
            for (i, sub) in subs.iter().enumerate() {
                walk(sub, &format!("{pointer}/{key}/{i}"))?;
            }
        }
    }
    Ok(())
}

fn has_lower(map: &Map<String, Value>) -> bool {
    map.contains_key("minimum") || map.contains_key("exclusiveMinimum")
}

fn has_upper(map: &Map<String, Value>) -> bool {
    map.contains_key("maximum") || map.contains_key("exclusiveMaximum")
}

fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(schema: Value, expected: Result<(), &str>) {
        let got = check_bounds(&schema).map_err(|(p, _)| p);
        assert_eq!(got, expected.map_err(str::to_owned), "{schema}");
    }

    #[test]
    fn bounds() {
        check(json!({"type": "string", "maxLength": 3}), Ok(()));
        check(json!({"type": "string"}), Err(""));
        check(json!({"enum": ["a", "b"]}), Ok(()));
        check(json!({"type": "integer", "minimum": 0, "maximum": 9}), Ok(()));
        check(json!({"type": "number", "minimum": 0}), Err(""));
        check(
            json!({"type": "array", "items": {"type": "string", "maxLength": 1}}),
            Err(""),
        );
        check(
            json!({"type": "array", "maxItems": 2, "items": {"type": "string"}}),
            Err("/items"),
        );
        check(json!({"type": "object", "properties": {}}), Err(""));
        check(
            json!({"type": "object", "additionalProperties": false,
                   "properties": {"a/b": {"type": "boolean"}, "c": {"type": "number"}}}),
            Err("/properties/c"),
        );
        check(
            json!({"anyOf": [{"type": "null"}, {"type": "string"}]}),
            Err("/anyOf/1"),
        );
        check(json!(true), Err(""));
    }
}
