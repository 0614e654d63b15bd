//! PDF rendering with pdfium through `pdfium-render`.
//!
//! The library is `libpdfium.so` from the PyPI wheel `pypdfium2` 5.15.2 (PDFium build 8149,
//! which binds with pdfium-render 0.9.5's default `pdfium_latest` API). It is bound once per
//! process: pdfium-render's bindings are process-global, and a second bind fails.
//!
//! Architecture invariant: this is the only crate that names pdfium; it renders pages into
//! plain RGB buffers and knows nothing of models or pipelines.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use pdfium_render::prelude::*;
use vinscan_core::{Error, ErrorKind, Limits, PdfRenderer, RenderedPage, Result, TextLayer, Word};

/// Environment variables naming `libpdfium.so` (a file, or a directory holding it).
pub const LIBRARY_ENV: [&str; 2] = ["VINSCAN_PDFIUM_LIB", "PDFIUM_LIB"];
/// The wheel vinscan is tested with.
pub const WHEEL: &str = "pypdfium2==5.15.2";

fn lib_name() -> String {
    Pdfium::pdfium_platform_library_name()
        .to_string_lossy()
        .into_owned()
}

fn in_dir_or_file(p: &Path) -> Option<PathBuf> {
    if p.is_file() {
        Some(p.to_path_buf())
    } else {
        let f = p.join(lib_name());
        f.is_file().then_some(f)
    }
}

/// Where `libpdfium.so` is: the env vars, next to the executable, or inside the `pypdfium2`
/// wheel of the active Python (`$VIRTUAL_ENV`, then `python3` on `PATH`).
pub fn find_library() -> Result<PathBuf> {
    let mut tried = Vec::new();
    for var in LIBRARY_ENV {
        if let Some(v) = std::env::var_os(var) {
            let p = PathBuf::from(&v);
            if let Some(f) = in_dir_or_file(&p) {
                return Ok(f);
            }
            tried.push(format!("${var}={}", p.display()));
        }
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        if let Some(f) = in_dir_or_file(&dir) {
            return Ok(f);
        }
        tried.push(dir.display().to_string());
    }
    let mut pythons = Vec::new();
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        pythons.push(PathBuf::from(venv).join("bin/python"));
    }
    pythons.push(PathBuf::from("python3"));
    for py in pythons {
        let out = Command::new(&py)
            .args([
                "-c",
                "import os, pypdfium2_raw; print(os.path.dirname(pypdfium2_raw.__file__))",
            ])
            .output();
        if let Ok(out) = out
            && out.status.success()
        {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if let Some(f) = in_dir_or_file(&dir) {
                return Ok(f);
            }
        }
        tried.push(format!("pypdfium2 wheel of {}", py.display()));
    }
    Err(Error::new(
        ErrorKind::Config,
        format!(
            "{} not found (looked in: {}); set VINSCAN_PDFIUM_LIB to its path, or `pip install {WHEEL}` (vinscan uses the library inside that wheel)",
            lib_name(),
            tried.join(", ")
        ),
    ))
}

static PDFIUM: OnceLock<std::result::Result<Arc<Pdfium>, String>> = OnceLock::new();

/// Renders PDF pages with pdfium (calls are serialised by pdfium-render's `thread_safe`).
pub struct PdfiumRenderer {
    pdfium: Arc<Pdfium>,
}

impl PdfiumRenderer {
    /// Binds the library found by [`find_library`] (once per process) and returns a renderer.
    pub fn load() -> Result<Self> {
        let bound = PDFIUM.get_or_init(|| {
            let path = find_library().map_err(|e| e.to_string())?;
            let bindings = Pdfium::bind_to_library(&path)
                .map_err(|e| format!("cannot load {}: {e} (vinscan expects {WHEEL})", path.display()))?;
            tracing::info!(library = %path.display(), "pdfium bound");
            Ok(Arc::new(Pdfium::new(bindings)))
        });
        match bound {
            Ok(p) => Ok(Self {
                pdfium: Arc::clone(p),
            }),
            Err(e) => Err(Error::new(ErrorKind::Config, e.clone())),
        }
    }

    fn open<'a>(&'a self, pdf: &'a [u8]) -> Result<PdfDocument<'a>> {
        self.pdfium.load_pdf_from_byte_slice(pdf, None).map_err(pdf_error)
    }
}

fn pdf_error(e: PdfiumError) -> Error {
    match e {
        PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::PasswordError)
        | PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::SecurityError) => Error::new(
            ErrorKind::Unsupported,
            "encrypted PDF (password protected): cannot be rendered",
        ),
        PdfiumError::PdfiumLibraryInternalError(PdfiumInternalError::FormatError) => Error::new(
            ErrorKind::InvalidInput,
            "corrupt or truncated PDF (pdfium cannot parse it)",
        ),
        other => Error::new(ErrorKind::InvalidInput, format!("cannot read PDF: {other}")),
    }
}

/// Pixel size of a page of `w_pt × h_pt` points at `dpi`, scaled down to fit `limits`.
pub fn render_size(w_pt: f32, h_pt: f32, dpi: f32, limits: &Limits) -> Result<(u32, u32)> {
    if !(w_pt.is_finite() && h_pt.is_finite()) || w_pt <= 0.0 || h_pt <= 0.0 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("page has an invalid size {w_pt}x{h_pt} pt"),
        ));
    }
    let mut scale = f64::from(dpi) / 72.0;
    let (w, h) = (f64::from(w_pt), f64::from(h_pt));
    let max_dim = f64::from(limits.max_dimension);
    scale = scale.min(max_dim / w).min(max_dim / h);
    let max_px = limits.max_pixels as f64;
    if w * h * scale * scale > max_px {
        scale = (max_px / (w * h)).sqrt();
    }
    let pw = (w * scale).floor().max(1.0) as u32;
    let ph = (h * scale).floor().max(1.0) as u32;
    Ok((pw, ph))
}

