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
/// The largest `general.alignment` taken (GGUF's default is 32).
const MAX_ALIGNMENT: u64 = 1 << 16;
/// The largest position table read into memory: InternViT-6B's 1,025 rows of 3,200 f32 are 13 MB.
const MAX_TABLE_BYTES: u64 = 1 << 28;

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
    if !header.alignment.is_power_of_two() || header.alignment > MAX_ALIGNMENT {
        return Err(ConvertError::Invalid(format!(
            "{}: general.alignment {} is not a power of two up to 65536",
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

/// A ggml type's name, elements per block and bytes per block (`type_traits` in
/// `ggml/src/ggml.c`), for the types a projector's tensors come in.
fn ggml_type(ty: u32) -> Option<(&'static str, u64, u64)> {
    Some(match ty {
        0 => ("f32", 1, 4),
        1 => ("f16", 1, 2),
        2 => ("q4_0", 32, 18),
        3 => ("q4_1", 32, 20),
        6 => ("q5_0", 32, 22),
        7 => ("q5_1", 32, 24),
        8 => ("q8_0", 32, 34),
        10 => ("q2_K", 256, 84),
        11 => ("q3_K", 256, 110),
        12 => ("q4_K", 256, 144),
        13 => ("q5_K", 256, 176),
        14 => ("q6_K", 256, 210),
        30 => ("bf16", 1, 2),
        _ => return None,
    })
}

/// Bytes of `t`'s data, or why they cannot be known (an unknown type, a row that is not whole
/// blocks, a size past `u64`).
fn tensor_bytes(t: &TensorDesc) -> Result<u64, String> {
    let (name, block, bytes) = ggml_type(t.ggml_type).ok_or_else(|| {
        format!(
            "tensor {} has ggml type {}, whose size vinscan does not know",
            t.name, t.ggml_type
        )
    })?;
    let ne0 = t.ne.first().copied().unwrap_or(1);
    if !ne0.is_multiple_of(block) {
        return Err(format!(
            "tensor {} ({name}) has rows of {ne0}, not whole blocks of {block}",
            t.name
        ));
    }
    (ne0 / block)
        .checked_mul(bytes)
        .and_then(|row| t.ne.iter().skip(1).try_fold(row, |n, &d| n.checked_mul(d)))
        .ok_or_else(|| format!("tensor {} is larger than any file", t.name))
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
/// `Unsupported` for a table in a type other than f32 (llama.cpp aborts on any other); `Io`.
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
    if let Some(key) = [POSITION_ORDER, REPAIRED_FROM]
        .into_iter()
        .find(|k| h.get(k).is_some())
    {
        return Err(ConvertError::Invalid(format!(
            "{shown}: already has vinscan's key {key} (not {POSITION_ORDER} = {CLASS_LAST}): not a file to repair"
        )));
    }
    let (offset, row, rows) = position_table(&h, src)?;
    if same_file(src, dst) {
        return Err(ConvertError::Invalid(format!(
            "{}: the repaired copy must not replace the file it is made from",
            dst.display()
        )));
    }
    let from_sha256 = vinscan_core::hash::sha256_file(src).map_err(|e| ConvertError::Io(e.to_string()))?;
    // a new file of its own, created exclusively beside `dst` (concurrent repairs, even from
    // processes with the same pid in containers sharing a cache, never write into one file),
    // removed when dropped unwritten and renamed over `dst` only when complete
    let name = dst
        .file_name()
        .map_or_else(|| "mmproj".into(), |n| n.to_string_lossy().into_owned());
    let dir = dst
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".partial");
    // a temporary file is private (0600); the repaired projector is a model file others
    // (a daemon's user) read: 0666 less the umask, as a plain create gives
    #[cfg(unix)]
    builder.permissions(<std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o666));
    let partial = builder.tempfile_in(dir).map_err(|e| ConvertError::io(dst, e))?;
    write_repaired(&h, src, partial.as_file(), dst, (offset, row, rows), &from_sha256)?;
    partial.persist(dst).map_err(|e| ConvertError::io(dst, e.error))?;
    Ok(Repaired { rows, from_sha256 })
}

/// Where the position table is (offset in the data, bytes per row, rows), after checking that
/// every tensor lies whole inside the file and the table has a row per patch plus the class
/// row.
fn position_table(h: &Header, src: &Path) -> Result<(u64, u64, u64), ConvertError> {
    let shown = src.display();
    let bad = |m: String| ConvertError::Invalid(format!("{shown}: {m}"));
    let len = std::fs::metadata(src)
        .map_err(|e| ConvertError::io(src, e))?
        .len();
    let data = len
        .checked_sub(h.data_start)
        .ok_or_else(|| bad("the file ends before its tensor data".into()))?;
    for t in &h.tensors {
        let size = tensor_bytes(t).map_err(|m| ConvertError::Unsupported(format!("{shown}: {m}")))?;
        if t.offset.checked_add(size).is_none_or(|end| end > data) {
            return Err(bad(format!(
                "the file ends inside tensor {} (cut short?)",
                t.name
            )));
        }
    }
    let mut tables = h.tensors.iter().filter(|t| t.name == POSITION_TENSOR);
    let (Some(t), None) = (tables.next(), tables.next()) else {
        return Err(ConvertError::MissingTensor(format!(
            "one {POSITION_TENSOR} in {shown}"
        )));
    };
    let rows = t.ne.iter().skip(1).try_fold(1u64, |n, &d| n.checked_mul(d));
    let patches = match (h.uint("clip.vision.image_size"), h.uint("clip.vision.patch_size")) {
        (Some(i), Some(p)) if p > 0 => (i / p).checked_mul(i / p).and_then(|n| n.checked_add(1)),
        _ => {
            return Err(bad(
                "no clip.vision.image_size and patch_size to count the patches by".into(),
            ));
        }
    };
    let rows = match (rows, patches) {
        (Some(r), Some(p)) if r == p && r > 1 => r,
        _ => {
            return Err(bad(format!(
                "{POSITION_TENSOR} does not have a row per patch plus the class row ({rows:?} rows, {patches:?} expected)"
            )));
        }
    };
    let size = tensor_bytes(t).map_err(|m| ConvertError::Unsupported(format!("{shown}: {m}")))?;
    // llama.cpp's InternVL graph adds the table to f32 activations, and ggml's CPU add aborts
    // the process on any other type: a table in another type never ran, so is not repaired
    if t.ggml_type != 0 {
        return Err(ConvertError::Unsupported(format!(
            "{shown}: {POSITION_TENSOR} is {}; llama.cpp runs only an f32 table (it aborts on any other type), so only f32 tables are repaired",
            ggml_type(t.ggml_type).map_or("unknown", |(n, _, _)| n)
        )));
    }
    if size > MAX_TABLE_BYTES {
        return Err(bad(format!(
            "{POSITION_TENSOR} of {size} bytes is not a vision position table"
        )));
    }
    Ok((t.offset, size / rows, rows))
}

/// Whether `a` and `b` name the same file (`b` may not exist yet).
fn same_file(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| {
        p.canonicalize().ok().or_else(|| {
            let parent = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            Some(parent.canonicalize().ok()?.join(p.file_name()?))
        })
    };
    canon(a).is_some_and(|a| Some(a) == canon(b))
}

/// Copies `input` to its end into `out`; returns the bytes copied. Read errors name the
/// source, write errors (a full disk) the destination.
fn copy_bytes(
    input: &mut impl Read,
    out: &mut impl Write,
    (src, dst): (&Path, &Path),
) -> Result<u64, ConvertError> {
    let mut buf = vec![0u8; 1 << 20];
    let mut copied = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ConvertError::io(src, e)),
        };
        out.write_all(&buf[..n]).map_err(|e| ConvertError::io(dst, e))?;
        copied += n as u64;
    }
}

