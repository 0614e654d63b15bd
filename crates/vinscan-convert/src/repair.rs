//! `vinscan model repair`: an InternVL projector written by llama.cpp's own converter, whose
//! vision position table is class row first while llama.cpp's graph appends the class token
//! after the patches (every patch then gets its neighbour's position; docs/FIDELITY.md), made
//! right: the same file with that table's first row moved last and two keys added
//! ([`vinscan_core::model::projector_keys`]). Every other tensor byte is copied unchanged.
//!
//! The GGUF is read as llama.cpp's `ggml/src/gguf.cpp` lays it out (version 2 or 3,
//! little-endian: magic, version, tensor count, key-value count, the key-values, the tensor
//! descriptions, padding to `general.alignment`, then the data, each tensor at its offset from
//! the data's start). The new keys go after the old ones, so the descriptions and the data
//! move as a block and every tensor keeps its offset. A file that is not such a projector, or
//! is cut short, is refused with the reason; nothing is written then.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use vinscan_core::model::projector_keys::{CLASS_LAST, POSITION_ORDER, REPAIRED_FROM};

use crate::ConvertError;

/// The position table llama.cpp's CLIP loader reads (`TN_POS_EMBD` in `tools/mtmd/clip-impl.h`).
pub const POSITION_TENSOR: &str = "v.position_embd.weight";

/// The longest string or array a header may declare before the file is taken as corrupt.
const MAX_HEADER_ITEMS: u64 = 1 << 24;

/// What a projector's position table order is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PositionOrder {
    /// Class row last, as llama.cpp's graph reads it: a vinscan conversion or repair.
    ClassLast,
    /// An InternVL projector without vinscan's key: llama.cpp's converter's order, class row
    /// first. [`repair`] fixes it.
    Upstream,
    /// Not an InternVL projector (another projector type, or not a projector): nothing to do.
    NotInternvl,
}

/// A scalar or string key-value read from the header (arrays are skipped).
#[derive(Debug, Clone, PartialEq)]
enum Kv {
    Str(String),
    Uint(u64),
    Other,
}

/// One tensor description: name, dimensions (innermost first), ggml type and data offset.
#[derive(Debug, Clone)]
struct TensorDesc {
    name: String,
    ne: Vec<u64>,
    ggml_type: u32,
    offset: u64,
}

/// The parsed header of a GGUF file.
struct Header {
    version: u32,
    /// Bytes of the key-value section and of the tensor descriptions, as in the file.
    kv_bytes: Vec<u8>,
    desc_bytes: Vec<u8>,
    n_kv: u64,
    n_tensors: u64,
    kvs: Vec<(String, Kv)>,
    tensors: Vec<TensorDesc>,
    alignment: u64,
    /// Where the data section starts in the file.
    data_start: u64,
}

impl Header {
    fn get(&self, key: &str) -> Option<&Kv> {
        self.kvs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn string(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Kv::Str(s)) => Some(s),
            _ => None,
        }
    }

    fn uint(&self, key: &str) -> Option<u64> {
        match self.get(key) {
            Some(Kv::Uint(n)) => Some(*n),
            _ => None,
        }
    }

    fn order(&self) -> PositionOrder {
        let projector = self
            .string("clip.projector_type")
            .or_else(|| self.string("clip.vision.projector_type"));
        if self.string("general.architecture") != Some("clip") || projector != Some("internvl") {
            PositionOrder::NotInternvl
        } else if self.string(POSITION_ORDER) == Some(CLASS_LAST) {
            PositionOrder::ClassLast
        } else {
            PositionOrder::Upstream
        }
    }
}

/// Reads the file's bytes as they are and keeps a copy of every byte read.
struct Recorder<R> {
    inner: R,
    kept: Vec<u8>,
    path: String,
}

