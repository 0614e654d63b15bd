//! Tiling faithful to Vintern/InternVL's `dynamic_preprocess`: choose the tile grid by the
//! reference's closest-aspect-ratio rule, stretch the page to exactly grid × 448 px (bicubic),
//! cut it into tiles and, when there is more than one tile, add a 448 px thumbnail last.
//!
//! mtmd's own InternVL slicer chooses grids differently (max effective resolution, padding).
//! vinscan therefore hands mtmd the page already stretched to the reference grid: for an image
//! of exactly `cols·448 × rows·448` mtmd's candidate search picks that very grid (no waste,
//! full resolution) and its crops are plain copies, so the tiles are the reference tiles. The
//! thumbnail is the one difference: mtmd derives it from the stretched page, the reference from
//! the original (a second bicubic resampling; see `thumbnail_drift` in the tests).

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use crate::error::{Error, ErrorKind, Result};

/// InternVL's tile side in pixels (InternViT-300M at 448 px, patch 14).
pub const TILE_SIZE: u32 = 448;
/// The most tiles vinscan accepts in a pipeline (InternVL 1.5 runs up to 40 at test time).
pub const MAX_TILES_LIMIT: u32 = 40;

/// A grid of tiles: `cols` across, `rows` down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TileGrid {
    pub cols: u32,
    pub rows: u32,
}

impl TileGrid {
    pub fn tiles(self) -> u32 {
        self.cols * self.rows
    }

    /// The reference appends a thumbnail only when the page was cut into several tiles.
    pub fn has_thumbnail(self) -> bool {
        self.tiles() > 1
    }

    /// Images the vision encoder sees: tiles plus the thumbnail, if any.
    pub fn images(self) -> u32 {
        self.tiles() + u32::from(self.has_thumbnail())
    }
}

/// The candidate grids of the reference, in its order: sorted by tile count, ties kept in
/// generation order (the reference iterates a Python set; for small integer tuples CPython's
/// order within one tile count only matters on exact aspect-ratio ties, see tests).
pub fn candidate_grids(min_tiles: u32, max_tiles: u32) -> Vec<TileGrid> {
    let mut grids: Vec<TileGrid> = Vec::new();
    for n in min_tiles..=max_tiles {
        for cols in 1..=n {
            for rows in 1..=n {
                let t = cols * rows;
                let g = TileGrid { cols, rows };
                if t >= min_tiles && t <= max_tiles && !grids.contains(&g) {
                    grids.push(g);
                }
            }
        }
    }
    grids.sort_by_key(|g| g.tiles());
    grids
}

/// `find_closest_aspect_ratio` of InternVL: the grid whose aspect ratio is closest to the
/// page's; on a tie, a larger grid wins when the page has more than half its pixel area.
pub fn choose_grid(width: u32, height: u32, min_tiles: u32, max_tiles: u32) -> TileGrid {
    let aspect = f64::from(width) / f64::from(height);
    let area = f64::from(width) * f64::from(height);
    let tile_area = f64::from(TILE_SIZE) * f64::from(TILE_SIZE);
    let mut best_diff = f64::INFINITY;
    let mut best = TileGrid { cols: 1, rows: 1 };
    for g in candidate_grids(min_tiles.max(1), max_tiles.max(min_tiles.max(1))) {
        let diff = (aspect - f64::from(g.cols) / f64::from(g.rows)).abs();
        if diff < best_diff {
            best_diff = diff;
            best = g;
        } else if diff == best_diff && area > 0.5 * tile_area * f64::from(g.tiles()) {
            best = g;
        }
    }
    best
}

/// Bicubic (Catmull-Rom, a = −0.5, convolution with antialiasing — Pillow's `BICUBIC`) resize.
pub fn resize_bicubic(image: &RgbImage, width: u32, height: u32) -> Result<RgbImage> {
    if image.dimensions() == (width, height) {
        return Ok(image.clone());
    }
    let src = ImageRef::new(image.width(), image.height(), image.as_raw(), PixelType::U8x3)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("resize source: {e}")))?;
    let mut dst = Image::new(width, height, PixelType::U8x3);
    Resizer::new()
        .resize(
            &src,
            &mut dst,
            &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom)),
        )
        .map_err(|e| Error::new(ErrorKind::Internal, format!("resize: {e}")))?;
    RgbImage::from_raw(width, height, dst.into_vec())
        .ok_or_else(|| Error::new(ErrorKind::Internal, "resize produced a buffer of the wrong size"))
}

/// A page stretched to its tile grid, ready for the vision encoder.
#[derive(Debug, Clone)]
pub struct TiledPage {
    pub grid: TileGrid,
    /// `cols·448 × rows·448` RGB.
    pub image: RgbImage,
}

