//! Multi-page TIFF: counting pages and decoding any one of them with bounded buffers.
//! (The `image` crate's TIFF decoder only reads the first page.)

use std::io::Cursor;

use image::{DynamicImage, ImageBuffer, metadata::Orientation};
use tiff::ColorType;
use tiff::decoder::{Decoder, DecodingResult, Limits as TiffLimits};
use tiff::tags::Tag;

use crate::error::{Error, ErrorKind, Result};
use crate::limits::Limits;
use crate::raster::{Page, check_pixels, flatten_to_rgb};

fn tiff_error(e: tiff::TiffError) -> Error {
    use tiff::TiffError as E;
    match e {
        E::LimitsExceeded => Error::new(ErrorKind::TooLarge, "TIFF page exceeds the decoding limits"),
        E::UnsupportedError(u) => Error::new(ErrorKind::Unsupported, format!("unsupported TIFF: {u}")),
        E::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::new(ErrorKind::InvalidInput, "truncated TIFF data")
        }
        other => Error::new(ErrorKind::InvalidInput, format!("cannot decode TIFF: {other}")),
    }
}

fn decoder<'a>(bytes: &'a [u8], limits: &Limits) -> Result<Decoder<Cursor<&'a [u8]>>> {
    let mut l = TiffLimits::default();
    let alloc = usize::try_from(limits.max_alloc()).unwrap_or(usize::MAX);
    l.decoding_buffer_size = alloc;
    l.intermediate_buffer_size = alloc;
    l.ifd_value_size = 16 * 1024 * 1024;
    Ok(Decoder::new(Cursor::new(bytes))
        .map_err(tiff_error)?
        .with_limits(l))
}

/// Number of pages (image file directories), refusing more than `limits.max_pages + 1` walks.
pub(crate) fn page_count(bytes: &[u8], limits: &Limits) -> Result<u32> {
    let mut dec = decoder(bytes, limits)?;
    let mut n = 1u32;
    while dec.more_images() {
        if n > limits.max_pages {
            // no need to walk further: the caller refuses the document
            return Ok(n + 1);
        }
        dec.next_image().map_err(tiff_error)?;
        n += 1;
    }
    Ok(n)
}

pub(crate) fn decode_page(bytes: &[u8], index: u32, limits: &Limits) -> Result<Page> {
    let mut dec = decoder(bytes, limits)?;
    dec.seek_to_image(index as usize).map_err(tiff_error)?;
    let (w, h) = dec.dimensions().map_err(tiff_error)?;
    check_pixels(w, h, limits)?;
    let orientation = dec
        .get_tag_u32(Tag::Orientation)
        .ok()
        .and_then(|v| u8::try_from(v).ok())
        .and_then(Orientation::from_exif)
        .unwrap_or(Orientation::NoTransforms);
    let color = dec.colortype().map_err(tiff_error)?;
    let data = dec.read_image().map_err(tiff_error)?;
    let mut img = to_dynamic(w, h, color, data)?;
    img.apply_orientation(orientation);
    let applied = (orientation != Orientation::NoTransforms).then(|| orientation.to_exif());
    Ok(Page {
        index,
        image: flatten_to_rgb(img),
        orientation: applied,
    })
}

fn to_dynamic(w: u32, h: u32, color: ColorType, data: DecodingResult) -> Result<DynamicImage> {
    let bad = || {
        Error::new(
            ErrorKind::InvalidInput,
            "TIFF page data does not match its dimensions",
        )
    };
    let unsupported = || {
        Error::new(
            ErrorKind::Unsupported,
            format!("unsupported TIFF colour type {color:?}"),
        )
    };
    let img = match (color, data) {
        (ColorType::Gray(8), DecodingResult::U8(v)) => {
            DynamicImage::ImageLuma8(ImageBuffer::from_raw(w, h, v).ok_or_else(bad)?)
        }
        (ColorType::Gray(16), DecodingResult::U16(v)) => {
            DynamicImage::ImageLuma16(ImageBuffer::from_raw(w, h, v).ok_or_else(bad)?)
        }
        (ColorType::GrayA(8), DecodingResult::U8(v)) => {
            DynamicImage::ImageLumaA8(ImageBuffer::from_raw(w, h, v).ok_or_else(bad)?)
        }
        (ColorType::RGB(8), DecodingResult::U8(v)) => {
            DynamicImage::ImageRgb8(ImageBuffer::from_raw(w, h, v).ok_or_else(bad)?)
        }
        (ColorType::RGB(16), DecodingResult::U16(v)) => {
            DynamicImage::ImageRgb16(ImageBuffer::from_raw(w, h, v).ok_or_else(bad)?)
        }
        (ColorType::RGBA(8), DecodingResult::U8(v)) => {
            DynamicImage::ImageRgba8(ImageBuffer::from_raw(w, h, v).ok_or_else(bad)?)
        }
        (ColorType::RGBA(16), DecodingResult::U16(v)) => {
            DynamicImage::ImageRgba16(ImageBuffer::from_raw(w, h, v).ok_or_else(bad)?)
        }
        (ColorType::CMYK(8), DecodingResult::U8(v)) => {
            if v.len() != (w as usize) * (h as usize) * 4 {
                return Err(bad());
            }
            let rgb: Vec<u8> = v
                .chunks_exact(4)
                .flat_map(|p| {
                    let k = 255 - u32::from(p[3]);
                    [0, 1, 2].map(|i| ((255 - u32::from(p[i])) * k / 255) as u8)
                })
                .collect();
            DynamicImage::ImageRgb8(ImageBuffer::from_raw(w, h, rgb).ok_or_else(bad)?)
        }
        (ColorType::Gray(1), DecodingResult::U8(v)) => {
            // bilevel scans (fax/CCITT-style archives): 1 bit per pixel, rows padded to bytes
            let row = (w as usize).div_ceil(8);
            if v.len() < row * h as usize {
                return Err(bad());
            }
            let mut out = Vec::with_capacity(w as usize * h as usize);
            for y in 0..h as usize {
                for x in 0..w as usize {
                    let bit = (v[y * row + x / 8] >> (7 - (x % 8))) & 1;
                    out.push(if bit == 1 { 255 } else { 0 });
                }
            }
            DynamicImage::ImageLuma8(ImageBuffer::from_raw(w, h, out).ok_or_else(bad)?)
        }
        _ => return Err(unsupported()),
    };
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::multipage_tiff;

    #[test]
    fn counts_and_decodes_every_page() {
        let bytes = multipage_tiff(&[(8, 4, 10), (6, 6, 20), (3, 9, 30)]);
        let limits = Limits::default();
        assert_eq!(page_count(&bytes, &limits).expect("count"), 3);
        for (i, (w, h, v)) in [(8, 4, 10u8), (6, 6, 20), (3, 9, 30)].into_iter().enumerate() {
            let page = decode_page(&bytes, i as u32, &limits).expect("page");
            assert_eq!(page.image.dimensions(), (w, h));
            assert_eq!(page.image.get_pixel(0, 0).0, [v, v, v]);
        }
    }

    #[test]
    fn garbage_after_header_is_an_error() {
        let mut bytes = b"II*\0".to_vec();
        bytes.extend_from_slice(&[0xff; 64]);
        assert!(page_count(&bytes, &Limits::default()).is_err());
    }
}
