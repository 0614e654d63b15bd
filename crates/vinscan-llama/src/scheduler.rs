//! Several pages in one llama.cpp context. Each page in flight owns a sequence id; its prompt
//! (vision encode + prefill) runs alone, compute-bound, and then its output tokens share one
//! `llama_decode` per step with every other page's, so the weights are read once per step for
//! all of them. How much that saves depends on the machine: where one token's step is bound by
//! reading the weights (GPUs, many cores) a step for four pages costs little more than one; on
//! 2 CPU cores each further token in a step still costs about a third of a lone token's step
//! (`VINSCAN_LOG=vinscan_llama=trace` logs every step). The prompt prefix pages share (the
//! system message) lives in a sequence of its own and is copied, not recomputed. Sampling is
//! greedy under the llguidance matcher; tokens the grammar forces are fed without a step each.

use std::collections::VecDeque;
use std::sync::mpsc::{self, TryRecvError};
use std::time::Instant;

use llama_cpp_2::DecodeError;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llguidance::Matcher;
use llguidance::api::TopLevelGrammar;
use vinscan_core::{
    Error, ErrorKind, GenerateRequest, Generation, ModelTimings, OutputConstraint, StopReason,
};

use crate::page::{Active, Reply, accept, internal, ms, next_token};
use crate::prompt::{Prepared, compact_json_grammar, prepare};
use crate::sampling::{Penalty, Policy};
use crate::session::{MAX_PARALLEL, N_BATCH, Session};
use crate::{Command, LlamaConfig};

/// KV cells kept free for llama.cpp's slot search when pages are admitted.
const KV_SLACK: u32 = 512;
/// The grammar of a free-text read (a transcription): any UTF-8 text, newlines included.
const FREE_TEXT: &str = "(?s:.*)";

/// Output cells a page is admitted with. Pages are admitted on their prompt plus this much output,
/// not their whole `max_tokens` budget (6,144 for the shipped pipelines would let one page in at
/// a time); a page that outgrows the cells left preempts the page admitted last, which goes back
/// to the head of the queue and starts again.
const OUTPUT_RESERVE: u32 = 1024;

/// A request tokenised and waiting for a sequence slot.
struct Waiting {
    request: Box<GenerateRequest>,
    reply: Reply,
    since: Instant,
    restarts: u32,
    prepared: Option<Prepared>,
}

pub(crate) struct Scheduler {
    parallel: usize,
    fast_forward: bool,
    reuse_prefix: bool,
    /// Forced tokens fed per page per step, so a step's batch stays within `N_BATCH`.
    forced_cap: usize,
    waiting: VecDeque<Waiting>,
    active: Vec<Active>,
    free: Vec<i32>,
    prefix_seq: i32,
    /// The tokens whose cells `prefix_seq` holds.
    prefix: Vec<LlamaToken>,
    admissions: u64,
}

impl Scheduler {
    pub(crate) fn new(config: &LlamaConfig) -> Self {
        let parallel = config.parallel.clamp(1, MAX_PARALLEL) as i32;
        Self {
            parallel: parallel as usize,
            fast_forward: config.fast_forward,
            reuse_prefix: config.reuse_prefix,
            forced_cap: (N_BATCH as usize / parallel as usize).saturating_sub(1).min(256),
            waiting: VecDeque::new(),
            active: Vec::new(),
            free: (0..parallel).rev().collect(),
            prefix_seq: parallel,
            prefix: Vec::new(),
            admissions: 0,
        }
    }

    /// Answers every request in flight or waiting with an error.
    pub(crate) fn fail_all(&mut self, err: impl Fn() -> Error) {
        for a in self.active.drain(..) {
            let _ = a.reply.send(Err(err()));
        }
        for w in self.waiting.drain(..) {
            let _ = w.reply.send(Err(err()));
        }
    }

