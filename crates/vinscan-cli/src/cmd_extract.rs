//! `vinscan extract FILE... --pipeline NAME`: JSON Lines on stdout, one object per document for
//! a document pipeline (every page of a file; every file given, with `--as-document`) and one
//! per page for a page pipeline; or one file per record with `--out`, named after the input
//! file and never overwriting another input's output.
//!
//! `--parallel` inputs are read at once, so the model decodes their pages together; stdout
//! keeps input order (an input's lines wait for every earlier input's), and output names are
//! claimed in input order, so a run names its files as the last one did.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, mpsc};

use vinscan_batch::inputs::{OutputNames, not_a_scan};
use vinscan_batch::local::{read_file, write_atomic};
use vinscan_batch::resume::{document_path, page_path};
use vinscan_batch::{process_as_document, process_document};
use vinscan_core::{Error, ErrorKind, Extractor, Format, Pipeline, Unit};

use crate::cli::{ExtractArgs, GlobalArgs};
use crate::model_load::LazyModel;
use crate::ordered::Ordered;

fn json<T: serde::Serialize>(value: &T, pretty: bool) -> vinscan_core::Result<Vec<u8>> {
    let r = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    };
    r.map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))
}

/// Writes one record to `path` (`--out`), with its `transcript` (when the pipeline made one)
/// beside it as the same name ending `.txt`.
fn write_record<T: serde::Serialize>(
    path: &Path,
    record: &T,
    transcript: Option<String>,
) -> vinscan_core::Result<()> {
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
    write_atomic(path, &json(record, true)?)
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

/// One input's work, made in input order by the reading loop and run by a worker.
enum Job {
    /// One file: one record per page (a page pipeline).
    Pages {
        source: String,
        output_name: String,
        bytes: Vec<u8>,
    },
    /// Files read as one document (a document pipeline, or `--as-document`): one record.
    Document {
        source: String,
        output_name: String,
        inputs: Vec<(String, Vec<u8>)>,
    },
}

impl Job {
    /// The input it reads, for the log.
    fn source(&self) -> &str {
        match self {
            Job::Pages { source, .. } | Job::Document { source, .. } => source,
        }
    }
}

/// What the workers share.
struct Run<'a> {
    extractor: Extractor,
    model: LazyModel,
    pipeline: &'a Pipeline,
    out: Option<&'a Path>,
    stdout: Mutex<Ordered<std::io::Stdout>>,
    /// Signalled when the turn on stdout moves on (or the run stops): the reading loop waits on
    /// it while the window is full.
    turn: Condvar,
    /// The reader of stdout went away (`| head`): the run stops quietly, as after the last
    /// record anyone wanted.
    stdout_closed: AtomicBool,
    /// How many inputs, from the one whose turn it is on stdout on, may be sent to the workers:
    /// later inputs' lines are held in memory until their turn, so a long PDF first does not
    /// hold the records of a whole folder behind it. Unbounded with `--out`, where nothing is
    /// held.
    window: usize,
    failed: AtomicUsize,
    /// The first error that stops the whole run (the model cannot load, its engine is gone):
    /// the jobs after it are not started.
    fatal: Mutex<Option<Error>>,
}

