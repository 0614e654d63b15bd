//! A whole document through the pipeline (`unit = "document"`): its pages read together in one
//! prompt, or in page groups merged into one record.
//!
//! A document's pages are read `pipeline.pages_together` at a time, in order. Every page of a
//! read keeps its own tiles and thumbnail and is introduced by its number (InternVL's
//! multi-image prompt), and each page's tile budget is lowered so that every image, the prompt
//! and the output fit the model's context ([`tiles_per_page`]). A document of more pages than
//! that is read in consecutive groups, each group's output parsed and validated on its own,
//! and the groups' records merged by the schema's rules ([`crate::merge`]); checks and review
//! then run once, on the merged record.
//!
//! A page too tall or wide for the grid (a thermal receipt) is read as its overlapping
//! segments ([`crate::segment`]), each an image of its own, cut for the tile budget of one
//! read of the document's pages (all of them when they fit one read). Pages are decoded as the reads need them: at most
//! one read's pages are held at a time.

use std::sync::Arc;
use std::time::Instant;

use crate::document::{Document, Format};
use crate::document_record::{DocumentReads, GroupRead};
use crate::error::{Error, ErrorKind, Result};
use crate::extract::{
    Extractor, VERSION, carry_confidence, format_name, generation_provenance, model_provenance,
    parse_and_validate, request_image, run_checks_allowing, tile_range,
};
use crate::merge::Part;
use crate::model::{Cancellation, GenerateRequest, ModelInfo, OutputConstraint, VisionModel};
use crate::pipeline::Pipeline;
use crate::record::{
    DocumentPage, DocumentProvenance, DocumentRecord, GroupProvenance, ImageProvenance, PageRef,
    SourceProvenance, TilesProvenance, Timings,
};
use crate::segment::{Segment, segments};
use crate::tiling::tile_page;
use crate::transcript::PageTranscript;

/// Prompt tokens besides the system and task text: the chat template's special tokens and
/// newlines, generously.
const TEMPLATE_TOKENS: u32 = 32;
/// Prompt tokens each page adds besides its images: `Image-N: `, `<img>`, `</img>`, newline.
const PAGE_TEXT_TOKENS: u32 = 16;

pub use crate::document_record::DocumentSource;

/// The tile budget of each page when `pages` pages are read in one prompt: the pipeline's
/// budget, lowered until `pages × images per page × tokens per image + prompt + max_tokens`
/// fits the context. The prompt is counted as its UTF-8 bytes (a token is at least one byte)
/// plus the template's tokens. A page of `t > 1` tiles is `t + 1` images (its thumbnail), a
/// page of one tile one image.
///
/// # Errors
/// `Config` when not even one image per page fits: fewer pages together, a smaller
/// `max_tokens` or a larger context would.
pub fn tiles_per_page(pipeline: &Pipeline, info: &ModelInfo, pages: u32) -> Result<u32> {
    let (_, max) = tile_range(pipeline, info.max_tiles);
    let pages = pages.max(1);
    let anchor = if pipeline.anchor_text_bytes > 0 {
        crate::transcript::anchor_overhead(pages)
            .saturating_add(pipeline.anchor_text_bytes.saturating_mul(pages))
    } else {
        0
    };
    let prompt = u32::try_from(pipeline.system_prompt.len() + pipeline.prompt.len())
        .unwrap_or(u32::MAX)
        .saturating_add(anchor);
    let fixed = prompt
        .saturating_add(TEMPLATE_TOKENS)
        .saturating_add(PAGE_TEXT_TOKENS * pages)
        .saturating_add(pipeline.max_tokens);
    let room = info.ctx_size.saturating_sub(fixed);
    let images = room / (info.tokens_per_image.max(1) * pages);
    if images == 0 {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "pipeline {}: {pages} pages of at least {} image tokens each, a prompt of up to {} tokens and max_tokens = {} do not fit a context of {} tokens; lower document.pages_together or generation.max_tokens, or raise --ctx-size",
                pipeline.name,
                info.tokens_per_image,
                prompt + TEMPLATE_TOKENS + PAGE_TEXT_TOKENS * pages,
                pipeline.max_tokens,
                info.ctx_size
            ),
        ));
    }
    let tiles = if images >= 3 { images - 1 } else { 1 };
    Ok(tiles.min(max))
}

