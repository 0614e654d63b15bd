//! Page OCR through Tesseract 5 (the system library: Debian `libtesseract-dev`, with the
//! Vietnamese model `tesseract-ocr-vie`), behind the core's [`Ocr`] port: the page's text in
//! reading order and every word with its box and confidence, read from Tesseract's TSV output.
//! This is the only crate that names libtesseract; it is reached through `tesseract-plumbing`,
//! the kept safe layer over Tesseract's C API.
//!
//! A Tesseract instance is not thread-safe and takes a moment to load its model, so instances
//! are pooled: a call takes one (or makes one), and gives it back when done.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tesseract_plumbing::TessBaseApi;
use vinscan_core::{Error, ErrorKind, Ocr, OcrPage, Result, Word};

/// The resolution Tesseract is told the page has, in pixels per inch: vinscan renders PDFs at
/// the pipeline's DPI (200 by default) and scans are mostly 200–300 dpi. Tesseract uses it to
/// judge character sizes; without one it guesses and warns on stderr.
const ASSUMED_PPI: i32 = 300;

/// [`Ocr`] backed by Tesseract with one language model.
pub struct Tesseract {
    language: CString,
    datapath: Option<CString>,
    pool: Mutex<Vec<TessBaseApi>>,
    /// The most idle instances kept: the machine's cores.
    max_idle: usize,
    engine: String,
}

impl std::fmt::Debug for Tesseract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tesseract")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl Tesseract {
    /// Tesseract with `language` (e.g. `vie`) from `datapath` (a `tessdata` folder; `None`:
    /// `$TESSDATA_PREFIX` or the library's built-in path). Loads one instance now so that a
    /// missing model is a [`ErrorKind::Config`] error at start, not on the first page.
    pub fn load(language: &str, datapath: Option<&Path>) -> Result<Self> {
        let config = |m: String| Error::new(ErrorKind::Config, m);
        let language_c =
            CString::new(language).map_err(|_| config(format!("bad OCR language {language:?}")))?;
        let datapath_c = datapath
            .map(|p| {
                CString::new(p.to_string_lossy().as_bytes())
                    .map_err(|_| config(format!("bad tessdata path {}", p.display())))
            })
            .transpose()?;
        let this = Self {
            language: language_c,
            datapath: datapath_c,
            pool: Mutex::new(Vec::new()),
            max_idle: std::thread::available_parallelism().map_or(4, std::num::NonZeroUsize::get),
            engine: format!("tesseract {} {language}", version()),
        };
        let first = this.instance()?;
        this.give_back(first);
        tracing::info!(engine = %this.engine, "OCR ready");
        Ok(this)
    }

    /// A fresh instance with the language loaded.
    fn instance(&self) -> Result<TessBaseApi> {
        let mut api = TessBaseApi::create();
        api.init_2(self.datapath.as_deref(), Some(self.language.as_c_str())).map_err(|_| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "Tesseract cannot load language {:?} from {} (Debian: apt-get install tesseract-ocr-{}; or set TESSDATA_PREFIX)",
                    self.language.to_string_lossy(),
                    self.datapath
                        .as_deref()
                        .map_or_else(|| "its default tessdata folder".to_owned(), |p| p.to_string_lossy().into_owned()),
                    self.language.to_string_lossy()
                ),
            )
        })?;
        // Tesseract's debug and progress output goes nowhere (never to the daemon's stderr).
        // A process-wide setting: made once, before any instance reads a page.
        static QUIET: std::sync::Once = std::sync::Once::new();
        QUIET.call_once(|| {
            let _ = api.set_variable(c"debug_file", c"/dev/null");
        });
        Ok(api)
    }

    fn take(&self) -> Result<TessBaseApi> {
        let pooled = self.pool.lock().map_err(|_| poisoned())?.pop();
        match pooled {
            Some(api) => Ok(api),
            None => self.instance(),
        }
    }

    /// Returns an instance to the pool, or drops it when the pool already holds as many as
    /// the machine has cores (a burst of pages leaves no crowd of idle engines).
    fn give_back(&self, mut api: TessBaseApi) {
        // forget the page: an idle instance should not hold a page image and its results
        let _ = api.set_image(&[255; 3], 1, 1, 3, 3);
        if let Ok(mut pool) = self.pool.lock()
            && pool.len() < self.max_idle
        {
            pool.push(api);
        }
    }
}

