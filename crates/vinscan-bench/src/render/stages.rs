//! "Stage profile": where vinscan's time per page goes, the vision encoder alone against the
//! machine's GEMM peak, and encode + prefill per projector type.

use std::fmt::Write;

use crate::render::figures::{flops_per_tile, gemm_gflops, vision_gflops};
use crate::report::{PageResult, Report, Runs};

/// The stage table, the vision-encode paragraph and the projector line.
pub fn section(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "### Stage profile (vinscan, medians, ms)\n");
    let _ = writeln!(
        o,
        "| page | read | decode/render | tiling | encode + prefill | generate | of which sampling + grammar | tokens/s | validate | prompt tokens |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
    for p in &r.per_page {
        let _ = writeln!(o, "{}", stage_row(p));
    }
    let _ = writeln!(o, "\n{}", vision_encode(r));
    let _ = writeln!(o, "\n{}", tile_batching(r));
    if let Some(line) = matmul_line(r) {
        let _ = writeln!(o, "\n{line}");
    }
    if let Some(line) = projector_line(r) {
        let _ = writeln!(o, "\n{line}");
    }
    if let Some(line) = llm_attention_line(r) {
        let _ = writeln!(o, "\n{line}");
    }
    let _ = writeln!(o);
    o
}

/// ggml's CPU matrix product per weight type, and the best of them against torch's GEMM peak
/// when transformers ran: the ceiling of llama.cpp's encoder on this CPU. `None` when it was
/// not measured (GPU).
fn matmul_line(r: &Report) -> Option<String> {
    let best = r
        .encode
        .matmul
        .iter()
        .max_by(|a, b| a.gflops.total_cmp(&b.gflops))?;
    let each: Vec<String> = r
        .encode
        .matmul
        .iter()
        .map(|m| format!("{} {:.0}", m.weights, m.gflops))
        .collect();
    let gemm = gemm_gflops(r);
    let against = if gemm.is_finite() {
        format!(
            " Its best, **{}**, is {:.0} % of torch's f32 GEMM peak ({gemm:.0} GFLOP/s): an encoder built from these kernels gets no closer to that peak on this CPU.",
            best.weights,
            100.0 * best.gflops / gemm
        )
    } else {
        String::new()
    };
    Some(format!(
        "ggml's CPU matrix product at the encoder's shape, on weights in the CPU backend's plain buffer as clip.cpp loads them (the MLP up-projection over one tile: 1,024 × 4,096 weights, 1,025 token rows; fastest of {}, same threads), GFLOP/s by weight type: {}.{against}",
        vinscan_llama::matmul::PROBE_REPS,
        each.join(", "),
    ))
}

/// The language model's attention on one page with flash attention on (llama.cpp's default)
/// and off, and which one vinscan's engine ran; `None` when not measured (GPU).
fn llm_attention_line(r: &Report) -> Option<String> {
    let on = r.llm_flash_attention.as_ref()?;
    // reports from before the plain probe: the first probe ran the engine's setting, then off
    let off = r.llm_plain_attention.as_ref().or(r.probes.first())?;
    let engine = if r.settings.llm_flash_attention {
        "on"
    } else {
        "off"
    };
    Some(format!(
        "Language-model attention, fresh process, one page ({}, {} projector): generate **{:.2} s** with flash attention off against **{:.2} s** with it on (llama.cpp's default, which `llama-mtmd-cli` and `llama-server` run), {} and {} tokens; encode + prefill {:.2} s against {:.2} s; peak RSS {:.0} MB against {:.0} MB. vinscan's engine ran it {engine} in this report's runs ({} pages in flight). The vision encoder keeps flash attention in both.",
        off.page,
        off.projector,
        off.run.generate / 1e3,
        on.run.generate / 1e3,
        off.run.generated,
        on.run.generated,
        off.run.encode_prefill / 1e3,
        on.run.encode_prefill / 1e3,
        off.peak_rss_mb,
        on.peak_rss_mb,
        r.settings.parallel,
    ))
}

/// One page's medians per stage.
fn stage_row(p: &PageResult) -> String {
    let first = p.vinscan.first();
    let generated = first.map_or(f64::NAN, |x| f64::from(x.generated));
    let generate = p.vinscan_median(|x| x.generate);
    format!(
        "| {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.1} | {:.1} | {:.2} | {} |",
        p.unit.name,
        p.vinscan_median(|x| x.read),
        p.vinscan_median(|x| x.decode),
        p.vinscan_median(|x| x.tiling),
        p.vinscan_median(|x| x.encode_prefill),
        generate,
        p.vinscan_median(|x| x.sample),
        generated / (generate / 1e3),
        p.validate.ms,
        first.map_or("n/a".to_owned(), |x| x.prompt_tokens.to_string())
    )
}

/// llama.cpp's vision encoder alone: seconds per tile, and what that is of the GEMM peak.
fn vision_encode(r: &Report) -> String {
    let enc = &r.encode.per_tile_ms;
    let (achieved, gemm) = (vision_gflops(r), gemm_gflops(r));
    format!(
        "Vision encode alone (llama.cpp's encoder, {} projector, q8_0 LLM unused): **{:.2} s per tile** (min of {}), {:.2} TFLOP per tile from the projector's hyper-parameters (24 layers × 1,025 tokens, attention included), so **{achieved:.0} GFLOP/s**, {:.0} % of the machine's measured GEMM peak ({gemm:.0} GFLOP/s, f32 `torch.mm` 2048², same threads). The rest of `encode + prefill` is the LLM prefill of the image and prompt tokens.",
        r.files.mmproj_type,
        enc.min / 1e3,
        enc.n,
        flops_per_tile(r) / 1e12,
        100.0 * achieved / gemm,
    )
}

