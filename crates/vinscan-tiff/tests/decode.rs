//! libtiff through `vinscan_core::Document`, as the product opens TIFFs: the page counts and
//! pixels of the archive, fax and phone cases (`tests/fixtures/cases`, from
//! `../shared/cases`) and of the same pages written in other layouts (`tests/fixtures/tiff`),
//! compared with the expected pages; and mutated files never crash the process.

use std::io::Cursor;
use std::path::PathBuf;

use image::RgbImage;
use proptest::prelude::*;
use tiff::encoder::{TiffEncoder, colortype};
use tiff::tags::Tag;
use vinscan_core::{Decoders, Document, ErrorKind, Limits};
use vinscan_tiff::LibTiff;

fn fixture(path: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn expected(name: &str) -> RgbImage {
    image::load_from_memory(&fixture(&format!("cases/expected/{name}")))
        .expect("expected page")
        .to_rgb8()
}

fn decoders() -> Decoders<'static> {
    Decoders {
        pdf: None,
        tiff: Some(&LibTiff),
    }
}

/// Opens `bytes` as the product does and decodes every page.
fn pages(name: &str, bytes: Vec<u8>, limits: &Limits) -> vinscan_core::Result<Vec<RgbImage>> {
    let doc = Document::open(name, bytes, limits, decoders())?;
    (0..doc.page_count())
        .map(|i| doc.page(i, 150.0, limits, decoders()).map(|p| p.image))
        .collect()
}

fn one_page(path: &str) -> RgbImage {
    let mut p = pages(path, fixture(path), &Limits::default()).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(p.len(), 1, "{path}: page count");
    p.remove(0)
}

/// Mean absolute difference per channel (R, G, B) between two pages of the same size.
fn mean_difference(a: &RgbImage, b: &RgbImage) -> [f64; 3] {
    assert_eq!(a.dimensions(), b.dimensions(), "page size");
    let mut sum = [0u64; 3];
    for (p, q) in a.pixels().zip(b.pixels()) {
        for (total, (a, b)) in sum.iter_mut().zip(p.0.iter().zip(q.0)) {
            *total += u64::from(a.abs_diff(b));
        }
    }
    let n = f64::from(a.width() * a.height());
    sum.map(|s| s as f64 / n)
}

/// The receipt's orientation marks: squares in its corners. The bilevel page has a black one
/// top-left and paper elsewhere; the colour page black top-left, red top-right, blue
/// bottom-left and paper bottom-right, so that a mirrored, rotated or channel-swapped page
/// fails.
fn assert_upright(page: &RgbImage, colour: bool, what: &str) {
    let (w, h) = page.dimensions();
    let near = |x: u32, y: u32, want: [u8; 3]| {
        let got = page.get_pixel(x, y).0;
        assert!(
            got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) < 60),
            "{what}: ({x}, {y}) is {got:?}, expected about {want:?}"
        );
    };
    let (left, right, top, bottom) = (8, w - 9, 8, h - 9);
    near(left, top, [0, 0, 0]);
    if colour {
        near(right, top, [255, 0, 0]);
        near(left, bottom, [0, 0, 255]);
    } else {
        near(right, top, [255, 255, 255]);
        near(left, bottom, [255, 255, 255]);
    }
    near(right, bottom, [255, 255, 255]);
}

#[test]
fn fax_pages_decode_to_the_expected_bilevel_page() {
    let want = expected("receipt-bilevel.png");
    for path in [
        "cases/tiff_g3_fax_1d.tif",
        "cases/tiff_g4_fillorder2.tif",
        "tiff/receipt-g3-2d.tif",
        "tiff/receipt-g3-2d-fillorder2.tif",
        "tiff/receipt-g3-1d-eol-aligned.tif",
        "tiff/receipt-g4.tif",
        "tiff/receipt-packbits.tif",
    ] {
        let page = one_page(path);
        assert_eq!(page.dimensions(), (1728, 2200), "{path}");
        assert_eq!(
            mean_difference(&page, &want),
            [0.0; 3],
            "{path}: pixels differ from the expected page"
        );
        assert_upright(&page, false, path);
    }
}

