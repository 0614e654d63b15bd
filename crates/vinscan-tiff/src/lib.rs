//! TIFF pages decoded by libtiff (the system library, 4.5 or later): every compression it reads
//! (CCITT Group 3 and 4 in either fill order, LZW, Deflate, PackBits, JPEG and old-style JPEG,
//! …), classic TIFF and BigTIFF, and every photometric interpretation its RGBA interface
//! converts (bilevel and grey either way round, palette, RGB, YCbCr with any subsampling, CMYK,
//! CIE L*a*b*, 16-bit samples). This is the only crate that names libtiff; the pipeline core
//! sees it as a [`TiffDecoder`].
//!
//! Pages: a TIFF's image directories that are full-resolution images. Directories marked as a
//! reduced-resolution copy (NewSubfileType bit 0, or the old SubfileType = 2) or a
//! transparency mask (NewSubfileType bit 2) are thumbnails and masks, not pages (TIFF 6.0
//! specification, section 8, "NewSubfileType").
//!
//! libtiff is the reference TIFF reader: no Rust crate is kept that reads fax-coded and
//! JPEG-in-TIFF archives completely, and libtiff is what every scanner and archive tool is
//! tested against.

use std::ffi::{c_char, c_int};
use std::marker::PhantomData;
use std::ptr::NonNull;

use vinscan_core::document::{RenderedPage, TiffDecoder, TiffPage, check_pixels};
use vinscan_core::{Error, ErrorKind, Limits, Result};

/// libtiff's `TIFF` handle (opaque).
#[repr(C)]
struct Tiff {
    _opaque: [u8; 0],
}

/// `vinscan_memtiff` in `csrc/memtiff.c`: the buffer a handle reads and its first error.
#[repr(C)]
struct MemTiff {
    data: *const u8,
    len: u64,
    pos: u64,
    error: [c_char; 512],
    errors: c_int,
}

/// `vinscan_memtiff_directory` in `csrc/memtiff.c`.
#[repr(C)]
#[derive(Default)]
struct DirectoryFields {
    width: u32,
    height: u32,
    subfile_type: u32,
    old_subfile_type: u32,
    orientation: u32,
    compression: u32,
    photometric: u32,
    x_resolution: f32,
    y_resolution: f32,
}

unsafe extern "C" {
    fn vinscan_memtiff_open(data: *const u8, len: u64, state: *mut MemTiff, max_alloc: i64) -> *mut Tiff;
    fn vinscan_memtiff_directory_fields(tif: *mut Tiff, out: *mut DirectoryFields) -> c_int;
    fn vinscan_memtiff_read_rgba(
        tif: *mut Tiff,
        width: u32,
        height: u32,
        raster: *mut u32,
        orientation: u32,
    ) -> c_int;
    fn TIFFReadDirectory(tif: *mut Tiff) -> c_int;
    fn TIFFClose(tif: *mut Tiff);
}

/// NewSubfileType (tag 254) bits: a reduced-resolution copy of another image, and a mask.
const FILETYPE_REDUCEDIMAGE: u32 = 0x1;
const FILETYPE_MASK: u32 = 0x4;
/// SubfileType (tag 255, superseded by 254) value for a reduced-resolution image.
const OFILETYPE_REDUCEDIMAGE: u32 = 2;

/// One open TIFF reading a borrowed buffer; closed on drop.
struct Handle<'a> {
    tif: NonNull<Tiff>,
    /// The handle's client data, which libtiff keeps a pointer to: allocated once, never
    /// moved, reached only through this pointer, freed after `TIFFClose`.
    state: NonNull<MemTiff>,
    _bytes: PhantomData<&'a [u8]>,
}

impl<'a> Handle<'a> {
    fn open(bytes: &'a [u8], limits: &Limits) -> Result<Self> {
        let state = NonNull::from(Box::leak(Box::new(MemTiff {
            data: std::ptr::null(),
            len: 0,
            pos: 0,
            error: [0; 512],
            errors: 0,
        })));
        let max_alloc = i64::try_from(limits.max_alloc()).unwrap_or(i64::MAX);
        // SAFETY: `bytes` outlives the handle (its lifetime is the handle's), `state` is a live
        // allocation owned by the handle, and the C side only reads within `len`.
        let tif =
            unsafe { vinscan_memtiff_open(bytes.as_ptr(), bytes.len() as u64, state.as_ptr(), max_alloc) };
        match NonNull::new(tif) {
            Some(tif) => Ok(Self {
                tif,
                state,
                _bytes: PhantomData,
            }),
            None => {
                // SAFETY: libtiff failed to open and holds no pointer to `state`: take it back.
                let state = unsafe { Box::from_raw(state.as_ptr()) };
                Err(libtiff_error(&state, "cannot open TIFF"))
            }
        }
    }