    /// Serves until the command channel closes and the work in hand is done. `Err` when the
    /// engine cannot go on (a `llama_decode` failure that is no page's fault): the pages in that
    /// step have been answered `Unavailable`, the rest are the caller's to answer.
    pub(crate) fn run(
        &mut self,
        s: &mut Session<'_>,
        model: &LlamaModel,
        commands: &mpsc::Receiver<Command>,
    ) -> std::result::Result<(), String> {
        let mut open = true;
        loop {
            if self.active.is_empty() && self.waiting.is_empty() {
                if !open {
                    return Ok(());
                }
                match commands.recv() {
                    Ok(c) => self.enqueue(c),
                    Err(_) => return Ok(()),
                }
            }
            while open {
                match commands.try_recv() {
                    Ok(c) => self.enqueue(c),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            self.drop_cancelled(s);
            self.admit(s, model);
            if !self.active.is_empty() {
                self.step(s, model)?;
            }
        }
    }

    /// Answers `Cancelled` to every page whose caller raised its cancellation, waiting or in
    /// flight, and frees what they held: checked before every step, so a cancelled page stops
    /// within one step (a vision encode under way is not interrupted).
    fn drop_cancelled(&mut self, s: &mut Session<'_>) {
        let cancelled = |r: &GenerateRequest| r.cancel.is_cancelled();
        let err = || Error::new(ErrorKind::Cancelled, "generation cancelled by the caller");
        let (gone, kept): (Vec<Waiting>, Vec<Waiting>) =
            self.waiting.drain(..).partition(|w| cancelled(&w.request));
        self.waiting = kept.into();
        for w in gone {
            let _ = w.reply.send(Err(err()));
        }
        let mut i = 0;
        while i < self.active.len() {
            if cancelled(&self.active[i].request) {
                let a = self.active.swap_remove(i);
                self.release(s, a.seq);
                tracing::debug!(seq = a.seq, generated = a.generated, "page cancelled");
                let _ = a.reply.send(Err(err()));
            } else {
                i += 1;
            }
        }
    }

    fn enqueue(&mut self, command: Command) {
        match command {
            Command::Generate(request, reply) => self.waiting.push_back(Waiting {
                request,
                reply,
                since: Instant::now(),
                restarts: 0,
                prepared: None,
            }),
        }
    }

    /// KV cells in use or promised.
    fn cells_promised(&self) -> u32 {
        self.prefix.len() as u32
            + self
                .active
                .iter()
                .map(|a| a.own_cells().max(a.reserve))
                .sum::<u32>()
    }

    /// KV cells in use once the queued tokens are decoded.
    fn cells_next_step(&self) -> u32 {
        self.prefix.len() as u32 + self.active.iter().map(Active::own_cells).sum::<u32>()
    }

    /// Stops the page admitted last and puts it back at the head of the queue.
    fn preempt_newest(&mut self, s: &mut Session<'_>) {
        let Some(i) = (0..self.active.len()).max_by_key(|&i| self.active[i].admitted) else {
            return;
        };
        let a = self.active.swap_remove(i);
        tracing::warn!(
            generated = a.generated,
            in_flight = self.active.len(),
            "KV cells exhausted: a page starts again later (raise --ctx-size or lower --parallel)"
        );
        self.release(s, a.seq);
        self.waiting.push_front(Waiting {
            request: a.request,
            reply: a.reply,
            since: a.since,
            restarts: a.restarts + 1,
            prepared: None,
        });
    }

    /// Starts waiting pages while sequence slots and KV cells allow; always starts (or answers)
    /// one when nothing is in flight, so the loop cannot stall.
    fn admit(&mut self, s: &mut Session<'_>, model: &LlamaModel) {
        let n_ctx = s.ctx.n_ctx();
        while self.active.len() < self.parallel {
            let Some(w) = self.waiting.front_mut() else { break };
            if w.request.cancel.is_cancelled() {
                // raised while earlier pages were admitted: no vision encode for it
                if let Some(w) = self.waiting.pop_front() {
                    let _ = w.reply.send(Err(Error::new(
                        ErrorKind::Cancelled,
                        "generation cancelled by the caller",
                    )));
                }
                continue;
            }
            if w.prepared.is_none() {
                match prepare(s, &w.request, self.reuse_prefix) {
                    Ok(p) => w.prepared = Some(p),
                    Err(e) => {
                        if let Some(w) = self.waiting.pop_front() {
                            let _ = w.reply.send(Err(e));
                        }
                        continue;
                    }
                }
            }
            let Some(p) = w.prepared.as_ref() else { break };
            if p.prompt_tokens + 1 >= n_ctx {
                let e = Error::new(
                    ErrorKind::Config,
                    format!(
                        "the page needs {} prompt tokens but the context holds {n_ctx}; raise --ctx-size or lower the pipeline's max tiles",
                        p.prompt_tokens
                    ),
                );
                if let Some(w) = self.waiting.pop_front() {
                    let _ = w.reply.send(Err(e));
                }
                continue;
            }
            let budget = w.request.max_tokens.min(n_ctx - p.prompt_tokens - 1);
            let shared = match &p.prefix {
                Some((_, tokens)) if *tokens == self.prefix => tokens.len() as u32,
                _ => 0,
            };
            let reserve = p.prompt_tokens - shared + budget.min(OUTPUT_RESERVE);
            if !self.active.is_empty() && self.cells_promised() + reserve + KV_SLACK > n_ctx {
                break;
            }
            let Some(seq) = self.free.pop() else { break };
            let Some(w) = self.waiting.pop_front() else {
                self.free.push(seq);
                break;
            };
            self.admissions += 1;
            match self.start(s, model, w, seq, budget, reserve) {
                Ok(Some(a)) => self.active.push(a),
                Ok(None) => {}
                Err((reply, e)) => {
                    self.release(s, seq);
                    let _ = reply.send(Err(e));
                }
            }
        }
    }

    fn policy(&self) -> Policy {
        Policy {
            fast_forward: self.fast_forward,
            forced_cap: self.forced_cap,
        }
    }

    fn release(&mut self, s: &mut Session<'_>, seq: i32) {
        let _ = s.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
        self.free.push(seq);
    }

    /// Puts the shared prompt prefix's KV cells into `seq`: computed once into the prefix
    /// sequence when it changes, then copied. Returns (positions filled, tokens reused from an
    /// earlier page, positions shared).
    fn share_prefix(
        &mut self,
        s: &mut Session<'_>,
        p: &Prepared,
        seq: i32,
    ) -> vinscan_core::Result<(i32, u32, u32)> {
        let Some((chunks, tokens)) = &p.prefix else {
            return Ok((0, 0, 0));
        };
        let mut reused = 0;
        if *tokens != self.prefix {
            let _ = s.ctx.clear_kv_cache_seq(Some(self.prefix_seq as u32), None, None);
            self.prefix.clear();
            chunks
                .eval_chunks(&mut s.mtmd, &mut s.ctx, 0, self.prefix_seq, N_BATCH as i32, false)
                .map_err(|e| internal("prompt prefix prefill", e))?;
            self.prefix = tokens.clone();
        } else {
            reused = tokens.len() as u32;
        }
        s.ctx
            .copy_kv_cache_seq(self.prefix_seq, seq, None, None)
            .map_err(|e| internal("prompt prefix copy", e))?;
        Ok((tokens.len() as i32, reused, tokens.len() as u32))
    }

    /// Encodes the page and prefills its prompt into `seq`, then samples its first token.
    /// `Ok(None)`: the page finished at once and was answered.
    fn start(
        &mut self,
        s: &mut Session<'_>,
        model: &LlamaModel,
        w: Waiting,
        seq: i32,
        budget: u32,
        reserve: u32,
    ) -> std::result::Result<Option<Active>, (Reply, Error)> {
        let Waiting {
            request,
            reply,
            since,
            restarts,
            prepared,
        } = w;
        let Some(p) = prepared else {
            return Err((
                reply,
                internal("scheduler", "page started before it was tokenised"),
            ));
        };
        let started = Instant::now();
        let queue_ms = (started - since).as_secs_f64() * 1e3;
        let grammar = match &request.output {
            OutputConstraint::JsonSchema(schema) => {
                TopLevelGrammar::from_json_schema(compact_json_grammar(schema))
            }
            // any text: the matcher then masks nothing and forces nothing
            OutputConstraint::FreeText => TopLevelGrammar::from_regex(FREE_TEXT),
        };
        let parser = match s.factory.create_parser(grammar) {
            Ok(p) => p,
            Err(e) => {
                return Err((
                    reply,
                    Error::new(
                        ErrorKind::Config,
                        format!("schema cannot be compiled to a grammar: {e}"),
                    ),
                ));
            }
        };
        let (n_past, reused, shared) = match self.share_prefix(s, &p, seq) {
            Ok(positions) => positions,
            Err(e) => return Err((reply, e)),
        };
        let n_past = match p
            .rest
            .eval_chunks(&mut s.mtmd, &mut s.ctx, n_past, seq, N_BATCH as i32, true)
        {
            Ok(n) => n,
            Err(e) => return Err((reply, internal("vision encode and prefill", e))),
        };
        let penalty = Penalty::new(
            request.repeat_penalty,
            request.repeat_last_n,
            s.n_vocab.max(0) as usize,
        );
        let mut a = Active {
            seq,
            reply,
            request,
            since,
            admitted: self.admissions,
            restarts,
            shared,
            matcher: Matcher::new(Ok(parser)),
            penalty,
            n_past,
            budget,
            reserve,
            pending: Vec::new(),
            logits: -1,
            out: Vec::new(),
            tokens: Vec::new(),
            generated: 0,
            steps: 0,
            forced: 0,
            peak: 1,
            prompt_tokens: p.prompt_tokens,
            image_tokens: p.image_tokens,
            images: p.images,
            reused,
            queue_ms,
            encode_prefill_ms: ms(started),
            gen_started: Instant::now(),
            sample_ms: 0.0,
            confidence_ms: 0.0,
            step_share_ms: 0.0,
        };
        if budget == 0 {
            self.finish(s, a, StopReason::MaxTokens);
            return Ok(None);
        }
        // the output's opening is usually forced (`{"key":`): fed at the next step, else the
        // first token comes from the prefill's logits
        let t = Instant::now();
        let opening = accept(self.policy(), model, &mut a, None);
        a.sample_ms += ms(t);
        let first = match opening {
            Ok(None) if a.pending.is_empty() => next_token(self.policy(), s, model, &mut a),
            other => other,
        };
        match first {
            Ok(None) => Ok(Some(a)),
            Ok(Some(stop)) => {
                self.finish(s, a, stop);
                Ok(None)
            }
            Err(e) => Err((a.reply, e)),
        }
    }

    /// One `llama_decode` for the queued tokens of every page in flight, then a token each.
    /// `Err` when `llama_decode` fails for no page's fault: the engine is broken.
    fn step(&mut self, s: &mut Session<'_>, model: &LlamaModel) -> std::result::Result<(), String> {
        let n_ctx = s.ctx.n_ctx();
        while self.active.len() > 1 && self.cells_next_step() + KV_SLACK / 2 > n_ctx {
            self.preempt_newest(s);
        }
        let total: usize = self.active.iter().map(|a| a.pending.len()).sum();
        let pages = self.active.len() as u32;
        let mut batch = LlamaBatch::new(total.max(1), self.active.len() as i32);
        let mut added = Ok(());
        let mut last_index = Vec::with_capacity(self.active.len());
        for a in &self.active {
            let n = a.pending.len();
            for (k, &t) in a.pending.iter().enumerate() {
                if let Err(e) = batch.add(t, a.n_past + k as i32, &[a.seq], k + 1 == n) {
                    added = Err(e);
                }
            }
            last_index.push(batch.n_tokens() - 1);
        }
        let decode_started = Instant::now();
        let decoded = match added {
            Err(e) => Err(internal("batch", e)),
            Ok(()) => match s.ctx.decode(&mut batch) {
                Ok(()) => Ok(()),
                Err(DecodeError::NoKvCacheSlot) if self.active.len() > 1 => {
                    // fragmented cells: make room and try the step again
                    self.preempt_newest(s);
                    return Ok(());
                }
                // one page that cannot fit the context is that page's failure
                Err(e @ DecodeError::NoKvCacheSlot) => Err(internal("decode", e)),
                // anything else (a compute or backend error) is the engine's, not the pages'
                Err(e) => {
                    let why = format!("llama_decode failed: {e}");
                    tracing::error!(error = %why, pages = self.active.len(), "the engine cannot go on");
                    for a in std::mem::take(&mut self.active) {
                        self.release(s, a.seq);
                        let _ = a.reply.send(Err(Error::new(ErrorKind::Unavailable, why.clone())));
                    }
                    return Err(why);
                }
            },
        };
        if let Err(e) = decoded {
            tracing::error!(error = %e, pages = self.active.len(), "llama_decode failed: failing the pages in flight");
            for a in std::mem::take(&mut self.active) {
                self.release(s, a.seq);
                let _ = a.reply.send(Err(e.clone()));
            }
            return Ok(());
        }
        let decode_ms = ms(decode_started);
        let sample_started = Instant::now();
        for (a, index) in self.active.iter_mut().zip(last_index) {
            a.step_share_ms += decode_ms * a.pending.len() as f64 / total.max(1) as f64;
            a.n_past += a.pending.len() as i32;
            a.pending.clear();
            a.logits = index;
            a.peak = a.peak.max(pages);
        }
        let mut i = 0;
        while i < self.active.len() {
            let policy = self.policy();
            let a = &mut self.active[i];
            match next_token(policy, s, model, a) {
                Ok(None) => i += 1,
                Ok(Some(stop)) => {
                    let a = self.active.swap_remove(i);
                    self.finish(s, a, stop);
                }
                Err(e) => {
                    let a = self.active.swap_remove(i);
                    self.release(s, a.seq);
                    let _ = a.reply.send(Err(e));
                }
            }
        }
        tracing::trace!(
            pages,
            tokens = total,
            decode_ms,
            sample_ms = ms(sample_started),
            "model step"
        );
        Ok(())
    }

    fn finish(&mut self, s: &mut Session<'_>, a: Active, stop: StopReason) {
        self.release(s, a.seq);
        let generate_ms = ms(a.gen_started);
        let result = crate::page::output_text(a.out, stop).map(|text| Generation {
            text,
            stop,
            prompt_tokens: a.prompt_tokens,
            image_tokens: a.image_tokens,
            images: a.images,
            generated_tokens: a.generated,
            model_steps: a.steps,
            forced_tokens: a.forced,
            reused_prompt_tokens: a.reused,
            peak_batch_pages: a.peak,
            restarts: a.restarts,
            tokens: a.tokens,
            timings: ModelTimings {
                encode_prefill_ms: a.encode_prefill_ms,
                generate_ms,
                sample_ms: a.sample_ms,
                step_share_ms: a.step_share_ms,
                queue_ms: a.queue_ms,
                confidence_ms: a.confidence_ms,
            },
        });
        tracing::debug!(
            seq = a.seq,
            prompt_tokens = a.prompt_tokens,
            generated = a.generated,
            model_steps = a.steps,
            encode_prefill_ms = a.encode_prefill_ms,
            generate_ms,
            sample_ms = a.sample_ms,
            step_share_ms = a.step_share_ms,
            "page done"
        );
        let _ = a.reply.send(result);
    }
}
