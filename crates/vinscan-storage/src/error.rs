//! Storage errors: a kind that decides retry versus dead-letter, and a message.

/// What kind of storage failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    NotFound,
    /// The object is bigger than the caller accepts.
    TooLarge,
    /// The key could escape the store's root or is malformed.
    InvalidKey,
    /// Credentials or permissions refuse the request.
    Denied,
    /// The object no longer has the version the caller asked for: overwritten since its ETag
    /// was taken (HTTP 412), an unknown version id (`NoSuchVersion`), or a store that keeps no
    /// versions. Retrying cannot help; the newer version has jobs of its own.
    Superseded,
    /// Throttling, timeouts, connection failures, 5xx: retrying may succeed.
    Transient,
    /// Anything else the store refused (an unknown 4xx, a request it cannot serve): retrying
    /// the same request cannot help.
    Other,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StorageError {
    pub kind: StorageErrorKind,
    pub message: String,
}

impl StorageError {
    pub fn new(kind: StorageErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == StorageErrorKind::Transient
    }
}

impl StorageError {
    pub(crate) fn io(e: &std::io::Error, what: impl std::fmt::Display) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e.kind() {
            K::NotFound => StorageErrorKind::NotFound,
            K::PermissionDenied => StorageErrorKind::Denied,
            K::Interrupted | K::TimedOut | K::WouldBlock | K::ResourceBusy | K::StorageFull => {
                StorageErrorKind::Transient
            }
            _ => StorageErrorKind::Other,
        };
        Self::new(kind, format!("{what}: {e}"))
    }
}
