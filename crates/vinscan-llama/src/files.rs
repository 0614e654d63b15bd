//! What vinscan checks in the projector file before handing it to mtmd.

use std::path::Path;

use llama_cpp_2::gguf::GgufContext;
use vinscan_core::model::projector_keys;
use vinscan_core::{Error, ErrorKind, Result};

/// Projector facts that drive tiling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectorMeta {
    pub projector_type: String,
    pub image_size: u32,
    /// `clip.vision.preproc_max_tiles`; mtmd assumes 12 when the key is absent.
    pub max_tiles: u32,
    /// Embedding tokens per image: `(image_size / clip.vision.patch_size)²` patches, pixel
    /// shuffled by `clip.vision.projector.scale_factor` (2 when absent), as
    /// `clip_n_output_tokens` computes it for InternVL in llama.cpp's `tools/mtmd/clip.cpp`.
    pub tokens_per_image: u32,
    /// The weights' type from `general.file_type` (`f16`, `q8_0`, …); `None` when the key is
    /// absent or names a type vinscan does not know.
    pub weight_type: Option<&'static str>,
    /// Whether the position table is in the graph's order (vinscan's
    /// [`projector_keys::POSITION_ORDER`] key): `false` for a file from llama.cpp's converter,
    /// whose patches each get their neighbour's position (docs/FIDELITY.md).
    pub class_row_last: bool,
    /// [`projector_keys::REPAIRED_FROM`]: the file `vinscan model repair` made this one from.
    pub repaired_from: Option<String>,
}

/// Checks, from its header alone, that `path` is a GGUF language model (not a projector, not
/// another file), so a bad `--text-model` is refused before any page is read rather than by
/// every document's first read.
///
/// # Errors
/// `Config` naming the file and what is wrong with it.
pub fn check_text_model_file(path: &Path) -> Result<()> {
    let config = |m: &str| Error::new(ErrorKind::Config, format!("text model {}: {m}", path.display()));
    let gguf = GgufContext::from_file(path).ok_or_else(|| config("not a GGUF file"))?;
    let i = gguf.find_key("general.architecture");
    // ggml aborts the process when a value is read as the wrong type: check the type first
    let arch = (i >= 0 && gguf.kv_type(i) == llama_cpp_sys_2::GGUF_TYPE_STRING)
        .then(|| gguf.val_str(i))
        .flatten()
        .ok_or_else(|| config("no general.architecture key: not a model llama.cpp can load"))?;
    if arch == "clip" {
        return Err(config("a multimodal projector (mmproj), not a language model"));
    }
    Ok(())
}

/// The context the language model at `path` was trained with (`<architecture>.context_length`,
/// llama.cpp's `LLM_KV_CONTEXT_LENGTH`), in tokens; `None` when the file does not say.
pub fn trained_context(path: &Path) -> Option<u32> {
    let gguf = GgufContext::from_file(path)?;
    let i = gguf.find_key("general.architecture");
    // ggml aborts the process when a value is read as the wrong type: check types first
    let arch = (i >= 0 && gguf.kv_type(i) == llama_cpp_sys_2::GGUF_TYPE_STRING)
        .then(|| gguf.val_str(i))
        .flatten()?;
    let i = gguf.find_key(&format!("{arch}.context_length"));
    (i >= 0 && gguf.kv_type(i) == llama_cpp_sys_2::GGUF_TYPE_UINT32).then(|| gguf.val_u32(i))
}

/// InternViT's position table, as llama.cpp names it (`TN_POS_EMBD` in `tools/mtmd/clip-impl.h`).
const POSITION_TABLE: &str = "v.position_embd.weight";

/// The ggml type of tensor `name` in the GGUF file at `path`; `None` when the file cannot be
/// read or has no such tensor. llama-cpp-2's `GgufContext` reads keys only, so this opens the
/// file's header through the raw gguf API (metadata only: `no_alloc`, no tensor data read).
fn tensor_type(path: &Path, name: &str) -> Option<llama_cpp_sys_2::ggml_type> {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let name = std::ffi::CString::new(name).ok()?;
    let params = llama_cpp_sys_2::gguf_init_params {
        no_alloc: true,
        ctx: std::ptr::null_mut(),
    };
    // SAFETY: both strings are NUL-terminated and outlive the calls; with `ctx` null gguf
    // allocates no ggml context; the gguf context is freed once, below, and not used after.
    unsafe {
        let ctx = llama_cpp_sys_2::gguf_init_from_file(path.as_ptr(), params);
        if ctx.is_null() {
            return None;
        }
        let id = llama_cpp_sys_2::gguf_find_tensor(ctx, name.as_ptr());
        let ty = (id >= 0).then(|| llama_cpp_sys_2::gguf_get_tensor_type(ctx, id));
        llama_cpp_sys_2::gguf_free(ctx);
        ty
    }
}