    fn state(&self) -> &MemTiff {
        // SAFETY: live until drop; libtiff writes it only during calls made through `&mut self`
        // or `&self` methods of this handle, never while this reference is held.
        unsafe { self.state.as_ref() }
    }

    /// Forgets the errors of earlier operations, so that the next failure reports its own.
    fn clear_errors(&mut self) {
        // SAFETY: as in `state`; no libtiff call is in progress on this handle.
        let state = unsafe { self.state.as_mut() };
        state.errors = 0;
        state.error[0] = 0;
    }

    fn errors(&self) -> c_int {
        self.state().errors
    }

    fn fields(&self) -> Result<DirectoryFields> {
        let mut out = DirectoryFields::default();
        // SAFETY: the handle is open; `out` is a plain struct the C side fills.
        if unsafe { vinscan_memtiff_directory_fields(self.tif.as_ptr(), &mut out) } == 0 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "TIFF image directory without ImageWidth or ImageLength",
            ));
        }
        Ok(out)
    }

    /// Moves to the next image directory: `Ok(false)` at the end of the chain.
    fn next_directory(&mut self, number: u32) -> Result<bool> {
        self.clear_errors();
        // SAFETY: the handle is open.
        if unsafe { TIFFReadDirectory(self.tif.as_ptr()) } == 1 {
            return Ok(true);
        }
        if self.errors() > 0 {
            return Err(libtiff_error(
                self.state(),
                &format!("cannot read TIFF image directory {}", number + 1),
            ));
        }
        Ok(false)
    }
}

impl Drop for Handle<'_> {
    fn drop(&mut self) {
        // SAFETY: opened by vinscan_memtiff_open and closed exactly once; after TIFFClose
        // libtiff holds no pointer to `state`, which is then freed exactly once.
        unsafe {
            TIFFClose(self.tif.as_ptr());
            drop(Box::from_raw(self.state.as_ptr()));
        }
    }
}

/// The error libtiff reported first on this handle, as an [`Error`]: "Sorry, …" and
/// "not configured"/"not implemented" messages (a layout or codec libtiff cannot read) are
/// [`ErrorKind::Unsupported`]; anything else means the file is damaged ([`ErrorKind::InvalidInput`]).
fn libtiff_error(state: &MemTiff, what: &str) -> Error {
    let bytes: Vec<u8> = state
        .error
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    let message = String::from_utf8_lossy(&bytes).trim().to_owned();
    if message.is_empty() {
        return Error::new(
            ErrorKind::InvalidInput,
            format!("{what} (libtiff gave no reason)"),
        );
    }
    let lower = message.to_ascii_lowercase();
    let kind =
        if lower.contains("sorry") || lower.contains("not configured") || lower.contains("not implemented") {
            ErrorKind::Unsupported
        } else if lower.contains("maximum memory") || lower.contains("memory allocation") {
            ErrorKind::TooLarge
        } else {
            ErrorKind::InvalidInput
        };
    Error::new(kind, format!("{what}: {message}"))
}

fn is_page(fields: &DirectoryFields) -> bool {
    fields.subfile_type & (FILETYPE_REDUCEDIMAGE | FILETYPE_MASK) == 0
        && fields.old_subfile_type != OFILETYPE_REDUCEDIMAGE
}

/// How many image directories a walk reads at most: pages plus a thumbnail and a mask each,
/// and some slack; a longer chain is refused rather than walked.
fn max_directories(limits: &Limits) -> u32 {
    limits.max_pages.saturating_mul(3).saturating_add(16)
}

/// Walks the directory chain to page `target` (0-based, counting pages only) and leaves the
/// handle on it; with `target = None` walks to the end and returns how many pages there are
/// (stopping at `limits.max_pages + 1`).
fn walk(handle: &mut Handle<'_>, target: Option<u32>, limits: &Limits) -> Result<Option<u32>> {
    let mut pages = 0u32;
    let mut directory = 0u32;
    loop {
        let fields = handle.fields()?;
        if is_page(&fields) {
            if target == Some(pages) {
                return Ok(Some(pages));
            }
            pages += 1;
            if target.is_none() && pages > limits.max_pages {
                return Ok(Some(pages));
            }
        }
        directory += 1;
        if directory >= max_directories(limits) {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("TIFF has more than {} image directories", max_directories(limits)),
            ));
        }
        if !handle.next_directory(directory)? {
            return Ok(if target.is_none() { Some(pages) } else { None });
        }
    }
}

