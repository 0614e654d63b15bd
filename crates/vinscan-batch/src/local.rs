//! Local files: inputs read with their size checked first, outputs written atomically (a
//! uniquely named temporary file in the same folder, then a rename), so a reader never sees
//! half a record and two writers never share a temporary file.

use std::io::Write;
use std::path::Path;

use vinscan_core::{Error, ErrorKind, Result};

/// Reads a file, refusing it before reading when it is not a regular file or exceeds
/// `max_bytes`.
pub fn read_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::from_io(&e, path.display()))?;
    if !meta.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{}: not a regular file", path.display()),
        ));
    }
    if meta.len() > max_bytes {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "{}: {} bytes exceeds the limit of {max_bytes} bytes",
                path.display(),
                meta.len()
            ),
        ));
    }
    std::fs::read(path).map_err(|e| Error::from_io(&e, path.display()))
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename; the
/// temporary file is removed when anything fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::from_io(&e, dir.display()))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".vinscan-tmp-");
    // a temporary file is private (0600); an output is a plain file: 0666 less the umask, as
    // a plain create gives
    #[cfg(unix)]
    builder.permissions(<std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o666));
    let mut tmp = builder
        .tempfile_in(dir)
        .map_err(|e| Error::from_io(&e, dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::from_io(&e, path.display()))?;
    tmp.persist(path)
        .map(|_| ())
        .map_err(|e| Error::from_io(&e.error, path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("a/b.json");
        write_atomic(&path, b"{}").expect("write");
        write_atomic(&path, b"{\"x\":1}").expect("overwrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"{\"x\":1}");
        // the mode of a plain create (0666 less the umask), not the temporary file's 0600
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"").expect("plain");
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions();
        assert_eq!(mode(&path), mode(&plain));
        let names: Vec<_> = std::fs::read_dir(dir.path().join("a"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["b.json"]);
        assert_eq!(
            read_file(&path, 3).map(|_| ()).map_err(|e| e.kind()),
            Err(ErrorKind::TooLarge)
        );
    }
}
