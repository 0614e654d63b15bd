//! Test helpers that build inputs in memory (compiled for tests only).

use std::io::Cursor;

/// A JPEG with an EXIF APP1 segment carrying `orientation` inserted after SOI.
pub(crate) fn jpeg_with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    // TIFF header (little endian) + IFD0 with one entry: Orientation (0x0112), SHORT, 1 value.
    let mut tiff = vec![b'I', b'I', 0x2A, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00];
    tiff.extend_from_slice(&[0x12, 0x01, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00]);
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0x00, 0x00, 0x00, 0x00, 0x00, 0x00]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let len = (app1.len() + 2) as u16;
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A multi-page grey TIFF, one page per `(width, height, value)`.
pub(crate) fn multipage_tiff(pages: &[(u32, u32, u8)]) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    {
        let mut enc = tiff::encoder::TiffEncoder::new(&mut buf).expect("encoder");
        for &(w, h, v) in pages {
            let data = vec![v; (w * h) as usize];
            enc.write_image::<tiff::encoder::colortype::Gray8>(w, h, &data)
                .expect("page");
        }
    }
    buf.into_inner()
}
