//! Pipeline files: any text as a pipeline TOML, parsed as `vinscan pipelines` and the catalog
//! read them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vinscan_core::pipeline::PipelineFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PipelineFile::parse("fuzz.toml", text);
    }
});
