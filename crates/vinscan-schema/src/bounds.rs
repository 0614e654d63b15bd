//! Bounds that make constrained decoding over a schema terminate: every string has a
//! `maxLength` (or is an enum/const), every number a lower and an upper bound, every array a
//! `maxItems`, every object a closed property set.
//!
//! Schemas as users write them (an ERP's export: plain `"type": "string"`, no `maxItems`, no
//! `additionalProperties`) are accepted: [`bound`] applies [`BoundDefaults`] wherever a schema
//! sets none and says where, and refuses only what no default can bound, listing every
//! problem at once.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The bounds applied where a schema sets none (a pipeline's `[schema_defaults]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BoundDefaults {
    /// `maxLength` of a string without one (characters).
    pub max_string_length: u64,
    /// `maxItems` of an array without one.
    pub max_items: u64,
    /// `minimum` of a number without a lower bound.
    pub number_minimum: f64,
    /// `maximum` of a number without an upper bound.
    pub number_maximum: f64,
}

impl Default for BoundDefaults {
    /// 200 characters, 50 items, ±10¹⁵ (a VND amount in the quadrillions still fits, and every
    /// such integer is exact in a double).
    fn default() -> Self {
        Self {
            max_string_length: 200,
            max_items: 50,
            number_minimum: -1e15,
            number_maximum: 1e15,
        }
    }
}

impl BoundDefaults {
    /// Refuses defaults that would not bound anything useful.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=100_000).contains(&self.max_string_length) {
            return Err(format!(
                "max_string_length must be 1..=100000, got {}",
                self.max_string_length
            ));
        }
        if !(1..=10_000).contains(&self.max_items) {
            return Err(format!("max_items must be 1..=10000, got {}", self.max_items));
        }
        let exact = 9_007_199_254_740_992.0; // 2^53
        if !(self.number_minimum.is_finite()
            && self.number_maximum.is_finite()
            && self.number_minimum < self.number_maximum
            && self.number_minimum >= -exact
            && self.number_maximum <= exact)
        {
            return Err(format!(
                "need -2^53 <= number_minimum < number_maximum <= 2^53, got {} and {}",
                self.number_minimum, self.number_maximum
            ));
        }
        Ok(())
    }
}

/// A bound vinscan applied: at which JSON Pointer of the schema, which keyword, what value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedDefault {
    pub pointer: String,
    pub keyword: &'static str,
    pub value: Value,
}

/// Problems no default bound can fix, as `(JSON Pointer, reason)`.
pub type Problems = Vec<(String, String)>;

/// The schema with `defaults` applied wherever it sets no bound, and what was applied; or
/// every problem no default can fix.
pub fn bound(schema: &Value, defaults: &BoundDefaults) -> Result<(Value, Vec<AppliedDefault>), Problems> {
    let mut bounded = schema.clone();
    let mut walk = Walk {
        defaults,
        applied: Vec::new(),
        problems: Vec::new(),
    };
    walk.node(&mut bounded, "");
    if walk.problems.is_empty() {
        Ok((bounded, walk.applied))
    } else {
        Err(walk.problems)
    }
}

/// The first problem [`bound`] would report, or the first bound it would have to apply: for a
/// schema that must be bounded as written.
pub fn check_bounds(schema: &Value) -> Result<(), (String, String)> {
    match bound(schema, &BoundDefaults::default()) {
        Err(mut problems) => Err(problems.remove(0)),
        Ok((_, applied)) => match applied.first() {
            Some(a) => Err((a.pointer.clone(), format!("no `{}`", a.keyword))),
            None => Ok(()),
        },
    }
}

struct Walk<'a> {
    defaults: &'a BoundDefaults,
    applied: Vec<AppliedDefault>,
    problems: Problems,
}