impl<R: Read> Recorder<R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], ConvertError> {
        let mut b = [0u8; N];
        self.inner
            .read_exact(&mut b)
            .map_err(|e| ConvertError::Invalid(format!("{}: not a complete GGUF header: {e}", self.path)))?;
        self.kept.extend_from_slice(&b);
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, ConvertError> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, ConvertError> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn count(&mut self, what: &str) -> Result<u64, ConvertError> {
        let n = self.u64()?;
        if n > MAX_HEADER_ITEMS {
            return Err(ConvertError::Invalid(format!(
                "{}: {what} of {n} is not a GGUF header's",
                self.path
            )));
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, ConvertError> {
        let n = self.count("a string length")?;
        let mut b = vec![0u8; n as usize];
        self.inner
            .read_exact(&mut b)
            .map_err(|e| ConvertError::Invalid(format!("{}: not a complete GGUF header: {e}", self.path)))?;
        self.kept.extend_from_slice(&b);
        String::from_utf8(b)
            .map_err(|_| ConvertError::Invalid(format!("{}: a key or value is not UTF-8", self.path)))
    }

    /// A value of GGUF type `ty` (`enum gguf_type`): scalars and strings kept, arrays skipped.
    fn value(&mut self, ty: u32) -> Result<Kv, ConvertError> {
        Ok(match ty {
            0 | 1 | 7 => Kv::Uint(u64::from(self.bytes::<1>()?[0])),
            2 | 3 => Kv::Uint(u64::from(u16::from_le_bytes(self.bytes()?))),
            4 | 5 => Kv::Uint(u64::from(self.u32()?)),
            6 => {
                self.bytes::<4>()?;
                Kv::Other
            }
            8 => Kv::Str(self.string()?),
            9 => {
                let elem = self.u32()?;
                if elem == 9 {
                    return Err(ConvertError::Invalid(format!(
                        "{}: an array of arrays",
                        self.path
                    )));
                }
                for _ in 0..self.count("an array length")? {
                    self.value(elem)?;
                }
                Kv::Other
            }
            10 | 11 => Kv::Uint(self.u64()?),
            12 => {
                self.bytes::<8>()?;
                Kv::Other
            }
            other => {
                return Err(ConvertError::Invalid(format!(
                    "{}: unknown GGUF value type {other}",
                    self.path
                )));
            }
        })
    }
}

fn read_header(path: &Path) -> Result<Header, ConvertError> {
    let file = File::open(path).map_err(|e| ConvertError::io(path, e))?;
    let mut r = Recorder {
        inner: BufReader::new(file),
        kept: Vec::new(),
        path: path.display().to_string(),
    };
    if &r.bytes::<4>()? != b"GGUF" {
        return Err(ConvertError::Invalid(format!(
            "{}: not a GGUF file",
            path.display()
        )));
    }
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        return Err(ConvertError::Unsupported(format!(
            "{}: GGUF version {version} (2 and 3 are read)",
            path.display()
        )));
    }
    let n_tensors = r.count("a tensor count")?;
    let n_kv = r.count("a key count")?;
    r.kept.clear();
    let mut kvs = Vec::new();
    for _ in 0..n_kv {
        let key = r.string()?;
        let ty = r.u32()?;
        kvs.push((key, r.value(ty)?));
    }
    let kv_bytes = std::mem::take(&mut r.kept);
    let mut tensors = Vec::new();
    for _ in 0..n_tensors {
        let name = r.string()?;
        let n_dims = r.u32()?;
        if n_dims > 4 {
            return Err(ConvertError::Invalid(format!(
                "{}: tensor {name} has {n_dims} dimensions",
                path.display()
            )));
        }
        let ne = (0..n_dims).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
        let ggml_type = r.u32()?;
        let offset = r.u64()?;
        tensors.push(TensorDesc {
            name,
            ne,
            ggml_type,
            offset,
        });
    }
    let desc_bytes = std::mem::take(&mut r.kept);
    let mut header = Header {
        version,
        kv_bytes,
        desc_bytes,
        n_kv,
        n_tensors,
        kvs,
        tensors,
        alignment: 32,
        data_start: 0,
    };
    header.alignment = header.uint("general.alignment").unwrap_or(32);
    if header.alignment == 0 || !header.alignment.is_power_of_two() {
        return Err(ConvertError::Invalid(format!(
            "{}: general.alignment {} is not a power of two",
            path.display(),
            header.alignment
        )));
    }
    let end = 24 + header.kv_bytes.len() as u64 + header.desc_bytes.len() as u64;
    header.data_start = end.next_multiple_of(header.alignment);
    Ok(header)
}

/// The position table order of the projector at `path`. Errors: the file cannot be read or is
/// not a complete GGUF header.
pub fn inspect(path: &Path) -> Result<PositionOrder, ConvertError> {
    Ok(read_header(path)?.order())
}

/// Bytes of one row of `ne0` elements of ggml type `ty`, for the types a position table comes
/// in (f32, f16, bf16, q8_0; `ggml_type_size` / `ggml_blck_size` in `ggml/src/ggml.c`).
fn row_bytes(ty: u32, ne0: u64) -> Option<u64> {
    match ty {
        0 => Some(4 * ne0),
        1 | 30 => Some(2 * ne0),
        8 if ne0.is_multiple_of(32) => Some(ne0 / 32 * 34),
        _ => None,
    }
}

/// What [`repair`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    /// Rows of the position table (patches + the class row).
    pub rows: u64,
    /// sha256 of the file repaired, recorded in the copy under `REPAIRED_FROM`.
    pub from_sha256: String,
}

