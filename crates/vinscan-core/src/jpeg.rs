//! JPEG structure, checked before decoding (ITU-T T.81 Annex B): the marker segments are walked
//! from SOI, each scan's entropy-coded data skipped (stuffed `FF 00` and restart markers are
//! data), until the end-of-image marker. A file is complete when its image data ends in EOI,
//! whatever follows it (phones append a motion-photo video or a depth map after EOI); JPEG
//! decoders fill a cut scan with grey and succeed, so a page missing its bottom is refused here
//! instead. Coding processes the decoder lacks are named rather than reported as damage, and a
//! frame without Huffman tables (a motion-JPEG frame from a document camera) gets the standard
//! ones, as libjpeg gives it.

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

/// What the walk learnt of a JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// The frame's size in pixels (0 × 0 when its header defers the height to a DNL marker).
    pub width: u32,
    pub height: u32,
    /// Whether a DHT segment precedes the first scan; motion-JPEG frames leave them out and
    /// rely on the standard tables (T.81 Annex K.3).
    pub has_huffman_tables: bool,
}

/// Checks that `bytes` (a JPEG: it starts with SOI) has a complete image and a coding process
/// the decoder reads, and returns its [`Layout`]. Errors: [`ErrorKind::InvalidInput`] for a
/// truncated or malformed file (a new SOI after scan data means the scan was cut),
/// [`ErrorKind::Unsupported`] for arithmetic, lossless, hierarchical or 12-bit coding.
pub(crate) fn check(bytes: &[u8]) -> Result<Layout> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "JPEG without a start-of-image marker",
        ));
    }
    let mut i = 2;
    let mut scans = 0u32;
    let mut layout = Layout {
        width: 0,
        height: 0,
        has_huffman_tables: false,
    };
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
            0xD9 if scans > 0 => return Ok(layout),
            // another image starts: this one's scan data was cut short
            0xD8 if scans > 0 => return Err(truncated()),
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
        let Some(segment) = bytes.get(i + 2..i + len) else {
            return Err(truncated());
        };
        match marker {
            0xC4 if scans == 0 => layout.has_huffman_tables = true,
            // SOF0–SOF2: P, Y, X, Nf, ... (T.81 B.2.2)
            0xC0..=0xC2 if segment.len() >= 5 => {
                if segment[0] != 8 {
                    return Err(Error::new(
                        ErrorKind::Unsupported,
                        format!("{}-bit JPEG is not supported (8-bit samples only)", segment[0]),
                    ));
                }
                layout.height = u32::from(u16::from_be_bytes([segment[1], segment[2]]));
                layout.width = u32::from(u16::from_be_bytes([segment[3], segment[4]]));
            }
            _ => {}
        }
        i += len;
        if marker == 0xDA {
            scans += 1;
            i = skip_entropy_coded(bytes, i)?;
        }
    }
}

/// The standard Huffman tables (T.81 Annex K.3, Tables K.3–K.6) as one DHT segment: the
/// tables a JPEG without its own uses (motion-JPEG, AVI1), as libjpeg supplies them.
fn standard_huffman_tables() -> Vec<u8> {
    // (class << 4 | destination, the 16 code-length counts, the values)
    const DC_VALUES: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    const LUMA_DC_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
    const CHROMA_DC_BITS: [u8; 16] = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
    const LUMA_AC_BITS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d];
    const CHROMA_AC_BITS: [u8; 16] = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77];
    // Table K.5 (luminance AC), in order of code length
    const LUMA_AC_VALUES: &[u8] = b"\x01\x02\x03\x00\x04\x11\x05\x12\x21\x31\x41\x06\x13\x51\x61\x07\
        \x22\x71\x14\x32\x81\x91\xa1\x08\x23\x42\xb1\xc1\x15\x52\xd1\xf0\
        \x24\x33\x62\x72\x82\x09\x0a\x16\x17\x18\x19\x1a\x25\x26\x27\x28\
        \x29\x2a\x34\x35\x36\x37\x38\x39\x3a\x43\x44\x45\x46\x47\x48\x49\
        \x4a\x53\x54\x55\x56\x57\x58\x59\x5a\x63\x64\x65\x66\x67\x68\x69\
        \x6a\x73\x74\x75\x76\x77\x78\x79\x7a\x83\x84\x85\x86\x87\x88\x89\
        \x8a\x92\x93\x94\x95\x96\x97\x98\x99\x9a\xa2\xa3\xa4\xa5\xa6\xa7\
        \xa8\xa9\xaa\xb2\xb3\xb4\xb5\xb6\xb7\xb8\xb9\xba\xc2\xc3\xc4\xc5\
        \xc6\xc7\xc8\xc9\xca\xd2\xd3\xd4\xd5\xd6\xd7\xd8\xd9\xda\xe1\xe2\
        \xe3\xe4\xe5\xe6\xe7\xe8\xe9\xea\xf1\xf2\xf3\xf4\xf5\xf6\xf7\xf8\xf9\xfa";
    // Table K.6 (chrominance AC)
    const CHROMA_AC_VALUES: &[u8] = b"\x00\x01\x02\x03\x11\x04\x05\x21\x31\x06\x12\x41\x51\x07\x61\x71\
        \x13\x22\x32\x81\x08\x14\x42\x91\xa1\xb1\xc1\x09\x23\x33\x52\xf0\
        \x15\x62\x72\xd1\x0a\x16\x24\x34\xe1\x25\xf1\x17\x18\x19\x1a\x26\
        \x27\x28\x29\x2a\x35\x36\x37\x38\x39\x3a\x43\x44\x45\x46\x47\x48\
        \x49\x4a\x53\x54\x55\x56\x57\x58\x59\x5a\x63\x64\x65\x66\x67\x68\
        \x69\x6a\x73\x74\x75\x76\x77\x78\x79\x7a\x82\x83\x84\x85\x86\x87\
        \x88\x89\x8a\x92\x93\x94\x95\x96\x97\x98\x99\x9a\xa2\xa3\xa4\xa5\
        \xa6\xa7\xa8\xa9\xaa\xb2\xb3\xb4\xb5\xb6\xb7\xb8\xb9\xba\xc2\xc3\
        \xc4\xc5\xc6\xc7\xc8\xc9\xca\xd2\xd3\xd4\xd5\xd6\xd7\xd8\xd9\xda\
        \xe2\xe3\xe4\xe5\xe6\xe7\xe8\xe9\xea\xf2\xf3\xf4\xf5\xf6\xf7\xf8\xf9\xfa";
    let tables: [(u8, &[u8; 16], &[u8]); 4] = [
        (0x00, &LUMA_DC_BITS, &DC_VALUES),
        (0x10, &LUMA_AC_BITS, LUMA_AC_VALUES),
        (0x01, &CHROMA_DC_BITS, &DC_VALUES),
        (0x11, &CHROMA_AC_BITS, CHROMA_AC_VALUES),
    ];
    let mut body = Vec::new();
    for (class_destination, bits, values) in tables {
        body.push(class_destination);
        body.extend_from_slice(bits);
        body.extend_from_slice(values);
    }
    let mut segment = vec![0xFF, 0xC4];
    segment.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    segment.extend_from_slice(&body);
    segment
}