/// One image of a read: a page, or a segment of a page too tall or wide for the grid.
struct View {
    source: usize,
    /// 0-based page in its source.
    page: u32,
    image: image::RgbImage,
    /// The page's provenance (its full size and orientation).
    page_image: ImageProvenance,
    segment: Option<Segment>,
    decode_ms: f64,
    /// The page's transcript as anchor text (on its first view, when the pipeline gives it).
    anchor: Option<String>,
}

impl Extractor {
    /// Every page of `sources`, in order, as one document record (see the module docs). Once
    /// `cancel` is raised, the read in the model stops at its next decoding step and the rest
    /// fail with `Cancelled` at once.
    ///
    /// # Errors
    /// The first page that cannot be decoded, a read whose output does not conform, and the
    /// model's own errors (`Unavailable`, `Cancelled`), each naming the source and page.
    pub fn extract_as_document(
        &self,
        model: &dyn VisionModel,
        sources: &[DocumentSource<'_>],
        pipeline: &Pipeline,
        cancel: &Cancellation,
    ) -> Result<DocumentRecord> {
        let started = Instant::now();
        let pages: Vec<(usize, u32)> = sources
            .iter()
            .enumerate()
            .flat_map(|(s, src)| (0..src.doc.page_count()).map(move |p| (s, p)))
            .collect();
        if let Some(einvoice) = einvoice::einvoice_source(sources)? {
            return self.extract_einvoice(einvoice, pipeline);
        }
        if pages.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a document needs at least one page",
            ));
        }
        let (reads, transcripts) = self.read_all(model, sources, &pages, pipeline, cancel)?;
        let reads = DocumentReads {
            reads,
            transcripts,
            model: Some(model_provenance(model.info())),
            text_model: None,
        };
        self.finish_document(sources, &pages, reads, pipeline, started)
    }

    /// Every page of `pages` (source index, 0-based page) decoded as the reads need it, cut
    /// into segments where the grid cannot follow it, and read `pages_together` images at a time.
    fn read_all(
        &self,
        model: &dyn VisionModel,
        sources: &[DocumentSource<'_>],
        pages: &[(usize, u32)],
        pipeline: &Pipeline,
        cancel: &Cancellation,
    ) -> Result<(Vec<GroupRead>, Vec<Option<PageTranscript>>)> {
        let group_size = pipeline.pages_together.max(1) as usize;
        // pages are cut for the budget of a read of this document's pages (a full read, or the
        // whole of a shorter document), so a read of whole pages can follow its segments
        let planned_pages = group_size.min(pages.len()) as u32;
        let planned = Plan {
            tiles: tiles_per_page(pipeline, model.info(), planned_pages)?,
            pages: planned_pages,
        };
        let mut reads = Vec::new();
        let mut transcripts = Vec::with_capacity(pages.len());
        let mut views: Vec<View> = Vec::with_capacity(group_size);
        let mut first = 0;
        let read = |views: Vec<View>, reads: &mut Vec<GroupRead>, first: &mut usize| -> Result<()> {
            let n = views.len();
            let group_no = reads.len() as u32 + 1;
            reads.push(self.read_group(model, sources, views, *first, group_no, pipeline, cancel)?);
            *first += n;
            Ok(())
        };
        for &(s, p) in pages {
            let doc = sources[s].doc;
            cancel.check(&format!("{} page {}", doc.name(), p + 1))?;
            let (page_views, transcript) = self.page_views(model, doc, s, p, pipeline, planned, cancel)?;
            transcripts.push(transcript);
            for view in page_views {
                views.push(view);
                if views.len() == group_size {
                    read(std::mem::take(&mut views), &mut reads, &mut first)?;
                }
            }
        }
        if !views.is_empty() {
            read(views, &mut reads, &mut first)?;
        }
        Ok((reads, transcripts))
    }

    /// Page `p` of `doc` (source `s`) decoded, as one view or its segments ([`cut_page`]),
    /// and its transcript when the pipeline makes one.
    #[allow(clippy::too_many_arguments)] // one page's inputs, each named where it is called
    fn page_views(
        &self,
        model: &dyn VisionModel,
        doc: &Document,
        s: usize,
        p: u32,
        pipeline: &Pipeline,
        planned: Plan,
        cancel: &Cancellation,
    ) -> Result<(Vec<View>, Option<PageTranscript>)> {
        let t = Instant::now();
        let page = doc.page(p, pipeline.pdf_dpi, &pipeline.limits, self.decoders())?;
        let decode_ms = t.elapsed().as_secs_f64() * 1e3;
        let transcript = self
            .transcribe(Some(model), doc, p, &page, pipeline, cancel)
            .map_err(|e| e.context(format_args!("{} page {}", doc.name(), p + 1)))?;
        let (width, height) = page.image.dimensions();
        let page_image = ImageProvenance {
            width,
            height,
            orientation: page.orientation,
            dpi: (doc.format() == Format::Pdf).then_some(pipeline.pdf_dpi),
        };
        let cuts = cut_page(width, height, pipeline, model.info(), planned)?;
        let anchor = transcript
            .as_ref()
            .filter(|_| pipeline.anchor_text_bytes > 0)
            .map(|t| t.text.clone());
        if cuts.len() == 1 {
            let view = View {
                source: s,
                page: p,
                image: page.image,
                page_image,
                segment: None,
                decode_ms,
                anchor,
            };
            return Ok((vec![view], transcript));
        }
        let views = cuts
            .into_iter()
            .enumerate()
            .map(|(i, seg)| View {
                source: s,
                page: p,
                image: image::imageops::crop_imm(&page.image, seg.x, seg.y, seg.width, seg.height).to_image(),
                page_image: page_image.clone(),
                segment: Some(seg),
                // the page's decoding is counted once, with its first segment, and its text given once
                decode_ms: if i == 0 { decode_ms } else { 0.0 },
                anchor: if i == 0 { anchor.clone() } else { None },
            })
            .collect();
        Ok((views, transcript))
    }

    /// One read: `views` (pages or segments, already decoded) in one prompt; `first` is the
    /// 0-based position of its first view in the document's reading order.
    #[allow(clippy::too_many_arguments)] // one read's inputs, each named where it is called
    fn read_group(
        &self,
        model: &dyn VisionModel,
        sources: &[DocumentSource<'_>],
        views: Vec<View>,
        first: usize,
        group_no: u32,
        pipeline: &Pipeline,
        cancel: &Cancellation,
    ) -> Result<GroupRead> {
        let started = Instant::now();
        let max_tiles = tiles_per_page(pipeline, model.info(), views.len() as u32)?;
        let min_tiles = pipeline.min_tiles.min(max_tiles);
        let (mut decode_ms, mut tiling_ms) = (0.0, 0.0);
        let mut images = Vec::with_capacity(views.len());
        let mut pages = Vec::with_capacity(views.len());
        let mut expected = 0;
        let name = |v: &View| format!("{} page {}", sources[v.source].doc.name(), v.page + 1);
        let what = format!(
            "{} to {} (read {group_no})",
            views.first().map(name).unwrap_or_default(),
            views.last().map(name).unwrap_or_default()
        );
        let mut anchors = Vec::new();
        for (i, mut view) in views.into_iter().enumerate() {
            decode_ms += view.decode_ms;
            if let Some(text) = view.anchor.take() {
                anchors.push((i as u32 + 1, text));
            }
            let t = Instant::now();
            let tiled = tile_page(&view.image, min_tiles, max_tiles).map_err(|e| e.context(name(&view)))?;
            tiling_ms += t.elapsed().as_secs_f64() * 1e3;
            let grid = tiled.grid;
            expected += grid.images();
            pages.push(DocumentPage {
                source: sources[view.source].doc.name().to_owned(),
                page: view.page + 1,
                segment: view.segment,
                group: group_no,
                image_in_prompt: i as u32 + 1,
                image: view.page_image,
                tiles: TilesProvenance {
                    cols: grid.cols,
                    rows: grid.rows,
                    thumbnail: grid.has_thumbnail(),
                    images: grid.images(),
                    max_tiles_requested: pipeline.max_tiles,
                    max_tiles_used: max_tiles,
                },
            });
            images.push(request_image(tiled));
        }
        let n = images.len();
        let request = GenerateRequest {
            system_prompt: pipeline.system_prompt.clone(),
            user_prompt: crate::transcript::anchor_prompt(
                &pipeline.prompt,
                &anchors.iter().map(|(n, t)| (*n, t.as_str())).collect::<Vec<_>>(),
                pipeline.anchor_text_bytes,
            ),
            images,
            expected_images: expected,
            output: OutputConstraint::JsonSchema(Arc::new(pipeline.schema.grammar().clone())),
            max_tokens: pipeline.max_tokens,
            repeat_penalty: pipeline.repeat_penalty,
            repeat_last_n: pipeline.repeat_last_n,
            cancel: cancel.clone(),
        };
        let generation = model.generate(request).map_err(|e| e.context(&what))?;
        if generation.images != expected {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "{what}: the vision encoder saw {} images, tiling planned {expected}",
                    generation.images
                ),
            ));
        }
        let t = Instant::now();
        let (data, normalised) =
            parse_and_validate(pipeline, &generation.text, generation.stop, pipeline.max_tokens)
                .map_err(|e| e.context(&what))?;
        let confidence = crate::confidence::field_confidence(&generation.text, &generation.tokens);
        let validate_ms = t.elapsed().as_secs_f64() * 1e3;
        let timings = Timings::of_read(
            decode_ms,
            tiling_ms,
            &generation.timings,
            validate_ms,
            started.elapsed().as_secs_f64() * 1e3,
        );
        Ok(GroupRead {
            part: Part { data, confidence },
            normalised,
            provenance: GroupProvenance {
                pages: (first as u32 + 1..=(first + n) as u32).collect(),
                max_tiles_per_page: max_tiles,
                array_lengths: Default::default(),
                generation: generation_provenance(&generation, pipeline.max_tokens),
                timings_ms: timings,
            },
            pages,
        })
    }
}

