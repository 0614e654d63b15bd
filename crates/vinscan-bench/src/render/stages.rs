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
    if let Some(line) = projector_line(r) {
        let _ = writeln!(o, "\n{line}");
    }
    let _ = writeln!(o);
    o
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
