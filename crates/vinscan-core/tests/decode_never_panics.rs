//! Mutated and truncated images must decode or fail with an error: never panic, never exceed
//! the limits. (A stable-toolchain stand-in for a fuzz target over the decoders; TIFF, decoded
//! by libtiff, has the same property test in `vinscan-tiff`.)

use std::io::Cursor;

use image::{ImageFormat, Rgb, RgbImage};
use proptest::prelude::*;
use vinscan_core::{Decoders, Document, ErrorKind, Limits};

fn sample(format: ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(40, 30, |x, y| {
        Rgb([(x * 6) as u8, (y * 8) as u8, ((x + y) * 3) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode sample");
    out.into_inner()
}

fn samples() -> Vec<Vec<u8>> {
    vec![
        sample(ImageFormat::Png),
        sample(ImageFormat::Jpeg),
        sample(ImageFormat::WebP),
        sample(ImageFormat::Bmp),
    ]
}

fn limits() -> Limits {
    Limits {
        max_pixels: 1_000_000,
        max_dimension: 4000,
        ..Limits::default()
    }
}

/// Opens and decodes every page; returns the kinds of any errors.
fn exercise(bytes: Vec<u8>) -> Vec<ErrorKind> {
    let limits = limits();
    match Document::open("fuzz.bin", bytes, &limits, Decoders::default()) {
        Err(e) => vec![e.kind()],
        Ok(doc) => (0..doc.page_count())
            .filter_map(|i| match doc.page(i, 150.0, &limits, Decoders::default()) {
                Ok(page) => {
                    let (w, h) = page.image.dimensions();
                    assert!(u64::from(w) * u64::from(h) <= limits.max_pixels);
                    None
                }
                Err(e) => Some(e.kind()),
            })
            .collect(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_images_never_panic(which in 0usize..4, flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12)) {
        let mut bytes = samples().swap_remove(which);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        for kind in exercise(bytes) {
            prop_assert!(matches!(kind, ErrorKind::InvalidInput | ErrorKind::Unsupported | ErrorKind::TooLarge), "{kind:?}");
        }
    }

    #[test]
    fn truncated_images_never_panic(which in 0usize..4, keep in 0.0f64..1.0) {
        let mut bytes = samples().swap_remove(which);
        let n = (bytes.len() as f64 * keep) as usize;
        bytes.truncate(n);
        for kind in exercise(bytes) {
            prop_assert!(matches!(kind, ErrorKind::InvalidInput | ErrorKind::Unsupported | ErrorKind::TooLarge), "{kind:?}");
        }
    }
}