impl PdfRenderer for PdfiumRenderer {
    fn page_count(&self, pdf: &[u8]) -> Result<u32> {
        let doc = self.open(pdf)?;
        Ok(u32::try_from(doc.pages().len()).unwrap_or(0))
    }

    fn render_page(&self, pdf: &[u8], index: u32, dpi: f32, limits: &Limits) -> Result<RenderedPage> {
        let doc = self.open(pdf)?;
        let page = doc.pages().get(page_index(index)?).map_err(pdf_error)?;
        let (w, h) = render_size(page.width().value, page.height().value, dpi, limits)?;
        let config = PdfRenderConfig::new()
            .set_target_width(w as Pixels)
            .set_target_height(h as Pixels)
            .render_form_data(true);
        let bitmap = page.render_with_config(&config).map_err(pdf_error)?;
        let image = bitmap.as_image().map_err(pdf_error)?.into_rgb8();
        let (width, height) = image.dimensions();
        Ok(RenderedPage {
            width,
            height,
            rgb: image.into_raw(),
        })
    }

    /// Every character of the page's text page in content order, pdfium's generated spaces and
    /// line breaks included, whatever the page's rotation or box origin (pdfium-render's
    /// `all()` bounds the text by the rotated page size and loses text on a rotated page).
    /// Invisible text (render mode 3, a scanner's hidden OCR layer) is left out: it is not the
    /// page's own text, and often lacks the Vietnamese diacritics. A word is a run of visible
    /// characters between whitespace; its box is the union of its characters' loose bounds
    /// (font ascent to descent), mapped to pixels as pdfium renders the page at `size`.
    fn page_text(&self, pdf: &[u8], index: u32, size: (u32, u32)) -> Result<TextLayer> {
        let doc = self.open(pdf)?;
        let page = doc.pages().get(page_index(index)?).map_err(pdf_error)?;
        let text = page.text().map_err(pdf_error)?;
        let config = PdfRenderConfig::new()
            .set_target_width(size.0 as Pixels)
            .set_target_height(size.1 as Pixels);
        let mut layer = TextLayer::default();
        let mut word: Option<(String, PdfRect)> = None;
        let finish = |word: &mut Option<(String, PdfRect)>, layer: &mut TextLayer| {
            if let Some((text, rect)) = word.take()
                && let Some(bbox) = pixel_box(&page, &rect, &config, size)
            {
                layer.words.push(Word {
                    text,
                    bbox,
                    confidence: 1.0,
                });
            }
        };
        for ch in text.chars().iter() {
            // generated characters have no text object (an error here): they are kept
            if matches!(ch.render_mode(), Ok(PdfPageTextRenderMode::Invisible)) {
                continue;
            }
            let Some(s) = ch.unicode_string() else { continue };
            layer.text.push_str(&s);
            match ch.loose_bounds() {
                Ok(rect) if !s.chars().all(char::is_whitespace) && !ch.is_generated().unwrap_or(false) => {
                    match &mut word {
                        Some((text, bounds)) => {
                            text.push_str(&s);
                            *bounds = union(bounds, &rect);
                        }
                        None => word = Some((s, rect)),
                    }
                }
                _ => finish(&mut word, &mut layer),
            }
        }
        finish(&mut word, &mut layer);
        Ok(layer)
    }
}

fn union(a: &PdfRect, b: &PdfRect) -> PdfRect {
    PdfRect::new_from_values(
        a.bottom().value.min(b.bottom().value),
        a.left().value.min(b.left().value),
        a.top().value.max(b.top().value),
        a.right().value.max(b.right().value),
    )
}

/// `rect` (page points) as left, top, right, bottom pixels of the page rendered by `config`,
/// clamped to `size`; `None` when pdfium cannot map it or it is empty.
fn pixel_box(
    page: &PdfPage<'_>,
    rect: &PdfRect,
    config: &PdfRenderConfig,
    size: (u32, u32),
) -> Option<[u32; 4]> {
    let a = page.points_to_pixels(rect.left(), rect.top(), config).ok()?;
    let b = page.points_to_pixels(rect.right(), rect.bottom(), config).ok()?;
    let clamp = |v: i32, max: u32| v.clamp(0, max as i32) as u32;
    let (x0, x1) = (clamp(a.0.min(b.0), size.0), clamp(a.0.max(b.0), size.0));
    let (y0, y1) = (clamp(a.1.min(b.1), size.1), clamp(a.1.max(b.1), size.1));
    (x1 > x0 && y1 > y0).then_some([x0, y0, x1, y1])
}

fn page_index(index: u32) -> Result<PdfPageIndex> {
    PdfPageIndex::try_from(index).map_err(|_| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("page index {index} out of range"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a4_at_150_dpi() {
        let (w, h) = render_size(595.3, 841.9, 150.0, &Limits::default()).expect("size");
        assert_eq!((w, h), (1240, 1753));
    }

    #[test]
    fn huge_page_is_scaled_into_limits() {
        let limits = Limits {
            max_pixels: 1_000_000,
            max_dimension: 5000,
            ..Limits::default()
        };
        let (w, h) = render_size(14400.0, 14400.0, 300.0, &limits).expect("size");
        assert!(u64::from(w) * u64::from(h) <= 1_000_000 && w <= 5000, "{w}x{h}");
    }

    #[test]
    fn zero_size_page_is_invalid() {
        assert!(render_size(0.0, 10.0, 150.0, &Limits::default()).is_err());
    }
}
