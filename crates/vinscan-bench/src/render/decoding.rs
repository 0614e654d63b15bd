//! "Constrained decoding": what the grammar costs per token and what fast-forwarding the
//! tokens it forces saves.

use std::fmt::Write;

use crate::render::figures::{forced_share, free_sampling_share};
use crate::report::{PageResult, Report};

/// The per-page table (first runs) and the summary.
pub fn section(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "## Constrained decoding\n");
    let _ = writeln!(
        o,
        "The per-page runs above (real schema), with llguidance fast-forwarding the tokens the grammar forces (first run of each page):\n"
    );
    let _ = writeln!(
        o,
        "| page | tokens | forced (steps saved) | model steps | sampling + grammar per token | of generation time | of which per-field confidence | stop | schema-valid |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
    for p in &r.per_page {
        if let Some(row) = decoding_row(p) {
            let _ = writeln!(o, "{row}");
        }
    }
    let _ = writeln!(
        o,
        "\nIn all, {:.0} % of the output tokens were forced and cost no model step. On the engine-parity run (a free string: nothing to force), sampling + grammar took {:.1} % of generation time. A random-weight model fills strings with noise until the cap, so `schema-valid` is false where the cap cut the JSON; the real model closes it.\n",
        100.0 * forced_share(r),
        100.0 * free_sampling_share(r)
    );
    let _ = writeln!(o, "{}\n", confidence_sentence(r));
    o
}

/// The largest share of generation time any page's per-field confidence took (first runs),
/// against the goal of 5 %; `None` when the report predates the measurement.
pub fn confidence_share(r: &Report) -> Option<f64> {
    r.per_page
        .iter()
        .filter_map(|p| p.vinscan.first())
        .filter_map(|x| x.confidence.map(|c| c / x.generate))
        .reduce(f64::max)
}

fn confidence_sentence(r: &Report) -> String {
    match confidence_share(r) {
        Some(share) => format!(
            "Per-field confidence (each sampled token's probability under the grammar) took at most {:.2} % of a page's generation time (goal: at most 5 %).",
            100.0 * share
        ),
        None => {
            "Per-field confidence was not measured in this report: it was made before vinscan computed it."
                .to_owned()
        }
    }
}

/// A page's first run: tokens, forced share, sampling cost, stop and validity.
fn decoding_row(p: &PageResult) -> Option<String> {
    let x = p.vinscan.first()?;
    let (generated, forced) = (f64::from(x.generated), f64::from(x.forced));
    let confidence = x
        .confidence
        .map_or_else(|| "—".to_owned(), |c| format!("{:.2} %", 100.0 * c / x.generate));
    Some(format!(
        "| {} | {} | {} ({:.0} %) | {} | {:.2} ms | {:.1} % | {confidence} | {} | {} |",
        p.unit.name,
        x.generated,
        x.forced,
        100.0 * forced / generated,
        x.steps,
        x.sample / generated,
        100.0 * (x.sample / x.generate),
        x.stop,
        p.validate.valid
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::testdata::report;

    #[test]
    fn rows_give_the_first_runs_costs() {
        let md = section(&report());
        assert!(
            md.contains("| p | 10 | 5 (50 %) | 5 | 0.10 ms | 1.0 % | — | cap | false |"),
            "{md}"
        );
        assert!(
            md.contains("Per-field confidence was not measured in this report"),
            "{md}"
        );
        assert!(
            md.contains("In all, 50 % of the output tokens were forced"),
            "{md}"
        );
        // no parity run: nothing measured on the free string
        assert!(
            md.contains("sampling + grammar took 0.0 % of generation time"),
            "{md}"
        );
    }

    #[test]
    fn confidence_is_reported_as_a_share_of_generation_time() {
        let mut r = report();
        r.per_page[0].vinscan[0].confidence = Some(0.5);
        let md = section(&r);
        assert!(md.contains("| 1.0 % | 0.50 % | cap |"), "{md}");
        assert!(
            md.contains("took at most 0.50 % of a page's generation time"),
            "{md}"
        );
    }
}
