//! What the CPU probes (`matmul`, `attention`) share: a ggml context that owns its tensors,
//! deterministic input values, and timing a graph on ggml's CPU threads.

use std::time::Instant;

use llama_cpp_sys_2 as sys;

/// A ggml context that allocates its tensors in `mem_size` bytes of its own, freed when dropped.
pub(crate) struct Context(pub(crate) *mut sys::ggml_context);

impl Context {
    /// A context of `mem_size` bytes; `Err` when ggml returns none.
    pub(crate) fn new(mem_size: usize) -> Result<Self, &'static str> {
        // SAFETY: plain parameters; the pointer is checked and then owned by the value.
        let raw = unsafe {
            sys::ggml_init(sys::ggml_init_params {
                mem_size,
                mem_buffer: std::ptr::null_mut(),
                no_alloc: false,
            })
        };
        if raw.is_null() {
            return Err("ggml_init returned no context");
        }
        Ok(Self(raw))
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `ggml_init`, is not null, and is freed only here.
        unsafe { sys::ggml_free(self.0) }
    }
}

/// Deterministic values in [-1, 1) (a linear congruential sequence): a probe's speed does not
/// depend on them, only on their being ordinary finite numbers.
pub(crate) fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// Computes the graph ending in `out` `reps` + 1 times on `threads` CPU threads and returns the
/// fastest of the last `reps` runs in seconds (the first brings the data into the caches).
///
/// # Safety
/// `ctx` holds `out` and room for the graph; every tensor `out` depends on holds its data.
pub(crate) unsafe fn time_graph(
    ctx: &Context,
    out: *mut sys::ggml_tensor,
    threads: i32,
    reps: usize,
) -> Result<f64, String> {
    // SAFETY: as the caller promises; the work buffer outlives every compute that uses it.
    unsafe {
        let graph = sys::ggml_new_graph(ctx.0);
        sys::ggml_build_forward_expand(graph, out);
        let mut plan = sys::ggml_graph_plan(graph, threads, std::ptr::null_mut());
        let mut work = vec![0u8; plan.work_size];
        plan.work_data = work.as_mut_ptr();
        let mut best = f64::INFINITY;
        for rep in 0..=reps {
            let t = Instant::now();
            let status = sys::ggml_graph_compute(graph, &mut plan);
            if status != sys::GGML_STATUS_SUCCESS {
                return Err(format!("ggml_graph_compute returned {status}"));
            }
            if rep > 0 {
                best = best.min(t.elapsed().as_secs_f64());
            }
        }
        Ok(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_values_are_in_range() {
        let v = values(10_000, 7);
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
        assert!(v.iter().any(|x| *x < -0.5) && v.iter().any(|x| *x > 0.5));
    }
}
