//! The text stage's model: any llama.cpp text model in GGUF (VinaLLaMA, a LLaMA-2 chat model, by
//! default; Gemma 3 in the accuracy run), on a thread of its own (`vinscan-llama-text`) like
//! Vintern's, answering [`TextRequest`]s one at a time with the model's own chat template and
//! output constrained to the schema by llguidance.
//!
//! Decoding is a Vintern page's: greedy under the grammar's mask with llama.cpp's repetition
//! penalty, and each sampled token's probability kept for per-field confidence; but every token
//! is sampled (see [`TrieTokEnv`]). Requests are answered in order:
//! the text stage reads a document's chunks one after another.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use vinscan_core::hash::sha256_file;
use vinscan_core::text_stage::{TextModel, TextModelInfo, TextRequest};
use vinscan_core::{Error, ErrorKind, Generation, ModelTimings, OutputToken, Result, StopReason};

use crate::engine::backend;
use crate::page::{internal, ms};
use crate::prompt::compact_json_grammar;
use crate::sampling::{Penalty, pick, probability};
use crate::session::N_BATCH;

/// The longest run of one byte the output may end with before tokens made only of that byte are
/// banned until the value ends (`,`, `}`, `]`, `"` or `:`): a small model under a grammar can
/// fall into writing a number's digits (`10000.000000…`) until the output cap, and no value on
/// a document needs 12 identical characters in a row.
const MAX_RUN: usize = 12;

/// The byte `out` ends with `MAX_RUN` times in a row, if any.
fn runaway_byte(out: &[u8]) -> Option<u8> {
    let tail = out.get(out.len().checked_sub(MAX_RUN)?..)?;
    let first = *tail.first()?;
    tail.iter().all(|&b| b == first).then_some(first)
}

/// Disallows every token of `mask` made only of byte `b`, unless that would leave none.
fn ban_runs_of(mask: &mut SimpleVob, trie: &TokTrie, b: u8) {
    let mut runs = Vec::new();
    mask.iter_set_entries(|t| {
        let bytes = trie.token(t as TokenId);
        if !bytes.is_empty() && bytes.iter().all(|&x| x == b) {
            runs.push(t as TokenId);
        }
    });
    if runs.len() < mask.num_set() {
        for t in runs {
            mask.disallow_token(t);
        }
    }
}

/// How to load a text model.
#[derive(Debug, Clone)]
pub struct TextConfig {
    pub model: PathBuf,
    pub threads: u32,
    /// Context window in tokens: the prompt (transcripts and task) and the output must fit.
    pub ctx_size: u32,
    /// Layers offloaded to the GPU (only with the `cuda` feature; 0 = CPU only).
    pub gpu_layers: u32,
    /// sha256 of the file when the caller already computed it.
    pub sha256: Option<String>,
}

type Reply = mpsc::SyncSender<Result<Generation>>;

/// A request and where its answer goes.
type Job = (Box<TextRequest>, Reply);

/// A text model loaded on its own thread.
pub struct LlamaTextModel {
    info: TextModelInfo,
    commands: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl LlamaTextModel {
    /// Loads the model on a new thread and waits until it is ready.
    ///
    /// # Errors
    /// `Config` when the file is missing or llama.cpp cannot load it.
    pub fn load(config: TextConfig) -> Result<Self> {
        crate::logs_to_tracing();
        if !config.model.is_file() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{}: text model file not found", config.model.display()),
            ));
        }
        let sha256 = match &config.sha256 {
            Some(s) => s.clone(),
            None => sha256_file(&config.model)?,
        };
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("vinscan-llama-text".into())
            .spawn(move || serve(&config, sha256, &ready_tx, &rx))
            .map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    format!("cannot start the text model thread: {e}"),
                )
            })?;
        let info = match ready_rx.recv() {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(Error::new(
                    ErrorKind::Internal,
                    "the text model thread stopped while loading",
                ));
            }
        };
        Ok(Self {
            info,
            commands: Mutex::new(Some(tx)),
            thread: Some(thread),
        })
    }
}

impl TextModel for LlamaTextModel {
    fn info(&self) -> &TextModelInfo {
        &self.info
    }

