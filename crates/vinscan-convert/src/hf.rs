//! A Hugging Face checkpoint directory: `config.json`, `*.safetensors` (one file or shards
//! listed by `model.safetensors.index.json`), memory-mapped and read tensor by tensor.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use super::ConvertError;

pub fn read_json(path: &Path) -> Result<Value, ConvertError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConvertError::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| ConvertError::Invalid(format!("{}: not valid JSON: {e}", path.display())))
}

/// Where one tensor's bytes are.
struct Entry {
    shard: usize,
    /// Byte range in the shard's mapping.
    range: std::ops::Range<usize>,
    shape: Vec<usize>,
    dtype: Dtype,
}

/// Every tensor of the checkpoint, indexed once when the shards are opened.
pub struct Checkpoint {
    shards: Vec<Mmap>,
    index: BTreeMap<String, Entry>,
}

impl Checkpoint {
    pub fn open(dir: &Path) -> Result<Self, ConvertError> {
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index_path.is_file() {
            let index = read_json(&index_path)?;
            let map = index
                .get("weight_map")
                .and_then(Value::as_object)
                .ok_or_else(|| ConvertError::Invalid(format!("{}: no weight_map", index_path.display())))?;
            let mut names: Vec<&str> = map.values().filter_map(Value::as_str).collect();
            names.sort_unstable();
            names.dedup();
            names.into_iter().map(|n| dir.join(n)).collect()
        } else if dir.join("model.safetensors").is_file() {
            vec![dir.join("model.safetensors")]
        } else {
            return Err(ConvertError::Invalid(format!(
                "{}: no model.safetensors or model.safetensors.index.json (PyTorch .bin checkpoints are not read; save with safetensors)",
                dir.display()
            )));
        };
        let mut shards = Vec::new();
        let mut index = BTreeMap::new();
        for (i, path) in files.iter().enumerate() {
            let file = File::open(path).map_err(|e| ConvertError::io(path, e))?;
            // SAFETY: the file is only read; a checkpoint modified while converting is the
            // caller's problem, as with every mmap-based converter.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| ConvertError::io(path, e))?;
            let st = SafeTensors::deserialize(&map).map_err(|e| {
                ConvertError::Invalid(format!("{}: not a safetensors file: {e}", path.display()))
            })?;
            let base = map.as_ptr() as usize;
            for (name, view) in st.tensors() {
                let start = view.data().as_ptr() as usize - base;
                let entry = Entry {
                    shard: i,
                    range: start..start + view.data().len(),
                    shape: view.shape().to_vec(),
                    dtype: view.dtype(),
                };
                index.insert(name, entry);
            }
            shards.push(map);
        }
        Ok(Self { shards, index })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.index.get(name).map(|e| e.shape.as_slice())
    }

    /// The tensor as f32 values, row-major.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>, ConvertError> {
        self.read_f32_part(name, 0, 1)
    }

    /// Part `k` of `parts` equal slices along the first axis (a fused q/k/v tensor's third),
    /// decoded without touching the rest.
    pub fn read_f32_part(&self, name: &str, k: usize, parts: usize) -> Result<Vec<f32>, ConvertError> {
        let e = self
            .index
            .get(name)
            .ok_or_else(|| ConvertError::MissingTensor(name.to_owned()))?;
        let bytes = &self.shards[e.shard][e.range.clone()];
        let len = bytes.len() / parts;
        let bytes = &bytes[k * len..(k + 1) * len];
        let values = match e.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(ConvertError::Invalid(format!(
                    "{name}: dtype {other:?} is not supported (F32, F16, BF16)"
                )));
            }
        };
        Ok(values)
    }
}
