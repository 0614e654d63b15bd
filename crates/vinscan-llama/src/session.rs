//! The llama.cpp state one model thread holds: a context and the mtmd vision context that
//! borrow the model, the grammar factory, and the sizes that bound them.

use std::sync::Arc;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::mtmd::MtmdContext;
use llguidance::ParserFactory;

/// Tokens per image chunk are decoded in batches of this size.
pub(crate) const N_BATCH: u32 = 2048;

/// The most pages one context decodes together.
pub(crate) const MAX_PARALLEL: u32 = 64;

/// Per-thread state that borrows the model.
pub(crate) struct Session<'m> {
    pub(crate) ctx: LlamaContext<'m>,
    pub(crate) mtmd: MtmdContext,
    pub(crate) factory: Arc<ParserFactory>,
    pub(crate) n_vocab: i32,
    /// Whether the context runs flash attention (`None`: llama.cpp's `auto`, on a GPU).
    pub(crate) llm_flash_attention: Option<bool>,
}
