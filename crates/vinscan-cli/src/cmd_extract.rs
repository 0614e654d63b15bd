//! `vinscan extract FILE... --pipeline NAME`: JSON Lines on stdout (one object per page), or one
//! file per page with `--out`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use vinscan_core::hash::sha256_hex;
use vinscan_core::{Error, ErrorKind, Extractor, PageRecord, Pipeline};

use crate::cli::{ExtractArgs, GlobalArgs};
use crate::model::{LazyModel, LazyPdf, ModelFiles, catalog, read_input};
use crate::output::{page_path, write_atomic};

/// Runs every page of one document through the pipeline, handing each record to `sink`.
/// Returns the page count; stops at the first failing page. The outer error is for the whole
/// run (the model cannot load); the inner one is this document's.
pub fn process_document(
    extractor: &Extractor,
    model: &LazyModel<'_>,
    pipeline: &Pipeline,
    bytes: Vec<u8>,
    source: &str,
    mut sink: impl FnMut(PageRecord) -> vinscan_core::Result<()>,
) -> anyhow::Result<Result<u32, Error>> {
    let sha = sha256_hex(&bytes);
    let doc = match extractor.open(source, bytes, pipeline) {
        Ok(d) => d,
        Err(e) => return Ok(Err(e)),
    };
    // A model that cannot load is a configuration error for the whole run, not this input.
    let vision = model.get()?;
    for index in 0..doc.page_count() {
        let record = match extractor.extract_page(vision, &doc, &sha, index, pipeline) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = sink(record) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(doc.page_count()))
}

pub fn run(global: &GlobalArgs, args: ExtractArgs) -> anyhow::Result<ExitCode> {
    let catalog = catalog(global)?;
    let pipeline = catalog.pipeline(&args.pipeline)?;
    let files = ModelFiles::resolve(&args.model)?;
    let model = LazyModel::new(files, &args.model);
    let extractor = Extractor::new(Some(Arc::new(LazyPdf::default())));
    let stdout = std::io::stdout();
    let mut failed = 0usize;
    for path in &args.files {
        let source = path.display().to_string();
        let bytes = match read_input(path, &pipeline.limits) {
            Ok(b) => b,
            Err(e) => {
                failed += 1;
                tracing::error!(source = %source, kind = %e.kind(), error = %e, "extraction failed");
                continue;
            }
        };
        let result = process_document(
            &extractor,
            &model,
            &pipeline,
            bytes,
            &source,
            |record| match &args.out {
                Some(dir) => {
                    let name = path.file_name().map(Path::new).unwrap_or(path);
                    let bytes = serde_json::to_vec_pretty(&record)
                        .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
                    write_atomic(&page_path(dir, name, record.page), &bytes)
                }
                None => {
                    let line = serde_json::to_string(&record)
                        .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
                    let mut out = stdout.lock();
                    writeln!(out, "{line}")
                        .and_then(|()| out.flush())
                        .map_err(|e| Error::from_io(&e, "stdout"))
                }
            },
        )?;
        match result {
            Ok(pages) => tracing::info!(source = %source, pages, "extracted"),
            Err(e) => {
                failed += 1;
                tracing::error!(source = %source, kind = %e.kind(), error = %e, "extraction failed");
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
