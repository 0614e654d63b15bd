//! A batch run: every input to its manifest line — read, skip when its outputs exist and
//! match, extract and write its pages, or say why not (failed, unsupported) — `parallel`
//! inputs at a time, so their pages decode together in the model and one input's IO overlaps
//! the others' inference.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use vinscan_core::hash::sha256_hex;
use vinscan_core::transcript::text_file_name;
use vinscan_core::{DocumentRecord, Error, ErrorKind, Extractor, PageRecord, Pipeline, Unit};
use vinscan_jobs::kinds::pipeline_error;
use vinscan_storage::{ObjectStore, join_key};

use crate::ModelOnDemand;
use crate::document::{process_as_document, process_document};
use crate::inputs::{Input, InputPlace, not_a_scan};
use crate::resume::{Expected, document_name, matches, matches_document, page_name};

/// A place records go: a store, a key prefix in it, and how a key is shown (a local path, or
/// `s3://bucket/key`).
pub struct Place<'a> {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: String,
    pub name: &'a (dyn Fn(&str) -> String + Sync),
}

/// A place borrowed: its store, key prefix and how a key is shown.
type PlaceRef<'p> = (&'p dyn ObjectStore, &'p str, &'p (dyn Fn(&str) -> String + Sync));

/// One line of `manifest.jsonl`.
#[derive(Debug, Serialize)]
pub struct ManifestEntry<'a> {
    pub source: &'a str,
    /// `ok`, `skipped` (outputs exist and match), `failed` or `unsupported` (not a scan).
    pub status: &'static str,
    pub pages: u32,
    /// Its records: one per page for a page pipeline, the document's one for a document
    /// pipeline (`OUT/<relative path>.json`).
    pub outputs: Vec<String>,
    /// Whether a record of the input needs review (the pipeline's `[review]` rules).
    pub review: bool,
    /// Pages covered by records that need review.
    pub review_pages: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ManifestError>,
    pub elapsed_ms: u64,
}

/// Why an input failed or is unsupported: the pipeline's error kind and message.
#[derive(Debug, Serialize)]
pub struct ManifestError {
    pub kind: ErrorKind,
    pub message: String,
}

/// The counts a run ends with (printed as JSON by `vinscan batch`).
#[derive(Debug, Serialize)]
pub struct Summary {
    pub inputs: usize,
    pub processed: usize,
    pub skipped: usize,
    pub failed: usize,
    pub unsupported: usize,
    /// What one record covers: `page` or `document` (the pipeline's `unit`).
    pub unit: Unit,
    /// Records written: pages for a page pipeline, documents for a document pipeline.
    pub records_written: u32,
    /// Pages covered by the records written.
    pub pages_written: u32,
    /// Records, written or reused, that need review.
    pub records_needing_review: u32,
    /// Pages covered by records, written or reused, that need review.
    pub pages_needing_review: u32,
    pub model_loaded: bool,
    pub manifest: String,
    pub elapsed_ms: u64,
}

/// How a run shows its progress (the binary's progress bar).
pub trait Progress: Sync {
    /// Work on `source` begins.
    fn start(&self, source: &str);
    /// An input is done.
    fn done(&self);
    /// Runs `log` so that its output does not garble the progress display.
    fn log(&self, log: &mut dyn FnMut());
}

#[derive(Default)]
struct Counts {
    processed: AtomicUsize,
    skipped: AtomicUsize,
    failed: AtomicUsize,
    unsupported: AtomicUsize,
    records_written: AtomicU32,
    pages_written: AtomicU32,
    records_needing_review: AtomicU32,
    pages_needing_review: AtomicU32,
}

/// How one input ended, before it becomes a manifest entry.
struct Outcome {
    status: &'static str,
    pages: u32,
    outputs: Vec<String>,
    review_records: u32,
    review_pages: u32,
    error: Option<Error>,
}

impl Outcome {
    fn new(status: &'static str, pages: u32, outputs: Vec<String>, error: Option<Error>) -> Self {
        Self {
            status,
            pages,
            outputs,
            review_records: 0,
            review_pages: 0,
            error,
        }
    }
}

