//! A directory as an object store. Writes go through a temporary file and a rename, so a
//! reader never sees a partial object.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Object, ObjectMeta, ObjectStore, ObjectVersion, StorageError, StorageErrorKind, check_key_with};

/// Temporary files start with this; listings skip them.
const TMP_PREFIX: &str = ".vinscan-tmp-";

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        check_key_with(key, cfg!(unix))?;
        Ok(self.root.join(key))
    }
}

fn file_size(path: &Path) -> Result<u64, StorageError> {
    let m = std::fs::metadata(path).map_err(|e| StorageError::io(&e, path.display()))?;
    if !m.is_file() {
        return Err(StorageError::new(
            StorageErrorKind::NotFound,
            format!("{}: not a file", path.display()),
        ));
    }
    Ok(m.len())
}

/// Size and tag of a file (reads it: the tag is its content's hash).
fn meta_of(key: &str, path: &Path) -> Result<ObjectMeta, StorageError> {
    file_size(path)?;
    let bytes = std::fs::read(path).map_err(|e| StorageError::io(&e, path.display()))?;
    Ok(ObjectMeta {
        key: key.to_owned(),
        size: bytes.len() as u64,
        etag: content_etag(&bytes),
    })
}

/// A file's entity tag: the sha256 of its bytes (32 hex digits), as S3 tags a simple upload by
/// its MD5: the same bytes have the same tag, and any overwrite that changes them changes it,
/// whatever the file system's timestamps can tell apart.
fn content_etag(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(bytes)[..16])
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::new(StorageErrorKind::Other, format!("storage task failed: {e}")))?
}

/// A directory keeps one version of each file: an ETag is compared with the file's, and a
/// version id can never be served.
fn check_version(key: &str, meta: &ObjectMeta, version: Option<&ObjectVersion>) -> Result<(), StorageError> {
    match version {
        None => Ok(()),
        Some(ObjectVersion::ETag(want)) if *want == meta.etag => Ok(()),
        Some(ObjectVersion::ETag(want)) => Err(StorageError::new(
            StorageErrorKind::Superseded,
            format!("{key}: changed since ETag {want} (now {})", meta.etag),
        )),
        Some(ObjectVersion::VersionId(v)) => Err(StorageError::new(
            StorageErrorKind::Superseded,
            format!("{key}: a local directory keeps no versions (asked for version {v})"),
        )),
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[async_trait]
impl ObjectStore for LocalStore {
    fn uri(&self) -> String {
        format!("file://{}", self.root.display())
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError> {
        let path = self.path(key)?;
        let key = key.to_owned();
        blocking(move || meta_of(&key, &path)).await
    }

    async fn get(
        &self,
        key: &str,
        max_bytes: u64,
        version: Option<&ObjectVersion>,
    ) -> Result<Object, StorageError> {
        let path = self.path(key)?;
        let key = key.to_owned();
        let version = version.cloned();
        blocking(move || {
            let size = file_size(&path)?;
            if size > max_bytes {
                return Err(StorageError::new(
                    StorageErrorKind::TooLarge,
                    format!("{key}: {size} bytes exceeds the limit of {max_bytes} bytes"),
                ));
            }
            let bytes = std::fs::read(&path).map_err(|e| StorageError::io(&e, path.display()))?;
            if bytes.len() as u64 > max_bytes {
                return Err(StorageError::new(
                    StorageErrorKind::TooLarge,
                    format!("{key}: grew past the limit while read"),
                ));
            }
            // the tag of the bytes read: whatever was written meanwhile, these are checked
            let meta = ObjectMeta {
                key: key.clone(),
                size: bytes.len() as u64,
                etag: content_etag(&bytes),
            };
            check_version(&key, &meta, version.as_ref())?;
            Ok(Object {
                meta,
                bytes: Bytes::from(bytes),
            })
        })
        .await
    }

    async fn put(&self, key: &str, bytes: Bytes, _content_type: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        blocking(move || {
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::create_dir_all(dir).map_err(|e| StorageError::io(&e, dir.display()))?;
            let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let tmp = dir.join(format!("{TMP_PREFIX}{}-{n}", std::process::id()));
            std::fs::write(&tmp, &bytes).map_err(|e| StorageError::io(&e, tmp.display()))?;
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| StorageError::io(&e, tmp.display()))?;
            std::fs::rename(&tmp, &path).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                StorageError::io(&e, path.display())
            })
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        blocking(move || {
            // start from the deepest directory the prefix names
            let dir_part = prefix.rsplit_once('/').map_or("", |(d, _)| d);
            let start = if dir_part.is_empty() {
                root.clone()
            } else {
                root.join(dir_part)
            };
            let mut out = Vec::new();
            let mut stack = vec![start];
            while let Some(dir) = stack.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StorageError::io(&e, dir.display())),
                };
                for entry in entries {
                    let entry = entry.map_err(|e| StorageError::io(&e, dir.display()))?;
                    let path = entry.path();
                    let name = entry.file_name();
                    if name.to_string_lossy().starts_with(TMP_PREFIX) {
                        continue;
                    }
                    let ft = entry
                        .file_type()
                        .map_err(|e| StorageError::io(&e, path.display()))?;
                    if ft.is_dir() {
                        stack.push(path);
                    } else if ft.is_file() {
                        let Ok(rel) = path.strip_prefix(&root) else {
                            continue;
                        };
                        let key = rel
                            .components()
                            .map(|c| c.as_os_str().to_string_lossy())
                            .collect::<Vec<_>>()
                            .join("/");
                        if key.starts_with(&prefix) {
                            out.push(meta_of(&key, &path)?);
                        }
                    }
                }
            }
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    fn check_key(&self, key: &str) -> Result<(), StorageError> {
        check_key_with(key, cfg!(unix))
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(&e, path.display())),
        })
        .await
    }
}
