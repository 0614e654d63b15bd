//! What `batch` reads: every file under a local folder, or every object under an S3 prefix,
//! each with the name it has in the manifest and the name its outputs get.
//!
//! Local folders are not buckets: files are read by path, whatever bytes their names hold (not
//! UTF-8, backslashes), symlinks to files are followed, and the key rules of S3 do not apply.
//! Hidden entries (a name starting with `.`) are left out. Output names are the relative path
//! in Unicode NFC ([`OutputNames`]), made unique when two inputs would share one.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use unicode_normalization::UnicodeNormalization;
use vinscan_core::hash::sha256_hex;
use vinscan_core::{Error, ErrorKind, Format};
use vinscan_storage::{ObjectStore, ObjectVersion};

/// Where an input's bytes are.
pub enum InputPlace {
    File(PathBuf),
    Object {
        store: Arc<dyn ObjectStore>,
        key: String,
    },
    /// A leaf folder read as one document (`batch --folder-documents`): its files, in natural
    /// name order (`p2` before `p10`), are the document's pages.
    Folder(Vec<Input>),
}

/// One input of a batch run.
pub struct Input {
    /// How the manifest and the records name it: the relative path (lossy UTF-8 for a local
    /// name that is not UTF-8), or `s3://bucket/key`.
    pub source: String,
    /// The output name (relative, NFC, unique in the run); pages go to `<name>.pNNNN.json`.
    pub output_name: String,
    /// Whether its extension says it is a scan; others are read only to check their content.
    pub scan_extension: bool,
    pub place: InputPlace,
}

impl Input {
    /// The input's bytes, refused before reading when larger than `max_bytes`. A folder has
    /// no bytes of its own: read its files.
    pub async fn read(&self, max_bytes: u64) -> Result<Vec<u8>, Error> {
        match &self.place {
            InputPlace::Folder(_) => Err(Error::new(
                ErrorKind::Internal,
                "a folder document is read file by file",
            )),
            InputPlace::File(path) => crate::local::read_file(path, max_bytes),
            InputPlace::Object { store, key } => store
                .get(key, max_bytes, None::<&ObjectVersion>)
                .await
                .map(|o| o.bytes.to_vec())
                .map_err(vinscan_jobs::kinds::pipeline_error),
        }
    }
}

/// Why an input that is not a scan by its extension is not one by its content either.
pub fn not_a_scan(bytes: &[u8]) -> Option<Error> {
    Format::sniff(bytes).is_none().then(|| {
        Error::new(
            ErrorKind::Unsupported,
            "neither its name nor its content is a JPEG, PNG, TIFF, WebP, BMP, PDF or e-invoice XML",
        )
    })
}

/// Allocates output names: NFC, and unique within a run. The first input to want a name gets
/// it; a later one (two folders' same file name for `extract`, an NFC and an NFD twin, two
/// names that are the same once made UTF-8) gets `<name>~<8 hex of its own identity>`.
/// Inputs are allocated in sorted order, so a run's names are the same in the next run.
#[derive(Debug, Default)]
pub struct OutputNames {
    used: HashSet<String>,
}

impl OutputNames {
    /// The output name for `wanted`; `identity` tells this input from others that want it.
    pub fn claim(&mut self, wanted: &str, identity: &[u8]) -> String {
        let nfc: String = wanted.nfc().collect();
        if self.used.insert(nfc.clone()) {
            return nfc;
        }
        let tag = &sha256_hex(identity)[..8];
        let mut n = 0;
        loop {
            let candidate = if n == 0 {
                format!("{nfc}~{tag}")
            } else {
                format!("{nfc}~{tag}-{n}")
            };
            if self.used.insert(candidate.clone()) {
                return candidate;
            }
            n += 1;
        }
    }
}

fn hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// Every non-hidden file under `root` (following symlinks to files and folders, each folder
/// once), sorted by path bytes.
pub fn walk_local(root: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    let mut seen_dirs = HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        // a symlink loop would otherwise walk forever
        let real = std::fs::canonicalize(&dir).map_err(|e| Error::from_io(&e, dir.display()))?;
        if !seen_dirs.insert(real) {
            continue;
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::from_io(&e, dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::from_io(&e, dir.display()))?;
            if hidden(&entry.file_name()) {
                continue;
            }
            let path = entry.path();
            // metadata follows symlinks: a link to a file is a file
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => stack.push(path),
                Ok(m) if m.is_file() => files.push(path),
                // a dangling link or a special file: listed, and its read fails with the reason
                _ => files.push(path),
            }
        }
    }
    files.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    Ok(files)
}