/// Where [`ensure_repaired`] puts the repaired copy of `path`: beside it, `<stem>.repaired.gguf`.
pub fn repaired_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "mmproj".into(), |s| s.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}.repaired.gguf"))
}

/// Writes `dst`: `src` with its position table's first row (the class token's) moved last and
/// the two keys added. Written under a temporary name and renamed when complete.
///
/// # Errors
/// `Invalid` when `src` is not an InternVL projector in upstream order (already class-last,
/// another projector, a table whose rows are not the patches plus one), or is cut short;
/// `Unsupported` for a table in a type other than f32, f16, bf16 or q8_0; `Io`.
pub fn repair(src: &Path, dst: &Path) -> Result<Repaired, ConvertError> {
    let h = read_header(src)?;
    let shown = src.display();
    match h.order() {
        PositionOrder::Upstream => {}
        PositionOrder::ClassLast => {
            return Err(ConvertError::Invalid(format!(
                "{shown}: the position table is already class row last ({POSITION_ORDER} = {CLASS_LAST})"
            )));
        }
        PositionOrder::NotInternvl => {
            return Err(ConvertError::Invalid(format!(
                "{shown}: not an InternVL projector"
            )));
        }
    }
    let t = h
        .tensors
        .iter()
        .find(|t| t.name == POSITION_TENSOR)
        .ok_or_else(|| ConvertError::MissingTensor(format!("{POSITION_TENSOR} in {shown}")))?;
    let ne0 = t.ne.first().copied().unwrap_or(0);
    let rows: u64 = t.ne.iter().skip(1).product();
    let side = h
        .uint("clip.vision.image_size")
        .zip(h.uint("clip.vision.patch_size"))
        .filter(|(_, p)| *p > 0)
        .map(|(i, p)| i / p);
    if side.is_none_or(|s| rows != s * s + 1) {
        return Err(ConvertError::Invalid(format!(
            "{shown}: {POSITION_TENSOR} has {rows} rows, not the patches of clip.vision.image_size / patch_size plus the class row"
        )));
    }
    let row = row_bytes(t.ggml_type, ne0).ok_or_else(|| {
        ConvertError::Unsupported(format!(
            "{shown}: {POSITION_TENSOR} is of ggml type {}; f32, f16, bf16 and q8_0 are repaired",
            t.ggml_type
        ))
    })?;
    let from_sha256 = vinscan_core::hash::sha256_file(src).map_err(|e| ConvertError::Io(e.to_string()))?;
    let partial = dst.with_extension("gguf.partial");
    write_repaired(&h, src, &partial, (t.offset, row, rows), &from_sha256)?;
    std::fs::rename(&partial, dst).map_err(|e| ConvertError::io(dst, e))?;
    Ok(Repaired { rows, from_sha256 })
}

