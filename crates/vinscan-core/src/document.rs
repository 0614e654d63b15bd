//! Documents to pages: format sniffing, bounded decoding of JPEG/PNG/WebP/BMP, EXIF and TIFF
//! orientation, TIFF pages through a [`TiffDecoder`] (libtiff lives in its own crate) and PDF
//! pages through a [`PdfRenderer`] (pdfium lives in its own crate).

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage, metadata::Orientation};

use crate::error::{Error, ErrorKind, Result};
use crate::limits::Limits;
pub use crate::raster::Page;
pub use crate::raster::check_pixels;
use crate::raster::flatten_to_rgb;

/// The input formats vinscan reads, identified by content, never by file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jpeg,
    Png,
    Tiff,
    WebP,
    Bmp,
    Pdf,
    /// A Vietnamese e-invoice (the tax authority's XML, root `HDon`): read without the model
    /// (`vinscan_core::einvoice`).
    Xml,
}

impl Format {
    /// Identifies a document by its content: the signature at its start, or for PDF a `%PDF`
    /// header starting within the first [`PDF_HEADER_WINDOW`](Self::PDF_HEADER_WINDOW) bytes,
    /// as PDF readers (pdfium among them) accept. TIFF is classic (`II*\0`, `MM\0*`) or
    /// BigTIFF (`II+\0`, `MM\0+`); BMP needs a known DIB header size after its `BM` (two
    /// letters that junk before a PDF header can also start with).
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        let starts = |m: &[u8]| bytes.starts_with(m);
        if starts(b"%PDF-") {
            Some(Self::Pdf)
        } else if starts(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if starts(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if starts(b"II*\0") || starts(b"MM\0*") || starts(b"II+\0") || starts(b"MM\0+") {
            Some(Self::Tiff)
        } else if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WEBP" {
            Some(Self::WebP)
        } else if starts(b"BM") && is_bmp_header(bytes) {
            Some(Self::Bmp)
        } else if crate::einvoice::is_einvoice(bytes) {
            Some(Self::Xml)
        } else if bytes[..bytes.len().min(Self::PDF_HEADER_WINDOW + 4)]
            .windows(4)
            .any(|w| w == b"%PDF")
        {
            // a byte-order mark, a mail header or other junk before the header
            Some(Self::Pdf)
        } else {
            None
        }
    }

    /// How far into a file a PDF header may start: offsets 0 to 1,024, the window Acrobat's
    /// implementation note to ISO 32000-1 §7.5.2 allows and pdfium's parser searches.
    pub const PDF_HEADER_WINDOW: usize = 1024;

    /// File extensions of scans (lower case): `batch` and `enqueue` read these without looking
    /// first; a file with another or no extension is recognised by its content.
    pub const EXTENSIONS: &'static [&'static str] = &[
        "jpg", "jpeg", "jpe", "jfif", "png", "tif", "tiff", "webp", "bmp", "pdf",
    ];

    /// Whether `name`'s extension is one of [`EXTENSIONS`](Self::EXTENSIONS).
    pub fn has_scan_extension(name: &str) -> bool {
        name.rsplit_once('.')
            .is_some_and(|(_, ext)| Self::EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
    }
}

/// Whether `bytes` (starting `BM`) has a BMP file header followed by a DIB header of one of the
/// sizes Windows and OS/2 define (BITMAPCOREHEADER 12 through BITMAPV5HEADER 124).
fn is_bmp_header(bytes: &[u8]) -> bool {
    bytes
        .get(14..18)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .is_some_and(|size| matches!(size, 12 | 16 | 40 | 52 | 56 | 64 | 108 | 124))
}

/// A rendered PDF page as plain data.
#[derive(Debug, Clone)]
pub struct RenderedPage {
    pub width: u32,
    pub height: u32,
    /// Packed RGB, `width * height * 3` bytes.
    pub rgb: Vec<u8>,
}

