//! What vinscan's tools off the serving path need from llama.cpp, so that they need not name it
//! for these: the file types and the quantiser (`vinscan-convert`), the backend and the prompt
//! text generation feeds it (the fidelity tracer in `vinscan-convert`).

use std::ffi::CString;
use std::path::Path;

use llama_cpp_sys_2 as sys;
use vinscan_core::{Error, ErrorKind, Result};

/// The file types (`llama_ftype`) the converter writes itself, by the name `--type` takes.
const WRITTEN: &[(&str, u32)] = &[
    ("f32", sys::LLAMA_FTYPE_ALL_F32),
    ("f16", sys::LLAMA_FTYPE_MOSTLY_F16),
    ("bf16", sys::LLAMA_FTYPE_MOSTLY_BF16),
    ("q8_0", sys::LLAMA_FTYPE_MOSTLY_Q8_0),
];

/// The file types of `llama_model_quantize` that vinscan accepts by name.
const QUANTISED: &[(&str, u32)] = &[
    ("q4_0", sys::LLAMA_FTYPE_MOSTLY_Q4_0),
    ("q4_1", sys::LLAMA_FTYPE_MOSTLY_Q4_1),
    ("q5_0", sys::LLAMA_FTYPE_MOSTLY_Q5_0),
    ("q5_1", sys::LLAMA_FTYPE_MOSTLY_Q5_1),
    ("q2_k", sys::LLAMA_FTYPE_MOSTLY_Q2_K),
    ("q3_k_s", sys::LLAMA_FTYPE_MOSTLY_Q3_K_S),
    ("q3_k_m", sys::LLAMA_FTYPE_MOSTLY_Q3_K_M),
    ("q3_k_l", sys::LLAMA_FTYPE_MOSTLY_Q3_K_L),
    ("q4_k_s", sys::LLAMA_FTYPE_MOSTLY_Q4_K_S),
    ("q4_k_m", sys::LLAMA_FTYPE_MOSTLY_Q4_K_M),
    ("q5_k_s", sys::LLAMA_FTYPE_MOSTLY_Q5_K_S),
    ("q5_k_m", sys::LLAMA_FTYPE_MOSTLY_Q5_K_M),
    ("q6_k", sys::LLAMA_FTYPE_MOSTLY_Q6_K),
];

/// The name of a `general.file_type` value (llama.cpp's `llama_ftype`) as `--type` takes it;
/// `None` for a type vinscan does not know.
pub fn file_type_name(file_type: u32) -> Option<&'static str> {
    WRITTEN
        .iter()
        .chain(QUANTISED)
        .find(|(_, t)| *t == file_type)
        .map(|(n, _)| *n)
}

/// The names of the types [`quantize`] produces (`q4_0`, `q4_k_m`, …).
pub fn quantize_types() -> impl Iterator<Item = &'static str> {
    QUANTISED.iter().map(|(n, _)| *n)
}

/// Quantises the GGUF model `input` to `type_name` (one of [`quantize_types`]) into `output`
/// with llama.cpp's quantiser (`llama_model_quantize`) on `threads` threads.
pub fn quantize(input: &Path, output: &Path, type_name: &str, threads: u32) -> Result<()> {
    let ftype = QUANTISED
        .iter()
        .find(|(n, _)| *n == type_name)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = quantize_types().collect();
            Error::new(
                ErrorKind::Config,
                format!(
                    "llama.cpp's quantiser has no type {type_name:?}: {}",
                    names.join(", ")
                ),
            )
        })?;
    init_backend()?;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_encoded_bytes())
            .map_err(|_| Error::new(ErrorKind::Config, format!("{}: path contains NUL", p.display())))
    };
    let (inp, out) = (c(input)?, c(output)?);
    // SAFETY: plain-data defaults from llama.cpp; the paths outlive the call.
    let rc = unsafe {
        let mut params = sys::llama_model_quantize_default_params();
        params.ftype = ftype;
        params.nthread = i32::try_from(threads).unwrap_or(1);
        sys::llama_model_quantize(inp.as_ptr(), out.as_ptr(), &params)
    };
    if rc != 0 {
        return Err(Error::new(
            ErrorKind::Internal,
            format!("llama_model_quantize({}) returned {rc}", input.display()),
        ));
    }
    Ok(())
}

/// Initialises llama.cpp's backend once per process, its logs routed to `tracing`, for code
/// that calls llama.cpp's C API itself.
pub fn init_backend() -> Result<()> {
    crate::logs_to_tracing();
    crate::engine::backend().map(|_| ())
}

/// The prompt text generation feeds llama.cpp for a page: ChatML as Vintern's template writes
/// it, mtmd's image marker first in the user turn.
pub fn chat_prompt(system: &str, user: &str) -> String {
    crate::prompt::chatml_prompt(system, user, 1)
}

/// mtmd's marker: where the image goes in a prompt.
pub fn image_marker() -> &'static str {
    llama_cpp_2::mtmd::mtmd_default_marker()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_types_have_one_name_each() {
        assert_eq!(file_type_name(sys::LLAMA_FTYPE_MOSTLY_Q4_K_M), Some("q4_k_m"));
        assert_eq!(file_type_name(sys::LLAMA_FTYPE_MOSTLY_BF16), Some("bf16"));
        // 4 is a retired llama_ftype: unknown values are not guessed
        assert_eq!(file_type_name(4), None);
        assert!(quantize_types().any(|n| n == "q6_k"));
        assert!(!quantize_types().any(|n| n == "q8_0"));
    }

    #[test]
    fn quantize_refuses_an_unknown_type_by_name() {
        let e = quantize(Path::new("in.gguf"), Path::new("out.gguf"), "q9", 1)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("\"q9\"") && e.contains("q4_k_m"), "{e}");
    }
}
