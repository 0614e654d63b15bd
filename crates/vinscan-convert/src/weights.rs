//! The weight types `--type` takes: the four vinscan writes itself, and with the `llama` feature
//! the types llama.cpp's quantiser makes from an f16 LLM (their names come from `vinscan-llama`,
//! so this crate's writer never names llama.cpp).

use std::str::FromStr;

use crate::gguf::TensorType;

/// The weight type of the output files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    F32,
    F16,
    /// bfloat16, the dtype Vintern's checkpoints are published in: lossless for them.
    BF16,
    Q8_0,
    /// Any other llama.cpp file type (`q4_k_m`, …), produced by llama.cpp's quantiser from an
    /// f16 LLM ([`vinscan_llama::quantize`]); the mmproj then stays f16.
    Llama {
        name: &'static str,
    },
}

/// The names of llama.cpp's quantised types this build accepts.
#[cfg(feature = "llama")]
fn llama_types() -> Vec<&'static str> {
    vinscan_llama::tools::quantize_types().collect()
}

/// Without llama.cpp there is no quantiser, so no quantised types.
#[cfg(not(feature = "llama"))]
fn llama_types() -> Vec<&'static str> {
    Vec::new()
}

impl FromStr for WeightType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        match lower.as_str() {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "bf16" => Ok(Self::BF16),
            "q8_0" => Ok(Self::Q8_0),
            other => {
                let names = llama_types();
                names
                    .iter()
                    .find(|n| **n == other)
                    .map(|name| Self::Llama { name })
                    .ok_or_else(|| {
                        format!(
                            "unknown weight type {s:?}: f32, f16, bf16, q8_0{}",
                            if names.is_empty() {
                                " (this build has no llama.cpp quantiser)".to_owned()
                            } else {
                                format!(", {}", names.join(", "))
                            }
                        )
                    })
            }
        }
    }
}

impl WeightType {
    /// The name `--type` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
            Self::Q8_0 => "q8_0",
            Self::Llama { name } => name,
        }
    }

    /// What vinscan itself writes: the final type, or f16 before llama.cpp quantises.
    pub(crate) fn written(self) -> TensorType {
        match self {
            Self::F32 => TensorType::F32,
            Self::F16 | Self::Llama { .. } => TensorType::F16,
            Self::BF16 => TensorType::BF16,
            Self::Q8_0 => TensorType::Q8_0,
        }
    }

    /// `general.file_type` (llama.cpp's `llama_ftype` numbers) of what vinscan writes.
    pub(crate) fn file_type(self) -> u32 {
        match self.written() {
            TensorType::F32 => 0,
            TensorType::F16 => 1,
            TensorType::Q8_0 => 7,
            TensorType::BF16 => 32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_types_parse() {
        assert_eq!("Q8_0".parse::<WeightType>(), Ok(WeightType::Q8_0));
        assert_eq!("bf16".parse::<WeightType>(), Ok(WeightType::BF16));
        assert_eq!(WeightType::BF16.file_type(), 32);
        assert_eq!(WeightType::Llama { name: "q4_k_m" }.file_type(), 1);
        let e = "q9".parse::<WeightType>().err().unwrap_or_default();
        assert!(e.contains("\"q9\"") && e.contains("q8_0"), "{e}");
    }

    /// The `general.file_type` numbers written here are llama.cpp's: each reads back, through
    /// the inference crate's table, under the name it was asked for.
    #[cfg(feature = "llama")]
    #[test]
    fn written_file_types_read_back_under_their_names() {
        for name in ["f32", "f16", "bf16", "q8_0"] {
            let w: WeightType = name.parse().expect("type");
            assert_eq!(vinscan_llama::tools::file_type_name(w.file_type()), Some(name));
            assert_eq!(w.name(), name);
        }
        assert_eq!(
            "q4_k_m".parse::<WeightType>(),
            Ok(WeightType::Llama { name: "q4_k_m" })
        );
    }
}
