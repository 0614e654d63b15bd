//! Which attention the language model runs on this CPU, chosen by timing both on the shapes
//! the engine's context computes: ggml's flash-attention kernel (`ggml_flash_attn_ext`) against
//! the plain path (`K·Q`, a masked softmax, `V·softmax`), built as llama.cpp builds them
//! (`llm_graph_context::build_attn_mha` in `src/llama-graph.cpp`).
//!
//! Why a probe and not a rule: the two CPUs the benchmark ran on disagree.
//! - On a 2-core AMD EPYC (AVX-512 with BF16), flash attention cost one page 5 % of its
//!   generation time and saved a quarter of the aggregate's time with 4 pages in flight. The
//!   pages share one KV pool, and the plain path computes every query row against every cell
//!   in use. ggml's tiled flash kernel, which prefill ubatches take, skips a 64-cell KV tile
//!   when the mask hides it from all 64 rows of a query tile
//!   (`ggml_compute_forward_flash_attn_ext_tiled`, `ggml/src/ggml-cpu/ops.cpp`).
//! - On a 2-core Intel Xeon (AVX-512, AVX512_FP16, AMX), with llama.cpp built at -O2, the same
//!   kernels made one page 25–35 % slower: a receipt generated in 15.0 s with it, 7.6 s
//!   without. A decode step's few rows take the untiled kernel
//!   (`ggml_compute_forward_flash_attn_ext_f16_one_chunk`), which for each row and query head
//!   runs through the visible KV cells one at a time. With 4 pages in flight what it saved in
//!   prefill (193 s against 236 s) its model steps lost (102 s against 42 s). Built at -O3
//!   (`.cargo/config.toml`), the same Xeon gains from it with 4 pages in flight (200 s against
//!   210 s) and still loses with one page alone (generation 9.7 s against 7.3 s).
//!
//! The probe times one layer's attention for a nominal page ([`PAGE_CELLS`] KV cells, each
//! page's cells one block of the pool) with `pages` pages in one pool: the last
//! [`PREFILL_ROWS`] rows of one page's prompt, each seeing its page's cells up to itself, and
//! one decode step carrying [`DECODE_ROWS`] tokens of every page. A page's attention is then
//! [`PREFILL_GRAPHS`] such prefill slices plus [`DECODE_STEPS`] steps shared by the pages in
//! flight. Every other part of a step is the same either way, so only attention is timed. The
//! real pool is less tidy than the probe's (a shared prompt prefix, cells freed and reused), so
//! the tiles flash attention skips there are fewer.
//!
//! The setting is fixed when a context is made, for `parallel` pages, and the context then
//! sees anything from one page alone (a daemon between bursts) to `parallel` pages (a batch
//! run). [`flash_attention_wins`] weighs the two ends alike: flash attention runs when its
//! cost for a page alone plus its cost for a page among `parallel` is the smaller. On the
//! Xeon above at -O3, per layer: one page about 200 ms with it against 180–280 ms without (the
//! plain figure varies by run), four pages 230 ms against 397 ms, eight 264 ms against 769 ms,
//! so it is on for `--parallel` 4 and 8.
//! Each graph's time is the fastest of [`REPS`] runs. Probing both ends takes 1–2 s on two
//! cores at Vintern-1B's shapes.

use llama_cpp_sys_2 as sys;
use vinscan_core::{Error, ErrorKind, Result};

use crate::ggml_probe::{Context, time_graph, values};

