//! `s3://bucket[/key]`: the one parser of S3 locations. Job messages, routes, the daemon's
//! default output, `batch` and `enqueue` all take this type, so they agree on what a valid
//! location is.

use std::fmt;
use std::str::FromStr;

/// An S3 location: a bucket and a key — an object's key, kept exactly as written, or a prefix
/// ([`prefix`](Self::prefix) drops its surrounding `/`).
///
/// Bucket names follow AWS's rules for general-purpose buckets (S3 User Guide, "Bucket naming
/// rules"): 3–63 characters of lowercase letters, digits, `-` and `.`, starting and ending with a
/// letter or digit, no `..`. Keys are kept as written, minus surrounding slashes; whether a key
/// may be written is [`crate::check_key`]'s decision, made by every store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct S3Uri {
    bucket: String,
    key: String,
}

/// Why a string is not an `s3://` location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an s3://bucket[/key] location: {reason}")]
pub struct S3UriError {
    pub input: String,
    pub reason: String,
}

impl S3Uri {
    /// A location from its parts; the bucket is checked as [`FromStr`] checks it.
    pub fn new(bucket: &str, key: &str) -> Result<Self, S3UriError> {
        check_bucket(bucket).map_err(|reason| S3UriError {
            input: format!("s3://{bucket}/{key}"),
            reason,
        })?;
        Ok(Self {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key exactly as written after `s3://bucket/` (an object's key may hold any `/`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The key as a prefix: without leading or trailing `/` (empty for the whole bucket).
    pub fn prefix(&self) -> &str {
        self.key.trim_matches('/')
    }

    /// The object `key` of this location's bucket (a key from a listing, already under the
    /// prefix).
    pub fn join_object(&self, key: &str) -> Self {
        Self {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
        }
    }

    /// This location with `rest` appended under it (`/`-joined).
    pub fn join(&self, rest: &str) -> Self {
        Self {
            bucket: self.bucket.clone(),
            key: crate::join_key(self.prefix(), rest.trim_start_matches('/')),
        }
    }
}

fn check_bucket(bucket: &str) -> Result<(), String> {
    let bytes = bucket.as_bytes();
    if !(3..=63).contains(&bytes.len()) {
        return Err(format!("bucket {bucket:?} must be 3 to 63 characters"));
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
    {
        return Err(format!(
            "bucket {bucket:?} may hold only lowercase letters, digits, '-' and '.'"
        ));
    }
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(edge) || !bytes.last().is_some_and(edge) {
        return Err(format!(
            "bucket {bucket:?} must start and end with a letter or digit"
        ));
    }
    if bucket.contains("..") {
        return Err(format!("bucket {bucket:?} contains '..'"));
    }
    Ok(())
}

impl FromStr for S3Uri {
    type Err = S3UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| S3UriError {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| err("it does not start with s3://"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket).map_err(|reason| err(&reason))?;
        Ok(Self {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }
}

impl TryFrom<String> for S3Uri {
    type Error = S3UriError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<S3Uri> for String {
    fn from(u: S3Uri) -> Self {
        u.to_string()
    }
}

impl fmt::Display for S3Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<(&str, &str), &str>) {
        match (input.parse::<S3Uri>(), expected) {
            (Ok(u), Ok((bucket, prefix))) => {
                assert_eq!((u.bucket(), u.prefix()), (bucket, prefix), "{input}");
                // what it prints parses back to itself
                assert_eq!(u.to_string().parse::<S3Uri>().as_ref(), Ok(&u));
            }
            (Err(e), Err(fragment)) => assert!(e.to_string().contains(fragment), "{input}: {e}"),
            (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parses_the_forms_users_write() {
        check("s3://scans", Ok(("scans", "")));
        check("s3://scans/", Ok(("scans", "")));
        check("s3://scans/2024/03/", Ok(("scans", "2024/03")));
        check("s3://src/a/hoá đơn.jpg", Ok(("src", "a/hoá đơn.jpg")));
        check("s3://my.bucket-1/x", Ok(("my.bucket-1", "x")));
    }

    #[test]
    fn refuses_what_aws_refuses() {
        check("/tmp/out", Err("s3://"));
        check("file:///tmp", Err("s3://"));
        check("s3://", Err("3 to 63"));
        check("s3:///d", Err("3 to 63"));
        check("s3://ab/x", Err("3 to 63"));
        check("s3://Results/x", Err("lowercase"));
        check("s3://under_score", Err("lowercase"));
        check("s3://-edge", Err("start and end"));
        check("s3://a..b", Err("'..'"));
        check(&format!("s3://{}", "a".repeat(64)), Err("3 to 63"));
    }

    /// Regression: keys were trimmed of slashes, so `s3://b//x.png` read `x.png`, another object.
    #[test]
    fn object_keys_are_kept_as_written() {
        let u: S3Uri = "s3://src//x.png".parse().expect("uri");
        assert_eq!((u.key(), u.prefix()), ("/x.png", "x.png"));
        let dir: S3Uri = "s3://src/a/".parse().expect("uri");
        assert_eq!((dir.key(), dir.prefix()), ("a/", "a"));
        assert_eq!(dir.to_string(), "s3://src/a/");
    }

    #[test]
    fn joins_and_round_trips_through_serde() {
        let u: S3Uri = "s3://out/results/".parse().expect("uri");
        assert_eq!(u.join("a/b.json").to_string(), "s3://out/results/a/b.json");
        let bucket: S3Uri = "s3://out".parse().expect("uri");
        assert_eq!(bucket.join("/x").to_string(), "s3://out/x");
        let json = serde_json_like(&u);
        assert_eq!(json, "s3://out/results/");
        assert!(S3Uri::try_from("s3://UP/x".to_owned()).is_err());
    }

    fn serde_json_like(u: &S3Uri) -> String {
        String::from(u.clone())
    }
}