#[test]
fn colour_pages_decode_to_the_expected_colours() {
    let want = expected("receipt-rgb.png");
    for (path, tolerance) in [
        ("cases/bigtiff_lzw.tif", 0.0),
        ("tiff/receipt-tiled-deflate.tif", 0.0),
        // lossy: JPEG-in-TIFF, YCbCr with 2x2 chroma subsampling
        ("cases/tiff_jpeg_ycbcr_subsampled_tiffcp.tif", 1.5),
        ("tiff/receipt-jpeg-ycbcr.tif", 1.5),
    ] {
        let page = one_page(path);
        let diff = mean_difference(&page, &want);
        assert!(
            diff.iter().all(|&d| d <= tolerance),
            "{path}: mean difference per channel {diff:?} > {tolerance}"
        );
        assert_upright(&page, true, path);
    }
}

#[test]
fn a_thumbnail_directory_is_not_a_page() {
    let bytes = fixture("cases/tiff_page_plus_thumbnail_ifd.tif");
    let doc = Document::open("thumb.tif", bytes, &Limits::default(), decoders()).expect("opens");
    assert_eq!(
        doc.page_count(),
        1,
        "the 120x160 reduced-resolution image is not a page"
    );
    let page = doc
        .page(0, 150.0, &Limits::default(), decoders())
        .expect("page")
        .image;
    assert_eq!(mean_difference(&page, &expected("receipt-rgb.png")), [0.0; 3]);
}

#[test]
fn a_standard_resolution_fax_is_stretched_to_square_pixels() {
    // 1728 x 1100 at 204 x 98 dpi: half as many rows as columns per inch
    let page = one_page("tiff/receipt-g4-standard-resolution.tif");
    assert_eq!(page.dimensions(), (1728, 2290), "1100 x 204 / 98 rows");
    assert_upright(&page, false, "standard resolution");
    // a fine-mode fax (204 x 196) keeps its pixels
    assert_eq!(one_page("tiff/receipt-g4.tif").dimensions(), (1728, 2200));
}

#[test]
fn an_old_style_reduced_resolution_directory_is_not_a_page() {
    // SubfileType (tag 255, superseded by NewSubfileType): 3 = a page, 2 = a thumbnail
    let mut buf = Cursor::new(Vec::new());
    {
        let mut enc = TiffEncoder::new(&mut buf).expect("encoder");
        for (i, (w, h, subfile)) in [(40u32, 30u32, 3u16), (8, 6, 2), (40, 30, 3)]
            .into_iter()
            .enumerate()
        {
            let mut img = enc.new_image::<colortype::RGB8>(w, h).expect("ifd");
            img.encoder().write_tag(Tag::SubfileType, subfile).expect("tag");
            img.write_data(&rgb(w, h, gradient(i as u32))).expect("data");
        }
    }
    let got = pages("old.tif", buf.into_inner(), &Limits::default()).expect("decodes");
    assert_eq!(got.len(), 2, "the 8 x 6 thumbnail is not a page");
    assert_eq!(
        got[1].as_raw(),
        &rgb(40, 30, gradient(2)),
        "page 2 is the third directory"
    );
}

/// Packed RGB of a `w` × `h` page with pixels from `pixel(x, y)`.
fn rgb(w: u32, h: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            data.extend(pixel(x, y));
        }
    }
    data
}

fn gradient(seed: u32) -> impl Fn(u32, u32) -> [u8; 3] {
    move |x, y| {
        [
            (x * 7 + seed) as u8,
            (y * 5 + seed) as u8,
            ((x ^ y) + seed * 3) as u8,
        ]
    }
}