/// A PDF page's own text: its characters in content order and the words they make (runs of
/// visible characters between whitespace), each with its box in page pixels and confidence 1.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextLayer {
    pub text: String,
    pub words: Vec<crate::transcript::Word>,
}

/// Renders PDF pages. Implemented by `vinscan-pdfium`; the core never names pdfium.
pub trait PdfRenderer: Send + Sync {
    /// Number of pages. Errors say why a PDF cannot be opened (corrupt, encrypted…).
    fn page_count(&self, pdf: &[u8]) -> Result<u32>;
    /// Renders page `index` (0-based) at `dpi`, scaled down if needed so that it fits `limits`.
    fn render_page(&self, pdf: &[u8], index: u32, dpi: f32, limits: &Limits) -> Result<RenderedPage>;
    /// The text layer of page `index` (0-based) in reading order, as the PDF's content streams
    /// place it (empty for a scanned page without one), and its words with their boxes in the
    /// pixels of the page rendered at `size` (width, height: what [`Self::render_page`] gave),
    /// rotation applied.
    fn page_text(&self, pdf: &[u8], index: u32, size: (u32, u32)) -> Result<TextLayer>;
}

/// A decoded TIFF page before its Orientation tag is applied.
#[derive(Debug, Clone)]
pub struct TiffPage {
    /// The pixels in stored row order, composited over white where the page has alpha.
    pub raster: RenderedPage,
    /// The page's Orientation tag (TIFF 6.0 tag 274, the same eight values as EXIF's), 1..=8.
    pub orientation: u8,
    /// XResolution and YResolution (pixels per unit along the stored rows and columns), when
    /// both are set: a fax at standard resolution has 204 × 98, and its page is stretched to
    /// square pixels before the model sees it (fine mode, 204 × 196, is within 10 % and kept).
    pub resolution: Option<(f32, f32)>,
}

/// Decodes TIFF pages. Implemented by `vinscan-tiff` (libtiff); the core never names libtiff.
pub trait TiffDecoder: Send + Sync {
    /// Number of pages: full-resolution image directories, not thumbnails or masks. May stop
    /// counting past `limits.max_pages` (it then returns more than the limit). Errors say why
    /// the file cannot be read (damaged, a codec the library lacks).
    fn page_count(&self, tiff: &[u8], limits: &Limits) -> Result<u32>;
    /// Decodes page `index` (0-based, as counted by [`page_count`](Self::page_count)),
    /// refusing one larger than `limits` before allocating it.
    fn decode_page(&self, tiff: &[u8], index: u32, limits: &Limits) -> Result<TiffPage>;
}

/// The native decoders a document may need, borrowed for one call. A format whose decoder is
/// absent is refused with [`ErrorKind::Config`] (the deployment lacks it, not the file).
#[derive(Clone, Copy, Default)]
pub struct Decoders<'a> {
    /// PDF pages (pdfium in the product).
    pub pdf: Option<&'a dyn PdfRenderer>,
    /// TIFF pages (libtiff in the product).
    pub tiff: Option<&'a dyn TiffDecoder>,
}

impl<'a> Decoders<'a> {
    pub(crate) fn pdf(&self) -> Result<&'a dyn PdfRenderer> {
        self.pdf.ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "PDF support is not available (pdfium library not loaded)",
            )
        })
    }

    fn tiff(&self) -> Result<&'a dyn TiffDecoder> {
        self.tiff.ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                "TIFF support is not available (no TIFF decoder given)",
            )
        })
    }
}

/// An input file, opened and counted, ready to yield pages one at a time.
pub struct Document {
    name: String,
    bytes: Vec<u8>,
    format: Format,
    page_count: u32,
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("page_count", &self.page_count)
            .finish_non_exhaustive()
    }
}

