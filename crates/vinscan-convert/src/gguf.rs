//! A streaming GGUF (version 3) writer: metadata and tensor descriptions first, then each
//! tensor's bytes as the caller produces them, so a multi-gigabyte model never sits in memory.
//! The layout is llama.cpp's `gguf.cpp`: little-endian, strings as u64 length + bytes, tensor
//! data aligned to 32 bytes, dimensions innermost first (`ne[0]` is a row's length).

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::Path;

use super::ConvertError;

const ALIGNMENT: u64 = 32;

/// ggml tensor types vinscan writes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    F32,
    F16,
    /// bfloat16: a Hugging Face bf16 checkpoint's weights, bit for bit.
    BF16,
    Q8_0,
}

impl TensorType {
    fn ggml_id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q8_0 => 8,
            Self::BF16 => 30,
        }
    }

    /// Bytes of a tensor with `n` elements (`n` a multiple of 32 for q8_0).
    pub fn bytes(self, n: u64) -> u64 {
        match self {
            Self::F32 => 4 * n,
            Self::F16 | Self::BF16 => 2 * n,
            Self::Q8_0 => n / 32 * 34,
        }
    }

    /// Encodes `values` (row-major, rows of `ne0`) in this type.
    pub fn encode(self, values: &[f32], out: &mut Vec<u8>) {
        out.clear();
        match self {
            Self::F32 => values.iter().for_each(|v| out.extend(v.to_le_bytes())),
            Self::F16 => values
                .iter()
                .for_each(|v| out.extend(half::f16::from_f32(*v).to_le_bytes())),
            // round to nearest even, as ggml's `ggml_compute_fp32_to_bf16`; exact for values
            // that came from bf16
            Self::BF16 => values
                .iter()
                .for_each(|v| out.extend(half::bf16::from_f32(*v).to_le_bytes())),
            Self::Q8_0 => quantize_q8_0(values, out),
        }
    }
}

/// ggml's reference q8_0: blocks of 32, scale = max|x| / 127 stored as f16, values rounded half
/// away from zero (`quantize_row_q8_0_ref`).
pub fn quantize_q8_0(values: &[f32], out: &mut Vec<u8>) {
    for block in values.chunks(32) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend(half::f16::from_f32(d).to_le_bytes());
        for i in 0..32 {
            let v = block.get(i).copied().unwrap_or(0.0);
            out.push((v * id).round() as i8 as u8);
        }
    }
}

/// A metadata value.
#[derive(Debug, Clone)]
pub enum Value {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    ArrF32(Vec<f32>),
    ArrI32(Vec<i32>),
    ArrStr(Vec<String>),
}

/// One tensor's description: its GGUF name, `ne` (innermost first) and type.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    pub ne: Vec<u64>,
    pub ty: TensorType,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.ne.iter().product()
    }
}

fn put_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn put_value(w: &mut impl Write, v: &Value) -> std::io::Result<()> {
    const U32: u32 = 4;
    const I32: u32 = 5;
    const F32: u32 = 6;
    const BOOL: u32 = 7;
    const STR: u32 = 8;
    const ARR: u32 = 9;
    let array_head = |w: &mut dyn Write, ty: u32, n: usize| -> std::io::Result<()> {
        w.write_all(&ARR.to_le_bytes())?;
        w.write_all(&ty.to_le_bytes())?;
        w.write_all(&(n as u64).to_le_bytes())
    };
    match v {
        Value::U32(x) => {
            w.write_all(&U32.to_le_bytes())?;
            w.write_all(&x.to_le_bytes())
        }
        Value::F32(x) => {
            w.write_all(&F32.to_le_bytes())?;
            w.write_all(&x.to_le_bytes())
        }
        Value::Bool(x) => {
            w.write_all(&BOOL.to_le_bytes())?;
            w.write_all(&[u8::from(*x)])
        }
        Value::Str(s) => {
            w.write_all(&STR.to_le_bytes())?;
            put_str(w, s)
        }
        Value::ArrF32(xs) => {
            array_head(w, F32, xs.len())?;
            xs.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()))
        }
        Value::ArrI32(xs) => {
            array_head(w, I32, xs.len())?;
            xs.iter().try_for_each(|x| w.write_all(&x.to_le_bytes()))
        }
        Value::ArrStr(xs) => {
            array_head(w, STR, xs.len())?;
            xs.iter().try_for_each(|x| put_str(w, x))
        }
    }
}

fn padding(n: u64) -> u64 {
    (ALIGNMENT - n % ALIGNMENT) % ALIGNMENT
}

/// Writes the header, metadata and tensor descriptions; then [`GgufFile::write_tensor`] once per
/// tensor, in the order given.
pub struct GgufFile {
    out: BufWriter<File>,
    tensors: Vec<TensorInfo>,
    next: usize,
    path: String,
}

