//! What vinscan checks in the projector file before handing it to mtmd.

use std::path::Path;

use llama_cpp_2::gguf::GgufContext;
use vinscan_core::{Error, ErrorKind, Result};

/// Projector facts that drive tiling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectorMeta {
    pub projector_type: String,
    pub image_size: u32,
    /// `clip.vision.preproc_max_tiles`; mtmd assumes 12 when the key is absent.
    pub max_tiles: u32,
}

/// Reads the projector's metadata and refuses anything but an InternVL-family projector.
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
    let image_size =
        u32_of("clip.vision.image_size").ok_or_else(|| config("no clip.vision.image_size".into()))?;
    if image_size != vinscan_core::tiling::TILE_SIZE {
        return Err(config(format!(
            "vision input is {image_size} px; Vintern tiles are 448 px"
        )));
    }
    let max_tiles = u32_of("clip.vision.preproc_max_tiles").unwrap_or(12);
    Ok(ProjectorMeta {
        projector_type,
        image_size,
        max_tiles,
    })
}