/// A string key-value in GGUF's layout.
fn string_kv(out: &mut Vec<u8>, key: &str, value: &str) {
    out.extend((key.len() as u64).to_le_bytes());
    out.extend(key.as_bytes());
    out.extend(8u32.to_le_bytes());
    out.extend((value.len() as u64).to_le_bytes());
    out.extend(value.as_bytes());
}

/// `h`'s file with two more keys and the table at `(offset, row bytes, rows)` rotated, into
/// `file` (the temporary file for `dst`, which names it in errors).
fn write_repaired(
    h: &Header,
    src: &Path,
    file: &File,
    dst: &Path,
    (offset, row, rows): (u64, u64, u64),
    from_sha256: &str,
) -> Result<(), ConvertError> {
    let io_src = |e: std::io::Error| ConvertError::io(src, e);
    let io_dst = |e: std::io::Error| ConvertError::io(dst, e);
    let mut input = BufReader::new(File::open(src).map_err(io_src)?);
    let mut out = BufWriter::new(file);
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
    let copied = copy_bytes(&mut (&mut input).take(offset), &mut out, (src, dst))?;
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
    copy_bytes(&mut input, &mut out, (src, dst))?;
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
        // a copy that cannot be read (cut by a crash, say) is made again
        let made_from = read_header(&copy)
            .ok()
            .and_then(|h| h.string(REPAIRED_FROM).map(str::to_owned));
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