/// The tile budget pages are cut for: `tiles` per image when a read holds `pages` images.
#[derive(Debug, Clone, Copy)]
struct Plan {
    tiles: u32,
    pages: u32,
}

/// The segments of a `width × height` page ([`segments`]) under a budget the reads holding them
/// can give. The page is cut for the plan's budget; when that makes more segments than the
/// plan's images per read, a read of that many (up to `pages_together`) has a smaller budget,
/// so the page is cut again for it, until the two agree. The budget only falls and is at least
/// one tile, so this ends; the segments then fit their grid whatever else shares their read
/// with them, as far as their read holds no more images than planned.
fn cut_page(
    width: u32,
    height: u32,
    pipeline: &Pipeline,
    info: &ModelInfo,
    plan: Plan,
) -> Result<Vec<Segment>> {
    let group = pipeline.pages_together.max(1);
    let mut budget = plan.tiles;
    loop {
        let cuts = segments(width, height, pipeline.min_tiles.min(budget), budget);
        if cuts.len() == 1 {
            return Ok(cuts);
        }
        let images = (cuts.len() as u32).max(plan.pages).min(group);
        let fits = tiles_per_page(pipeline, info, images)?;
        if fits >= budget {
            return Ok(cuts);
        }
        budget = fits;
    }
}

mod einvoice;

#[cfg(test)]
mod tests;
