//! Tall and wide pages: a page whose aspect ratio the tile grid cannot follow is cut into
//! overlapping segments, read as pages of one document.
//!
//! Tiling stretches a page to its grid (`cols·448 × rows·448`). With a budget of `t` tiles the
//! most elongated grid is `1 × t`, so a 576 × 9000 px thermal receipt (aspect 15.6) goes to
//! 448 × 2688: 0.78× across but 0.30× down, its 26 px text lines squeezed to 8 px. The rule:
//!
//! - **When.** A page is cut when its grid would shrink one axis more than [`MAX_SQUEEZE`]
//!   times as much as the other (`max(sx, sy) / min(sx, sy) > 2`, `sx = cols·448 / width`,
//!   `sy = rows·448 / height`).
//! - **How.** Across its long side, into the fewest segments of the most elongated grid's
//!   aspect ratio (`t : 1`, full width or height) that cover it with consecutive segments
//!   overlapping by [`OVERLAP`] of a segment's length, spaced evenly, so a line of text cut
//!   at one segment's edge is whole in the next.
//! - **Bounds.** A page whose short side is under [`MIN_SHORT_SIDE`] px, or that would need
//!   more than [`MAX_SEGMENTS`] segments, is read whole, as before: a strip that thin or long is
//!   not a document, and no input may cost more model reads than that.
//! - **What text keeps.** Each segment has the aspect ratio of its `1 × t` grid, so it is
//!   scaled equally on both axes, by `448 / short side`: the scale the short side of the page
//!   gets, and never below it (the receipt's lines stay 20 px). A page the grid can follow is
//!   not cut.
//!
//! Segments are in reading order (top to bottom, left to right); their overlap can make a value
//! be read twice (a line item on the cut), which the merge's disagreements and the invoice
//! checks surface.

use serde::{Deserialize, Serialize};

use crate::tiling::{TILE_SIZE, choose_grid};

/// The most one axis may be shrunk relative to the other by the stretch to the tile grid.
pub const MAX_SQUEEZE: f64 = 2.0;
/// Overlap between consecutive segments, as a fraction of a segment's long side.
pub const OVERLAP: f64 = 0.125;
/// The most segments a page is cut into: a longer strip (a 1 × 20000 px image is not a
/// document) is read whole, as the grid takes it, so no input costs more than this many images.
pub const MAX_SEGMENTS: u32 = 12;
/// A page whose short side is below this many pixels is read whole: there is no line of text
/// to keep legible across it.
pub const MIN_SHORT_SIDE: u32 = 64;

/// A rectangle of a page in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// How much the stretch of a `width × height` page to its grid (under a budget of
/// `min_tiles..=max_tiles`) shrinks one axis relative to the other: 1 when both are scaled
/// alike.
pub fn squeeze(width: u32, height: u32, min_tiles: u32, max_tiles: u32) -> f64 {
    let grid = choose_grid(width, height, min_tiles, max_tiles);
    let sx = f64::from(grid.cols * TILE_SIZE) / f64::from(width.max(1));
    let sy = f64::from(grid.rows * TILE_SIZE) / f64::from(height.max(1));
    sx.max(sy) / sx.min(sy)
}