/// Chooses the grid and stretches the page to it.
pub fn tile_page(page: &RgbImage, min_tiles: u32, max_tiles: u32) -> Result<TiledPage> {
    let grid = choose_grid(page.width(), page.height(), min_tiles, max_tiles);
    let image = resize_bicubic(page, grid.cols * TILE_SIZE, grid.rows * TILE_SIZE)?;
    Ok(TiledPage { grid, image })
}

impl TiledPage {
    /// The tiles in the reference's order (row-major), then the thumbnail made from `original`
    /// as the reference does. Used by fidelity tests and the benchmark, not on the hot path.
    pub fn reference_images(&self, original: &RgbImage) -> Result<Vec<RgbImage>> {
        let mut out = Vec::with_capacity(self.grid.images() as usize);
        for r in 0..self.grid.rows {
            for c in 0..self.grid.cols {
                let tile = image::imageops::crop_imm(
                    &self.image,
                    c * TILE_SIZE,
                    r * TILE_SIZE,
                    TILE_SIZE,
                    TILE_SIZE,
                )
                .to_image();
                out.push(tile);
            }
        }
        if self.grid.has_thumbnail() {
            out.push(resize_bicubic(original, TILE_SIZE, TILE_SIZE)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(w: u32, h: u32, max: u32, expected: (u32, u32)) {
        let g = choose_grid(w, h, 1, max);
        assert_eq!((g.cols, g.rows), expected, "{w}x{h} max {max}");
    }

    #[test]
    fn reference_grids() {
        // Values computed with InternVL's published dynamic_preprocess.
        check(1600, 600, 6, (3, 1)); // mtmd's slicer picks 3x2 here
        check(600, 900, 6, (2, 3));
        check(400, 300, 6, (3, 2)); // mtmd does not tile images <= 448 px at all
        check(448, 448, 6, (1, 1));
        check(1000, 1000, 6, (2, 2)); // tie with (1,1): area > half of 4 tiles
        check(800, 800, 6, (2, 2)); // tie: area 640000 > 0.5*4*448^2
        check(1240, 1754, 6, (2, 3)); // A4 at 150 dpi
        check(1240, 1754, 12, (2, 3));
        check(3000, 400, 12, (8, 1));
        check(100, 2000, 40, (1, 20));
        check(10, 10, 1, (1, 1));
    }

    /// 500 page sizes and tile budgets whose grids were computed by InternVL's Python code
    /// (`ops/reference/internvl_grids.py`).
    #[test]
    fn matches_reference_table() {
        let table: Vec<(u32, u32, u32, u32, u32)> =
            serde_json::from_str(include_str!("../tests/data/internvl_grids.json")).expect("table");
        assert_eq!(table.len(), 500);
        for (w, h, max, cols, rows) in table {
            check(w, h, max, (cols, rows));
        }
    }

    #[test]
    fn candidates_are_sorted_and_bounded() {
        let c = candidate_grids(1, 6);
        assert!(c.windows(2).all(|w| w[0].tiles() <= w[1].tiles()));
        assert!(c.iter().all(|g| (1..=6).contains(&g.tiles())));
        assert_eq!(c.len(), 14);
        assert_eq!(c[0], TileGrid { cols: 1, rows: 1 });
    }

    #[test]
    fn thumbnail_only_with_several_tiles() {
        assert_eq!(TileGrid { cols: 1, rows: 1 }.images(), 1);
        assert_eq!(TileGrid { cols: 3, rows: 1 }.images(), 4);
    }

    #[test]
    fn tiled_page_has_exact_grid_size() {
        let page = RgbImage::from_fn(1600, 600, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])
        });
        let t = tile_page(&page, 1, 6).expect("tile");
        assert_eq!(t.grid, TileGrid { cols: 3, rows: 1 });
        assert_eq!(t.image.dimensions(), (3 * 448, 448));
        let refs = t.reference_images(&page).expect("refs");
        assert_eq!(refs.len(), 4);
        assert!(refs.iter().all(|r| r.dimensions() == (448, 448)));
    }

    /// mtmd makes the thumbnail from the stretched page; the reference from the original.
    /// On a smooth page the two differ by well under 1 grey level on average.
    #[test]
    fn thumbnail_drift() {
        let page = RgbImage::from_fn(1500, 700, |x, y| {
            image::Rgb([
                (x * 255 / 1500) as u8,
                (y * 255 / 700) as u8,
                ((x + y) % 256) as u8 / 4,
            ])
        });
        let t = tile_page(&page, 1, 6).expect("tile");
        let ours = resize_bicubic(&t.image, TILE_SIZE, TILE_SIZE).expect("ours");
        let reference = resize_bicubic(&page, TILE_SIZE, TILE_SIZE).expect("reference");
        let total: u64 = ours
            .as_raw()
            .iter()
            .zip(reference.as_raw())
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .sum();
        let mean = total as f64 / ours.as_raw().len() as f64;
        assert!(mean < 1.0, "mean abs diff {mean}");
    }
}