/// What every worker of a run shares.
pub struct Batch<'a> {
    pub rt: tokio::runtime::Runtime,
    pub out: Arc<dyn ObjectStore>,
    /// Key prefix of the outputs in `out`.
    pub out_prefix: String,
    /// How an output key is shown (a local path, or `s3://bucket/key`).
    pub out_name: &'a (dyn Fn(&str) -> String + Sync),
    /// Where records that need review go instead of `out`, at the same relative name.
    pub review_out: Option<Place<'a>>,
    pub extractor: Extractor,
    pub model: &'a dyn ModelOnDemand,
    pub pipeline: Arc<Pipeline>,
    /// Process inputs even when their outputs exist and match.
    pub force: bool,
    pub progress: &'a dyn Progress,
    counts: Counts,
}

impl<'a> Batch<'a> {
    #[allow(clippy::too_many_arguments)] // the run's settings, each named where it is built
    pub fn new(
        rt: tokio::runtime::Runtime,
        out: Arc<dyn ObjectStore>,
        out_prefix: String,
        out_name: &'a (dyn Fn(&str) -> String + Sync),
        extractor: Extractor,
        model: &'a dyn ModelOnDemand,
        pipeline: Arc<Pipeline>,
        force: bool,
        progress: &'a dyn Progress,
    ) -> Self {
        Self {
            rt,
            out,
            out_prefix,
            out_name,
            review_out: None,
            extractor,
            model,
            pipeline,
            force,
            progress,
            counts: Counts::default(),
        }
    }

    /// Records that need review go to `place` instead of the output, at the same name.
    pub fn with_review_out(mut self, place: Place<'a>) -> Self {
        self.review_out = Some(place);
        self
    }

    /// Whether every place a record called `name` may go can hold its key.
    fn check_keys(&self, name: &str) -> Result<(), vinscan_storage::StorageError> {
        self.places()
            .try_for_each(|(store, prefix, _)| store.check_key(&join_key(prefix, name)))
    }

