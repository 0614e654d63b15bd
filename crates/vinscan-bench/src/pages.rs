//! The pages every peer processes: each image, and each page of each PDF rendered to PNG for
//! the peers that cannot read PDF (vinscan still renders it itself, inside its timing), with
//! the grid image llama-mtmd-cli gets.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use vinscan_core::extract::tile_range;
use vinscan_core::tiling::tile_page;
use vinscan_core::{Extractor, Format, Pipeline};

use crate::report::Unit;

/// Every page of the files in `dir` (sorted by name; files that are not scans are skipped).
/// `max_tiles` is the projector's limit; rendered pages and grid images go to `work`.
pub fn units(
    dir: &Path,
    extractor: &Extractor,
    pipeline: &Pipeline,
    max_tiles: u32,
    work: &Path,
) -> anyhow::Result<Vec<Unit>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| dir.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        out.extend(file_units(&f, extractor, pipeline, max_tiles, work)?);
    }
    if out.is_empty() {
        bail!("{}: no pages to benchmark", dir.display());
    }
    Ok(out)
}

/// The pages of one file.
fn file_units(
    f: &Path,
    extractor: &Extractor,
    pipeline: &Pipeline,
    max_tiles: u32,
    work: &Path,
) -> anyhow::Result<Vec<Unit>> {
    let name = f
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("page")
        .to_owned();
    let bytes = std::fs::read(f).with_context(|| f.display().to_string())?;
    let Some(format) = Format::sniff(&bytes) else {
        return Ok(Vec::new());
    };
    let doc = extractor.open(&name, bytes, pipeline)?;
    let (min_tiles, max_tiles) = tile_range(pipeline, max_tiles);
    let mut out = Vec::new();
    for index in 0..doc.page_count() {
        let page = doc.page(index, pipeline.pdf_dpi, &pipeline.limits, extractor.decoders())?;
        let tiled = tile_page(&page.image, min_tiles, max_tiles)?;
        let (image, label) = if format == Format::Pdf {
            let png = work.join(format!("{name}.p{}.png", index + 1));
            page.image.save(&png)?;
            (png, format!("{name} p{}", index + 1))
        } else {
            (f.to_path_buf(), name.clone())
        };
        let grid_image = work.join(format!("{name}.p{}.grid.png", index + 1));
        tiled.image.save(&grid_image)?;
        out.push(Unit {
            name: label,
            source: f.to_path_buf(),
            page: index,
            image,
            grid_image,
            images: tiled.grid.images(),
            grid: (tiled.grid.cols, tiled.grid.rows),
        });
    }
    Ok(out)
}

/// The single-tile image page: the engine-parity page, and the one with `--reps` repetitions.
pub fn is_single_tile_image(unit: &Unit) -> bool {
    unit.images == 1 && unit.image == unit.source
}

/// The page with the fewest images (the probes' and the vision encoder's page).
pub fn smallest(units: &[Unit]) -> anyhow::Result<&Unit> {
    units.iter().min_by_key(|u| u.images).context("no pages")
}