/// KV cells per page in the probe: a one-tile receipt's prompt (839 tokens) and its output.
pub const PAGE_CELLS: i64 = 1024;
/// Query rows of the probe's prefill graph: the last quarter of a page's cells. The plain
/// path's cost per row does not depend on how many rows a graph has, nor does the tiled flash
/// kernel's beyond its 64-row tiles; a quarter rather than a 512-row ubatch halves the probe's
/// memory.
pub const PREFILL_ROWS: i64 = 256;
/// Prefill slices of [`PREFILL_ROWS`] per page (its [`PAGE_CELLS`]); each is timed as the
/// last, widest one.
pub const PREFILL_GRAPHS: f64 = 4.0;
/// Output tokens per page fed in one model step: a sampled token and the tokens the grammar
/// forces after it (the benchmark's receipt pages: 268 tokens in 79 steps). ggml's CPU
/// flash-attention decode costs about the same per row, so its cost grows with them.
pub const DECODE_ROWS: i64 = 4;
/// Model steps per page: 256 output tokens, [`DECODE_ROWS`] a step.
pub const DECODE_STEPS: f64 = 64.0;
/// The most pages the probe puts in one pool; a context made for more is answered for this
/// many. Per page, the plain path's cost grows with the pages in the pool and flash
/// attention's does not, so the cap can only understate flash attention's gain. It also
/// bounds the probe's memory: the plain path's scores over 8 pages are 117 MB (f32), held
/// twice, and freed before the context is made.
pub const MAX_PROBE_PAGES: u32 = 8;
/// Timed runs per graph, after one untimed run; the fastest counts.
pub const REPS: usize = 3;

/// The language model's attention shape (from the GGUF's hyper-parameters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    /// Elements per head (`n_embd / n_head`).
    pub head_dim: i64,
    /// Query heads.
    pub n_head: i64,
    /// Key/value heads (grouped-query attention: `n_head` is a multiple).
    pub n_head_kv: i64,
}

impl AttentionShape {
    /// Qwen2-0.5B, Vintern-1B's language model: 14 query heads of 64, 2 key/value heads.
    pub const VINTERN_1B: AttentionShape = AttentionShape {
        head_dim: 64,
        n_head: 14,
        n_head_kv: 2,
    };
}

/// What the probe measured, in milliseconds of one layer's attention.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionProbe {
    /// Pages in the probe's pool.
    pub pages: u32,
    /// One prefill ubatch with ggml's flash-attention kernel, and with the plain path.
    pub flash_prefill_ms: f64,
    pub plain_prefill_ms: f64,
    /// One decode step ([`DECODE_ROWS`] rows per page) each way.
    pub flash_decode_ms: f64,
    pub plain_decode_ms: f64,
}

impl AttentionProbe {
    /// One page's attention with flash attention: [`PREFILL_GRAPHS`] prefill ubatches and its
    /// share of [`DECODE_STEPS`] steps shared by the pages in flight.
    pub fn flash_ms(&self) -> f64 {
        self.per_page(self.flash_prefill_ms, self.flash_decode_ms)
    }

    /// [`AttentionProbe::flash_ms`] for the plain path.
    pub fn plain_ms(&self) -> f64 {
        self.per_page(self.plain_prefill_ms, self.plain_decode_ms)
    }

    fn per_page(&self, prefill: f64, decode: f64) -> f64 {
        PREFILL_GRAPHS * prefill + DECODE_STEPS * decode / f64::from(self.pages.max(1))
    }
}

/// Whether flash attention should run for a context made for `parallel` pages: `one` is
/// [`probe_attention`] for one page, `full` for `parallel` pages (`None` when `parallel` is 1).
/// It runs when its summed cost over the two is the smaller (the module docs say why).
pub fn flash_attention_wins(one: &AttentionProbe, full: Option<&AttentionProbe>) -> bool {
    let (flash, plain) = full.map_or((0.0, 0.0), |f| (f.flash_ms(), f.plain_ms()));
    one.flash_ms() + flash < one.plain_ms() + plain
}

/// Times one layer's attention both ways with `pages` pages in flight (at most
/// [`MAX_PROBE_PAGES`]) on `threads` CPU threads.
///
/// # Errors
/// `Internal` when the shape is not one attention can have, or ggml cannot allocate the probe's
/// tensors or a graph fails.
pub fn probe_attention(shape: AttentionShape, pages: u32, threads: u32) -> Result<AttentionProbe> {
    let pages = pages.clamp(1, MAX_PROBE_PAGES);
    let threads = i32::try_from(threads.max(1)).unwrap_or(1);
    let ms = |flash, rows| time_attention(shape, flash, rows, pages, threads).map(|s| s * 1e3);
    Ok(AttentionProbe {
        pages,
        flash_prefill_ms: ms(true, Rows::Prefill)?,
        plain_prefill_ms: ms(false, Rows::Prefill)?,
        flash_decode_ms: ms(true, Rows::Decode)?,
        plain_decode_ms: ms(false, Rows::Decode)?,
    })
}

