//! The prompt a page is decoded from: Vintern's ChatML template, split where pages of a
//! pipeline stop sharing it, tokenised with the page's image by mtmd; and the output schema
//! with the grammar options every page uses.

use llama_cpp_2::mtmd::{
    MtmdBitmap, MtmdInputChunkType, MtmdInputChunks, MtmdInputText, mtmd_default_marker,
};
use llama_cpp_2::token::LlamaToken;
use vinscan_core::{GenerateRequest, Result};

use crate::page::internal;
use crate::session::Session;

/// A request's prompt, tokenised.
pub(crate) struct Prepared {
    /// The shared prefix and its tokens, when prefix reuse is on.
    pub(crate) prefix: Option<(MtmdInputChunks, Vec<LlamaToken>)>,
    pub(crate) rest: MtmdInputChunks,
    pub(crate) prompt_tokens: u32,
    pub(crate) image_tokens: u32,
    pub(crate) images: u32,
}

/// The schema with llguidance options: compact JSON (no free whitespace between tokens: a model
/// could otherwise emit blanks until `max_tokens`) and no `\u` escapes (text comes out as UTF-8).
pub(crate) fn compact_json_grammar(schema: &serde_json::Value) -> serde_json::Value {
    let mut schema = schema.clone();
    if let Some(map) = schema.as_object_mut() {
        map.insert(
            "x-guidance".to_owned(),
            serde_json::json!({
                "whitespace_flexible": false,
                "item_separator": ",",
                "key_separator": ":",
                "json_allowed_escapes": "nrbtf\"\\",
            }),
        );
    }
    schema
}

/// ChatML as Vintern's template writes it; mtmd replaces each marker with `<img>`, one
/// embedding chunk per tile and the thumbnail, then `</img>`.
pub(crate) fn chatml_prompt(system: &str, user: &str, images: usize) -> String {
    let (prefix, rest) = chatml_parts(system, user, images);
    prefix + &rest
}

/// The prompt in two parts: the prefix every page of a pipeline shares (system message and the
/// user turn's opening), whose KV cells are computed once and shared, and the rest from the
/// first image on. They split at a special-token boundary, so tokenising them apart gives the
/// same tokens as tokenising the whole. One image is Vintern's single-image form
/// (`<image>\n{task}`); several are InternVL's multi-image form (`Image-1: <image>\n…`, as
/// InternVL's `chat` writes `Image-{i}: <image>\n` per image before the question).
pub(crate) fn chatml_parts(system: &str, user: &str, images: usize) -> (String, String) {
    let marker = mtmd_default_marker();
    let pages = if images <= 1 {
        format!("{marker}\n")
    } else {
        (1..=images).map(|i| format!("Image-{i}: {marker}\n")).collect()
    };
    (
        format!("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n"),
        format!("{pages}{user}<|im_end|>\n<|im_start|>assistant\n"),
    )
}

/// Tokenises a request's prompt with its pages' images: the shared prefix apart when
/// `reuse_prefix`.
pub(crate) fn prepare(s: &Session<'_>, req: &GenerateRequest, reuse_prefix: bool) -> Result<Prepared> {
    let bitmaps = req
        .images
        .iter()
        .map(|i| {
            MtmdBitmap::from_image_data(i.width, i.height, &i.rgb).map_err(|e| internal("image bitmap", e))
        })
        .collect::<Result<Vec<_>>>()?;
    let n = bitmaps.len();
    let (prefix_text, rest_text) = if reuse_prefix {
        let (p, r) = chatml_parts(&req.system_prompt, &req.user_prompt, n);
        (Some(p), r)
    } else {
        (None, chatml_prompt(&req.system_prompt, &req.user_prompt, n))
    };
    let prefix = match prefix_text {
        Some(text) => {
            let chunks = s
                .mtmd
                .tokenize(
                    MtmdInputText {
                        text,
                        add_special: true,
                        parse_special: true,
                    },
                    &[],
                )
                .map_err(|e| internal("mtmd tokenize", e))?;
            let mut tokens = Vec::new();
            for i in 0..chunks.len() {
                if let Some(t) = chunks.get(i).as_ref().and_then(|c| c.text_tokens()) {
                    tokens.extend_from_slice(t);
                }
            }
            Some((chunks, tokens))
        }
        None => None,
    };
    let rest = s
        .mtmd
        .tokenize(
            MtmdInputText {
                text: rest_text,
                add_special: prefix.is_none(),
                parse_special: true,
            },
            &bitmaps.iter().collect::<Vec<_>>(),
        )
        .map_err(|e| internal("mtmd tokenize", e))?;
    let (mut images, mut image_tokens) = (0u32, 0u32);
    for i in 0..rest.len() {
        if let Some(c) = rest.get(i)
            && c.chunk_type() == MtmdInputChunkType::Image
        {
            images += 1;
            image_tokens += c.n_tokens() as u32;
        }
    }
    let prompt_tokens = (rest.total_tokens() + prefix.as_ref().map_or(0, |(_, t)| t.len())) as u32;
    Ok(Prepared {
        prefix,
        rest,
        prompt_tokens,
        image_tokens,
        images,
    })
}