    /// The output place, and the review place when one is set.
    fn places(&self) -> impl Iterator<Item = PlaceRef<'_>> {
        std::iter::once((self.out.as_ref(), self.out_prefix.as_str(), self.out_name)).chain(
            self.review_out
                .iter()
                .map(|p| (p.store.as_ref(), p.prefix.as_str(), p.name)),
        )
    }

    /// The record called `name` (relative to the output) that `wanted` accepts, from the
    /// output or else the review place, with its shown name; `None` when neither holds one (a
    /// stale copy in one place does not hide a current one in the other).
    fn find<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        wanted: impl Fn(&T) -> bool,
    ) -> Option<(T, String)> {
        self.places().find_map(|(store, prefix, shown)| {
            let key = join_key(prefix, name);
            let o = self.rt.block_on(store.get(&key, 64 << 20, None)).ok()?;
            let record: T = serde_json::from_slice(&o.bytes).ok()?;
            wanted(&record).then(|| (record, shown(&key)))
        })
    }

    /// Writes the record called `name` to the review place when it needs review and one is
    /// set, else to the output; removes a copy an earlier run left in the other place (its
    /// verdict was different). Returns the shown name.
    fn write(
        &self,
        name: &str,
        needs_review: bool,
        record: &impl Serialize,
        transcript: Option<String>,
    ) -> Result<String, Error> {
        let json =
            serde_json::to_vec_pretty(record).map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        let to_review = needs_review && self.review_out.is_some();
        let mut places = self.places();
        let (out, review) = (places.next(), places.next());
        let (target, other) = if to_review { (review, out) } else { (out, review) };
        let Some((store, prefix, shown)) = target else {
            return Err(Error::new(ErrorKind::Internal, "no output place"));
        };
        let key = join_key(prefix, name);
        let txt = join_key(prefix, &text_file_name(name));
        match transcript {
            // the transcript first: a record is only there once all of it is
            Some(text) => self
                .rt
                .block_on(store.put(&txt, Bytes::from(text), "text/plain; charset=utf-8"))
                .map_err(pipeline_error)?,
            // none now (a scan under `pdf-text`): an earlier run's would sit beside a record it
            // is not from
            None if self.pipeline.transcriber != vinscan_core::Transcriber::None => {
                if let Err(e) = self.rt.block_on(store.delete(&txt)) {
                    tracing::warn!(key = %txt, error = %e, "a stale transcript was not removed");
                }
            }
            None => {}
        }
        self.rt
            .block_on(store.put(&key, Bytes::from(json), "application/json"))
            .map_err(pipeline_error)?;
        if let Some((other, other_prefix, _)) = other {
            let other_key = join_key(other_prefix, name);
            // never the record just written (both places the same store and prefix)
            if (other.uri(), other_key.as_str()) != (store.uri(), key.as_str()) {
                for k in [join_key(other_prefix, &text_file_name(name)), other_key] {
                    if let Err(e) = self.rt.block_on(other.delete(&k)) {
                        // a stale copy is only confusing, never wrong: its record says when it was made
                        tracing::warn!(key = %k, error = %e, "a stale copy of a record was not removed");
                    }
                }
            }
        }
        Ok(shown(&key))
    }

    /// Output names of an input whose pages all exist and match, and how many of them need
    /// review; `None` to process it.
    fn reusable(&self, input: &Input, expected: &Expected<'_>) -> Option<(Vec<String>, u32)> {
        let (first, first_name) =
            self.find::<PageRecord>(&page_name(&input.output_name, 1), |r| matches(r, expected))?;
        let mut names = vec![first_name];
        let mut review = u32::from(first.review.needed);
        for page in 2..=first.provenance.page_count {
            let (record, name) =
                self.find::<PageRecord>(&page_name(&input.output_name, page), |r| matches(r, expected))?;
            review += u32::from(record.review.needed);
            names.push(name);
        }
        Some((names, review))
    }

    fn failed(&self, input: &Input, e: Error, pages: u32, outputs: Vec<String>) -> Outcome {
        self.counts.failed.fetch_add(1, Ordering::Relaxed);
        self.progress.log(&mut || {
            tracing::error!(source = %input.source, kind = %e.kind(), error = %e, "input failed");
        });
        Outcome::new("failed", pages, outputs, Some(e))
    }

    fn unsupported(&self, why: Error) -> Outcome {
        self.counts.unsupported.fetch_add(1, Ordering::Relaxed);
        Outcome::new("unsupported", 0, Vec::new(), Some(why))
    }

    /// One input to its manifest entry. `Err` only for what stops the whole run (the model
    /// cannot load or its engine is gone); an output that cannot be written fails its input.
    pub fn one_input<'i>(&self, input: &'i Input) -> Result<ManifestEntry<'i>, Error> {
        let t = Instant::now();
        self.progress.start(&input.source);
        let outcome = match &input.place {
            InputPlace::Folder(members) => self.folder(input, members)?,
            _ => self.file(input)?,
        };
        self.counts
            .pages_needing_review
            .fetch_add(outcome.review_pages, Ordering::Relaxed);
        self.counts
            .records_needing_review
            .fetch_add(outcome.review_records, Ordering::Relaxed);
        Ok(ManifestEntry {
            source: &input.source,
            status: outcome.status,
            pages: outcome.pages,
            outputs: outcome.outputs,
            review: outcome.review_records > 0,
            review_pages: outcome.review_pages,
            error: outcome.error.map(|e| ManifestError {
                kind: e.kind(),
                message: e.message().to_owned(),
            }),
            elapsed_ms: t.elapsed().as_millis() as u64,
        })
    }

    /// A folder document's files read in page order; a file that is a scan by neither its
    /// name nor its content (a `Thumbs.db`, notes) is left out, and a folder without scans is
    /// unsupported.
    fn folder(&self, input: &Input, members: &[Input]) -> Result<Outcome, Error> {
        let mut parts = Vec::with_capacity(members.len());
        for member in members {
            match self.rt.block_on(member.read(self.pipeline.limits.max_bytes)) {
                Err(e) if !member.scan_extension && e.kind() == ErrorKind::TooLarge => {}
                Err(e) => return Ok(self.failed(input, e.context(&member.source), 0, Vec::new())),
                Ok(bytes) if !member.scan_extension && not_a_scan(&bytes).is_some() => {}
                Ok(bytes) => parts.push((member.source.clone(), bytes)),
            }
        }
        if parts.is_empty() {
            return Ok(self.unsupported(Error::new(
                ErrorKind::Unsupported,
                "the folder holds no JPEG, PNG, TIFF, WebP, BMP or PDF",
            )));
        }
        if self.pipeline.unit != Unit::Document {
            return Err(Error::new(
                ErrorKind::Config,
                "folder documents need a document pipeline (unit = \"document\")",
            ));
        }
        let shas: Vec<String> = parts.iter().map(|(_, b)| sha256_hex(b)).collect();
        self.scan_document(input, parts, &self.expected(&shas))
    }

    /// What an existing output must have been made from to be reused.
    fn expected<'s>(&'s self, source_sha256: &'s [String]) -> Expected<'s> {
        let (model_sha256, mmproj_sha256) = self.model.files_sha256();
        Expected {
            source_sha256,
            pipeline_sha256: &self.pipeline.sha256,
            schema_sha256: self.pipeline.schema.sha256(),
            model_sha256,
            mmproj_sha256,
            text_model_sha256: self.extractor.text_model_sha256(&self.pipeline),
        }
    }

    /// One file: read, recognised, extracted.
    fn file(&self, input: &Input) -> Result<Outcome, Error> {
        let read = self.rt.block_on(input.read(self.pipeline.limits.max_bytes));
        Ok(match read {
            Err(e) if !input.scan_extension && e.kind() == ErrorKind::TooLarge => {
                self.unsupported(e.context("not a scan by its name, and too large to read for its content"))
            }
            Err(e) => self.failed(input, e.context(&input.source), 0, Vec::new()),
            Ok(bytes) => match (!input.scan_extension).then(|| not_a_scan(&bytes)).flatten() {
                Some(why) => self.unsupported(why),
                None => self.scan(input, bytes)?,
            },
        })
    }

    fn scan(&self, input: &Input, bytes: Vec<u8>) -> Result<Outcome, Error> {
        let sha = [sha256_hex(&bytes)];
        let expected = self.expected(&sha);
        if self.pipeline.unit == Unit::Document {
            return self.scan_document(input, vec![(input.source.clone(), bytes)], &expected);
        }
        // an output name the output store cannot hold fails the input before any inference
        if let Err(e) = self.check_keys(&page_name(&input.output_name, 1)) {
            return Ok(self.failed(input, pipeline_error(e).context(&input.source), 0, Vec::new()));
        }
        if !self.force
            && let Some((existing, review_pages)) = self.reusable(input, &expected)
        {
            self.counts.skipped.fetch_add(1, Ordering::Relaxed);
            let pages = existing.len() as u32;
            return Ok(Outcome {
                review_pages,
                review_records: review_pages,
                ..Outcome::new("skipped", pages, existing, None)
            });
        }
        let mut outputs = Vec::new();
        let mut review_pages = 0;
        let result = process_document(
            &self.extractor,
            self.model,
            &self.pipeline,
            bytes,
            &input.source,
            |record| {
                review_pages += u32::from(record.review.needed);
                let name = page_name(&input.output_name, record.page);
                outputs.push(self.write(&name, record.review.needed, &record, record.transcript_file())?);
                Ok(())
            },
        )?;
        self.counts
            .pages_written
            .fetch_add(outputs.len() as u32, Ordering::Relaxed);
        self.counts
            .records_written
            .fetch_add(outputs.len() as u32, Ordering::Relaxed);
        let outcome = match result {
            Ok(pages) => {
                self.counts.processed.fetch_add(1, Ordering::Relaxed);
                Outcome::new("ok", pages, outputs, None)
            }
            Err(e) => {
                let pages = outputs.len() as u32;
                self.failed(input, e, pages, outputs)
            }
        };
        Ok(Outcome {
            review_pages,
            review_records: review_pages,
            ..outcome
        })
    }

    /// A document pipeline's input (a file, or a folder's files as `parts`: source and bytes in
    /// page order): one record, `OUT/<output name>.json`, reused when it exists and matches.
    fn scan_document(
        &self,
        input: &Input,
        parts: Vec<(String, Vec<u8>)>,
        expected: &Expected<'_>,
    ) -> Result<Outcome, Error> {
        let name = document_name(&input.output_name);
        if let Err(e) = self.check_keys(&name) {
            return Ok(self.failed(input, pipeline_error(e).context(&input.source), 0, Vec::new()));
        }
        let verdict = |record: &DocumentRecord| {
            let pages = record.pages.len() as u32;
            let needed = u32::from(record.review.needed);
            (pages, needed, needed * pages)
        };
        if !self.force
            && let Some((existing, shown)) =
                self.find::<DocumentRecord>(&name, |r| matches_document(r, expected))
        {
            self.counts.skipped.fetch_add(1, Ordering::Relaxed);
            let (pages, review_records, review_pages) = verdict(&existing);
            return Ok(Outcome {
                review_records,
                review_pages,
                ..Outcome::new("skipped", pages, vec![shown], None)
            });
        }
        let result = process_as_document(&self.extractor, self.model, &self.pipeline, parts)?;
        let record = match result {
            Ok(r) => r,
            Err(e) => return Ok(self.failed(input, e, 0, Vec::new())),
        };
        let (pages, review_records, review_pages) = verdict(&record);
        let shown = match self.write(&name, record.review.needed, &record, record.transcript_file()) {
            Ok(shown) => shown,
            Err(e) => return Ok(self.failed(input, e, pages, Vec::new())),
        };
        self.counts.processed.fetch_add(1, Ordering::Relaxed);
        self.counts.records_written.fetch_add(1, Ordering::Relaxed);
        self.counts.pages_written.fetch_add(pages, Ordering::Relaxed);
        Ok(Outcome {
            review_records,
            review_pages,
            ..Outcome::new("ok", pages, vec![shown], None)
        })
    }

    /// Every input, `parallel` at a time; the manifest is checkpointed every 20 inputs and
    /// written whole at the end. Returns the run's summary.
    pub fn run(&self, inputs: &[Input], parallel: usize, started: Instant) -> Result<Summary, Error> {
        let manifest_key = join_key(&self.out_prefix, "manifest.jsonl");
        let manifest = Mutex::new(Vec::<u8>::new());
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let write = |bytes: Vec<u8>| {
            self.rt
                .block_on(
                    self.out
                        .put(&manifest_key, Bytes::from(bytes), "application/x-ndjson"),
                )
                .map_err(|e| pipeline_error(e).context("writing the manifest"))
        };
        let worker = || -> Result<(), Error> {
            while let Some(input) = inputs.get(next.fetch_add(1, Ordering::Relaxed)) {
                let entry = self.one_input(input)?;
                let line =
                    serde_json::to_vec(&entry).map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
                let mut m = manifest.lock().unwrap_or_else(|p| p.into_inner());
                m.extend_from_slice(&line);
                m.push(b'\n');
                // checkpoint now and then, so an interrupted run leaves a record
                if done.fetch_add(1, Ordering::Relaxed) % 20 == 19 {
                    write(m.clone())?;
                }
                drop(m);
                self.progress.done();
            }
            Ok(())
        };
        let workers = parallel.clamp(1, inputs.len().max(1));
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers).map(|_| scope.spawn(worker)).collect();
            for h in handles {
                h.join()
                    .map_err(|_| Error::new(ErrorKind::Internal, "a batch worker panicked"))??;
            }
            Ok::<_, Error>(())
        })?;
        write(manifest.into_inner().unwrap_or_else(|p| p.into_inner()))?;
        let c = &self.counts;
        Ok(Summary {
            inputs: inputs.len(),
            processed: c.processed.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            unsupported: c.unsupported.load(Ordering::Relaxed),
            unit: self.pipeline.unit,
            records_written: c.records_written.load(Ordering::Relaxed),
            pages_written: c.pages_written.load(Ordering::Relaxed),
            records_needing_review: c.records_needing_review.load(Ordering::Relaxed),
            pages_needing_review: c.pages_needing_review.load(Ordering::Relaxed),
            model_loaded: self.model.loaded(),
            manifest: (self.out_name)(&manifest_key),
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }
}
