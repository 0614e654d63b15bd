//! Where inputs come from and outputs go: `s3://bucket/prefix` or a local path.

use std::path::PathBuf;
use std::sync::Arc;

#[cfg(feature = "s3")]
use crate::S3Store;
use crate::{LocalStore, ObjectStore, S3Config, StorageError, StorageErrorKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// `s3://bucket[/prefix]` or a filesystem path.
    pub fn parse(s: &str) -> Result<Self, StorageError> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid = (3..=63).contains(&bucket.len())
                && bucket
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
            if !valid {
                return Err(StorageError::new(
                    StorageErrorKind::InvalidKey,
                    format!("{s}: invalid bucket name {bucket:?}"),
                ));
            }
            Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_end_matches('/').to_owned(),
            })
        } else {
            Ok(Self::Local(PathBuf::from(s)))
        }
    }

    pub fn is_s3(&self) -> bool {
        matches!(self, Self::S3 { .. })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
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
        Location::S3 { bucket, prefix } => Ok((Arc::new(S3Store::new(s3, bucket)?), prefix.clone())),
        #[cfg(not(feature = "s3"))]
        Location::S3 { .. } => {
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
        assert_eq!(
            Location::parse("s3://scans/2024/03/").expect("s3"),
            Location::S3 {
                bucket: "scans".into(),
                prefix: "2024/03".into()
            }
        );
        assert_eq!(
            Location::parse("s3://scans").expect("s3"),
            Location::S3 {
                bucket: "scans".into(),
                prefix: String::new()
            }
        );
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