    fn complete(&self, request: TextRequest) -> Result<Generation> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        {
            let guard = self
                .commands
                .lock()
                .map_err(|_| Error::new(ErrorKind::Unavailable, "text model command channel poisoned"))?;
            let tx = guard
                .as_ref()
                .ok_or_else(|| Error::new(ErrorKind::Unavailable, "the text model is shut down"))?;
            tx.send((Box::new(request), reply_tx))
                .map_err(|_| Error::new(ErrorKind::Unavailable, "the text model thread has stopped"))?;
        }
        reply_rx.recv().map_err(|_| {
            Error::new(
                ErrorKind::Unavailable,
                "the text model thread stopped during generation",
            )
        })?
    }
}

impl Drop for LlamaTextModel {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.commands.lock() {
            guard.take();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// llguidance's view of a text model's vocabulary, tokenising greedily over the token trie and
/// saying it is not canonical, so llguidance forces no tokens: a SentencePiece tokenizer
/// (LLaMA-2's, VinaLLaMA's) puts a space before text it tokenises alone, so its tokens for a
/// forced `{` would be ` {`. Every output token is sampled under the grammar's mask instead.
struct TrieTokEnv(TokTrie);

impl TokenizerEnv for TrieTokEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.0
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.0.greedy_tokenize(s)
    }

    fn tokenize_is_canonical(&self) -> bool {
        false
    }
}

/// Thread body: load, report readiness, answer requests until the channel closes.
fn serve(
    config: &TextConfig,
    sha256: String,
    ready: &mpsc::SyncSender<Result<TextModelInfo>>,
    commands: &mpsc::Receiver<Job>,
) {
    let loaded = (|| -> Result<_> {
        let backend = backend()?;
        let params = LlamaModelParams::default().with_n_gpu_layers(config.gpu_layers);
        let model = LlamaModel::load_from_file(backend, &config.model, &params).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("{}: cannot load text model: {e}", config.model.display()),
            )
        })?;
        Ok(Arc::new(model))
    })();
    let model = match loaded {
        Ok(m) => m,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let threads = i32::try_from(config.threads.max(1)).unwrap_or(1);
    let ctx_size = config.ctx_size.max(512);
    if ctx_size > model.n_ctx_train() {
        // llama.cpp applies no RoPE scaling the GGUF does not declare: positions past the
        // trained context read poorly, so say so rather than silently (VinaLLaMA: 4,096)
        tracing::warn!(
            model = %config.model.display(),
            ctx_size,
            n_ctx_train = model.n_ctx_train(),
            "the text context is longer than the model was trained on; lower it to n_ctx_train (--text-ctx-size, or text_ctx_size in serve's [model])"
        );
    }
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(ctx_size))
        .with_n_batch(N_BATCH)
        .with_n_ubatch(512)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let ctx = backend().and_then(|b| {
        let params = params.with_flash_attention_policy(crate::engine::flash_attention(
            None,
            config.gpu_layers,
            b.supports_gpu_offload(),
            // one request at a time: the text stage's context holds one sequence, where ggml's
            // CPU flash attention was the slower on both CPUs measured (`crate::attention`)
            || false,
        ));
        model
            .new_context(b, params)
            .map_err(|e| internal("text model context", e))
    });
    let trie = LlamaSampler::llguidance_tok_env(&model).tok_trie().clone();
    let env: TokEnv = Arc::new(TrieTokEnv(trie.clone()));
    let factory = ParserFactory::new_simple(&env).map_err(|e| internal("llguidance", e));
    let (mut ctx, factory) = match (ctx, factory) {
        (Ok(c), Ok(f)) => (c, f),
        (Err(e), _) | (_, Err(e)) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let info = TextModelInfo {
        name: model.meta_val_str("general.name").ok(),
        file: config.model.display().to_string(),
        sha256,
        ctx_size,
    };
    tracing::info!(model = %info.file, n_vocab = model.n_vocab(), ctx_size, "text model ready");
    if ready.send(Ok(info)).is_err() {
        return;
    }
    while let Ok((request, reply)) = commands.recv() {
        let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            generate(&model, &mut ctx, &factory, &trie, &request)
        }))
        .unwrap_or_else(|_| Err(Error::new(ErrorKind::Unavailable, "text generation panicked")));
        let failed = matches!(&answer, Err(e) if e.kind() == ErrorKind::Unavailable);
        let _ = reply.send(answer);
        if failed {
            // the context may be in any state: serve nothing more
            return;
        }
    }
}