impl Document {
    /// Checks size and type and counts pages. `name` is used in every error message.
    pub fn open(name: &str, bytes: Vec<u8>, limits: &Limits, decoders: Decoders<'_>) -> Result<Self> {
        let fail = |kind, msg: String| Error::new(kind, format!("{name}: {msg}"));
        if bytes.len() as u64 > limits.max_bytes {
            return Err(fail(
                ErrorKind::TooLarge,
                format!(
                    "{} bytes exceeds the limit of {} bytes",
                    bytes.len(),
                    limits.max_bytes
                ),
            ));
        }
        if bytes.is_empty() {
            return Err(fail(ErrorKind::InvalidInput, "empty file".into()));
        }
        let format = Format::sniff(&bytes).ok_or_else(|| {
            fail(
                ErrorKind::Unsupported,
                "not a JPEG, PNG, TIFF, WebP, BMP, PDF or e-invoice XML file (unrecognised content)".into(),
            )
        })?;
        let page_count = match format {
            Format::Pdf => decoders
                .pdf()
                .and_then(|r| r.page_count(&bytes))
                .map_err(|e| e.context(name))?,
            Format::Tiff => decoders
                .tiff()
                .and_then(|t| t.page_count(&bytes, limits))
                .map_err(|e| e.context(name))?,
            _ => 1,
        };
        if page_count == 0 {
            return Err(fail(ErrorKind::InvalidInput, "document has no pages".into()));
        }
        if page_count > limits.max_pages {
            return Err(fail(
                ErrorKind::TooLarge,
                format!(
                    "{page_count} pages exceeds the limit of {} pages",
                    limits.max_pages
                ),
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            bytes,
            format,
            page_count,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn page_count(&self) -> u32 {
        self.page_count
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Decodes or renders page `index` (0-based), upright.
    pub fn page(&self, index: u32, dpi: f32, limits: &Limits, decoders: Decoders<'_>) -> Result<Page> {
        if index >= self.page_count {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "{}: page {} requested of {}",
                    self.name,
                    index + 1,
                    self.page_count
                ),
            ));
        }
        let page: Result<Page> = (|| match self.format {
            Format::Pdf => {
                let r = decoders.pdf()?.render_page(&self.bytes, index, dpi, limits)?;
                Ok(Page {
                    index,
                    image: rgb_image(r)?,
                    orientation: None,
                })
            }
            Format::Tiff => {
                let t = decoders.tiff()?.decode_page(&self.bytes, index, limits)?;
                let orientation = Orientation::from_exif(t.orientation).unwrap_or(Orientation::NoTransforms);
                let mut img = DynamicImage::ImageRgb8(rgb_image(t.raster)?);
                if let Some((x, y)) = t.resolution {
                    img = square_pixels(img, x, y, limits)?;
                }
                img.apply_orientation(orientation);
                Ok(Page {
                    index,
                    image: img.into_rgb8(),
                    orientation: (orientation != Orientation::NoTransforms).then(|| orientation.to_exif()),
                })
            }
            Format::Xml => Err(Error::new(
                ErrorKind::Unsupported,
                "an e-invoice XML has no page image: read it with a document pipeline on the invoice schema (unit = \"document\", e.g. invoice)",
            )),
            other => decode_single(&self.bytes, other, limits),
        })();
        let page = page.map_err(|e| e.context(format_args!("{} page {}", self.name, index + 1)))?;
        check_pixels(page.image.width(), page.image.height(), limits)
            .map_err(|e| e.context(format_args!("{} page {}", self.name, index + 1)))?;
        Ok(page)
    }
}

/// `img` stretched along its coarser axis so that its pixels are square, given its resolution
/// `x` × `y` (pixels per unit across and down); unchanged within 10 % (a fine-mode fax,
/// 204 × 196, keeps its pixels rather than gain a blur) and past 4 × (an implausible
/// resolution tag is ignored, not obeyed). Refuses a stretched size
/// past the limits.
fn square_pixels(img: DynamicImage, x: f32, y: f32, limits: &Limits) -> Result<DynamicImage> {
    let ratio = f64::from(x) / f64::from(y);
    // fax resolutions differ by about 2 (204 x 98); a ratio past 4 is a broken tag, not a page
    let stretch = ratio.max(1.0 / ratio);
    if !ratio.is_finite() || stretch <= 1.1 || stretch > 4.0 {
        return Ok(img);
    }
    let (w, h) = (f64::from(img.width()), f64::from(img.height()));
    let (nw, nh) = if ratio > 1.0 {
        (w, h * ratio)
    } else {
        (w / ratio, h)
    };
    let (nw, nh) = (
        nw.round().min(f64::from(u32::MAX)) as u32,
        nh.round().min(f64::from(u32::MAX)) as u32,
    );
    check_pixels(nw, nh, limits)
        .map_err(|e| e.context(format_args!("stretched to square pixels ({x} x {y} per unit)")))?;
    Ok(img.resize_exact(nw, nh, image::imageops::FilterType::Triangle))
}

/// A native decoder's packed RGB as an image, refusing a buffer that does not match its size.
fn rgb_image(r: RenderedPage) -> Result<RgbImage> {
    RgbImage::from_raw(r.width, r.height, r.rgb).ok_or_else(|| {
        Error::new(
            ErrorKind::Internal,
            "a native decoder returned a buffer of the wrong size",
        )
    })
}

/// `e` as vinscan's error; a limit refused by the decoder before the size was known names the
/// limits (`limits`), as vinscan's own size check does.
fn image_error(e: image::ImageError, limits: &Limits) -> Error {
    use image::ImageError as E;
    if let E::Limits(_) = &e {
        return Error::new(
            ErrorKind::TooLarge,
            format!(
                "cannot decode image: {e} (at most {} px a side and {} pixels)",
                limits.max_dimension, limits.max_pixels
            ),
        );
    }
    let kind = match &e {
        E::Limits(_) => ErrorKind::TooLarge,
        E::Unsupported(_) => ErrorKind::Unsupported,
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => ErrorKind::InvalidInput,
        _ => ErrorKind::InvalidInput,
    };
    let msg = match &e {
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => "truncated image data".to_owned(),
        _ => format!("cannot decode image: {e}"),
    };
    Error::new(kind, msg)
}

fn decode_single(bytes: &[u8], format: Format, limits: &Limits) -> Result<Page> {
    let with_tables;
    let bytes = if format == Format::Jpeg {
        let layout = crate::jpeg::check(bytes)?;
        if layout.width > 0 && layout.height > 0 {
            check_pixels(layout.width, layout.height, limits)?;
        }
        if layout.has_huffman_tables {
            bytes
        } else {
            with_tables = crate::jpeg::with_standard_tables(bytes);
            &with_tables[..]
        }
    } else {
        bytes
    };
    let fmt = match format {
        Format::Jpeg => ImageFormat::Jpeg,
        Format::Png => ImageFormat::Png,
        Format::WebP => ImageFormat::WebP,
        Format::Bmp => ImageFormat::Bmp,
        Format::Tiff | Format::Pdf | Format::Xml => {
            return Err(Error::new(
                ErrorKind::Internal,
                "a format without a single image routed to the image decoder",
            ));
        }
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), fmt);
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_dimension);
    l.max_image_height = Some(limits.max_dimension);
    l.max_alloc = Some(limits.max_alloc());
    reader.limits(l);
    let mut decoder = reader.into_decoder().map_err(|e| image_error(e, limits))?;
    let (w, h) = decoder.dimensions();
    check_pixels(w, h, limits)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| image_error(e, limits))?;
    img.apply_orientation(orientation);
    let applied = (orientation != Orientation::NoTransforms).then(|| orientation.to_exif());
    Ok(Page {
        index: 0,
        image: flatten_to_rgb(img),
        orientation: applied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).expect("encode png");
        out.into_inner()
    }

    fn open(bytes: Vec<u8>, limits: &Limits) -> Result<Document> {
        Document::open("t.bin", bytes, limits, Decoders::default())
    }

    #[test]
    fn sniffs_formats() {
        assert_eq!(Format::sniff(b"%PDF-1.7"), Some(Format::Pdf));
        assert_eq!(Format::sniff(&png(1, 1)), Some(Format::Png));
        assert_eq!(Format::sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(Format::WebP));
        assert_eq!(Format::sniff(b"hello"), None);
    }

    #[test]
    fn decodes_png_page() {
        let doc = open(png(5, 3), &Limits::default()).expect("open");
        let page = doc
            .page(0, 150.0, &Limits::default(), Decoders::default())
            .expect("page");
        assert_eq!(page.image.dimensions(), (5, 3));
        assert_eq!(page.image.get_pixel(0, 0).0, [10, 20, 30]);
    }

    #[test]
    fn refuses_too_many_bytes_before_decoding() {
        let limits = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        let e = open(png(5, 3), &limits).expect_err("too big");
        assert_eq!(e.kind(), ErrorKind::TooLarge);
        assert!(e.message().starts_with("t.bin: "), "{e}");
    }

    #[test]
    fn refuses_too_many_pixels_from_header() {
        let limits = Limits {
            max_pixels: 10,
            ..Limits::default()
        };
        let doc = open(png(5, 3), &limits).expect("open");
        let e = doc
            .page(0, 150.0, &limits, Decoders::default())
            .expect_err("too many pixels");
        assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    }

    #[test]
    fn truncated_png_is_invalid_input_not_panic() {
        let mut bytes = png(64, 64);
        bytes.truncate(bytes.len() / 2);
        let doc = open(bytes, &Limits::default()).expect("header is fine");
        let e = doc
            .page(0, 150.0, &Limits::default(), Decoders::default())
            .expect_err("truncated");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }

    #[test]
    fn truncated_jpeg_is_invalid_input() {
        let img = RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, 9]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
            .encode_image(&img)
            .expect("encode");
        crate::jpeg::check(&jpeg).expect("complete");
        jpeg.truncate(jpeg.len() - 40);
        let doc = open(jpeg, &Limits::default()).expect("header is fine");
        let e = doc
            .page(0, 150.0, &Limits::default(), Decoders::default())
            .expect_err("truncated");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.message().contains("truncated JPEG"), "{e}");
    }

    #[test]
    fn unknown_content_is_unsupported() {
        let e = open(b"just some text".to_vec(), &Limits::default()).expect_err("text");
        assert_eq!(e.kind(), ErrorKind::Unsupported);
    }

    #[test]
    fn pdf_without_renderer_is_config_error() {
        let e = open(b"%PDF-1.4 ...".to_vec(), &Limits::default()).expect_err("no renderer");
        assert_eq!(e.kind(), ErrorKind::Config);
    }

    #[test]
    fn exif_orientation_is_applied() {
        // A 4x2 JPEG tagged "rotate 90 CW" (orientation 6) must come out 2x4.
        let img = RgbImage::from_pixel(4, 2, image::Rgb([200, 200, 200]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
            .encode_image(&img)
            .expect("encode");
        let tagged = crate::testutil::jpeg_with_orientation(&jpeg, 6);
        let doc = open(tagged, &Limits::default()).expect("open");
        let page = doc
            .page(0, 150.0, &Limits::default(), Decoders::default())
            .expect("page");
        assert_eq!(page.image.dimensions(), (2, 4));
        assert_eq!(page.orientation, Some(6));
    }

    #[test]
    fn transparency_becomes_white() {
        let img = image::RgbaImage::from_pixel(1, 1, image::Rgba([0, 0, 0, 0]));
        assert_eq!(
            flatten_to_rgb(DynamicImage::ImageRgba8(img)).get_pixel(0, 0).0,
            [255, 255, 255]
        );
    }
}
