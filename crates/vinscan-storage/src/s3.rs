//! Any S3-compatible store through `aws-sdk-s3`: custom endpoint, path-style addressing,
//! credentials from the environment or AWS's standard chain, timeouts, and the SDK's own retries underneath vinscan's.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_credential_types::provider::{ProvideCredentials, future};
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, timeout::TimeoutConfig};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::{Bytes, BytesMut};

use crate::{
    Object, ObjectMeta, ObjectStore, ObjectVersion, S3Config, StorageError, StorageErrorKind, check_key,
};

/// AWS's standard credential chain, built on first use (building it is async and may read
/// files), then cached by the SDK's identity cache.
#[derive(Debug)]
struct StandardChain {
    region: String,
    chain: tokio::sync::OnceCell<DefaultCredentialsChain>,
}

impl StandardChain {
    fn new(region: &str) -> Self {
        Self {
            region: region.to_owned(),
            chain: tokio::sync::OnceCell::new(),
        }
    }
}

impl ProvideCredentials for StandardChain {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let chain = self
                .chain
                .get_or_init(|| async {
                    DefaultCredentialsChain::builder()
                        .region(Region::new(self.region.clone()))
                        .build()
                        .await
                })
                .await;
            chain.provide_credentials().await
        })
    }
}

/// One S3 service: one SDK client (one connection pool, one credential cache) for every
/// bucket in it. [`S3Client::bucket`] hands out stores that share it, so naming many buckets
/// costs nothing per bucket.
#[derive(Debug, Clone)]
pub struct S3Client {
    client: aws_sdk_s3::Client,
}

impl S3Client {
    /// Builds the client; no request is made until a store is used.
    pub fn new(config: &S3Config) -> Result<Self, StorageError> {
        let mut b = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .force_path_style(config.path_style)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(config.attempt_timeout.unwrap_or(Duration::from_secs(60)))
                    .build(),
            );
        if let Some(ep) = &config.endpoint {
            b = b.endpoint_url(ep);
        }
        match (&config.access_key_id, &config.secret_access_key) {
            (Some(ak), Some(sk)) => {
                b = b.credentials_provider(Credentials::new(
                    ak,
                    sk,
                    config.session_token.clone(),
                    None,
                    "vinscan-env",
                ));
            }
            // the standard chain: shared config/credentials files (AWS_PROFILE), web identity
            // (EKS IRSA), ECS container credentials, EC2 instance metadata
            _ => b = b.credentials_provider(StandardChain::new(&config.region)),
        }
        Ok(Self {
            client: aws_sdk_s3::Client::from_conf(b.build()),
        })
    }

    /// The store for `bucket`, sharing this client.
    pub fn bucket(&self, bucket: &str) -> S3Store {
        S3Store {
            client: self.client.clone(),
            bucket: bucket.to_owned(),
        }
    }
}

impl crate::BucketStores for S3Client {
    fn bucket(&self, bucket: &str) -> std::sync::Arc<dyn ObjectStore> {
        std::sync::Arc::new(S3Client::bucket(self, bucket))
    }
}

/// One bucket of an S3-compatible service as an [`ObjectStore`].
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Store {
    /// A store with a client of its own; use [`S3Client::bucket`] when several buckets are read.
    pub fn new(config: &S3Config, bucket: &str) -> Result<Self, StorageError> {
        Ok(S3Client::new(config)?.bucket(bucket))
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket; succeeds when it already exists and is ours.
    pub async fn create_bucket(&self) -> Result<(), StorageError> {
        match self.client.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.code(), Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")) => Ok(()),
            Err(e) => Err(map_err(e, &format!("create bucket {}", self.bucket))),
        }
    }
}

fn map_err<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    what: &str,
) -> StorageError {
    let kind = match &e {
        // the request could not be built: no credentials anywhere in the chain, bad settings
        SdkError::ConstructionFailure(_) => StorageErrorKind::Denied,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StorageErrorKind::Transient
        }
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            service_error_kind(status, e.code())
        }
        _ => StorageErrorKind::Other,
    };
    let detail = match &e {
        // the service said why: its code and message, not the SDK's whole debug dump
        SdkError::ServiceError(se) => format!(
            "HTTP {} {}{}",
            se.raw().status().as_u16(),
            e.code().unwrap_or("error"),
            e.message().map(|m| format!(": {m}")).unwrap_or_default()
        ),
        _ => DisplayErrorContext(&e).to_string(),
    };
    StorageError::new(kind, format!("{what}: {detail}"))
}