/// Pages written by the pure-Rust `tiff` crate (an encoder independent of libtiff): a
/// multi-page file keeps its page order and sizes, and every pixel.
#[test]
fn pages_written_by_another_encoder_decode_exactly() {
    let sizes = [(31, 17), (64, 48), (9, 40)];
    let mut buf = Cursor::new(Vec::new());
    {
        let mut enc = TiffEncoder::new(&mut buf).expect("encoder");
        for (i, &(w, h)) in sizes.iter().enumerate() {
            enc.write_image::<colortype::RGB8>(w, h, &rgb(w, h, gradient(i as u32)))
                .expect("page");
        }
        // a grey 16-bit page and a CMYK page
        let grey: Vec<u16> = (0..20 * 10).map(|i| (i * 300) as u16).collect();
        enc.write_image::<colortype::Gray16>(20, 10, &grey)
            .expect("grey16");
        let cmyk: Vec<u8> = (0..8 * 6).flat_map(|i| [i as u8 * 5, 0, 200, 30]).collect();
        enc.write_image::<colortype::CMYK8>(8, 6, &cmyk).expect("cmyk");
    }
    let got = pages("written.tif", buf.into_inner(), &Limits::default()).expect("decodes");
    assert_eq!(got.len(), 5);
    for (i, &(w, h)) in sizes.iter().enumerate() {
        assert_eq!(got[i].dimensions(), (w, h), "page {}", i + 1);
        assert_eq!(
            got[i].as_raw(),
            &rgb(w, h, gradient(i as u32)),
            "page {} pixels",
            i + 1
        );
    }
    // 16-bit samples keep their high byte
    let grey = rgb(20, 10, |x, y| [((((y * 20 + x) * 300) as u16) >> 8) as u8; 3]);
    assert_eq!(got[3].as_raw(), &grey, "grey 16-bit page");
    // CMYK inks to RGB: (255 - ink) x (255 - K) / 255
    let ink = |v: u32| ((255 - v) * (255 - 30) / 255) as u8;
    let cmyk = rgb(8, 6, |x, y| [ink((y * 8 + x) * 5 % 256), ink(0), ink(200)]);
    let diff = mean_difference(&got[4], &RgbImage::from_raw(8, 6, cmyk).expect("size"));
    assert!(diff.iter().all(|&d| d <= 1.0), "CMYK page differs by {diff:?}");
}

#[test]
fn every_orientation_tag_is_applied() {
    let (w, h) = (12u32, 7u32);
    let stored = RgbImage::from_raw(w, h, rgb(w, h, gradient(1))).expect("size");
    for orientation in 1u16..=8 {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut enc = TiffEncoder::new(&mut buf).expect("encoder");
            let mut img = enc.new_image::<colortype::RGB8>(w, h).expect("page");
            img.encoder()
                .write_tag(Tag::Orientation, orientation)
                .expect("tag");
            img.write_data(stored.as_raw()).expect("data");
        }
        let doc = Document::open("o.tif", buf.into_inner(), &Limits::default(), decoders()).expect("opens");
        let page = doc.page(0, 150.0, &Limits::default(), decoders()).expect("page");
        let mut want = image::DynamicImage::ImageRgb8(stored.clone());
        want.apply_orientation(image::metadata::Orientation::from_exif(orientation as u8).expect("1..=8"));
        assert_eq!(page.image, want.to_rgb8(), "orientation {orientation}");
        assert_eq!(page.orientation, (orientation != 1).then_some(orientation as u8));
    }
}

#[test]
fn limits_are_checked_before_a_page_is_decoded() {
    let bytes = fixture("cases/tiff_g3_fax_1d.tif");
    let limits = Limits {
        max_pixels: 1_000_000,
        ..Limits::default()
    };
    let e = pages("fax.tif", bytes, &limits).expect_err("1728 x 2200 > 1 Mpx");
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    let bytes = fixture("cases/tiff_g3_fax_1d.tif");
    let mut cut = bytes.clone();
    cut.truncate(bytes.len() / 2);
    // the directory sits at the end of this file: half of it has none
    let e = pages("cut.tif", cut, &Limits::default()).expect_err("cut");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("cut.tif"), "names the file: {e}");
}

fn samples() -> Vec<Vec<u8>> {
    vec![
        fixture("cases/tiff_g4_fillorder2.tif"),
        fixture("tiff/receipt-g3-2d.tif"),
        fixture("tiff/receipt-jpeg-ycbcr.tif"),
        fixture("cases/tiff_page_plus_thumbnail_ifd.tif"),
        fixture("cases/bigtiff_lzw.tif"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Damaged files fail with an error of the file's kind, never a crash (libtiff runs
    /// in-process: a crash would end this test binary).
    #[test]
    fn mutated_tiffs_fail_cleanly(which in 0usize..5, flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16), keep in 0.5f64..1.0) {
        let mut bytes = samples().swap_remove(which);
        // flips land in the directories and headers as often as in the image data
        let head = bytes.len().min(4096);
        for (k, (at, value)) in flips.into_iter().enumerate() {
            let i = if k % 2 == 0 { at.index(head) } else { bytes.len() - 1 - at.index(head) };
            bytes[i] = value;
        }
        bytes.truncate((bytes.len() as f64 * keep) as usize);
        let limits = Limits { max_pixels: 4_000_000, max_dimension: 4096, max_pages: 8, ..Limits::default() };
        if let Err(e) = pages("mutated.tif", bytes, &limits) {
            prop_assert!(matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::Unsupported | ErrorKind::TooLarge), "{e}");
        }
    }
}