/// A string key-value in GGUF's layout.
fn string_kv(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend((key.len() as u64).to_le_bytes());
    out.extend(key.as_bytes());
    out.extend(8u32.to_le_bytes());
    out.extend((value.len() as u64).to_le_bytes());
    out.extend(value.as_bytes());
}

/// `h`'s file with two more keys and the table at `(offset, row bytes, rows)` rotated.
fn write_repaired(
    h: &Header,
    src: &Path,
    dst: &Path,
    (offset, row, rows): (u64, u64, u64),
    from_sha256: &str,
) -> Result<(), ConvertError> {
    let io_src = |e: std::io::Error| ConvertError::io(src, e);
    let io_dst = |e: std::io::Error| ConvertError::io(dst, e);
    let mut input = BufReader::new(File::open(src).map_err(io_src)?);
    let mut out = BufWriter::new(File::create(dst).map_err(io_dst)?);
    let mut head = Vec::with_capacity(h.kv_bytes.len() + h.desc_bytes.len() + 256);
    head.extend(b"GGUF");
    head.extend(h.version.to_le_bytes());
    head.extend(h.n_tensors.to_le_bytes());
    head.extend((h.n_kv + 2).to_le_bytes());
    head.extend(&h.kv_bytes);
    string_kv(&mut head, POSITION_ORDER, CLASS_LAST);
    string_kv(&mut head, REPAIRED_FROM, from_sha256);
    head.extend(&h.desc_bytes);
    let pad = (head.len() as u64).next_multiple_of(h.alignment) - head.len() as u64;
    head.extend(std::iter::repeat_n(0u8, pad as usize));
    out.write_all(&head).map_err(io_dst)?;
    // the data: unchanged up to the table, the table rotated by one row, unchanged after
    input.seek(SeekFrom::Start(h.data_start)).map_err(io_src)?;
    let copied = std::io::copy(&mut (&mut input).take(offset), &mut out).map_err(io_src)?;
    let mut table = vec![0u8; (row * rows) as usize];
    input.read_exact(&mut table).map_err(|e| {
        ConvertError::Invalid(format!(
            "{}: the data ends inside {POSITION_TENSOR}: {e}",
            src.display()
        ))
    })?;
    if copied != offset {
        return Err(ConvertError::Invalid(format!(
            "{}: the data ends before {POSITION_TENSOR}",
            src.display()
        )));
    }
    table.rotate_left(row as usize);
    out.write_all(&table).map_err(io_dst)?;
    std::io::copy(&mut input, &mut out).map_err(io_src)?;
    out.flush().map_err(io_dst)?;
    out.get_ref().sync_all().map_err(io_dst)
}

/// The projector to use for `path`: `path` itself unless it is an InternVL projector in
/// upstream order, else its repaired copy ([`repaired_path`]), written first when missing.
/// Returns the path and whether it is a repaired copy.
///
/// # Errors
/// As [`inspect`] and [`repair`].
pub fn ensure_repaired(path: &Path) -> Result<(PathBuf, bool), ConvertError> {
    if inspect(path)? != PositionOrder::Upstream {
        return Ok((path.to_path_buf(), false));
    }
    let copy = repaired_path(path);
    // a copy is current when it was made from these very bytes
    if copy.is_file() {
        let made_from = read_header(&copy)?.string(REPAIRED_FROM).map(str::to_owned);
        let sha = vinscan_core::hash::sha256_file(path).map_err(|e| ConvertError::Io(e.to_string()))?;
        if made_from.as_deref() == Some(sha.as_str()) {
            return Ok((copy, true));
        }
    }
    repair(path, &copy)?;
    Ok((copy, true))
}

#[cfg(test)]
mod tests;