/// The query rows of a probe graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rows {
    /// [`PREFILL_ROWS`] rows of the first page, the last of its cells, each seeing its page's
    /// cells up to itself.
    Prefill,
    /// [`DECODE_ROWS`] rows per page, the last of its cells, each seeing its page's cells up to
    /// itself.
    Decode,
}

/// The mask of `rows` over a pool of `pages` × [`PAGE_CELLS`] cells (page `p` holds cells
/// `p·PAGE_CELLS ..`), row-major `[rows][cells]`: 0 where a row sees a cell, −∞ elsewhere.
fn mask(rows: Rows, pages: i64) -> (i64, Vec<f32>) {
    let cells = pages * PAGE_CELLS;
    let (n_rows, visible): (i64, Box<dyn Fn(i64, i64) -> bool>) = match rows {
        Rows::Prefill => (PREFILL_ROWS, Box::new(|r, c| c <= PAGE_CELLS - PREFILL_ROWS + r)),
        Rows::Decode => (
            pages * DECODE_ROWS,
            Box::new(|r, c| {
                let page = r / DECODE_ROWS;
                let last = page * PAGE_CELLS + PAGE_CELLS - DECODE_ROWS + r % DECODE_ROWS;
                c / PAGE_CELLS == page && c <= last
            }),
        ),
    };
    let mut m = Vec::with_capacity((n_rows * cells) as usize);
    for r in 0..n_rows {
        for c in 0..cells {
            m.push(if visible(r, c) { 0.0 } else { f32::NEG_INFINITY });
        }
    }
    (n_rows, m)
}