impl Run<'_> {
    fn fail(&self, source: &str, e: &Error) {
        if self.stdout_closed.load(Ordering::Relaxed) {
            // not the input's failure: nothing can be delivered any more
            return;
        }
        self.failed.fetch_add(1, Ordering::Relaxed);
        tracing::error!(source = %source, kind = %e.kind(), error = %e, "extraction failed");
    }

    fn stopped(&self) -> bool {
        self.stdout_closed.load(Ordering::Relaxed)
            || self.fatal.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Stops the run with `e` (the first such error is the one reported).
    fn stop(&self, e: Error) {
        self.fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
        self.wake_reader();
    }

    /// Wakes the reading loop if it waits in [`Run::wait_for_room`]; taking the stdout lock
    /// first means it is either waiting (and woken) or has not yet looked at what changed.
    fn wake_reader(&self) {
        drop(self.stdout.lock().unwrap_or_else(|p| p.into_inner()));
        self.turn.notify_all();
    }

    /// A write to stdout failed: a closed pipe (`| head`) stops the run quietly, anything else
    /// with the error. Returns the error for the job that wrote.
    fn stdout_failed(&self, e: &std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            if !self.stdout_closed.swap(true, Ordering::Relaxed) {
                tracing::info!("stdout was closed: the run stops");
            }
            self.wake_reader();
        } else {
            self.stop(Error::from_io(e, "stdout"));
        }
        Error::from_io(e, "stdout")
    }

    /// Job `index` is over (done, failed or dropped): its turn on stdout passes on.
    fn finish(&self, index: usize) {
        let written = self.stdout.lock().unwrap_or_else(|p| p.into_inner()).done(index);
        self.turn.notify_all();
        if let Err(e) = written {
            self.stdout_failed(&e);
        }
    }

    /// Waits until job `index` is less than `window` after the input whose turn it is on
    /// stdout; false when the run stopped. Cannot wait forever: every job before `index` was
    /// sent, so the one whose turn it is is being worked on and will finish.
    fn wait_for_room(&self, index: usize) -> bool {
        let mut out = self.stdout.lock().unwrap_or_else(|p| p.into_inner());
        while index.saturating_sub(out.turn()) >= self.window {
            if self.stopped() {
                return false;
            }
            out = self.turn.wait(out).unwrap_or_else(|p| p.into_inner());
        }
        !self.stopped()
    }

    /// Writes one record of job `index`: a line on stdout in input order, or a file at `path`
    /// when `--out` is set, with its `transcript` (when the pipeline made one) beside it as the
    /// same name ending `.txt`.
    fn emit<T: serde::Serialize>(
        &self,
        index: usize,
        record: &T,
        transcript: Option<String>,
        path: Option<PathBuf>,
    ) -> vinscan_core::Result<()> {
        match path {
            Some(path) => write_record(&path, record, transcript),
            None => {
                let line = json(record, false)?;
                let written = self
                    .stdout
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .line(index, &line);
                written.map_err(|e| self.stdout_failed(&e))
            }
        }
    }

    /// Runs job `index` to its records; an error that stops the run is kept in `fatal`.
    fn work(&self, index: usize, job: Job) {
        if let Err(e) = self.job(index, job) {
            self.stop(e);
        }
        self.finish(index);
    }

    fn job(&self, index: usize, job: Job) -> Result<(), Error> {
        match job {
            Job::Document {
                source,
                output_name,
                inputs,
            } => {
                let sources = inputs.len();
                let result = process_as_document(&self.extractor, &self.model, self.pipeline, inputs)?;
                match result.and_then(|record| {
                    let pages = record.pages.len();
                    self.emit(
                        index,
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
            }
            Job::Pages {
                source,
                output_name,
                bytes,
            } => {
                let result = process_document(
                    &self.extractor,
                    &self.model,
                    self.pipeline,
                    bytes,
                    &source,
                    |record| {
                        self.emit(
                            index,
                            &record,
                            record.transcript_file(),
                            self.out.map(|d| page_path(d, &output_name, record.page)),
                        )
                    },
                )?;
                match result {
                    Ok(pages) => tracing::info!(source = %source, pages, "extracted"),
                    Err(e) => self.fail(&source, &e),
                }
            }
        }
        Ok(())
    }
}

/// Reads the inputs in order and turns them into jobs: output names are claimed here, in
/// input order, so a run's names are the same in the next run whatever order the workers
/// finish in; reads that fail are counted here.
struct Reader<'a> {
    run: &'a Run<'a>,
    names: OutputNames,
}

impl Reader<'_> {
    fn claim(&mut self, path: &Path) -> String {
        let source = path.display().to_string();
        let name = path
            .file_name()
            .map_or_else(|| source.clone(), |n| n.to_string_lossy().into_owned());
        self.names.claim(&name, path.as_os_str().as_encoded_bytes())
    }

    /// `files` as one document named after `named` (its first file, or the folder given):
    /// one record. `one_file`: the document is a single file of a folder given (no
    /// `--as-document`), so a skipped file is no document rather than a failed one.
    fn document(&mut self, named: &Path, files: &[Given], one_file: bool) -> Option<Job> {
        let source = named.display().to_string();
        let mut inputs = Vec::with_capacity(files.len());
        let mut failed = None;
        for given in files {
            match read_given(given, self.run.pipeline.limits.max_bytes) {
                Read::Bytes(b) => inputs.push((given.path.display().to_string(), b)),
                Read::Skipped => skipped(&given.path),
                Read::Failed(e) => {
                    failed = Some((given.path.display().to_string(), e));
                    break;
                }
            }
        }
        if inputs.is_empty() && failed.is_none() && one_file && !files.is_empty() {
            return None;
        }
        // claimed whether or not the reads worked, so a run's names are the same in the next run
        let output_name = self.claim(named);
        if let Some((path, e)) = failed {
            self.run.fail(&path, &e);
            return None;
        }
        if inputs.is_empty() {
            let why = if files.is_empty() {
                "the folder holds no files"
            } else {
                "the folder holds no JPEG, PNG, TIFF, WebP, BMP, PDF or e-invoice XML"
            };
            self.run.fail(&source, &Error::new(ErrorKind::InvalidInput, why));
            return None;
        }
        Some(Job::Document {
            source,
            output_name,
            inputs,
        })
    }

    /// One record per page of `given`.
    fn pages(&mut self, given: &Given) -> Option<Job> {
        let path = given.path.as_path();
        let source = path.display().to_string();
        // a name is claimed whether or not the read worked; a skipped file is no input and
        // claims none
        match read_given(given, self.run.pipeline.limits.max_bytes) {
            Read::Skipped => {
                skipped(path);
                None
            }
            Read::Failed(e) => {
                self.claim(path);
                self.run.fail(&source, &e);
                None
            }
            Read::Bytes(bytes) => Some(Job::Pages {
                output_name: self.claim(path),
                source,
                bytes,
            }),
        }
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

/// With stdout in input order, how many inputs per worker may be sent from the one whose turn it
/// is on ([`Run::window`]): enough that one slow input (a long PDF) does not
/// leave the other workers idle for long, few enough that the records held are a few MB.
const STDOUT_WINDOW_PER_WORKER: usize = 16;

pub fn run(global: &GlobalArgs, args: ExtractArgs) -> anyhow::Result<ExitCode> {
    let catalog = crate::catalog::catalog(global.pipelines_dir.as_deref(), global.schemas_dir.as_deref())?;
    let pipeline = catalog.pipeline(&args.pipeline)?;
    if args.as_document && pipeline.unit == Unit::Page {
        anyhow::bail!(
            "--as-document needs a document pipeline (unit = \"document\"); {} gives one record per page",
            pipeline.name
        );
    }
    let (files, empty) = expand_folders(&args.files, args.as_document)?;
    let (extractor, model) = args.model.extractor_and_model(&pipeline)?;
    // the model decodes `--parallel` pages together: as many inputs are read at once, each
    // one page at a time; a queue of as many more keeps them fed
    let workers = if args.as_document {
        1
    } else {
        (args.model.parallel as usize).clamp(1, files.len().max(1))
    };
    let run = Run {
        extractor,
        model,
        pipeline: &pipeline,
        out: args.out.as_deref(),
        stdout: Mutex::new(Ordered::new(std::io::stdout())),
        turn: Condvar::new(),
        stdout_closed: AtomicBool::new(false),
        window: if args.out.is_some() {
            usize::MAX
        } else {
            STDOUT_WINDOW_PER_WORKER * workers
        },
        failed: AtomicUsize::new(0),
        fatal: Mutex::new(None),
    };
    let (jobs, queue) = mpsc::sync_channel::<(usize, Job)>(workers);
    let queue = Mutex::new(queue);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((index, job)) = next else { break };
                    if run.stopped() {
                        // the run is over: the job is dropped; its turn on stdout is freed
                        if !run.stdout_closed.load(Ordering::Relaxed) {
                            tracing::warn!(source = %job.source(), "not extracted: the run stopped");
                        }
                        run.finish(index);
                        continue;
                    }
                    // a bug in one input's work stops the run with an error rather than leaving
                    // the reading loop waiting on a queue nobody drains
                    let worked =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.work(index, job)));
                    if worked.is_err() {
                        run.stop(Error::new(ErrorKind::Internal, "an extract worker panicked"));
                        run.finish(index);
                    }
                }
            });
        }
        let mut reader = Reader {
            run: &run,
            names: OutputNames::default(),
        };
        let send = |job: Option<Job>, index: &mut usize| -> bool {
            let Some(job) = job else { return true };
            let sent = run.wait_for_room(*index) && jobs.send((*index, job)).is_ok();
            *index += 1;
            sent
        };
        let mut index = 0;
        if args.as_document {
            // an empty folder adds no pages; with none at all the document fails
            for folder in &empty {
                tracing::warn!(source = %folder.display(), "the folder holds no files: it adds no pages");
            }
            // one folder given: the document is named after it
            let named = match args.files.as_slice() {
                [one] if one.is_dir() => one.clone(),
                _ => files
                    .first()
                    .map_or_else(|| args.files[0].clone(), |g| g.path.clone()),
            };
            let job = reader.document(&named, &files, false);
            send(job, &mut index);
        } else {
            for folder in &empty {
                run.fail(
                    &folder.display().to_string(),
                    &Error::new(ErrorKind::InvalidInput, "the folder holds no files"),
                );
            }
            for (read, given) in files.iter().enumerate() {
                let job = match pipeline.unit {
                    Unit::Document => reader.document(&given.path, std::slice::from_ref(given), true),
                    Unit::Page => reader.pages(given),
                };
                if !send(job, &mut index) {
                    if !run.stdout_closed.load(Ordering::Relaxed) {
                        // the one just read and those not read yet
                        let left = files.len() - read;
                        tracing::warn!(inputs = left, "not extracted: the run stopped");
                    }
                    break;
                }
            }
        }
        // the workers finish what is queued and stop
        drop(jobs);
    });
    if let Some(e) = run.fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e.into());
    }
    Ok(if run.failed.into_inner() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
