//! Storage failures as the pipeline's error kinds, the vocabulary of a dead letter's and a
//! manifest's `error.kind`: the one mapping the daemon and `batch` use, so that what is retried
//! and what is dead-lettered is decided in one place.

use vinscan_core::{Error, ErrorKind};
use vinscan_storage::{StorageError, StorageErrorKind};

/// The pipeline's kind for a storage failure: throttling, timeouts, 5xx and unreachable stores
/// are `Transient` (retried); a missing object `NotFound`; an oversized one `TooLarge`; a key
/// that cannot be stored, or any other refusal (an unknown 4xx), `InvalidInput`, the job's own
/// fault; refused credentials `Config`; a version that is gone `Superseded`.
pub fn pipeline_kind(kind: StorageErrorKind) -> ErrorKind {
    match kind {
        StorageErrorKind::NotFound => ErrorKind::NotFound,
        StorageErrorKind::TooLarge => ErrorKind::TooLarge,
        StorageErrorKind::InvalidKey => ErrorKind::InvalidInput,
        StorageErrorKind::Denied => ErrorKind::Config,
        StorageErrorKind::Superseded => ErrorKind::Superseded,
        StorageErrorKind::Transient => ErrorKind::Transient,
        StorageErrorKind::Other => ErrorKind::InvalidInput,
    }
}

/// A storage error as a pipeline error: the kind by [`pipeline_kind`], the message kept.
pub fn pipeline_error(e: StorageError) -> Error {
    Error::new(pipeline_kind(e.kind), e.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_storage_failures_are_retried() {
        use StorageErrorKind as S;
        for (storage, pipeline, retried) in [
            (S::Transient, ErrorKind::Transient, true),
            (S::NotFound, ErrorKind::NotFound, false),
            (S::TooLarge, ErrorKind::TooLarge, false),
            (S::InvalidKey, ErrorKind::InvalidInput, false),
            (S::Denied, ErrorKind::Config, false),
            (S::Superseded, ErrorKind::Superseded, false),
            // regression: an unknown 4xx (InvalidArgument, InvalidBucketName…) was retried for
            // the whole budget before being dead-lettered as "transient"
            (S::Other, ErrorKind::InvalidInput, false),
        ] {
            let e = pipeline_error(StorageError::new(storage, "x"));
            assert_eq!(e.kind(), pipeline, "{storage:?}");
            assert_eq!(e.kind().is_retryable(), retried, "{storage:?}");
            assert_eq!(
                storage == S::Transient,
                StorageError::new(storage, "x").is_retryable()
            );
        }
    }
}
