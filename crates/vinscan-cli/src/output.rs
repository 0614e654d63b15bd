//! Where page records go on disk, written atomically, and whether existing ones still match.

use std::io::Write;
use std::path::{Path, PathBuf};

use vinscan_core::{Error, PageRecord, Result};

/// `DIR/<relative input path>.p0001.json` for page 1.
pub fn page_path(out_dir: &Path, relative: &Path, page: u32) -> PathBuf {
    let mut name = relative.as_os_str().to_owned();
    name.push(format!(".p{page:04}.json"));
    out_dir.join(name)
}

/// Writes `bytes` to `path` through a temporary file and a rename: readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::from_io(&e, dir.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::from_io(&e, tmp.display()))?;
    f.write_all(bytes)
        .map_err(|e| Error::from_io(&e, tmp.display()))?;
    f.sync_all().map_err(|e| Error::from_io(&e, tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::from_io(&e, path.display()))
}

/// What an existing output must have been made from to be reused.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    pub source_sha256: &'a str,
    pub pipeline_sha256: &'a str,
    pub schema_sha256: &'a str,
    pub model_sha256: &'a str,
    pub mmproj_sha256: &'a str,
}

pub fn matches(record: &PageRecord, e: &Expected<'_>) -> bool {
    let p = &record.provenance;
    p.source_sha256 == e.source_sha256
        && p.pipeline_sha256 == e.pipeline_sha256
        && p.schema_sha256 == e.schema_sha256
        && p.model.sha256 == e.model_sha256
        && p.model.mmproj_sha256 == e.mmproj_sha256
}
