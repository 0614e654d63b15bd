//! An in-memory object store for tests (the `testsuite` feature): a versioned bucket, with
//! failures injected by operation and key, so the delivery rules built on [`ObjectStore`] can be
//! tested in milliseconds. It passes the same conformance suite as the real backends.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    BucketStores, Object, ObjectMeta, ObjectStore, ObjectVersion, StorageError, StorageErrorKind, check_key,
};

/// The operations a [`Fault`] can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Head,
    Get,
    Put,
    List,
    Delete,
}

/// An injected failure: the next `times` calls of `op` on a key starting with `key_prefix` fail
/// with `kind` (`u32::MAX`: for good).
#[derive(Debug, Clone)]
pub struct Fault {
    pub op: Op,
    pub key_prefix: String,
    pub kind: StorageErrorKind,
    pub times: u32,
}

#[derive(Debug, Clone)]
struct Version {
    id: String,
    etag: String,
    bytes: Bytes,
}

#[derive(Debug, Default)]
struct State {
    /// Every version of every key, oldest first.
    objects: BTreeMap<String, Vec<Version>>,
    next_version: u64,
    faults: Vec<Fault>,
    puts: u64,
}

/// A versioned bucket in memory. Cloning shares the contents.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    name: String,
    state: Arc<Mutex<State>>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // every method leaves the state consistent before it can panic
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A content hash as the ETag, as S3 uses the MD5 of simple uploads: the same bytes get the
/// same ETag. FNV-1a (64 bit) is enough to tell test objects apart and needs no dependency.
fn content_etag(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl MemoryStore {
    /// An empty bucket named `name` (its URI is `mem://name`).
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            state: Arc::default(),
        }
    }

    /// Adds a failure to inject.
    pub fn inject(&self, fault: Fault) {
        lock(&self.state).faults.push(fault);
    }

    /// Removes every injected failure not yet used up.
    pub fn heal(&self) {
        lock(&self.state).faults.clear();
    }

    /// Successful `put`s so far.
    pub fn puts(&self) -> u64 {
        lock(&self.state).puts
    }

    /// The latest version's id of `key` (`None` when absent).
    pub fn version_id(&self, key: &str) -> Option<String> {
        lock(&self.state)
            .objects
            .get(key)
            .and_then(|v| v.last())
            .map(|v| v.id.clone())
    }

    /// Every key with its latest bytes.
    pub fn contents(&self) -> BTreeMap<String, Bytes> {
        lock(&self.state)
            .objects
            .iter()
            .filter_map(|(k, v)| v.last().map(|v| (k.clone(), v.bytes.clone())))
            .collect()
    }

    fn fail(&self, op: Op, key: &str) -> Result<(), StorageError> {
        let mut state = lock(&self.state);
        let Some(f) = state
            .faults
            .iter_mut()
            .find(|f| f.op == op && f.times > 0 && key.starts_with(&f.key_prefix))
        else {
            return Ok(());
        };
        if f.times != u32::MAX {
            f.times -= 1;
        }
        Err(StorageError::new(
            f.kind,
            format!("mem://{}/{key}: injected {:?} failure", self.name, f.kind),
        ))
    }

    fn find(&self, key: &str, version: Option<&ObjectVersion>) -> Result<Version, StorageError> {
        let state = lock(&self.state);
        let versions = state.objects.get(key).ok_or_else(|| {
            StorageError::new(
                StorageErrorKind::NotFound,
                format!("mem://{}/{key}: no such key", self.name),
            )
        })?;
        let latest = versions.last().cloned().ok_or_else(|| {
            StorageError::new(StorageErrorKind::NotFound, format!("mem://{}/{key}", self.name))
        })?;
        let superseded = |why: String| {
            StorageError::new(
                StorageErrorKind::Superseded,
                format!("mem://{}/{key}: {why}", self.name),
            )
        };
        match version {
            None => Ok(latest),
            Some(ObjectVersion::ETag(e)) if *e == latest.etag => Ok(latest),
            Some(ObjectVersion::ETag(e)) => Err(superseded(format!("changed since ETag {e}"))),
            Some(ObjectVersion::VersionId(id)) => versions
                .iter()
                .find(|v| v.id == *id)
                .cloned()
                .ok_or_else(|| superseded(format!("no version {id}"))),
        }
    }
}

fn meta(key: &str, v: &Version) -> ObjectMeta {
    ObjectMeta {
        key: key.to_owned(),
        size: v.bytes.len() as u64,
        etag: v.etag.clone(),
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    fn uri(&self) -> String {
        format!("mem://{}", self.name)
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError> {
        check_key(key)?;
        self.fail(Op::Head, key)?;
        Ok(meta(key, &self.find(key, None)?))
    }

    async fn get(
        &self,
        key: &str,
        max_bytes: u64,
        version: Option<&ObjectVersion>,
    ) -> Result<Object, StorageError> {
        check_key(key)?;
        self.fail(Op::Get, key)?;
        let v = self.find(key, version)?;
        if v.bytes.len() as u64 > max_bytes {
            return Err(StorageError::new(
                StorageErrorKind::TooLarge,
                format!(
                    "mem://{}/{key}: {} bytes exceeds the limit of {max_bytes} bytes",
                    self.name,
                    v.bytes.len()
                ),
            ));
        }
        Ok(Object {
            meta: meta(key, &v),
            bytes: v.bytes,
        })
    }

    async fn put(&self, key: &str, bytes: Bytes, _content_type: &str) -> Result<(), StorageError> {
        check_key(key)?;
        self.fail(Op::Put, key)?;
        let mut state = lock(&self.state);
        state.next_version += 1;
        let version = Version {
            id: format!("v{}", state.next_version),
            etag: content_etag(&bytes),
            bytes,
        };
        state.objects.entry(key.to_owned()).or_default().push(version);
        state.puts += 1;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        self.fail(Op::List, prefix)?;
        let state = lock(&self.state);
        Ok(state
            .objects
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, v)| v.last().map(|v| meta(k, v)))
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        self.fail(Op::Delete, key)?;
        lock(&self.state).objects.remove(key);
        Ok(())
    }
}

/// Memory buckets by name, created on first use.
#[derive(Debug, Clone, Default)]
pub struct MemoryBuckets {
    buckets: Arc<Mutex<HashMap<String, MemoryStore>>>,
}

impl MemoryBuckets {
    pub fn new() -> Self {
        Self::default()
    }

    /// The bucket named `name` (the same contents on every call).
    pub fn store(&self, name: &str) -> MemoryStore {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        buckets
            .entry(name.to_owned())
            .or_insert_with(|| MemoryStore::new(name))
            .clone()
    }
}

impl BucketStores for MemoryBuckets {
    fn bucket(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        Arc::new(self.store(bucket))
    }
}