/// The batched tile encode against one graph per tile.
fn tile_batching(r: &Report) -> String {
    let b = &r.encode.batching;
    let ratio = b.batched_per_tile_ms.median / b.unbatched_per_tile_ms.median;
    let sizes: Vec<String> = b.batch_sizes.iter().map(ToString::to_string).collect();
    format!(
        "Tiles in batches ({}, {} images: its tiles and the thumbnail; tokenised once, one untimed pass each first, then the two ways alternating): **{:.2} s per tile** one graph per tile (`mtmd_encode_chunk`, what vinscan's engine runs) and **{:.2} s per tile** in batches of {} (`mtmd_batch_encode`, what `llama-mtmd-cli` runs), medians of {}; batched / one by one **{ratio:.3}**. The two ways' embeddings differ by at most {:.1e}.",
        b.page,
        b.tiles,
        b.unbatched_per_tile_ms.median / 1e3,
        b.batched_per_tile_ms.median / 1e3,
        sizes.join(" + "),
        b.batched_per_tile_ms.n,
        b.max_abs_diff,
    )
}

/// Encode + prefill per projector type, when more than one was probed.
fn projector_line(r: &Report) -> Option<String> {
    let first = match r.probes.as_slice() {
        [first, _, ..] => first,
        _ => return None,
    };
    let each: Vec<String> = r
        .probes
        .iter()
        .map(|p| {
            format!(
                "{:.2} s with the {} projector",
                p.run.encode_prefill / 1e3,
                p.projector
            )
        })
        .collect();
    Some(format!(
        "Projector type, fresh process, one page ({}): encode + prefill {}.",
        first.page,
        each.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testdata::{probe, report};

    #[test]
    fn stage_rows_give_medians_and_tokens_per_second() {
        let md = section(&report());
        // 10 tokens in 100 ms of generation
        assert!(
            md.contains("| p | 0.0 | 0.0 | 0.0 | 800 | 100 | 1.0 | 100.0 | 0.00 | 0 |"),
            "{md}"
        );
    }

    #[test]
    fn the_encoder_is_held_against_the_gemm_peak() {
        let md = section(&report());
        // 1e11 flops in 1 s per tile, and no GEMM figure without the transformers peer
        assert!(md.contains("**1.00 s per tile** (min of 2), 0.10 TFLOP"), "{md}");
        assert!(
            md.contains("**100 GFLOP/s**, NaN % of the machine's measured GEMM peak (NaN GFLOP/s"),
            "{md}"
        );
    }

    #[test]
    fn batched_encode_is_set_against_one_graph_per_tile() {
        let md = section(&report());
        assert!(
            md.contains("**1.00 s per tile** one graph per tile (`mtmd_encode_chunk`, what vinscan's engine runs) and **0.90 s per tile** in batches of 7"),
            "{md}"
        );
        assert!(md.contains("batched / one by one **0.900**"), "{md}");
    }

    #[test]
    fn matmul_rates_are_set_against_the_gemm_peak() {
        let mut r = report();
        assert_eq!(matmul_line(&r), None);
        use crate::report::MatmulProbe;
        r.encode.matmul = vec![
            MatmulProbe {
                weights: "f32".into(),
                gflops: 70.0,
            },
            MatmulProbe {
                weights: "q8_0".into(),
                gflops: 140.0,
            },
        ];
        let line = matmul_line(&r).unwrap_or_default();
        assert!(line.ends_with("f32 70, q8_0 140."), "{line}");
        r.transformers = Some(crate::render::testdata::transformers(350.0));
        let line = matmul_line(&r).unwrap_or_default();
        assert!(line.contains("GFLOP/s by weight type: f32 70, q8_0 140. Its best, **q8_0**, is 40 % of torch's f32 GEMM peak (350 GFLOP/s)"), "{line}");
    }

    #[test]
    fn llm_attention_compares_the_flash_probe_with_the_engines() {
        let mut r = report();
        assert_eq!(llm_attention_line(&r), None);
        let mut on = probe("q8_0", 1000.0, 10_000.0);
        on.run.generate = 13_000.0;
        r.llm_flash_attention = Some(on);
        let line = llm_attention_line(&r).unwrap_or_default();
        assert!(
            line.contains("generate **0.10 s** with flash attention off"),
            "{line}"
        );
        assert!(line.contains("against **13.00 s** with it on"), "{line}");
    }

    #[test]
    fn projector_types_are_listed_when_several_were_probed() {
        let mut r = report();
        assert_eq!(projector_line(&r), None);
        r.probes.push(probe("bf16", 1650.0, 15_000.0));
        let line = projector_line(&r).unwrap_or_default();
        assert_eq!(
            line,
            "Projector type, fresh process, one page (p): encode + prefill 10.00 s with the q8_0 projector, 15.00 s with the bf16 projector."
        );
    }
}