impl GgufFile {
    pub fn create(
        path: &Path,
        metadata: &[(&str, Value)],
        tensors: Vec<TensorInfo>,
    ) -> Result<Self, ConvertError> {
        let io = |e: std::io::Error| ConvertError::io(path, e);
        let mut out = BufWriter::new(File::create(path).map_err(io)?);
        out.write_all(b"GGUF").map_err(io)?;
        out.write_all(&3u32.to_le_bytes()).map_err(io)?;
        out.write_all(&(tensors.len() as u64).to_le_bytes()).map_err(io)?;
        out.write_all(&(metadata.len() as u64).to_le_bytes())
            .map_err(io)?;
        for (key, value) in metadata {
            put_str(&mut out, key).map_err(io)?;
            put_value(&mut out, value).map_err(io)?;
        }
        let mut offset = 0u64;
        for t in &tensors {
            put_str(&mut out, &t.name).map_err(io)?;
            out.write_all(&(t.ne.len() as u32).to_le_bytes()).map_err(io)?;
            for d in &t.ne {
                out.write_all(&d.to_le_bytes()).map_err(io)?;
            }
            out.write_all(&t.ty.ggml_id().to_le_bytes()).map_err(io)?;
            out.write_all(&offset.to_le_bytes()).map_err(io)?;
            let size = t.ty.bytes(t.elements());
            offset += size + padding(size);
        }
        let pos = out.stream_position().map_err(io)?;
        out.write_all(&vec![0u8; padding(pos) as usize]).map_err(io)?;
        Ok(Self {
            out,
            tensors,
            next: 0,
            path: path.display().to_string(),
        })
    }

    /// Writes the next tensor's encoded bytes.
    pub fn write_tensor(&mut self, bytes: &[u8]) -> Result<(), ConvertError> {
        let t = self.tensors.get(self.next).ok_or_else(|| {
            ConvertError::Internal(format!("{}: more tensors written than declared", self.path))
        })?;
        let size = t.ty.bytes(t.elements());
        if bytes.len() as u64 != size {
            return Err(ConvertError::Internal(format!(
                "{}: tensor {} encodes to {} bytes, declared {size}",
                self.path,
                t.name,
                bytes.len()
            )));
        }
        let io = |e: std::io::Error| ConvertError::Io(format!("{}: {e}", self.path));
        self.out.write_all(bytes).map_err(io)?;
        self.out
            .write_all(&vec![0u8; padding(size) as usize])
            .map_err(io)?;
        self.next += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<(), ConvertError> {
        if self.next != self.tensors.len() {
            return Err(ConvertError::Internal(format!(
                "{}: {} of {} tensors written",
                self.path,
                self.next,
                self.tensors.len()
            )));
        }
        self.out
            .flush()
            .map_err(|e| ConvertError::Io(format!("{}: {e}", self.path)))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(|e| ConvertError::Io(format!("{}: {e}", self.path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_matches_ggml_reference_rounding() {
        let mut values: Vec<f32> = (0..32).map(|i| (i as f32 - 15.5) / 10.0).collect();
        values[3] = 0.0;
        let mut out = Vec::new();
        quantize_q8_0(&values, &mut out);
        assert_eq!(out.len(), 34);
        let d = half::f16::from_le_bytes([out[0], out[1]]).to_f32();
        assert!((d - 1.55 / 127.0).abs() < 1e-5);
        // the extreme value maps to ±127, zero to 0, and decoding is within half a step
        assert_eq!(out[2] as i8, -127);
        assert_eq!(out[2 + 31] as i8, 127);
        assert_eq!(out[2 + 3] as i8, 0);
        for (i, v) in values.iter().enumerate() {
            let back = f32::from(out[2 + i] as i8) * d;
            assert!((back - v).abs() <= d / 2.0 + 1e-6, "{i}: {back} vs {v}");
        }
    }

    #[test]
    fn bf16_keeps_bf16_values_exactly() {
        let values = [
            1.0f32,
            -2.5,
            0.007_812_5,
            half::bf16::from_f32(1.234_567).to_f32(),
        ];
        let mut out = Vec::new();
        TensorType::BF16.encode(&values, &mut out);
        assert_eq!(out.len(), 8);
        assert_eq!(&out[0..2], &[0x80, 0x3f]);
        for (i, v) in values.iter().enumerate() {
            let back = half::bf16::from_le_bytes([out[2 * i], out[2 * i + 1]]).to_f32();
            assert_eq!(back, *v);
        }
    }

    #[test]
    fn all_zero_block_has_zero_scale() {
        let mut out = Vec::new();
        quantize_q8_0(&[0.0; 32], &mut out);
        assert!(out.iter().all(|b| *b == 0));
    }

    #[test]
    fn sizes_and_padding() {
        assert_eq!(TensorType::Q8_0.bytes(64), 68);
        assert_eq!(TensorType::F16.bytes(3), 6);
        assert_eq!(TensorType::BF16.bytes(3), 6);
        assert_eq!(padding(68), 28);
        assert_eq!(padding(64), 0);
    }
}
