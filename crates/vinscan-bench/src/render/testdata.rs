//! Small reports for the renderer's tests: one page, one probe, nothing optional, each test
//! changing what it is about.

use std::path::PathBuf;

use crate::report::*;
use crate::stats::Stats;

/// A vinscan run of `total` ms: 10 tokens (5 forced, 5 steps), 100 ms generation of which 1 ms
/// sampling.
pub fn vinscan_run(total: f64) -> VinscanRun {
    VinscanRun {
        total,
        encode_prefill: total - 100.0,
        generate: 100.0,
        sample: 1.0,
        steps_ms: 90.0,
        generated: 10,
        forced: 5,
        steps: 5,
        ..VinscanRun::default()
    }
}

/// An llama-mtmd-cli run computing `compute` ms after 500 ms of loading.
pub fn mtmd_run(compute: f64) -> MtmdRun {
    MtmdRun {
        wall: compute + 500.0,
        load: 500.0,
        compute,
        peak_rss_mb: 1200.0,
        ..MtmdRun::default()
    }
}

/// A page with one run of each peer.
pub fn page(name: &str, images: u32, total: f64, compute: f64) -> PageResult {
    PageResult {
        unit: Unit {
            name: name.into(),
            source: PathBuf::from(name),
            page: 0,
            image: PathBuf::from(name),
            grid_image: PathBuf::from(name),
            images,
            grid: (1, 1),
        },
        vinscan: vec![vinscan_run(total)],
        mtmd: vec![mtmd_run(compute)],
        same_output: false,
        validate: Validation::default(),
    }
}

/// A fresh-process probe of `projector` peaking at `rss` MB.
pub fn probe(projector: &str, rss: f64, encode_prefill: f64) -> Probe {
    Probe {
        page: "p".into(),
        mmproj: PathBuf::from("mmproj.gguf"),
        projector: projector.into(),
        mmproj_mb: 300.0,
        load_ms: 100.0,
        run: VinscanRun {
            encode_prefill,
            ..vinscan_run(encode_prefill + 100.0)
        },
        peak_rss_mb: rss,
    }
}

/// One page `p` at 0.9× llama-mtmd-cli, a q8_0 probe, the aggregate at 2×.
pub fn report() -> Report {
    Report {
        format: FORMAT,
        build: Build {
            version: "0.1.0".into(),
            features: vec!["llama".into(), "pdf".into()],
            llama_cpp_sys_2: "0.1.161".into(),
            system_info: "CPU : AVX2 = 1 |".into(),
        },
        machine: Machine {
            cpu: Some("CPU".into()),
            cores: 2,
            memory_gib: 8.0,
            os: "linux".into(),
        },
        settings: Settings {
            threads: 2,
            tokens: 32,
            real_tokens: 256,
            ctx_size: 4096,
            parallel: 4,
            gpu_layers: 0,
            llm_flash_attention: true,
        },
        files: ModelFiles {
            model: PathBuf::from("model.gguf"),
            mmproj: PathBuf::from("mmproj.gguf"),
            mmproj_type: "q8_0".into(),
            model_mb: 500.0,
            mmproj_mb: 300.0,
        },
        load_ms: 100.0,
        parity: Vec::new(),
        per_page: vec![page("p", 1, 900.0, 1000.0)],
        aggregate: Aggregate {
            pages: 1,
            vinscan_ms: 1000.0,
            load_ms: 100.0,
            model_steps: 5,
            tokens: 10,
            encode_prefill_ms: 800.0,
            steps_ms: 120.0,
            mtmd_sequential_ms: 2000.0,
        },
        probes: vec![probe("q8_0", 1000.0, 10_000.0)],
        llm_flash_attention: None,
        llm_plain_attention: None,
        encode: VisionEncode {
            per_tile_ms: Stats::of([1000.0, 1000.0]),
            flops_per_tile: Some(1e11),
            batching: TileBatching {
                page: "p".into(),
                tiles: 7,
                unbatched_per_tile_ms: Stats::of([1000.0, 1000.0]),
                batched_per_tile_ms: Stats::of([900.0, 900.0]),
                batch_sizes: vec![7],
                max_abs_diff: 1e-5,
            },
            matmul: Vec::new(),
        },
        llama_server: None,
        transformers: None,
        tesseract: None,
        peak_rss_mb: 1100.0,
        timing: Timing {
            wall_s: 600.0,
            setup_s: None,
            clean_clone: false,
        },
    }
}

/// A llama-server run of the one page in `wall_ms`: 1.2 s of prompt, 0.5 s of generation.
pub fn server(wall_ms: f64) -> ServerAggregate {
    ServerAggregate {
        source: "llama.cpp".into(),
        parallel: 4,
        load_ms: 500.0,
        wall_ms,
        pages: vec![ServerPage {
            page: "p".into(),
            wall_ms,
            prompt_ms: 1200.0,
            predicted_ms: 500.0,
            tokens: 12,
            prompt_tokens: 800,
            stop: "limit".into(),
        }],
    }
}

/// A transformers run of page `p` (800 ms, vinscan 900 ms) on a machine whose torch GEMM peak
/// is `gemm_gflops`.
pub fn transformers(gemm_gflops: f64) -> Transformers {
    Transformers {
        load_ms: 1.0,
        gemm: Gemm {
            gflops: gemm_gflops,
            threads: 2,
        },
        pages: vec![TransformersPage {
            page: "p".into(),
            result: TransformersResult {
                tiles: 1,
                prompt_tokens: 1,
                generated: 1,
                preprocess_ms: 1.0,
                total_ms: 800.0,
            },
            vinscan_ms: 900.0,
            mtmd_compute_ms: 1000.0,
        }],
    }
}
