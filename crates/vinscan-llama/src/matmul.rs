//! How fast this machine's ggml multiplies the vision encoder's weights, by weight type: the
//! rate of ggml's CPU matrix product on weights in the CPU backend's plain buffer, which is
//! where `tools/mtmd/clip.cpp` loads the encoder's weights (ggml's AMX and repacked kernels
//! apply only to weights in their own buffer types, which llama.cpp gives the language model
//! alone). The benchmark sets these rates against torch's GEMM peak (docs/BENCHMARKS.md).
//!
//! Measured on a 2-core Xeon with AVX-512, AVX512_BF16 and AMX (llama-cpp-sys-2 0.1.161, native
//! build, AMX unused as above): q8_0 140 GFLOP/s, bf16 100, f16 72, f32 70, against 340–378
//! GFLOP/s for torch's f32 GEMM on the same cores. llamafile's tinyBLAS
//! (`ggml/src/ggml-cpu/llamafile/sgemm.cpp`) blocks for registers but not for caches, so the
//! smallest weights win; q8_0, the type `model pull` downloads, is also the fastest on the AVX2
//! EPYC measured before, so vinscan keeps the projector's type rather than retype it at load.
//!
//! The product is one `ggml_mul_mat` of InternViT-300M's MLP up-projection over one tile: a
//! weight of [`PROBE_K`] × [`PROBE_N`] in the probed type times [`PROBE_M`] f32 token rows, the
//! shape of `ffn_up` in `tools/mtmd/clip.cpp`'s InternVL graph, on the CPU with the encoder's
//! threads. Each type is timed [`PROBE_REPS`] times after one untimed run; the fastest run
//! counts.

use llama_cpp_sys_2 as sys;
use vinscan_core::{Error, ErrorKind, Result};

use crate::ggml_probe::{Context, time_graph, values};

/// The weight's row length: InternViT-300M's hidden size.
pub const PROBE_K: i64 = 1024;
/// The weight's rows: InternViT-300M's MLP width.
pub const PROBE_N: i64 = 4096;
/// Token rows: one 448 px tile's 32 × 32 patches and the class token.
pub const PROBE_M: i64 = 1025;
/// Timed runs per type (after one untimed run that brings the weights into the caches).
pub const PROBE_REPS: usize = 3;

/// A weight type ggml's CPU backend multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatmulType {
    F32,
    F16,
    Bf16,
    Q8_0,
}

impl MatmulType {
    /// Every type probed, most exact first.
    pub const ALL: [MatmulType; 4] = [Self::F32, Self::F16, Self::Bf16, Self::Q8_0];

    /// The type's name as ggml and `vinscan model convert --mmproj-type` write it (`f32`, `f16`,
    /// `bf16`, `q8_0`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
            Self::Q8_0 => "q8_0",
        }
    }

    fn ggml(self) -> sys::ggml_type {
        match self {
            Self::F32 => sys::GGML_TYPE_F32,
            Self::F16 => sys::GGML_TYPE_F16,
            Self::Bf16 => sys::GGML_TYPE_BF16,
            Self::Q8_0 => sys::GGML_TYPE_Q8_0,
        }
    }
}

/// One type's probed rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatmulRate {
    pub weights: MatmulType,
    /// Floating-point operations per second of the fastest run, in GFLOP/s (2·K·N·M per product).
    pub gflops: f64,
}

/// Times one product per type in `types` on `threads` CPU threads; returns the rates in the
/// order given. Takes about 0.1–0.5 s per type on two cores.
///
/// # Errors
/// `Internal` when ggml cannot allocate the probe's tensors or a product fails.
pub fn probe_matmul(types: &[MatmulType], threads: u32) -> Result<Vec<MatmulRate>> {
    crate::engine::backend()?;
    let threads = i32::try_from(threads.max(1)).unwrap_or(1);
    types
        .iter()
        .map(|&t| probe_one(t, threads, (PROBE_K, PROBE_N, PROBE_M)))
        .collect()
}

