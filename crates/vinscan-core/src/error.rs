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
    /// The engine is gone (the model thread ended after a panic): not the document's fault, and
    /// nothing in this process can do the work any more. The daemon abandons the work
    /// uncommitted and exits, so the orchestrator restarts it and the work is redelivered.
    Unavailable,
    /// The source no longer has the version the job names (re-uploaded under the same key):
    /// the newer version has its own job. Neither retried nor dead-lettered.
    Superseded,
    /// The caller cancelled the work (shutdown): it was left undone, to be redone.
    Cancelled,
    /// The work ran past its time limit (the pipeline's `max_seconds_per_page` times the
    /// pages, capped by the daemon's `job_timeout_s`) and was cancelled.
    Timeout,
    /// The process died every time it worked on this input (a native abort, the OOM killer),
    /// as many times as the daemon allows (`max_starts`): the input is set aside so the rest
    /// of its partition moves on.
    Crashed,
}

impl ErrorKind {
    /// Whether retrying the same job could succeed without anyone changing anything.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Transient)
    }

    /// Whether the failure says something about the job's input (so recording it as the job's
    /// outcome is right), rather than about this process (`Unavailable`, `Cancelled`: the job
    /// must be redone elsewhere or later).
    pub fn is_job_outcome(self) -> bool {
        !matches!(self, Self::Unavailable | Self::Cancelled)
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
            Self::Unavailable => "unavailable",
            Self::Superseded => "superseded",
            Self::Cancelled => "cancelled",
            Self::Timeout => "timeout",
            Self::Crashed => "crashed",
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

    /// An IO failure on `what`, by kind: a missing file is `NotFound`; interruptions,
    /// timeouts, a busy resource or a full disk are `Transient`; anything about the file itself
    /// (permissions, a directory, bad data, a short read) is `InvalidInput`; the rest, which
    /// vinscan does not expect, is `Internal`.
    pub fn from_io(e: &std::io::Error, what: impl fmt::Display) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::Interrupted | K::TimedOut | K::WouldBlock | K::ResourceBusy | K::StorageFull => {
                ErrorKind::Transient
            }
            K::PermissionDenied
            | K::IsADirectory
            | K::NotADirectory
            | K::InvalidData
            | K::InvalidInput
            | K::UnexpectedEof
            | K::InvalidFilename
            | K::FileTooLarge => ErrorKind::InvalidInput,
            _ => ErrorKind::Internal,
        };
        Self::new(kind, format!("{what}: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_map_by_kind() {
        use std::io::ErrorKind as K;
        let check = |io: K, want: ErrorKind| {
            let e = Error::from_io(&std::io::Error::from(io), "x");
            assert_eq!(e.kind(), want, "{io:?}");
        };
        check(K::NotFound, ErrorKind::NotFound);
        check(K::TimedOut, ErrorKind::Transient);
        check(K::Interrupted, ErrorKind::Transient);
        check(K::PermissionDenied, ErrorKind::InvalidInput);
        check(K::IsADirectory, ErrorKind::InvalidInput);
        check(K::UnexpectedEof, ErrorKind::InvalidInput);
        check(K::Other, ErrorKind::Internal);
    }

    #[test]
    fn only_transient_is_retried_and_engine_failures_are_not_outcomes() {
        assert!(ErrorKind::Transient.is_retryable());
        assert!(!ErrorKind::Internal.is_retryable());
        assert!(!ErrorKind::Unavailable.is_job_outcome());
        assert!(!ErrorKind::Cancelled.is_job_outcome());
        assert!(ErrorKind::Superseded.is_job_outcome());
        assert!(ErrorKind::InvalidInput.is_job_outcome());
    }
}
