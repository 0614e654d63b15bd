//! Why a conversion was refused or failed.

use std::path::Path;

/// Why a conversion was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Invalid(String),
    #[error("unsupported architecture: {0}")]
    UnknownArchitecture(String),
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
    #[error("missing tensor {0}")]
    MissingTensor(String),
    #[error("tensor {name} has shape {found:?}, expected {expected:?}")]
    Shape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("quantisation failed: {0}")]
    Quantize(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ConvertError {
    pub(crate) fn io(path: &Path, e: std::io::Error) -> Self {
        Self::Io(format!("{}: {e}", path.display()))
    }
}