/// An S3 error response as a kind (S3 API Reference, "Error responses"). Decided on the status
/// and code, never on the message. Unknown 4xx are the request's fault and permanent; every 5xx,
/// 429 and the throttling codes are transient.
fn service_error_kind(status: u16, code: Option<&str>) -> StorageErrorKind {
    match (status, code) {
        (_, Some("NoSuchVersion")) | (412, _) | (_, Some("PreconditionFailed")) => {
            StorageErrorKind::Superseded
        }
        (404, _) | (_, Some("NoSuchKey" | "NoSuchBucket" | "NotFound")) => StorageErrorKind::NotFound,
        (401 | 403, _) => StorageErrorKind::Denied,
        (429 | 500..=599, _)
        | (_, Some("SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable" | "Throttling")) => {
            StorageErrorKind::Transient
        }
        _ => StorageErrorKind::Other,
    }
}

fn etag(s: Option<&str>) -> String {
    s.unwrap_or_default().trim_matches('"').to_owned()
}

impl S3Store {
    async fn head_version(
        &self,
        key: &str,
        version: Option<&ObjectVersion>,
    ) -> Result<ObjectMeta, StorageError> {
        check_key(key)?;
        let what = format!("s3://{}/{key}", self.bucket);
        let mut request = self.client.head_object().bucket(&self.bucket).key(key);
        match version {
            Some(ObjectVersion::VersionId(v)) => request = request.version_id(v),
            Some(ObjectVersion::ETag(e)) => request = request.if_match(quoted(e)),
            None => {}
        }
        let r = request.send().await.map_err(|e| map_err(e, &what))?;
        let meta = ObjectMeta {
            key: key.to_owned(),
            size: u64::try_from(r.content_length().unwrap_or(0)).unwrap_or(0),
            etag: etag(r.e_tag()),
        };
        confirm_version(&what, version, &meta.etag, r.version_id())?;
        Ok(meta)
    }
}

fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