/// One layer's attention for `rows`, timed (seconds, fastest of [`REPS`]).
fn time_attention(shape: AttentionShape, flash: bool, rows: Rows, pages: u32, threads: i32) -> Result<f64> {
    let internal = |what: &str| Error::new(ErrorKind::Internal, format!("attention probe: {what}"));
    let AttentionShape {
        head_dim: d,
        n_head,
        n_head_kv,
    } = shape;
    if d <= 0 || n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv != 0 {
        // ggml aborts the process on a shape it refuses (GGML_ASSERT): refuse it here first
        return Err(internal(&format!(
            "{n_head} heads of {d} over {n_head_kv} key/value heads"
        )));
    }
    let pages = i64::from(pages);
    let cells = pages * PAGE_CELLS;
    let (n_rows, mask_values) = mask(rows, pages);
    // SAFETY: ggml is used single-threaded here (its own compute threads aside); every tensor
    // lives in `ctx`, sized below for the tensors, the graph and their overheads, so no
    // allocation can fail inside ggml (which aborts rather than return null); every buffer
    // written is the tensor's own and `ggml_nbytes` long; the context is freed by `Context`.
    unsafe {
        let (half, single) = (2usize, 4usize);
        let kv_bytes = (d * n_head_kv * cells) as usize * half;
        let q_bytes = (d * n_head * n_rows) as usize * single;
        let kq_bytes = (cells * n_rows * n_head) as usize * single;
        let mem_size = 2 * kv_bytes
            + 2 * q_bytes
            + (cells * n_rows) as usize * single
            + 2 * kq_bytes
            + 16 * sys::ggml_tensor_overhead()
            + sys::ggml_graph_overhead()
            + (1 << 20);
        let ctx = Context::new(mem_size).map_err(internal)?;
        // the KV cache's layout: one row of every head's values per cell; with flash attention
        // the V cache is laid out as K, without it transposed (a row per value dimension)
        let k_cache = sys::ggml_new_tensor_2d(ctx.0, sys::GGML_TYPE_F16, d * n_head_kv, cells);
        let v_cache = if flash {
            sys::ggml_new_tensor_2d(ctx.0, sys::GGML_TYPE_F16, d * n_head_kv, cells)
        } else {
            sys::ggml_new_tensor_2d(ctx.0, sys::GGML_TYPE_F16, cells, d * n_head_kv)
        };
        let q_in = sys::ggml_new_tensor_3d(ctx.0, sys::GGML_TYPE_F32, d, n_head, n_rows);
        // llama.cpp's mask is f16 for flash attention, f32 for the softmax
        let mask_type = if flash {
            sys::GGML_TYPE_F16
        } else {
            sys::GGML_TYPE_F32
        };
        let kq_mask = sys::ggml_new_tensor_2d(ctx.0, mask_type, cells, n_rows);
        for (t, seed) in [(k_cache, 1), (v_cache, 2)] {
            let v = values((d * n_head_kv * cells) as usize, seed);
            sys::ggml_fp32_to_fp16_row(v.as_ptr(), (*t).data.cast(), v.len() as i64);
        }
        let qv = values((d * n_head * n_rows) as usize, 3);
        std::ptr::copy_nonoverlapping(qv.as_ptr(), (*q_in).data.cast::<f32>(), qv.len());
        if flash {
            sys::ggml_fp32_to_fp16_row(
                mask_values.as_ptr(),
                (*kq_mask).data.cast(),
                mask_values.len() as i64,
            );
        } else {
            std::ptr::copy_nonoverlapping(
                mask_values.as_ptr(),
                (*kq_mask).data.cast::<f32>(),
                mask_values.len(),
            );
        }
        // views as llama.cpp takes them: [d, n_head_kv, cells] permuted to [d, cells, n_head_kv]
        let kv_row = (*k_cache).nb[1];
        let head = d as usize * half;
        let k = sys::ggml_view_3d(ctx.0, k_cache, d, n_head_kv, cells, head, kv_row, 0);
        let k = sys::ggml_permute(ctx.0, k, 0, 2, 1, 3);
        let q = sys::ggml_permute(ctx.0, q_in, 0, 2, 1, 3);
        let scale = 1.0 / (d as f32).sqrt();
        let out = if flash {
            let v = sys::ggml_view_3d(ctx.0, v_cache, d, n_head_kv, cells, head, kv_row, 0);
            let v = sys::ggml_permute(ctx.0, v, 0, 2, 1, 3);
            let cur = sys::ggml_flash_attn_ext(ctx.0, q, k, v, kq_mask, scale, 0.0, 0.0);
            sys::ggml_prec_set_acc(cur, sys::GGML_PREC_F32);
            cur
        } else {
            // transposed V: [cells, d, n_head_kv] with a row of `cells` per value dimension
            let row = (*v_cache).nb[1];
            let v = sys::ggml_view_3d(ctx.0, v_cache, cells, d, n_head_kv, row, row * d as usize, 0);
            let kq = sys::ggml_mul_mat(ctx.0, k, q);
            sys::ggml_prec_set_acc(kq, sys::GGML_PREC_F32);
            let kq = sys::ggml_soft_max_ext(ctx.0, kq, kq_mask, scale, 0.0);
            sys::ggml_mul_mat(ctx.0, v, kq)
        };
        let best = time_graph(&ctx, out, threads, REPS).map_err(|e| internal(&e))?;
        check_output(out, (d * n_head * n_rows) as usize).map_err(internal)?;
        Ok(best)
    }
}

