//! NumPy `.npy` files (format 1.0, little-endian, C order), the form the parity scripts read.

use std::io::Write;
use std::path::Path;

use vinscan_core::{Error, Result};

/// The `.npy` header for `descr` (`<f4`, `|u1`, …) and `shape`, padded as the format asks.
fn header(descr: &str, shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // magic (6) + version (2) + header length (2) + header, padded with spaces to 64, ends in \n
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    header
}

/// Writes `data` (already in `descr`'s byte layout) as a `.npy` array of `shape`.
pub fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| Error::from_io(&e, path.display());
    let header = header(descr, shape);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
    f.write_all(b"\x93NUMPY\x01\x00").map_err(io)?;
    f.write_all(&(header.len() as u16).to_le_bytes()).map_err(io)?;
    f.write_all(header.as_bytes()).map_err(io)?;
    f.write_all(data).map_err(io)?;
    f.flush().map_err(io)
}

/// Rows of f32 as little-endian bytes (`<f4`).
pub fn f32_bytes(rows: &[Vec<f32>]) -> Vec<u8> {
    rows.iter().flatten().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_pad_the_preamble_to_64_bytes() {
        for shape in [&[3][..], &[2, 448, 448, 3], &[201, 151_655]] {
            let h = header("<f4", shape);
            assert_eq!((10 + h.len()) % 64, 0, "{h:?}");
            assert!(h.ends_with('\n'));
        }
        assert!(header("|u1", &[3]).contains("'shape': (3,)"));
        assert!(header("<f4", &[2, 5]).contains("'shape': (2, 5)"));
    }

    #[test]
    fn f32_rows_are_little_endian_in_order() {
        assert_eq!(f32_bytes(&[vec![1.0], vec![-2.0]]), [0, 0, 128, 63, 0, 0, 0, 192]);
    }
}