/// Some S3-compatible servers ignore `If-Match` on reads, or version ids altogether (s3s-fs
/// 0.14 does both): the response itself must show the version asked for, else the bytes may be
/// another version's.
fn confirm_version(
    what: &str,
    version: Option<&ObjectVersion>,
    etag: &str,
    version_id: Option<&str>,
) -> Result<(), StorageError> {
    let superseded = |why: String| {
        Err(StorageError::new(
            StorageErrorKind::Superseded,
            format!("{what}: {why}"),
        ))
    };
    match version {
        None => Ok(()),
        Some(ObjectVersion::ETag(want)) if want == etag => Ok(()),
        Some(ObjectVersion::ETag(want)) => superseded(format!("changed since ETag {want} (now {etag})")),
        Some(ObjectVersion::VersionId(want)) => match version_id {
            Some(got) if got == want => Ok(()),
            Some(got) => superseded(format!("version {got} served for version {want}")),
            None => superseded(format!(
                "the store did not confirm version {want} (it keeps no versions)"
            )),
        },
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    fn uri(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError> {
        self.head_version(key, None).await
    }

    async fn get(
        &self,
        key: &str,
        max_bytes: u64,
        version: Option<&ObjectVersion>,
    ) -> Result<Object, StorageError> {
        let what = format!("s3://{}/{key}", self.bucket);
        let meta = match self.head_version(key, version).await {
            // HEAD has no body to say NoSuchVersion: a version id the key does not have comes back
            // as 404, or as 400/405 (a malformed id, a delete marker)
            Err(e)
                if matches!(e.kind, StorageErrorKind::NotFound | StorageErrorKind::Other)
                    && matches!(version, Some(ObjectVersion::VersionId(_))) =>
            {
                self.head_version(key, None).await?;
                return Err(StorageError::new(StorageErrorKind::Superseded, e.message));
            }
            other => other?,
        };
        if meta.size > max_bytes {
            return Err(StorageError::new(
                StorageErrorKind::TooLarge,
                format!(
                    "{what}: {} bytes exceeds the limit of {max_bytes} bytes",
                    meta.size
                ),
            ));
        }
        let mut request = self.client.get_object().bucket(&self.bucket).key(key);
        match version {
            Some(ObjectVersion::VersionId(v)) => request = request.version_id(v),
            Some(ObjectVersion::ETag(e)) => request = request.if_match(quoted(e)),
            None => {}
        }
        let r = request.send().await.map_err(|e| map_err(e, &what))?;
        let etag = etag(r.e_tag());
        confirm_version(&what, version, &etag, r.version_id())?;
        let mut body = r.body;
        let mut buf = BytesMut::with_capacity(usize::try_from(meta.size).unwrap_or(0));
        while let Some(chunk) = body.try_next().await.map_err(|e| {
            StorageError::new(StorageErrorKind::Transient, format!("{what}: reading body: {e}"))
        })? {
            if (buf.len() + chunk.len()) as u64 > max_bytes {
                return Err(StorageError::new(
                    StorageErrorKind::TooLarge,
                    format!("{what}: grew past the limit while read"),
                ));
            }
            buf.extend_from_slice(&chunk);
        }
        let bytes = buf.freeze();
        Ok(Object {
            meta: ObjectMeta {
                key: key.to_owned(),
                size: bytes.len() as u64,
                etag,
            },
            bytes,
        })
    }

    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), StorageError> {
        check_key(key)?;
        let what = format!("s3://{}/{key}", self.bucket);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| map_err(e, &what))?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        let what = format!("s3://{}/{prefix}", self.bucket);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let r = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| map_err(e, &what))?;
            for o in r.contents() {
                if let Some(key) = o.key() {
                    out.push(ObjectMeta {
                        key: key.to_owned(),
                        size: u64::try_from(o.size().unwrap_or(0)).unwrap_or(0),
                        etag: etag(o.e_tag()),
                    });
                }
            }
            match r.next_continuation_token() {
                Some(t) if r.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        let what = format!("s3://{}/{key}", self.bucket);
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = map_err(e, &what);
                if err.kind == StorageErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_map_by_status_and_code() {
        use StorageErrorKind as K;
        let check = |status: u16, code: Option<&str>, want: K| {
            assert_eq!(service_error_kind(status, code), want, "{status} {code:?}");
        };
        check(404, Some("NoSuchKey"), K::NotFound);
        check(404, Some("NoSuchBucket"), K::NotFound);
        check(404, Some("NoSuchVersion"), K::Superseded);
        check(412, Some("PreconditionFailed"), K::Superseded);
        check(403, Some("AccessDenied"), K::Denied);
        check(403, Some("SignatureDoesNotMatch"), K::Denied);
        check(503, Some("SlowDown"), K::Transient);
        check(500, Some("InternalError"), K::Transient);
        check(507, None, K::Transient);
        check(429, None, K::Transient);
        check(400, Some("RequestTimeout"), K::Transient);
        // unknown 4xx: the request's fault, retrying cannot help
        check(400, Some("InvalidArgument"), K::Other);
        check(400, Some("InvalidBucketName"), K::Other);
        check(405, Some("MethodNotAllowed"), K::Other);
    }

    #[test]
    fn a_response_must_show_the_version_asked_for() {
        let etag = |e: &str| ObjectVersion::ETag(e.into());
        let id = |v: &str| ObjectVersion::VersionId(v.into());
        let kind = |v: Option<&ObjectVersion>, etag: &str, vid: Option<&str>| {
            confirm_version("s3://b/k", v, etag, vid).err().map(|e| e.kind)
        };
        assert_eq!(kind(None, "e1", None), None);
        assert_eq!(kind(Some(&etag("e1")), "e1", None), None);
        assert_eq!(
            kind(Some(&etag("e1")), "e2", None),
            Some(StorageErrorKind::Superseded)
        );
        assert_eq!(kind(Some(&id("v1")), "e", Some("v1")), None);
        assert_eq!(
            kind(Some(&id("v1")), "e", Some("v2")),
            Some(StorageErrorKind::Superseded)
        );
        assert_eq!(
            kind(Some(&id("v1")), "e", None),
            Some(StorageErrorKind::Superseded)
        );
    }
}
