//! Decoded pages as the pipeline holds them: upright 8-bit RGB, with the pixel limits checked
//! before anything is allocated. A leaf module: `document` builds on it, and native decoders
//! (PDF, TIFF) call [`check_pixels`] before they allocate a page.

use image::{DynamicImage, RgbImage};

use crate::error::{Error, ErrorKind, Result};
use crate::limits::Limits;

/// One rendered or decoded page, upright, as 8-bit RGB.
#[derive(Debug, Clone)]
pub struct Page {
    /// 0-based page index in the document.
    pub index: u32,
    pub image: RgbImage,
    /// The EXIF/TIFF orientation that was applied, when it was not the identity.
    pub orientation: Option<u8>,
}

/// Refuses a `width` × `height` page (pixels) that is empty or exceeds the limits, before it is
/// decoded: [`ErrorKind::InvalidInput`] for an empty one, [`ErrorKind::TooLarge`] past
/// `max_dimension` per side or `max_pixels` in all.
pub fn check_pixels(width: u32, height: u32, limits: &Limits) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "image has zero width or height",
        ));
    }
    if width > limits.max_dimension || height > limits.max_dimension {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "{width}x{height} px exceeds the limit of {} px per side",
                limits.max_dimension
            ),
        ));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "{width}x{height} px exceeds the limit of {} pixels",
                limits.max_pixels
            ),
        ));
    }
    Ok(())
}

/// 8-bit RGB, with any transparency composited over white (scans are paper).
pub(crate) fn flatten_to_rgb(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(src[3]);
        for c in 0..3 {
            let v = (u32::from(src[c]) * a + 255 * (255 - a) + 127) / 255;
            dst[c] = v.min(255) as u8;
        }
    }
    out
}
