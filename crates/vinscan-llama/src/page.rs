//! One page being decoded: its state between steps, and how its next tokens are chosen and
//! queued under its grammar.

use std::time::Instant;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llguidance::Matcher;
use vinscan_core::{Error, ErrorKind, GenerateRequest, Generation, OutputToken, Result, StopReason};

use crate::sampling::{Penalty, Policy, pick, probability};
use crate::session::Session;

/// Where a page's answer goes.
pub(crate) type Reply = std::sync::mpsc::SyncSender<Result<Generation>>;

pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Internal, format!("{what}: {e}"))
}

pub(crate) fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// A read's output bytes as text. A read stopped at its token cap can end inside a character
/// (a token is one byte or a few): those trailing bytes are dropped, so a transcription cut
/// at its cap keeps what it read. Bytes that are not UTF-8 otherwise are `InvalidOutput`.
pub(crate) fn output_text(out: Vec<u8>, stop: StopReason) -> Result<String> {
    let invalid = || Error::new(ErrorKind::InvalidOutput, "model output is not valid UTF-8");
    match String::from_utf8(out) {
        Ok(text) => Ok(text),
        Err(e) if stop == StopReason::MaxTokens && e.utf8_error().error_len().is_none() => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).map_err(|_| invalid())
        }
        Err(_) => Err(invalid()),
    }
}

/// One page being decoded.
pub(crate) struct Active {
    pub(crate) seq: i32,
    pub(crate) reply: Reply,
    /// Kept so a preempted page can start again.
    pub(crate) request: Box<GenerateRequest>,
    pub(crate) since: Instant,
    /// Admission order: the highest is preempted first.
    pub(crate) admitted: u64,
    pub(crate) restarts: u32,
    /// Positions whose cells belong to the shared prefix sequence.
    pub(crate) shared: u32,
    pub(crate) matcher: Matcher,
    pub(crate) penalty: Penalty,
    pub(crate) n_past: i32,
    pub(crate) budget: u32,
    /// KV cells this page was admitted with beyond the shared prefix.
    pub(crate) reserve: u32,
    /// Tokens to feed at the next step: the sampled one and those the grammar forced after it.
    pub(crate) pending: Vec<LlamaToken>,
    /// Where this page's logits are in the last batch.
    pub(crate) logits: i32,
    pub(crate) out: Vec<u8>,
    /// Every output token's end in `out` and, when sampled, its probability.
    pub(crate) tokens: Vec<OutputToken>,
    pub(crate) generated: u32,
    pub(crate) steps: u32,
    pub(crate) forced: u32,
    pub(crate) peak: u32,
    pub(crate) prompt_tokens: u32,
    pub(crate) image_tokens: u32,
    pub(crate) images: u32,
    pub(crate) reused: u32,
    pub(crate) queue_ms: f64,
    pub(crate) encode_prefill_ms: f64,
    pub(crate) gen_started: Instant,
    pub(crate) sample_ms: f64,
    /// Of `sample_ms`, computing the chosen tokens' probabilities.
    pub(crate) confidence_ms: f64,
    /// This page's token-weighted share of its steps' decode time.
    pub(crate) step_share_ms: f64,
}

impl Active {
    /// Cells this page holds beyond the shared prefix, counting its queued tokens.
    pub(crate) fn own_cells(&self) -> u32 {
        (self.n_past as u32).saturating_sub(self.shared) + self.pending.len() as u32
    }
}

/// Samples `a`'s next token from its logits and queues it, with the tokens the grammar
/// forces after it. `Some` when the page is done.
pub(crate) fn next_token(
    policy: Policy,
    s: &Session<'_>,
    model: &LlamaModel,
    a: &mut Active,
) -> Result<Option<StopReason>> {
    let t = Instant::now();
    let logits = s.ctx.get_logits_ith(a.logits);
    let mask = a
        .matcher
        .compute_mask_or_eos()
        .map_err(|e| internal("grammar", e))?;
    let token = pick(logits, &mask, &a.penalty)
        .ok_or_else(|| Error::new(ErrorKind::InvalidOutput, "the grammar allows no further token"))?;
    let c = Instant::now();
    let p = probability(logits, &mask, &a.penalty, token);
    a.confidence_ms += ms(c);
    a.steps += 1;
    let stop = accept(policy, model, a, Some((token, p)))?;
    a.sample_ms += ms(t);
    Ok(stop)
}

/// Queues `token` (sampled, with its probability; `None` at the start of the output) and the
/// tokens the grammar forces after it.
pub(crate) fn accept(
    policy: Policy,
    model: &LlamaModel,
    a: &mut Active,
    token: Option<(u32, f32)>,
) -> Result<Option<StopReason>> {
    let vocab = model.vocab();
    a.pending.clear();
    let feed = |a: &mut Active, t: u32, probability: Option<f32>| {
        a.penalty.push(t);
        a.out
            .extend(vocab.token_to_piece(LlamaToken(t as i32), false, None));
        a.tokens.push(OutputToken {
            end: a.out.len() as u32,
            probability,
        });
        a.pending.push(LlamaToken(t as i32));
        a.generated += 1;
    };
    if let Some((token, p)) = token {
        if vocab.is_eog(LlamaToken(token as i32)) {
            return Ok(Some(StopReason::EndOfOutput));
        }
        a.matcher
            .consume_token(token)
            .map_err(|e| internal("grammar", e))?;
        feed(a, token, Some(p));
    }
    if policy.fast_forward && a.generated < a.budget && !a.matcher.is_stopped() {
        let forced = a.matcher.compute_ff_tokens();
        let take = forced
            .len()
            .min((a.budget - a.generated) as usize)
            .min(policy.forced_cap);
        if take > 0 {
            a.matcher
                .consume_tokens(&forced[..take])
                .map_err(|e| internal("grammar", e))?;
            for &t in &forced[..take] {
                feed(a, t, None);
            }
            a.forced += take as u32;
        }
    }
    if a.matcher.is_error() {
        return Err(internal("grammar", a.matcher.get_error().unwrap_or_default()));
    }
    // the grammar is complete and allows nothing more: no step to sample the end token
    if a.matcher.is_stopped() {
        return Ok(Some(StopReason::EndOfOutput));
    }
    if a.generated >= a.budget {
        return Ok(Some(StopReason::MaxTokens));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_by_the_token_cap_is_dropped_and_nothing_else() {
        // "Đà" is C4 90 C3 A0: cut after C3
        let cut = vec![0xC4, 0x90, 0xC3];
        assert_eq!(output_text(cut.clone(), StopReason::MaxTokens).expect("cut"), "Đ");
        // an output that ended by itself must be whole
        assert!(output_text(cut, StopReason::EndOfOutput).is_err());
        // a bad byte in the middle is not a cut
        let bad = vec![b'a', 0xFF, b'b'];
        assert_eq!(
            output_text(bad, StopReason::MaxTokens).map_err(|e| e.kind()),
            Err(ErrorKind::InvalidOutput)
        );
        assert_eq!(
            output_text("Đà".as_bytes().to_vec(), StopReason::EndOfOutput).expect("whole"),
            "Đà"
        );
    }
}