/// The inputs of a local source: a single file, or every file under a folder.
pub fn local_inputs(root: &Path) -> Result<Vec<Input>, Error> {
    let (base, files) = if std::fs::metadata(root)
        .map_err(|e| Error::from_io(&e, root.display()))?
        .is_file()
    {
        let base = root.parent().map(Path::to_path_buf).unwrap_or_default();
        (base, vec![root.to_path_buf()])
    } else {
        (root.to_path_buf(), walk_local(root)?)
    };
    let mut names = OutputNames::default();
    Ok(files
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&base).unwrap_or(&path);
            let source = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let output_name = names.claim(&source, relative.as_os_str().as_encoded_bytes());
            Input {
                scan_extension: Format::has_scan_extension(&source),
                source,
                output_name,
                place: InputPlace::File(path),
            }
        })
        .collect())
}

/// The inputs of an S3 source: every non-hidden object under `prefix` (a folder: `in` does not
/// pick up `inbox/…`).
pub async fn s3_inputs(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<Vec<Input>, Error> {
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let listed = store
        .list(&prefix)
        .await
        .map_err(vinscan_jobs::kinds::pipeline_error)?;
    let mut names = OutputNames::default();
    Ok(listed
        .into_iter()
        .filter_map(|m| {
            let relative = m.key.strip_prefix(&prefix).unwrap_or(&m.key).to_owned();
            if relative.split('/').any(|s| s.starts_with('.')) {
                return None;
            }
            Some(Input {
                source: format!("{}/{}", store.uri(), m.key),
                output_name: names.claim(&relative, m.key.as_bytes()),
                scan_extension: Format::has_scan_extension(&relative),
                place: InputPlace::Object {
                    store: store.clone(),
                    key: m.key,
                },
            })
        })
        .collect())
}

/// The folder part of a relative name (`a/b` for `a/b/c.jpg`; empty at the top).
fn folder_of(name: &str) -> &str {
    name.rsplit_once('/').map_or("", |(folder, _)| folder)
}

/// Groups a run's inputs into documents by folder (`batch --folder-documents`): the files of
/// each *leaf* folder (one without sub-folders holding inputs) become one [`InputPlace::Folder`]
/// input, named after the folder (`top_name` for files at the top of the source when it has
/// no sub-folders); a file beside sub-folders stays a document of its own. An archive scanned
/// page by page into one folder per document is then one record per document.
///
/// Folders are told apart by their names' bytes (a local file's parent path, an object's
/// key), not by the names shown or the output names: an NFC folder and its NFD twin, or two
/// names that differ only in bytes that are not UTF-8 (an archive's VNI or TCVN3 names), stay
/// two documents, the one allocated second (byte order) named `<folder>~<8 hex>` like twin
/// files.
pub fn folder_documents(inputs: Vec<Input>, top_name: &str) -> Vec<Input> {
    let key = |input: &Input| -> Vec<u8> {
        match &input.place {
            InputPlace::File(path) => path
                .parent()
                .map(|p| p.as_os_str().as_encoded_bytes().to_vec())
                .unwrap_or_default(),
            _ => folder_of(&input.source).as_bytes().to_vec(),
        }
    };
    // every folder above one holding an input (the top, "", above any other): a leaf is a
    // folder that is none of them; one pass, not a comparison of every pair of folders
    let mut above: HashSet<Vec<u8>> = HashSet::new();
    for input in &inputs {
        let folder = key(input);
        if !folder.is_empty() {
            above.insert(Vec::new());
        }
        for (i, _) in folder.iter().enumerate().filter(|(_, b)| **b == b'/') {
            above.insert(folder[..i].to_vec());
        }
    }
    let is_leaf = |folder: &[u8]| !above.contains(folder);
    let mut groups: std::collections::BTreeMap<Vec<u8>, Vec<Input>> = Default::default();
    let mut out = Vec::new();
    for input in inputs {
        let folder = key(&input);
        if is_leaf(&folder) {
            groups.entry(folder).or_default().push(input);
        } else {
            out.push(input);
        }
    }
    // every output name already taken, so a folder's name cannot take a file's
    let mut names = OutputNames::default();
    for input in &out {
        names.claim(&input.output_name, input.source.as_bytes());
    }
    for (folder, mut members) in groups {
        members.sort_by(|a, b| natord::compare(&a.output_name, &b.output_name));
        let shown = folder_of(&members[0].source).to_owned();
        // relative to the source: empty for the files at its top
        let relative = folder_of(&members[0].output_name);
        let (source, wanted) = if relative.is_empty() && !shown.contains("://") {
            // a local source's top: its members' names do not hold it
            (top_name.to_owned(), top_name)
        } else if relative.is_empty() {
            (shown, top_name)
        } else {
            (shown, relative)
        };
        let output_name = names.claim(wanted, &folder);
        out.push(Input {
            source,
            output_name,
            scan_extension: true,
            place: InputPlace::Folder(members),
        });
    }
    out.sort_by(|a, b| a.output_name.cmp(&b.output_name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_are_nfc_and_unique() {
        let mut names = OutputNames::default();
        assert_eq!(names.claim("a/ảnh chụp.jpg", b"1"), "a/ảnh chụp.jpg");
        // the NFD twin of the same name, a second file: same letters, made unique
        let twin = names.claim("a/a\u{0309}nh chu\u{0323}p.jpg", b"2");
        assert!(
            twin.starts_with("a/ảnh chụp.jpg~") && twin.len() == "a/ảnh chụp.jpg~".len() + 8,
            "{twin}"
        );
        assert_eq!(names.claim("b/scan.jpg", b"3"), "b/scan.jpg");
        assert_ne!(names.claim("a/ảnh chụp.jpg", b"4"), twin);
    }

    fn file(name: &str) -> Input {
        Input {
            source: format!("s3://archive/scans/{name}"),
            output_name: name.to_owned(),
            scan_extension: true,
            place: InputPlace::File(PathBuf::from(name)),
        }
    }

    fn members(input: &Input) -> Vec<&str> {
        match &input.place {
            InputPlace::Folder(m) => m.iter().map(|i| i.output_name.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn leaf_folders_become_documents_in_natural_page_order() {
        let inputs = [
            "cover.pdf",
            "1987/qd-12/p10.jpg",
            "1987/qd-12/p2.jpg",
            "1987/qd-12/p1.jpg",
            "1987/notes.tif",
            "1988/cv-3/scan.jpg",
        ]
        .map(file)
        .into();
        let docs = folder_documents(inputs, "scans");
        let names: Vec<_> = docs.iter().map(|d| d.output_name.as_str()).collect();
        // files beside sub-folders stay documents of their own
        assert_eq!(names, ["1987/notes.tif", "1987/qd-12", "1988/cv-3", "cover.pdf"]);
        assert_eq!(
            members(&docs[1]),
            ["1987/qd-12/p1.jpg", "1987/qd-12/p2.jpg", "1987/qd-12/p10.jpg"]
        );
        assert_eq!(docs[1].source, "s3://archive/scans/1987/qd-12");
        assert!(matches!(docs[0].place, InputPlace::File(_)));
    }

    #[test]
    fn a_source_without_sub_folders_is_one_document_named_after_it() {
        let mut pages: Vec<Input> = ["trang 2.jpg", "trang 1.jpg"].map(file).into();
        for p in &mut pages {
            p.source = p.output_name.clone(); // local sources are relative paths
        }
        let docs = folder_documents(pages, "hồ sơ 12");
        assert_eq!(docs.len(), 1);
        assert_eq!(
            (docs[0].source.as_str(), docs[0].output_name.as_str()),
            ("hồ sơ 12", "hồ sơ 12")
        );
        assert_eq!(members(&docs[0]), ["trang 1.jpg", "trang 2.jpg"]);
    }

    #[test]
    fn an_nfc_folder_and_its_nfd_twin_stay_two_documents() {
        let mut names = OutputNames::default();
        let pages: Vec<Input> = [
            "Hồ sơ 01/trang-1.jpg",
            "Ho\u{0302}\u{0300} so\u{031b} 01/trang-1.jpg",
        ]
        .map(|source| {
            let mut i = file(source);
            i.source = source.to_owned(); // local sources are relative paths
            i.output_name = names.claim(source, source.as_bytes());
            i
        })
        .into();
        let docs = folder_documents(pages, "top");
        let named: Vec<_> = docs.iter().map(|d| d.output_name.as_str()).collect();
        assert_eq!(named.len(), 2, "{named:?}");
        assert_eq!(named[0], "Hồ sơ 01");
        assert!(named[1].starts_with("Hồ sơ 01~"), "{named:?}");
        assert!(docs.iter().all(|d| members(d).len() == 1));
        assert_ne!(docs[0].source, docs[1].source);
    }

    #[cfg(unix)]
    #[test]
    fn folders_whose_names_differ_only_outside_utf8_stay_apart() {
        use std::os::unix::ffi::OsStrExt;
        let pages: Vec<Input> = [&b"a\xff/p1.jpg"[..], &b"a\xfe/p1.jpg"[..]]
            .map(|raw| {
                let path = PathBuf::from(std::ffi::OsStr::from_bytes(raw));
                let shown = path.to_string_lossy().into_owned();
                Input {
                    source: shown.clone(),
                    output_name: shown,
                    scan_extension: true,
                    place: InputPlace::File(path),
                }
            })
            .into();
        let docs = folder_documents(pages, "top");
        assert_eq!(docs.len(), 2);
        assert_ne!(docs[0].output_name, docs[1].output_name);
        assert!(docs.iter().all(|d| members(d).len() == 1));
    }

    #[test]
    fn content_decides_when_the_name_does_not() {
        assert!(not_a_scan(b"\xFF\xD8\xFF\xE0rest").is_none());
        assert!(not_a_scan(b"%PDF-1.7").is_none());
        assert_eq!(
            not_a_scan(b"hello").map(|e| e.kind()),
            Some(ErrorKind::Unsupported)
        );
        assert!(Format::has_scan_extension("x/Photo.JFIF"));
        assert!(!Format::has_scan_extension("notes.txt"));
    }
}
