//! `vinscan extract FILE... --pipeline NAME`: JSON Lines on stdout, one object per document for
//! a document pipeline (every page of a file; every file given, with `--as-document`) and one
//! per page for a page pipeline; or one file per record with `--out`, named after the input
//! file and never overwriting another input's output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use vinscan_batch::inputs::{OutputNames, not_a_scan};
use vinscan_batch::local::{read_file, write_atomic};
use vinscan_batch::resume::{document_path, page_path};
use vinscan_batch::{process_as_document, process_document};
use vinscan_core::{Error, ErrorKind, Extractor, Format, Pipeline, Unit};

use crate::cli::{ExtractArgs, GlobalArgs};
use crate::model_load::LazyModel;

fn json<T: serde::Serialize>(value: &T, pretty: bool) -> vinscan_core::Result<Vec<u8>> {
    let r = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    };
    r.map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))
}

/// Writes one record: a line on stdout, or a file at `path` when `--out` is set, with its
/// `transcript` (when the pipeline made one) beside it as the same name ending `.txt`.
fn emit<T: serde::Serialize>(
    record: &T,
    transcript: Option<String>,
    path: Option<PathBuf>,
) -> vinscan_core::Result<()> {
    match path {
        Some(path) => {
            let txt = path.with_extension("txt");
            match transcript {
                Some(text) => write_atomic(&txt, text.as_bytes())?,
                // none now: an earlier run's would sit beside a record it is not from
                None => match std::fs::remove_file(&txt) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::from_io(&e, txt.display()));
                    }
                    _ => {}
                },
            }
            write_atomic(&path, &json(record, true)?)
        }
        None => {
            let line = json(record, false)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&line)
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush())
                .map_err(|e| Error::from_io(&e, "stdout"))
        }
    }
}

/// A file to read, and whether it was found by walking a folder given rather than named.
struct Given {
    path: PathBuf,
    found: bool,
}

/// What reading a [`Given`] file gave.
enum Read {
    Bytes(Vec<u8>),
    /// Found in a folder, and a scan by neither its name nor its content (a `Thumbs.db`,
    /// notes): left out, as `batch` leaves it out of a folder document.
    Skipped,
    Failed(Error),
}

fn read_given(given: &Given, max_bytes: u64) -> Read {
    let by_name = Format::has_scan_extension(&given.path.to_string_lossy());
    let skippable = given.found && !by_name;
    match read_file(&given.path, max_bytes) {
        Err(e) if skippable && e.kind() == ErrorKind::TooLarge => Read::Skipped,
        Err(e) => Read::Failed(e),
        Ok(bytes) if skippable && not_a_scan(&bytes).is_some() => Read::Skipped,
        Ok(bytes) => Read::Bytes(bytes),
    }
}

fn skipped(path: &Path) {
    tracing::warn!(source = %path.display(), "skipped: neither its name nor its content is a scan");
}

struct Run<'a> {
    extractor: Extractor,
    model: LazyModel,
    pipeline: &'a Pipeline,
    out: Option<&'a Path>,
    names: OutputNames,
    failed: usize,
}

impl Run<'_> {
    fn claim(&mut self, path: &Path) -> String {
        let source = path.display().to_string();
        let name = path
            .file_name()
            .map_or_else(|| source.clone(), |n| n.to_string_lossy().into_owned());
        self.names.claim(&name, path.as_os_str().as_encoded_bytes())
    }

    fn fail(&mut self, source: &str, e: &Error) {
        self.failed += 1;
        tracing::error!(source = %source, kind = %e.kind(), error = %e, "extraction failed");
    }

    /// `files` as one document named after `named` (its first file, or the folder given):
    /// one record. `one_file`: the document is a single file of a folder given (no
    /// `--as-document`), so a skipped file is no document rather than a failed one.
    fn document(&mut self, named: &Path, files: &[Given], one_file: bool) -> anyhow::Result<()> {
        let source = named.display().to_string();
        let mut inputs = Vec::with_capacity(files.len());
        let mut failed = None;
        for given in files {
            match read_given(given, self.pipeline.limits.max_bytes) {
                Read::Bytes(b) => inputs.push((given.path.display().to_string(), b)),
                Read::Skipped => skipped(&given.path),
                Read::Failed(e) => {
                    failed = Some((given.path.display().to_string(), e));
                    break;
                }
            }
        }
        if inputs.is_empty() && failed.is_none() && one_file && !files.is_empty() {
            return Ok(());
        }
        // claimed whether or not the reads worked, so a run's names are the same in the next run
        let output_name = self.claim(named);
        if let Some((path, e)) = failed {
            self.fail(&path, &e);
            return Ok(());
        }
        if inputs.is_empty() {
            let why = if files.is_empty() {
                "the folder holds no files"
            } else {
                "the folder holds no JPEG, PNG, TIFF, WebP, BMP, PDF or e-invoice XML"
            };
            self.fail(&source, &Error::new(ErrorKind::InvalidInput, why));
            return Ok(());
        }
        let sources = inputs.len();
        let result = process_as_document(&self.extractor, &self.model, self.pipeline, inputs)?;
        match result.and_then(|record| {
            let pages = record.pages.len();
            emit(
                &record,
                record.transcript_file(),
                self.out.map(|d| document_path(d, &output_name)),
            )?;
            Ok(pages)
        }) {
            Ok(pages) => {
                tracing::info!(source = %source, sources, pages, "extracted as one document")
            }
            Err(e) => self.fail(&source, &e),
        }
        Ok(())
    }

    /// One record per page of `given`.
    fn pages(&mut self, given: &Given) -> anyhow::Result<()> {
        let path = given.path.as_path();
        let source = path.display().to_string();
        // a name is claimed whether or not the read worked, so a run's names are the same in
        // the next run; a skipped file is no input and claims none
        let bytes = match read_given(given, self.pipeline.limits.max_bytes) {
            Read::Skipped => {
                skipped(path);
                return Ok(());
            }
            Read::Failed(e) => {
                self.claim(path);
                self.fail(&source, &e);
                return Ok(());
            }
            Read::Bytes(b) => b,
        };
        let output_name = self.claim(path);
        let out = self.out;
        let result = process_document(
            &self.extractor,
            &self.model,
            self.pipeline,
            bytes,
            &source,
            |record| {
                emit(
                    &record,
                    record.transcript_file(),
                    out.map(|d| page_path(d, &output_name, record.page)),
                )
            },
        )?;
        match result {
            Ok(pages) => tracing::info!(source = %source, pages, "extracted"),
            Err(e) => self.fail(&source, &e),
        }
        Ok(())
    }
}

