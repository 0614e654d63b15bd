//! Where inputs come from and outputs go: `s3://bucket/prefix` or a local path.

use std::path::PathBuf;
use std::sync::Arc;

#[cfg(feature = "s3")]
use crate::S3Store;
use crate::{LocalStore, ObjectStore, S3Config, S3Uri, StorageError, StorageErrorKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3(S3Uri),
}

impl Location {
    /// `s3://bucket[/prefix]` (checked as [`S3Uri`] checks it) or a filesystem path.
    pub fn parse(s: &str) -> Result<Self, StorageError> {
        if s.starts_with("s3://") {
            s.parse()
                .map(Self::S3)
                .map_err(|e| StorageError::new(StorageErrorKind::InvalidKey, e.to_string()))
        } else {
            Ok(Self::Local(PathBuf::from(s)))
        }
    }

    /// As [`parse`](Self::parse), for a command-line argument that may not be UTF-8 (a local
    /// path's bytes are kept as they are).
    pub fn parse_os(s: &std::ffi::OsStr) -> Result<Self, StorageError> {
        match s.to_str() {
            Some(text) => Self::parse(text),
            None => Ok(Self::Local(PathBuf::from(s))),
        }
    }

    pub fn is_s3(&self) -> bool {
        matches!(self, Self::S3(_))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
            Self::S3(uri) => write!(f, "{uri}"),
        }
    }
}

/// The store a location lives in and the key prefix inside it. A local location's store is
/// rooted at the directory itself (prefix empty).
pub fn open_location(
    location: &Location,
    s3: &S3Config,
) -> Result<(Arc<dyn ObjectStore>, String), StorageError> {
    match location {
        Location::Local(dir) => Ok((Arc::new(LocalStore::new(dir.clone())), String::new())),
        #[cfg(feature = "s3")]
        Location::S3(uri) => Ok((Arc::new(S3Store::new(s3, uri.bucket())?), uri.prefix().to_owned())),
        #[cfg(not(feature = "s3"))]
        Location::S3(_) => {
            let _ = s3;
            Err(StorageError::new(
                StorageErrorKind::Other,
                format!("{location}: this vinscan was built without S3 support (cargo feature `s3`)"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        let s3 = |s: &str| Location::S3(s.parse().expect("uri"));
        let dir = Location::parse("s3://scans/2024/03/").expect("s3");
        assert_eq!(dir, s3("s3://scans/2024/03/"));
        let Location::S3(uri) = &dir else {
            panic!("{dir:?}")
        };
        assert_eq!(uri.prefix(), "2024/03");
        assert_eq!(Location::parse("s3://scans").expect("s3"), s3("s3://scans"));
        assert_eq!(
            Location::parse("./in").expect("local"),
            Location::Local("./in".into())
        );
        assert!(Location::parse("s3://UPPER/x").is_err());
        assert!(Location::parse("s3://").is_err());
    }

    #[cfg(not(feature = "s3"))]
    #[test]
    fn s3_locations_need_the_s3_feature() {
        let location = Location::parse("s3://scans/in").expect("s3");
        let err = open_location(&location, &S3Config::default()).expect_err("no S3 backend");
        assert!(err.to_string().contains("feature `s3`"), "{err}");
        assert!(!err.is_retryable());
    }
}