fn types_of(map: &Map<String, Value>) -> Vec<String> {
    match map.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

impl Walk<'_> {
    fn problem(&mut self, pointer: &str, message: &str) {
        self.problems.push((pointer.to_owned(), message.to_owned()));
    }

    fn apply(&mut self, map: &mut Map<String, Value>, pointer: &str, keyword: &'static str, value: Value) {
        map.insert(keyword.to_owned(), value.clone());
        self.applied.push(AppliedDefault {
            pointer: pointer.to_owned(),
            keyword,
            value,
        });
    }

    fn node(&mut self, schema: &mut Value, pointer: &str) {
        let map = match schema {
            Value::Object(map) => map,
            Value::Bool(false) => return,
            Value::Bool(true) => {
                return self.problem(pointer, "`true` accepts any JSON value, which cannot be bounded");
            }
            _ => return self.problem(pointer, "a schema must be an object"),
        };
        let enumerated = map.contains_key("enum") || map.contains_key("const");
        let types = types_of(map);
        let composite = ["anyOf", "oneOf", "allOf", "$ref"]
            .iter()
            .any(|k| map.contains_key(*k));
        if types.is_empty() && !enumerated && !composite {
            self.problem(
                pointer,
                "no `type`, `enum` or `const`: any JSON value, which cannot be bounded",
            );
        }
        // Closing an object changes what an `allOf` (or a `$ref` beside `properties`) accepts:
        // each part would refuse the others' properties. Such parts must be bounded as written.
        if let Some(Value::Array(parts)) = map.get("allOf")
            && parts.iter().any(|p| check_bounds(p).is_err())
        {
            self.problem(
                pointer,
                "`allOf` with a part that is not bounded as written: closing its objects would make the parts refuse each other's properties; bound each part yourself",
            );
            return;
        }
        if map.contains_key("$ref") && map.contains_key("properties") {
            self.problem(
                pointer,
                "`$ref` beside `properties`: closing either would refuse the other's properties; move them into one schema",
            );
            return;
        }
        if !enumerated {
            for t in &types {
                self.bound_type(map, pointer, t);
            }
        }
        self.children(map, pointer);
    }

    fn bound_type(&mut self, map: &mut Map<String, Value>, pointer: &str, t: &str) {
        let d = *self.defaults;
        match t {
            "string" if !map.contains_key("maxLength") => {
                self.apply(map, pointer, "maxLength", json!(d.max_string_length));
            }
            "number" | "integer" => {
                let integer = t == "integer";
                let edge = |x: f64| if integer { json!(x as i64) } else { json!(x) };
                if !map.contains_key("minimum") && !map.contains_key("exclusiveMinimum") {
                    self.apply(map, pointer, "minimum", edge(d.number_minimum));
                }
                if !map.contains_key("maximum") && !map.contains_key("exclusiveMaximum") {
                    self.apply(map, pointer, "maximum", edge(d.number_maximum));
                }
            }
            "array" => {
                if !map.contains_key("items") {
                    self.problem(
                        pointer,
                        "array without `items`: its elements are any JSON value, which cannot be bounded",
                    );
                }
                if !map.contains_key("maxItems") {
                    self.apply(map, pointer, "maxItems", json!(d.max_items));
                }
            }
            "object" => {
                if map.contains_key("patternProperties") {
                    self.problem(
                        pointer,
                        "`patternProperties`: an object with open-ended keys cannot be bounded",
                    );
                }
                let open = !matches!(map.get("additionalProperties"), Some(Value::Bool(false)));
                let parts = ["anyOf", "oneOf", "allOf", "$ref"]
                    .iter()
                    .any(|k| map.contains_key(*k));
                if open && !parts && !map.contains_key("properties") && !map.contains_key("patternProperties")
                {
                    return self.problem(
                        pointer,
                        "an object without `properties`: its keys are open-ended, which cannot be bounded",
                    );
                }
                match map.get("additionalProperties") {
                    Some(Value::Bool(false)) => {}
                    None | Some(Value::Bool(true)) => {
                        self.apply(map, pointer, "additionalProperties", json!(false));
                    }
                    Some(_) => self.problem(
                        pointer,
                        "`additionalProperties` is a schema: a map with open-ended keys cannot be bounded",
                    ),
                }
            }
            _ => {}
        }
    }

    fn children(&mut self, map: &mut Map<String, Value>, pointer: &str) {
        for container in ["properties", "$defs", "definitions"] {
            if let Some(Value::Object(props)) = map.get_mut(container) {
                for (name, sub) in props.iter_mut() {
                    self.node(sub, &format!("{pointer}/{container}/{}", escape(name)));
                }
            }
        }
        if let Some(items) = map.get_mut("items") {
            self.node(items, &format!("{pointer}/items"));
        }
        for key in ["prefixItems", "anyOf", "oneOf", "allOf"] {
            if let Some(Value::Array(subs)) = map.get_mut(key) {
                for (i, sub) in subs.iter_mut().enumerate() {
                    self.node(sub, &format!("{pointer}/{key}/{i}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(schema: Value, expected: Result<(), &str>) {
        let got = check_bounds(&schema).map_err(|(p, _)| p);
        assert_eq!(got, expected.map_err(str::to_owned), "{schema}");
    }

    #[test]
    fn bounds_as_written() {
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

    /// A purchase order as an ERP exports it: plain types, nothing bounded.
    fn purchase_order() -> Value {
        json!({
            "type": "object",
            "properties": {
                "po_number": {"type": "string"},
                "order_date": {"type": "string", "format": "date"},
                "supplier": {"type": "object", "properties": {"name": {"type": "string"}, "tax_code": {"type": ["string", "null"]}}},
                "lines": {"type": "array", "items": {"type": "object", "properties": {
                    "sku": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}, "price": {"type": "number"}
                }}},
                "status": {"enum": ["open", "closed"]}
            }
        })
    }

    #[test]
    fn a_schema_as_users_write_it_gets_every_default_and_says_where() {
        let (bounded, applied) = bound(&purchase_order(), &BoundDefaults::default()).expect("bounded");
        let got: Vec<(&str, &str)> = applied.iter().map(|a| (a.pointer.as_str(), a.keyword)).collect();
        assert_eq!(
            got,
            vec![
                ("", "additionalProperties"),
                ("/properties/po_number", "maxLength"),
                ("/properties/order_date", "maxLength"),
                ("/properties/supplier", "additionalProperties"),
                ("/properties/supplier/properties/name", "maxLength"),
                ("/properties/supplier/properties/tax_code", "maxLength"),
                ("/properties/lines", "maxItems"),
                ("/properties/lines/items", "additionalProperties"),
                ("/properties/lines/items/properties/sku", "maxLength"),
                ("/properties/lines/items/properties/qty", "maximum"),
                ("/properties/lines/items/properties/price", "minimum"),
                ("/properties/lines/items/properties/price", "maximum"),
            ]
        );
        assert_eq!(
            bounded["properties"]["lines"]["items"]["properties"]["qty"]["maximum"],
            json!(1_000_000_000_000_000i64)
        );
        assert_eq!(
            bounded["properties"]["lines"]["items"]["properties"]["qty"]["minimum"],
            json!(1),
            "kept"
        );
        assert!(check_bounds(&bounded).is_ok(), "bounded now");
        let small = BoundDefaults {
            max_string_length: 12,
            max_items: 3,
            ..BoundDefaults::default()
        };
        let (bounded, _) = bound(&purchase_order(), &small).expect("bounded");
        assert_eq!(bounded["properties"]["po_number"]["maxLength"], json!(12));
        assert_eq!(bounded["properties"]["lines"]["maxItems"], json!(3));
    }

    #[test]
    fn what_cannot_be_bounded_is_refused_all_at_once() {
        let schema = json!({
            "type": "object",
            "properties": {
                "anything": {},
                "also": true,
                "free": {"type": "object"},
                "list": {"type": "array"},
                "merged": {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}},
                                     {"type": "object", "properties": {"b": {"type": "string"}}}]},
                "beside": {"$ref": "#/$defs/x", "properties": {"c": {"type": "string"}}},
                "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                "codes": {"type": "object", "patternProperties": {"^x": {"type": "string"}}},
                "ok": {"type": "string"}
            }
        });
        let problems = bound(&schema, &BoundDefaults::default()).expect_err("refused");
        let pointers: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            pointers,
            vec![
                "/properties/anything",
                "/properties/also",
                "/properties/free",
                "/properties/list",
                "/properties/merged",
                "/properties/beside",
                "/properties/tags",
                "/properties/codes",
            ]
        );
        // an allOf whose parts are bounded as written is fine
        let bounded_parts = json!({"allOf": [
            {"type": "object", "additionalProperties": false, "properties": {"a": {"type": "string", "maxLength": 3}}}
        ]});
        assert!(bound(&bounded_parts, &BoundDefaults::default()).is_ok());
    }

    #[test]
    fn defaults_are_validated() {
        assert!(BoundDefaults::default().validate().is_ok());
        for bad in [
            BoundDefaults {
                max_string_length: 0,
                ..BoundDefaults::default()
            },
            BoundDefaults {
                max_items: 0,
                ..BoundDefaults::default()
            },
            BoundDefaults {
                number_minimum: 5.0,
                number_maximum: 5.0,
                ..BoundDefaults::default()
            },
            BoundDefaults {
                number_maximum: f64::INFINITY,
                ..BoundDefaults::default()
            },
            BoundDefaults {
                number_maximum: 1e300,
                ..BoundDefaults::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
