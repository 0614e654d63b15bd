//! Error kinds: the small enum that decides retry versus dead-letter, never the message text.

use std::fmt;

/// What went wrong, as far as a caller deciding what to do next cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The input is malformed, corrupt, truncated or of the wrong type.
    InvalidInput,
    /// The input is of a type or variant vinscan does not handle (e.g. an encrypted PDF).
    Unsupported,
    /// The input exceeds a configured limit (bytes, pixels, pages).
    TooLarge,
    /// The input does not exist.
    NotFound,
    /// The model produced output that does not conform to the schema.
    InvalidOutput,
    /// A passing failure (IO hiccup, busy resource): trying again may succeed.
    Transient,
    /// Configuration is wrong (pipeline, schema, model files): fix it, then retry.
    Config,
    /// A bug or an unexpected state in vinscan or a native library.
    Internal,
}

impl ErrorKind {
    /// Whether retrying the same job could succeed without anyone changing anything.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Transient)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid_input",
            Self::Unsupported => "unsupported",
            Self::TooLarge => "too_large",
            Self::NotFound => "not_found",
            Self::InvalidOutput => "invalid_output",
            Self::Transient => "transient",
            Self::Config => "config",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error of the extraction pipeline: a kind plus a message that names the input and reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with `context` prepended to its message (e.g. the file name).
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }

    pub fn from_io(e: &std::io::Error, what: impl fmt::Display) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => ErrorKind::InvalidInput,
            std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut => ErrorKind::Transient,
            _ => ErrorKind::Transient,
        };
        Self::new(kind, format!("{what}: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