/// One product of a `k` × `n` weight of type `ty` and `m` rows, timed.
fn probe_one(ty: MatmulType, threads: i32, (k, n, m): (i64, i64, i64)) -> Result<MatmulRate> {
    let internal = |what: &str| {
        Error::new(
            ErrorKind::Internal,
            format!("matmul probe ({}): {what}", ty.name()),
        )
    };
    // SAFETY: a plain query of ggml's type table.
    let block = unsafe { sys::ggml_blck_size(ty.ggml()) };
    if block <= 0 || k % block != 0 || n <= 0 || m <= 0 {
        // ggml checks row sizes with C asserts, which release builds drop
        return Err(internal(&format!(
            "a {k} × {n} × {m} product is not whole {block}-element blocks"
        )));
    }
    // SAFETY: ggml is used single-threaded here (its own compute threads aside); every tensor
    // lives in `ctx`, sized below for the three tensors, the graph and their overheads, so no
    // allocation can fail inside ggml (which aborts rather than return null); every buffer
    // written is the tensor's own, `ggml_nbytes` long; the context is freed by `Context`.
    unsafe {
        let weight_bytes = sys::ggml_row_size(ty.ggml(), k) * n as usize;
        let f32_bytes = |rows: i64, cols: i64| rows as usize * cols as usize * 4;
        let mem_size = weight_bytes
            + f32_bytes(k, m)
            + f32_bytes(n, m)
            + 4 * sys::ggml_tensor_overhead()
            + sys::ggml_graph_overhead()
            + (1 << 20);
        let ctx = Context::new(mem_size).map_err(internal)?;
        let w = sys::ggml_new_tensor_2d(ctx.0, ty.ggml(), k, n);
        let x = sys::ggml_new_tensor_2d(ctx.0, sys::GGML_TYPE_F32, k, m);
        let src = values((k * n) as usize, 1);
        let dst = (*w).data;
        match ty {
            MatmulType::F32 => std::ptr::copy_nonoverlapping(src.as_ptr(), dst.cast::<f32>(), src.len()),
            MatmulType::F16 => sys::ggml_fp32_to_fp16_row(src.as_ptr(), dst.cast(), k * n),
            MatmulType::Bf16 => sys::ggml_fp32_to_bf16_row(src.as_ptr(), dst.cast(), k * n),
            MatmulType::Q8_0 => {
                let written =
                    sys::ggml_quantize_chunk(ty.ggml(), src.as_ptr(), dst, 0, n, k, std::ptr::null());
                if written != weight_bytes {
                    return Err(internal(&format!(
                        "quantised {written} bytes, {weight_bytes} expected"
                    )));
                }
            }
        }
        let xs = values((k * m) as usize, 2);
        std::ptr::copy_nonoverlapping(xs.as_ptr(), (*x).data.cast::<f32>(), xs.len());
        let y = sys::ggml_mul_mat(ctx.0, w, x);
        let best = time_graph(&ctx, y, threads, PROBE_REPS).map_err(|e| internal(&e))?;
        let out = std::slice::from_raw_parts((*y).data.cast::<f32>(), (n * m) as usize);
        if !out.iter().all(|v| v.is_finite()) {
            return Err(internal("the product has non-finite values"));
        }
        Ok(MatmulRate {
            weights: ty,
            gflops: 2.0 * (k * n * m) as f64 / best / 1e9,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs real products on the CPU (a small shape: the test build's ggml is unoptimised):
    /// every type gives a finite, positive rate.
    #[test]
    fn every_type_is_multiplied() {
        crate::engine::backend().expect("backend");
        for t in MatmulType::ALL {
            let r = probe_one(t, 2, (256, 128, 64)).expect("probe");
            assert_eq!(r.weights, t);
            assert!(r.gflops.is_finite() && r.gflops > 0.0, "{r:?}");
        }
    }
}