/// [`TiffDecoder`] backed by libtiff. Stateless: each call opens its own handle, so calls from
/// many threads run in parallel (libtiff keeps no global state that vinscan's calls touch).
#[derive(Debug, Clone, Copy, Default)]
pub struct LibTiff;

impl TiffDecoder for LibTiff {
    fn page_count(&self, tiff: &[u8], limits: &Limits) -> Result<u32> {
        let mut handle = Handle::open(tiff, limits)?;
        Ok(walk(&mut handle, None, limits)?.unwrap_or(0))
    }

    fn decode_page(&self, tiff: &[u8], index: u32, limits: &Limits) -> Result<TiffPage> {
        let mut handle = Handle::open(tiff, limits)?;
        if walk(&mut handle, Some(index), limits)?.is_none() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("TIFF has no page {}", index + 1),
            ));
        }
        let fields = handle.fields()?;
        check_pixels(fields.width, fields.height, limits)?;
        let orientation = u8::try_from(fields.orientation)
            .ok()
            .filter(|o| (1..=8).contains(o))
            .unwrap_or(1);
        let pixels = (fields.width as usize) * (fields.height as usize);
        let mut raster = vec![0u32; pixels];
        handle.clear_errors();
        // SAFETY: `raster` holds width x height u32s, as TIFFReadRGBAImageOriented writes.
        let ok = unsafe {
            vinscan_memtiff_read_rgba(
                handle.tif.as_ptr(),
                fields.width,
                fields.height,
                raster.as_mut_ptr(),
                u32::from(orientation),
            )
        };
        if ok == 0 {
            return Err(libtiff_error(handle.state(), "cannot decode TIFF page"));
        }
        let resolution = (fields.x_resolution.is_finite()
            && fields.y_resolution.is_finite()
            && fields.x_resolution > 0.0
            && fields.y_resolution > 0.0)
            .then_some((fields.x_resolution, fields.y_resolution));
        Ok(TiffPage {
            raster: RenderedPage {
                width: fields.width,
                height: fields.height,
                rgb: to_rgb(&raster),
            },
            orientation,
            resolution,
        })
    }
}

/// libtiff's ABGR-packed pixels (`TIFFGetR` = bits 0–7, G 8–15, B 16–23, A 24–31; alpha
/// associated, i.e. colours already multiplied by it) to packed RGB over a white background.
fn to_rgb(raster: &[u32]) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(raster.len() * 3);
    for &p in raster {
        let [r, g, b, a] = p.to_le_bytes();
        let under = 255 - a;
        rgb.extend([
            r.saturating_add(under),
            g.saturating_add(under),
            b.saturating_add(under),
        ]);
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abgr_pixels_become_rgb_over_white() {
        // opaque red, opaque blue, fully transparent, half-transparent black (associated)
        let raster = [0xFF00_00FF, 0xFFFF_0000, 0x0000_0000, 0x8000_0000];
        assert_eq!(
            to_rgb(&raster),
            vec![255, 0, 0, 0, 0, 255, 255, 255, 255, 127, 127, 127]
        );
    }

    #[test]
    fn thumbnails_and_masks_are_not_pages() {
        let page = DirectoryFields::default();
        assert!(is_page(&page));
        let page_flag = DirectoryFields {
            subfile_type: 0x2,
            ..Default::default()
        };
        assert!(
            is_page(&page_flag),
            "FILETYPE_PAGE marks a page of a multi-page file"
        );
        for sub in [0x1, 0x4, 0x5, 0x3] {
            let f = DirectoryFields {
                subfile_type: sub,
                ..Default::default()
            };
            assert!(!is_page(&f), "NewSubfileType {sub:#x}");
        }
        let old = DirectoryFields {
            old_subfile_type: 2,
            ..Default::default()
        };
        assert!(!is_page(&old));
    }

    #[test]
    fn libtiff_messages_decide_the_kind() {
        let state = |m: &str| {
            let mut s = MemTiff {
                data: std::ptr::null(),
                len: 0,
                pos: 0,
                error: [0; 512],
                errors: 1,
            };
            for (d, c) in s.error.iter_mut().zip(m.bytes()) {
                *d = c as c_char;
            }
            s
        };
        let e = libtiff_error(
            &state("TIFFReadDirectory: Sorry, requested compression method is not configured"),
            "x",
        );
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        let e = libtiff_error(
            &state("TIFFFetchNormalTag: Incorrect count for \"StripOffsets\""),
            "x",
        );
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("Incorrect count"), "{e}");
        let e = libtiff_error(&state(""), "cannot open TIFF");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}