/// The prompt as the model's chat template writes it (llama.cpp's `llama_chat_apply_template`;
/// a template without a system role, such as Gemma's, gets the system text in the user turn).
/// A model without a template gets ChatML, VinaLLaMA's.
fn chat_prompt(model: &LlamaModel, system: &str, user: &str) -> Result<String> {
    let message = |role: &str, content: &str| {
        LlamaChatMessage::new(role.to_owned(), content.to_owned()).map_err(|e| internal("chat message", e))
    };
    let messages = [message("system", system)?, message("user", user)?];
    match model.chat_template(None) {
        Ok(template) => model
            .apply_chat_template(&template, &messages, true)
            .map_err(|e| internal("chat template", e)),
        Err(_) => Ok(format!(
            "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
        )),
    }
}

/// One request, from an empty context.
fn generate(
    model: &LlamaModel,
    ctx: &mut LlamaContext<'_>,
    factory: &ParserFactory,
    trie: &TokTrie,
    request: &TextRequest,
) -> Result<Generation> {
    let started = Instant::now();
    request.cancel.check("text stage")?;
    let vocab = model.vocab();
    let tokens = prompt_tokens(model, ctx, request)?;
    let mut matcher = schema_matcher(factory, &request.output_schema)?;
    let (mut n_past, mut batch) = prefill(ctx, &tokens)?;
    let prefill_ms = ms(started);
    let gen_started = Instant::now();
    let mut penalty = Penalty::new(
        request.repeat_penalty,
        request.repeat_last_n,
        model.n_vocab().max(0) as usize,
    );
    let (mut out, mut output_tokens) = (Vec::<u8>::new(), Vec::<OutputToken>::new());
    let (mut steps, mut forced_count, mut sample_ms, mut confidence_ms) = (0u32, 0u32, 0.0, 0.0);
    let mut logits_at = batch.n_tokens() - 1;
    // a byte the output ran away with, banned until the value it is in ends
    let mut banned: Option<u8> = None;
    let stop = loop {
        request.cancel.check("text stage")?;
        let t = Instant::now();
        // the output's opening is usually forced: fed before any sampling
        let mut feed: Vec<(u32, Option<f32>)> = Vec::new();
        if !output_tokens.is_empty() || matcher.compute_ff_tokens().is_empty() {
            let logits = ctx.get_logits_ith(logits_at);
            let mut mask = matcher
                .compute_mask_or_eos()
                .map_err(|e| internal("grammar", e))?;
            if banned.is_none() {
                banned = runaway_byte(&out);
            }
            if let Some(b) = banned {
                ban_runs_of(&mut mask, trie, b);
            }
            let token = pick(logits, &mask, &penalty)
                .ok_or_else(|| Error::new(ErrorKind::InvalidOutput, "the grammar allows no further token"))?;
            let c = Instant::now();
            let p = probability(logits, &mask, &penalty, token);
            confidence_ms += ms(c);
            steps += 1;
            if vocab.is_eog(LlamaToken(token as i32)) {
                sample_ms += ms(t);
                break StopReason::EndOfOutput;
            }
            matcher.consume_token(token).map_err(|e| internal("grammar", e))?;
            // the value the run was in has ended
            if trie.token(token).iter().any(|b| b",}]\":".contains(b)) {
                banned = None;
            }
            feed.push((token, Some(p)));
        }
        let room = (request.max_tokens as usize).saturating_sub(output_tokens.len() + feed.len());
        let forced: Vec<u32> = matcher.compute_ff_tokens().into_iter().take(room).collect();
        matcher
            .consume_tokens(&forced)
            .map_err(|e| internal("grammar", e))?;
        forced_count += forced.len() as u32;
        feed.extend(forced.into_iter().map(|t| (t, None)));
        if matcher.is_error() {
            return Err(internal("grammar", matcher.get_error().unwrap_or_default()));
        }
        batch.clear();
        for (k, &(t, p)) in feed.iter().enumerate() {
            penalty.push(t);
            out.extend(vocab.token_to_piece(LlamaToken(t as i32), false, None));
            output_tokens.push(OutputToken {
                end: out.len() as u32,
                probability: p,
            });
            batch
                .add(LlamaToken(t as i32), n_past + k as i32, &[0], k + 1 == feed.len())
                .map_err(|e| internal("batch", e))?;
        }
        sample_ms += ms(t);
        if matcher.is_stopped() {
            break StopReason::EndOfOutput;
        }
        if output_tokens.len() >= request.max_tokens as usize {
            break StopReason::MaxTokens;
        }
        if feed.is_empty() {
            return Err(internal("text stage", "no token to feed"));
        }
        ctx.decode(&mut batch).map_err(|e| internal("decode", e))?;
        n_past += feed.len() as i32;
        logits_at = batch.n_tokens() - 1;
    };
    let text = crate::page::output_text(out, stop)?;
    let generate_ms = ms(gen_started);
    Ok(Generation {
        text,
        stop,
        prompt_tokens: tokens.len() as u32,
        image_tokens: 0,
        images: 0,
        generated_tokens: output_tokens.len() as u32,
        model_steps: steps,
        forced_tokens: forced_count,
        reused_prompt_tokens: 0,
        peak_batch_pages: 1,
        restarts: 0,
        tokens: output_tokens,
        timings: ModelTimings {
            encode_prefill_ms: prefill_ms,
            generate_ms,
            sample_ms,
            step_share_ms: generate_ms - sample_ms,
            queue_ms: 0.0,
            confidence_ms,
        },
    })
}

