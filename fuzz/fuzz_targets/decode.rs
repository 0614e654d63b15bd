//! Document decoding: any bytes as a scan (JPEG, PNG, TIFF through libtiff, WebP, BMP; content
//! sniffed as the product does) and as a tax-authority e-invoice XML. Errors are fine; panics,
//! aborts, hangs and allocations past the limits are not. (PDF has its own target, `pdf`.
//! libtiff is the system library, not instrumented: coverage feedback comes from vinscan's
//! side of its calls, and a crash inside it still stops the run.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use vinscan_core::{Decoders, Document, Limits};
use vinscan_tiff::LibTiff;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_pixels: 4_000_000,
        max_dimension: 4096,
        max_pages: 4,
        ..Limits::default()
    };
    let decoders = Decoders {
        pdf: None,
        tiff: Some(&LibTiff),
    };
    if let Ok(doc) = Document::open("fuzz", data.to_vec(), &limits, decoders) {
        for index in 0..doc.page_count().min(4) {
            let _ = doc.page(index, 72.0, &limits, decoders);
        }
    }
    if vinscan_core::einvoice::is_einvoice(data) {
        let _ = vinscan_core::einvoice::invoice_data(data);
    }
});