/// `bytes` with the standard Huffman tables inserted after SOI, for a JPEG whose [`Layout`]
/// has none.
pub(crate) fn with_standard_tables(bytes: &[u8]) -> Vec<u8> {
    let tables = standard_huffman_tables();
    let mut out = Vec::with_capacity(bytes.len() + tables.len());
    out.extend_from_slice(&bytes[..2]);
    out.extend_from_slice(&tables);
    out.extend_from_slice(&bytes[2..]);
    out
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
        // a second, complete image after the first (an MPO or a thumbnail appended)
        let mut two = jpeg.clone();
        two.extend_from_slice(&jpeg);
        check(&two).expect("the first image is complete");
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
    fn the_layout_gives_size_and_tables_and_a_cut_scan_followed_by_a_new_image_is_truncated() {
        let jpeg = encoded();
        let layout = check(&jpeg).expect("complete");
        assert_eq!(
            (layout.width, layout.height, layout.has_huffman_tables),
            (48, 40, true)
        );
        // a download resumed from the start: half an image, then the whole image
        let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).expect("SOS");
        let mut resumed = jpeg[..sos + (jpeg.len() - sos) / 2].to_vec();
        resumed.extend_from_slice(&jpeg);
        assert!(check(&resumed).expect_err("cut").message().contains("truncated"));
        // 12-bit samples
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("SOF0");
        let mut twelve = jpeg.clone();
        twelve[sof + 4] = 12;
        let e = check(&twelve).expect_err("12-bit");
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    }

    /// Every DHT segment of `jpeg` removed: a motion-JPEG frame.
    fn without_tables(jpeg: &[u8]) -> Vec<u8> {
        let mut out = jpeg[..2].to_vec();
        let mut i = 2;
        while i + 4 <= jpeg.len() && jpeg[i] == 0xFF && jpeg[i + 1] != 0xDA {
            let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
            if jpeg[i + 1] != 0xC4 {
                out.extend_from_slice(&jpeg[i..i + 2 + len]);
            }
            i += 2 + len;
        }
        out.extend_from_slice(&jpeg[i..]);
        out
    }

    #[test]
    fn a_frame_without_tables_decodes_with_the_standard_ones() {
        // the image crate's encoder writes exactly the standard tables, so the frame with them
        // put back decodes to the same pixels
        let jpeg = encoded();
        let frame = without_tables(&jpeg);
        assert!(frame.len() < jpeg.len());
        let layout = check(&frame).expect("complete");
        assert!(!layout.has_huffman_tables);
        let fixed = with_standard_tables(&frame);
        assert!(check(&fixed).expect("complete").has_huffman_tables);
        let a = image::load_from_memory(&jpeg).expect("original").to_rgb8();
        let b = image::load_from_memory(&fixed)
            .expect("with standard tables")
            .to_rgb8();
        assert_eq!(a, b);
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
