//! How to reach an S3-compatible service: plain data read from the environment, compiled with or
//! without the `s3` feature (the AWS SDK), so callers can name it either way.

use std::time::Duration;

/// How to reach the S3 service. Secrets are never printed (`Debug` masks them).
#[derive(Clone, Default)]
pub struct S3Config {
    /// Custom endpoint (MinIO, Garage, s3s-fs, …); `None` for AWS.
    pub endpoint: Option<String>,
    pub region: String,
    /// Path-style addressing (`endpoint/bucket/key`), which most non-AWS servers need.
    pub path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Longest single request attempt (the SDK retries timed-out attempts, then vinscan's
    /// retries take over); default 60 s.
    pub attempt_timeout: Option<Duration>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// From the environment: `VINSCAN_S3_ENDPOINT` (or `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`),
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`, default us-east-1), `VINSCAN_S3_PATH_STYLE`
    /// (default: on when an endpoint is set), `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let endpoint = var("VINSCAN_S3_ENDPOINT")
            .or_else(|| var("AWS_ENDPOINT_URL_S3"))
            .or_else(|| var("AWS_ENDPOINT_URL"));
        let path_style = var("VINSCAN_S3_PATH_STYLE").map_or(endpoint.is_some(), |v| {
            matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
        });
        Self {
            region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            endpoint,
            path_style,
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
            attempt_timeout: None,
        }
    }
}