/// Why `out`, a computed tensor that should hold `n` f32 values, is not such; `Ok` when it is
/// and every value is finite.
///
/// # Safety
/// `out` points to a live tensor whose data, when its element count is `n` and its type f32,
/// holds `n` f32 values.
unsafe fn check_output(out: *const sys::ggml_tensor, n: usize) -> std::result::Result<(), &'static str> {
    // SAFETY: as the caller promises; the slice is read only after both checks.
    unsafe {
        if sys::ggml_nelements(out) as usize != n {
            return Err("the output has the wrong shape");
        }
        if (*out).type_ != sys::GGML_TYPE_F32 {
            return Err("the output is not f32");
        }
        let data = std::slice::from_raw_parts((*out).data.cast::<f32>(), n);
        if !data.iter().all(|v| v.is_finite()) {
            return Err("the output has non-finite values");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefill_row_sees_its_page_up_to_itself_and_a_decode_row_its_page() {
        let (rows, m) = mask(Rows::Prefill, 2);
        let cells = (2 * PAGE_CELLS) as usize;
        assert_eq!(rows, PREFILL_ROWS);
        let first = &m[..cells];
        let seen = first.iter().filter(|v| **v == 0.0).count() as i64;
        assert_eq!(seen, PAGE_CELLS - PREFILL_ROWS + 1);
        let last = &m[(rows as usize - 1) * cells..];
        assert_eq!(last.iter().filter(|v| **v == 0.0).count() as i64, PAGE_CELLS);
        assert!(last[PAGE_CELLS as usize..].iter().all(|v| v.is_infinite()));

        let (rows, m) = mask(Rows::Decode, 3);
        assert_eq!(rows, 3 * DECODE_ROWS);
        let cells = (3 * PAGE_CELLS) as usize;
        let page = PAGE_CELLS as usize;
        let per_page = DECODE_ROWS as usize;
        for r in 0..rows as usize {
            let row = &m[r * cells..(r + 1) * cells];
            let (p, k) = (r / per_page, r % per_page);
            // its page's cells up to its own (the last `DECODE_ROWS` cells are the step's rows)
            let seen = page - per_page + k + 1;
            assert!(
                row[p * page..p * page + seen].iter().all(|v| *v == 0.0),
                "row {r}"
            );
            assert_eq!(row.iter().filter(|v| **v == 0.0).count(), seen, "row {r}");
        }
    }

    fn probe(pages: u32, flash: (f64, f64), plain: (f64, f64)) -> AttentionProbe {
        AttentionProbe {
            pages,
            flash_prefill_ms: flash.0,
            plain_prefill_ms: plain.0,
            flash_decode_ms: flash.1,
            plain_decode_ms: plain.1,
        }
    }

    #[test]
    fn flash_attention_runs_when_it_is_cheaper_over_one_page_and_a_full_pool() {
        // like the 2-core Xeon's probe: slower alone, faster in a full pool, slower summed
        let one = probe(1, (30.0, 5.3), (45.0, 1.4));
        let full = probe(4, (35.0, 22.0), (110.0, 8.0));
        assert!((one.flash_ms() - (4.0 * 30.0 + 64.0 * 5.3)).abs() < 1e-9);
        assert!((full.plain_ms() - (4.0 * 110.0 + 64.0 * 8.0 / 4.0)).abs() < 1e-9);
        assert!(full.flash_ms() < full.plain_ms() && one.flash_ms() > one.plain_ms());
        assert!(!flash_attention_wins(&one, Some(&full)));
        assert!(!flash_attention_wins(&one, None));
        // a CPU whose flash decode costs little more than the plain one: on
        let one = probe(1, (30.0, 2.0), (45.0, 1.4));
        assert!(flash_attention_wins(&one, Some(&full)));
        assert!(flash_attention_wins(&one, None));
    }

    /// Runs both graphs on the CPU at a small shape: each gives a finite, positive time, and a
    /// shape attention cannot have is refused.
    #[test]
    fn both_attentions_run_and_a_bad_shape_is_refused() {
        let shape = AttentionShape {
            head_dim: 16,
            n_head: 4,
            n_head_kv: 2,
        };
        for flash in [true, false] {
            for rows in [Rows::Prefill, Rows::Decode] {
                let t = time_attention(shape, flash, rows, 2, 2).expect("probe");
                assert!(t.is_finite() && t > 0.0, "{flash} {rows:?}: {t}");
            }
        }
        let bad = AttentionShape {
            head_dim: 16,
            n_head: 3,
            n_head_kv: 2,
        };
        let e = probe_attention(bad, 1, 1)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("3 heads of 16 over 2"), "{e}");
    }
}