/// The files given, each folder replaced by the files under it in natural name order (`p2`
/// before `p10`; hidden ones left out), and the folders given that hold no files.
/// `leaf_only` (`--as-document`): a folder's files are one document's pages, so a folder with
/// sub-folders is refused rather than flattened.
fn expand_folders(paths: &[PathBuf], leaf_only: bool) -> anyhow::Result<(Vec<Given>, Vec<PathBuf>)> {
    let (mut files, mut empty) = (Vec::with_capacity(paths.len()), Vec::new());
    for path in paths {
        if path.is_dir() {
            let mut under = vinscan_batch::inputs::walk_local(path)?;
            if leaf_only && let Some(nested) = under.iter().find(|f| f.parent() != Some(path.as_path())) {
                anyhow::bail!(
                    "{} holds sub-folders ({} is in one): --as-document reads one folder's files as the pages of one document; for one record per leaf folder run `vinscan batch {} --folder-documents`",
                    path.display(),
                    nested.display(),
                    path.display()
                );
            }
            if under.is_empty() {
                empty.push(path.clone());
            }
            under.sort_by(|a, b| natord::compare(&a.to_string_lossy(), &b.to_string_lossy()));
            files.extend(under.into_iter().map(|path| Given { path, found: true }));
        } else {
            files.push(Given {
                path: path.clone(),
                found: false,
            });
        }
    }
    Ok((files, empty))
}

pub fn run(global: &GlobalArgs, args: ExtractArgs) -> anyhow::Result<ExitCode> {
    let catalog = crate::catalog::catalog(global.pipelines_dir.as_deref(), global.schemas_dir.as_deref())?;
    let pipeline = catalog.pipeline(&args.pipeline)?;
    if args.as_document && pipeline.unit == Unit::Page {
        anyhow::bail!(
            "--as-document needs a document pipeline (unit = \"document\"); {} gives one record per page",
            pipeline.name
        );
    }
    let (extractor, model) = args.model.extractor_and_model(&pipeline)?;
    let mut run = Run {
        extractor,
        model,
        pipeline: &pipeline,
        out: args.out.as_deref(),
        names: OutputNames::default(),
        failed: 0,
    };
    if args.as_document {
        // an empty folder adds no pages; with none at all the document fails below
        let (files, empty) = expand_folders(&args.files, true)?;
        for folder in empty {
            tracing::warn!(source = %folder.display(), "the folder holds no files: it adds no pages");
        }
        // one folder given: the document is named after it
        let named = match args.files.as_slice() {
            [one] if one.is_dir() => one.clone(),
            _ => files
                .first()
                .map_or_else(|| args.files[0].clone(), |g| g.path.clone()),
        };
        run.document(&named, &files, false)?;
    } else {
        let (files, empty) = expand_folders(&args.files, false)?;
        for folder in empty {
            run.fail(
                &folder.display().to_string(),
                &Error::new(ErrorKind::InvalidInput, "the folder holds no files"),
            );
        }
        for given in files {
            match pipeline.unit {
                Unit::Document => {
                    let named = given.path.clone();
                    run.document(&named, std::slice::from_ref(&given), true)?;
                }
                Unit::Page => run.pages(&given)?,
            }
        }
    }
    Ok(if run.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