fn poisoned() -> Error {
    Error::new(
        ErrorKind::Internal,
        "the OCR instance pool was poisoned by a panic",
    )
}

/// Tesseract's version string (e.g. `5.3.0`).
fn version() -> String {
    tesseract_plumbing::version().to_string_lossy().into_owned()
}

impl Ocr for Tesseract {
    fn recognise(&self, width: u32, height: u32, rgb: &[u8]) -> Result<OcrPage> {
        let internal = |what: &str| Error::new(ErrorKind::Internal, format!("Tesseract: {what}"));
        let (w, h) = (
            i32::try_from(width).map_err(|_| internal("page too wide"))?,
            i32::try_from(height).map_err(|_| internal("page too tall"))?,
        );
        let stride = w.checked_mul(3).ok_or_else(|| internal("page too wide"))?;
        let mut api = self.take()?;
        let read = (|| {
            api.set_image(rgb, w, h, 3, stride)
                .map_err(|e| internal(&format!("page buffer refused: {e}")))?;
            api.set_source_resolution(ASSUMED_PPI);
            api.recognize().map_err(|_| internal("recognition failed"))?;
            let text = api.get_utf8_text().map_err(|_| internal("no text"))?;
            let text = text.as_ref().to_string_lossy().into_owned();
            let tsv = api.get_tsv_text(0).map_err(|_| internal("no TSV"))?;
            let words = words_from_tsv(&tsv.as_ref().to_string_lossy());
            Ok(OcrPage { text, words })
        })();
        self.give_back(api);
        read
    }

    fn engine(&self) -> String {
        self.engine.clone()
    }
}

/// The words of Tesseract's TSV output (columns `level page_num block_num par_num line_num
/// word_num left top width height conf text`; level 5 is a word, `conf` 0–100): each with its
/// box as left, top, right, bottom and its confidence scaled to 0..=1. Rows that are not words
/// or have no text are skipped.
pub fn words_from_tsv(tsv: &str) -> Vec<Word> {
    tsv.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() < 12 || cols[0] != "5" {
                return None;
            }
            let n = |i: usize| cols[i].trim().parse::<i64>().ok();
            let (left, top, width, height) = (n(6)?, n(7)?, n(8)?, n(9)?);
            let conf: f32 = cols[10].trim().parse().ok()?;
            let text = cols[11..].join("\t");
            let text = text.trim();
            if text.is_empty() || conf < 0.0 || left < 0 || top < 0 || width < 0 || height < 0 {
                return None;
            }
            let at = |v: i64| u32::try_from(v).ok();
            Some(Word {
                text: text.to_owned(),
                bbox: [at(left)?, at(top)?, at(left + width)?, at(top + height)?],
                confidence: (conf / 100.0).clamp(0.0, 1.0),
            })
        })
        .collect()
}

/// Where Tesseract's language models are: `$TESSDATA_PREFIX` when set, else `None` (the
/// library's built-in path, `/usr/share/tesseract-ocr/5/tessdata` on Debian).
pub fn tessdata_from_env() -> Option<PathBuf> {
    std::env::var_os("TESSDATA_PREFIX").map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_rows_become_words_with_boxes() {
        let tsv = "1\t1\t0\t0\t0\t0\t0\t0\t800\t600\t-1\t\n\
                   4\t1\t1\t1\t1\t0\t10\t20\t300\t30\t-1\t\n\
                   5\t1\t1\t1\t1\t1\t10\t20\t120\t30\t96.5\tQUYẾT\n\
                   5\t1\t1\t1\t1\t2\t140\t20\t90\t30\t88\tĐỊNH\n\
                   5\t1\t1\t1\t1\t3\t240\t20\t5\t30\t-1\t \n\
                   5\t1\t1\t1\t1\t4\tx\t20\t5\t30\t50\tbad\n";
        let words = words_from_tsv(tsv);
        assert_eq!(words.len(), 2, "{words:?}");
        assert_eq!(words[0].text, "QUYẾT");
        assert_eq!(words[0].bbox, [10, 20, 130, 50]);
        assert!((words[0].confidence - 0.965).abs() < 1e-6);
        assert_eq!(words[1].bbox, [140, 20, 230, 50]);
    }
}