/// Reads the projector's metadata and refuses anything but an InternVL-family projector, or
/// one whose position table llama.cpp cannot add (anything but f32).
pub fn read_projector_meta(path: &Path) -> Result<ProjectorMeta> {
    let config = |m: String| Error::new(ErrorKind::Config, format!("{}: {m}", path.display()));
    if !path.is_file() {
        return Err(Error::new(
            ErrorKind::Config,
            format!("{}: mmproj file not found", path.display()),
        ));
    }
    let gguf = GgufContext::from_file(path).ok_or_else(|| config("not a GGUF file".into()))?;
    // ggml aborts the process when a value is read as the wrong type: check types first.
    let string = |key: &str| {
        let i = gguf.find_key(key);
        (i >= 0 && gguf.kv_type(i) == llama_cpp_sys_2::GGUF_TYPE_STRING)
            .then(|| gguf.val_str(i).map(str::to_owned))
            .flatten()
    };
    let u32_of = |key: &str| {
        let i = gguf.find_key(key);
        if i < 0 {
            return None;
        }
        match gguf.kv_type(i) {
            llama_cpp_sys_2::GGUF_TYPE_UINT32 => Some(gguf.val_u32(i)),
            llama_cpp_sys_2::GGUF_TYPE_INT32 => u32::try_from(gguf.val_i32(i)).ok(),
            _ => None,
        }
    };
    if string("general.architecture").as_deref() != Some("clip") {
        return Err(config(
            "not a multimodal projector (general.architecture is not \"clip\")".into(),
        ));
    }
    let projector_type = string("clip.projector_type")
        .or_else(|| string("clip.vision.projector_type"))
        .ok_or_else(|| config("no clip.projector_type key".into()))?;
    if projector_type != "internvl" {
        return Err(config(format!(
            "projector type {projector_type:?} is not \"internvl\": vinscan runs Vintern / InternVL models"
        )));
    }
    if let Some(ty) = tensor_type(path, POSITION_TABLE)
        && ty != llama_cpp_sys_2::GGML_TYPE_F32
    {
        return Err(config(format!(
            "{POSITION_TABLE} is {}: llama.cpp's InternVL graph adds it to f32 activations and aborts the process on any other type; convert the projector again (`vinscan model convert` writes an f32 table)",
            match ty {
                llama_cpp_sys_2::GGML_TYPE_F16 => "f16".to_owned(),
                llama_cpp_sys_2::GGML_TYPE_BF16 => "bf16".to_owned(),
                llama_cpp_sys_2::GGML_TYPE_Q8_0 => "q8_0".to_owned(),
                other => format!("ggml type {other}"),
            }
        )));
    }
    let image_size =
        u32_of("clip.vision.image_size").ok_or_else(|| config("no clip.vision.image_size".into()))?;
    if image_size != vinscan_core::tiling::TILE_SIZE {
        return Err(config(format!(
            "vision input is {image_size} px; Vintern tiles are 448 px"
        )));
    }
    let max_tiles = u32_of("clip.vision.preproc_max_tiles").unwrap_or(12);
    let patch = u32_of("clip.vision.patch_size")
        .filter(|p| *p > 0 && image_size % p == 0)
        .ok_or_else(|| config("no clip.vision.patch_size dividing the image size".into()))?;
    let scale = u32_of("clip.vision.projector.scale_factor").unwrap_or(2).max(1);
    let tokens_per_image = (image_size / patch).pow(2) / (scale * scale);
    Ok(ProjectorMeta {
        projector_type,
        image_size,
        max_tiles,
        tokens_per_image,
        weight_type: u32_of("general.file_type").and_then(crate::tools::file_type_name),
        class_row_last: string(projector_keys::POSITION_ORDER).as_deref() == Some(projector_keys::CLASS_LAST),
        repaired_from: string(projector_keys::REPAIRED_FROM),
    })
}

/// Floating-point operations the vision encoder spends on one 448 px tile, from the projector's
/// hyper-parameters: every transformer layer's matrix products over the patches and the class
/// token (q, k, v, output, two MLP layers) plus attention's two products, then the MLP
/// projector on the pixel-shuffled tokens. `None` when a key is missing.
pub fn vision_flops_per_tile(path: &Path) -> Option<f64> {
    let gguf = GgufContext::from_file(path)?;
    let u = |key: &str| {
        let i = gguf.find_key(key);
        (i >= 0).then(|| f64::from(gguf.val_u32(i)))
    };
    let layers = u("clip.vision.block_count")?;
    let d = u("clip.vision.embedding_length")?;
    let ff = u("clip.vision.feed_forward_length")?;
    let patch = u("clip.vision.patch_size")?;
    let side = u("clip.vision.image_size")?;
    let llm = u("clip.vision.projection_dim")?;
    let n = (side / patch).powi(2) + 1.0;
    let per_layer = n * (4.0 * d * d + 2.0 * d * ff) + 2.0 * n * n * d;
    // pixel shuffle 0.5: a quarter of the patches, each 4·d wide, through 4d → llm → llm
    let projector = (n - 1.0) / 4.0 * (4.0 * d * llm + llm * llm);
    Some(2.0 * (layers * per_layer + projector))
}