/// The request's chat prompt as tokens; `InvalidInput` when it and the output cap do not fit
/// the context.
fn prompt_tokens(
    model: &LlamaModel,
    ctx: &LlamaContext<'_>,
    request: &TextRequest,
) -> Result<Vec<LlamaToken>> {
    let prompt = chat_prompt(model, &request.system_prompt, &request.user_prompt)?;
    let tokens = model.vocab().tokenize(prompt.as_bytes(), true, true);
    let n_ctx = ctx.n_ctx() as usize;
    if tokens.len() + request.max_tokens as usize > n_ctx {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "a prompt of {} tokens and max_tokens = {} do not fit the text model's context of {n_ctx}",
                tokens.len(),
                request.max_tokens
            ),
        ));
    }
    Ok(tokens)
}

/// A matcher for output conforming to `schema`; `Config` when it cannot be compiled.
fn schema_matcher(factory: &ParserFactory, schema: &serde_json::Value) -> Result<Matcher> {
    let grammar = TopLevelGrammar::from_json_schema(compact_json_grammar(schema));
    let parser = factory.create_parser(grammar).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("schema cannot be compiled to a grammar: {e}"),
        )
    })?;
    Ok(Matcher::new(Ok(parser)))
}

/// The prompt decoded into an emptied context, in batches, with logits for its last token
/// only (the last batch's last entry); returns the positions filled and that batch.
fn prefill(ctx: &mut LlamaContext<'_>, tokens: &[LlamaToken]) -> Result<(i32, LlamaBatch<'static>)> {
    ctx.clear_kv_cache();
    let mut n_past = 0i32;
    let mut batch = LlamaBatch::new(N_BATCH as usize, 1);
    for (i, chunk) in tokens.chunks(N_BATCH as usize).enumerate() {
        batch.clear();
        let last_chunk = (i + 1) * N_BATCH as usize >= tokens.len();
        for (k, &t) in chunk.iter().enumerate() {
            batch
                .add(t, n_past + k as i32, &[0], last_chunk && k + 1 == chunk.len())
                .map_err(|e| internal("batch", e))?;
        }
        ctx.decode(&mut batch).map_err(|e| internal("prefill", e))?;
        n_past += chunk.len() as i32;
    }
    Ok((n_past, batch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_one_byte_is_noticed_only_at_its_full_length() {
        let mut out = b"{\"total\":9.".to_vec();
        out.extend(std::iter::repeat_n(b'0', MAX_RUN - 1));
        assert_eq!(runaway_byte(&out), None);
        out.push(b'0');
        assert_eq!(runaway_byte(&out), Some(b'0'));
        assert_eq!(runaway_byte(b"00"), None);
    }
}
