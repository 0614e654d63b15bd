//! Schema loading: any bytes as an extraction JSON Schema (bounds, checks, the grammar for
//! constrained decoding), then checking an empty object against what loaded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vinscan_schema::Schema;

fuzz_target!(|data: &[u8]| {
    if let Ok(schema) = Schema::from_bytes("fuzz.schema.json", data) {
        let _ = schema.grammar();
        let _ = schema.violations(&serde_json::json!({}));
    }
});
