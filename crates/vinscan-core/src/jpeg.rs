//! JPEG structure, checked before decoding (ITU-T T.81 Annex B): the marker segments are walked
//! from SOI, each scan's entropy-coded data skipped (stuffed `FF 00` and restart markers are
//! data), until the end-of-image marker. A file is complete when its image data ends in EOI,
//! whatever follows it (phones append a motion-photo video or a depth map after EOI); JPEG
//! decoders fill a cut scan with grey and succeed, so a page missing its bottom is refused here
//! instead. Coding processes the decoder lacks are named rather than reported as damage.

use crate::error::{Error, ErrorKind, Result};

fn truncated() -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        "truncated JPEG (no end-of-image marker after the last scan)",
    )
}

/// The coding process a start-of-frame marker declares that vinscan's JPEG decoder (Huffman
/// baseline, extended and progressive: SOF0–SOF2) cannot read, as a reason. T.81 Table B.1.
fn unsupported_process(marker: u8) -> Option<&'static str> {
    match marker {
        // SOF9–SOF11, DAC (FFCC), SOF13–SOF15
        0xC9..=0xCF => Some(
            "arithmetic-coded JPEG (T.81 arithmetic coding, SOF9–SOF15/DAC) is not supported; re-save it as a baseline (Huffman) JPEG",
        ),
        0xC3 => Some("lossless JPEG (SOF3) is not supported"),
        0xC5..=0xC7 => Some("hierarchical JPEG (SOF5–SOF7) is not supported"),
        _ => None,
    }
}

/// Checks that `bytes` (a JPEG: it starts with SOI) has a complete image and a coding process
/// the decoder reads. Errors: [`ErrorKind::InvalidInput`] for a truncated or malformed file,
/// [`ErrorKind::Unsupported`] for arithmetic, lossless or hierarchical coding.
pub(crate) fn check(bytes: &[u8]) -> Result<()> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "JPEG without a start-of-image marker",
        ));
    }
    let mut i = 2;
    let mut scans = 0u32;
    loop {
        // the next marker: tolerate stray bytes before it (libjpeg warns and skips them) and
        // fill bytes (any number of FF)
        let Some(ff) = bytes[i..].iter().position(|&b| b == 0xFF) else {
            return Err(truncated());
        };
        i += ff;
        while i < bytes.len() && bytes[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = bytes.get(i) else {
            return Err(truncated());
        };
        i += 1;
        match marker {
            0xD9 if scans > 0 => return Ok(()),
            0xD9 => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "JPEG ends before any image data (no scan)",
                ));
            }
            // standalone markers: TEM, RSTn outside a scan, a repeated SOI; 00 is a stuffed FF
            0x01 | 0xD0..=0xD8 | 0x00 => continue,
            _ => {}
        }
        let Some(len) = bytes.get(i..i + 2) else {
            return Err(truncated());
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        if len < 2 {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("malformed JPEG: marker FF{marker:02X} has segment length {len}"),
            ));
        }
        if let Some(reason) = unsupported_process(marker) {
            return Err(Error::new(ErrorKind::Unsupported, reason));
        }
        i += len;
        if i > bytes.len() {
            return Err(truncated());
        }
        if marker == 0xDA {
            scans += 1;
            i = skip_entropy_coded(bytes, i)?;
        }
    }
}

/// Skips a scan's entropy-coded data from `start`: returns the index of the `FF` of the marker
/// that ends it (anything but a stuffed `FF 00` or a restart marker `FF D0`–`FF D7`).
fn skip_entropy_coded(bytes: &[u8], start: usize) -> Result<usize> {
    let mut i = start;
    loop {
        let Some(ff) = bytes[i..].iter().position(|&b| b == 0xFF) else {
            return Err(truncated());
        };
        let at = i + ff;
        match bytes.get(at + 1) {
            None => return Err(truncated()),
            Some(0x00 | 0xD0..=0xD7) => i = at + 2,
            // a fill byte: the marker starts at the last FF of the run
            Some(0xFF) => i = at + 1,
            Some(_) => return Ok(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded() -> Vec<u8> {
        let img = image::RgbImage::from_fn(48, 40, |x, y| image::Rgb([(x * 5) as u8, (y * 6) as u8, 90]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
            .encode_image(&img)
            .expect("encode");
        jpeg
    }

    #[test]
    fn a_complete_jpeg_passes_with_or_without_data_after_it() {
        let jpeg = encoded();
        check(&jpeg).expect("complete");
        // a motion photo: an MP4 after EOI, whose bytes include FF DA and no FF D9 after it
        let mut photo = jpeg.clone();
        photo.extend_from_slice(b"\0\0\0\x18ftypmp42");
        photo.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x0C, 1, 2, 3, 0xFF, 0xC4, 0x00]);
        check(&photo).expect("data after EOI is not the image's");
    }

    #[test]
    fn every_cut_of_a_jpeg_is_truncated() {
        let jpeg = encoded();
        for cut in [3, 20, jpeg.len() / 2, jpeg.len() - 2, jpeg.len() - 1] {
            let e = check(&jpeg[..cut]).expect_err("cut");
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "cut at {cut}: {e}");
        }
    }

    #[test]
    fn arithmetic_lossless_and_hierarchical_coding_are_named() {
        let jpeg = encoded();
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("SOF0");
        for (marker, word) in [
            (0xC9, "arithmetic"),
            (0xCA, "arithmetic"),
            (0xC3, "lossless"),
            (0xC5, "hierarchical"),
        ] {
            let mut other = jpeg.clone();
            other[sof + 1] = marker;
            let e = check(&other).expect_err("unsupported");
            assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
            assert!(e.message().contains(word), "{e}");
        }
        // a DAC segment before the frame
        let mut dac = jpeg[..2].to_vec();
        dac.extend_from_slice(&[0xFF, 0xCC, 0x00, 0x06, 0x00, 0x11, 0x10, 0x05]);
        dac.extend_from_slice(&jpeg[2..]);
        assert!(check(&dac).expect_err("DAC").message().contains("arithmetic"));
    }

    #[test]
    fn stuffed_bytes_and_restart_markers_are_scan_data() {
        // SOI, SOS (len 8), data with FF 00 and FF D3 and an FF FF fill run, EOI
        let bytes = [
            0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 0x3F, 0, 0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3,
            0x56, 0xFF, 0xFF, 0xD9,
        ];
        check(&bytes).expect("complete");
        check(&bytes[..bytes.len() - 1]).expect_err("cut inside the final marker");
        let no_scan = [0xFF, 0xD8, 0xFF, 0xD9];
        assert!(check(&no_scan).expect_err("empty").message().contains("no scan"));
        let bad_len = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01, 0xFF, 0xD9];
        assert!(
            check(&bad_len)
                .expect_err("len")
                .message()
                .contains("segment length")
        );
    }
}