/// The segments a `width × height` page is read as under a budget of `min_tiles..=max_tiles`
/// tiles (see the module docs): the whole page, or its overlapping segments in reading order.
pub fn segments(width: u32, height: u32, min_tiles: u32, max_tiles: u32) -> Vec<Segment> {
    let whole = Segment {
        x: 0,
        y: 0,
        width,
        height,
    };
    if width == 0 || height == 0 || squeeze(width, height, min_tiles, max_tiles) <= MAX_SQUEEZE {
        return vec![whole];
    }
    let tall = height > width;
    let (short, long) = if tall { (width, height) } else { (height, width) };
    if short < MIN_SHORT_SIDE {
        return vec![whole];
    }
    // the most elongated grid the budget allows: 1 × t
    let seg_long = (u64::from(short) * u64::from(max_tiles.max(1))).min(u64::from(long)) as u32;
    if seg_long >= long {
        return vec![whole];
    }
    let overlap = (f64::from(seg_long) * OVERLAP).round() as u32;
    let stride = seg_long - overlap;
    let count = (long - overlap).div_ceil(stride).max(2);
    if count > MAX_SEGMENTS {
        return vec![whole];
    }
    let span = long - seg_long;
    (0..count)
        .map(|i| {
            // evenly spaced from the start to the end of the long side
            let start = (u64::from(span) * u64::from(i) / u64::from(count - 1)) as u32;
            if tall {
                Segment {
                    x: 0,
                    y: start,
                    width,
                    height: seg_long,
                }
            } else {
                Segment {
                    x: start,
                    y: 0,
                    width: seg_long,
                    height,
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale(s: &Segment, max_tiles: u32) -> (f64, f64) {
        let g = choose_grid(s.width, s.height, 1, max_tiles);
        (
            f64::from(g.cols * TILE_SIZE) / f64::from(s.width),
            f64::from(g.rows * TILE_SIZE) / f64::from(s.height),
        )
    }

    #[test]
    fn a_thermal_receipt_is_cut_so_its_text_keeps_the_short_sides_scale() {
        let (w, h) = (576, 9000);
        assert!(squeeze(w, h, 1, 6) > 2.5, "the whole receipt would be squeezed");
        let segs = segments(w, h, 1, 6);
        assert_eq!(segs.len(), 3, "{segs:?}");
        assert_eq!(segs[0].y, 0);
        let last = segs[segs.len() - 1];
        assert_eq!(last.y + last.height, h, "covers the end");
        for pair in segs.windows(2) {
            let overlap = pair[0].y + pair[0].height - pair[1].y;
            assert!(
                overlap >= (f64::from(pair[0].height) * OVERLAP) as u32,
                "{pair:?}"
            );
        }
        for s in &segs {
            assert_eq!((s.x, s.width, s.height), (0, 576, 3456));
            let (sx, sy) = scale(s, 6);
            assert!((sx - sy).abs() < 1e-9, "scaled alike: {sx} {sy}");
            // 26 px lines stay 20 px, the scale of the receipt's width
            assert!((26.0 * sy - 26.0 * 448.0 / 576.0).abs() < 1e-9);
            assert!(26.0 * sy > 20.0);
        }
    }

    #[test]
    fn pages_the_grid_can_follow_are_not_cut() {
        for (w, h) in [
            (1240, 1754),
            (1754, 1240),
            (2480, 3508),
            (448, 448),
            (1011, 638),
            (600, 2400),
        ] {
            assert_eq!(segments(w, h, 1, 6).len(), 1, "{w}x{h}");
        }
    }

    #[test]
    fn a_wide_strip_is_cut_left_to_right() {
        let segs = segments(8000, 400, 1, 4);
        assert!(segs.len() >= 5, "{segs:?}");
        assert!(segs.windows(2).all(|p| p[0].x < p[1].x));
        assert_eq!(segs.iter().map(|s| s.height).max(), Some(400));
        let last = segs[segs.len() - 1];
        assert_eq!(last.x + last.width, 8000);
    }

    #[test]
    fn strips_too_thin_or_too_long_are_read_whole_not_cut_into_thousands() {
        assert_eq!(segments(1, 20000, 1, 4).len(), 1, "1 px wide");
        assert_eq!(segments(20, 20000, 1, 4).len(), 1, "20 px wide");
        assert_eq!(segments(64, 60000, 1, 1).len(), 1, "would need over 12 segments");
        for (w, h, t) in [(64, 20000, 4), (576, 40000, 6), (300, 30000, 12)] {
            assert!(segments(w, h, 1, t).len() as u32 <= MAX_SEGMENTS, "{w}x{h} t={t}");
        }
    }

    #[test]
    fn every_segment_is_within_the_page_and_within_the_squeeze_bound() {
        for (w, h, t) in [
            (576, 9000, 6),
            (300, 9000, 4),
            (100, 5000, 12),
            (9000, 576, 6),
            (700, 4000, 1),
        ] {
            let segs = segments(w, h, 1, t);
            assert!(segs.len() > 1, "{w}x{h} t={t} is cut");
            for s in segs {
                assert!(s.x + s.width <= w && s.y + s.height <= h, "{w}x{h}: {s:?}");
                assert!(
                    squeeze(s.width, s.height, 1, t) <= MAX_SQUEEZE,
                    "{w}x{h} t={t}: {s:?} squeezed {}",
                    squeeze(s.width, s.height, 1, t)
                );
            }
        }
    }
}
