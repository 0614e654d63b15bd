//! Choosing each output token: greedy over the tokens the grammar allows, with llama.cpp's
//! repetition penalty; and how tokens are fed (the fast-forward of forced tokens).

use std::collections::VecDeque;

use llguidance::toktrie::SimpleVob;

/// llama.cpp's repetition penalty over the last `last_n` output tokens.
pub(crate) struct Penalty {
    value: f32,
    last_n: usize,
    history: VecDeque<u32>,
    counts: Vec<u16>,
}

impl Penalty {
    pub(crate) fn new(value: f32, last_n: u32, n_vocab: usize) -> Self {
        let on = value > 1.0 && last_n > 0;
        Self {
            value,
            last_n: last_n as usize,
            history: VecDeque::new(),
            counts: if on { vec![0; n_vocab] } else { Vec::new() },
        }
    }

    pub(crate) fn push(&mut self, token: u32) {
        if self.counts.is_empty() || token as usize >= self.counts.len() {
            return;
        }
        if self.history.len() == self.last_n
            && let Some(old) = self.history.pop_front()
        {
            self.counts[old as usize] = self.counts[old as usize].saturating_sub(1);
        }
        self.history.push_back(token);
        self.counts[token as usize] = self.counts[token as usize].saturating_add(1);
    }

    pub(crate) fn apply(&self, token: usize, logit: f32) -> f32 {
        match self.counts.get(token) {
            Some(c) if *c > 0 => {
                if logit <= 0.0 {
                    logit * self.value
                } else {
                    logit / self.value
                }
            }
            _ => logit,
        }
    }
}

/// Greedy choice among the tokens the grammar allows (the first of equal logits, as llama.cpp's
/// greedy sampler picks).
pub(crate) fn pick(logits: &[f32], mask: &SimpleVob, penalty: &Penalty) -> Option<u32> {
    let mut best: Option<(u32, f32)> = None;
    mask.iter_set_entries(|t| {
        let Some(&raw) = logits.get(t) else { return };
        let l = penalty.apply(t, raw);
        if best.is_none_or(|(_, b)| l > b) {
            best = Some((t as u32, l));
        }
    });
    best.map(|(t, _)| t)
}

/// The probability of `token` under the softmax of the penalised logits of the tokens `mask`
/// allows: the distribution the greedy choice was made from. `token` must be the greedy choice
/// (the largest penalised logit), so every term of the sum is at most 1 and none overflows.
pub(crate) fn probability(logits: &[f32], mask: &SimpleVob, penalty: &Penalty, token: u32) -> f32 {
    let Some(&raw) = logits.get(token as usize) else {
        return 0.0;
    };
    let chosen = penalty.apply(token as usize, raw);
    let mut sum = 0.0f64;
    mask.iter_set_entries(|t| {
        if let Some(&raw) = logits.get(t) {
            sum += f64::from(penalty.apply(t, raw) - chosen).exp();
        }
    });
    if sum > 0.0 { (1.0 / sum) as f32 } else { 0.0 }
}

/// How tokens are chosen and fed.
#[derive(Clone, Copy)]
pub(crate) struct Policy {
    pub(crate) fast_forward: bool,
    /// Forced tokens fed per page per step, so a step's batch stays within `N_BATCH`.
    pub(crate) forced_cap: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalty_divides_positive_and_multiplies_negative_logits_of_recent_tokens() {
        let mut p = Penalty::new(2.0, 2, 10);
        p.push(3);
        p.push(4);
        assert_eq!(p.apply(3, 4.0), 2.0);
        assert_eq!(p.apply(4, -1.0), -2.0);
        assert_eq!(p.apply(5, 4.0), 4.0);
        p.push(5); // 3 leaves the window of 2
        assert_eq!(p.apply(3, 4.0), 4.0);
        assert_eq!(p.apply(5, 4.0), 2.0);
    }

    #[test]
    fn penalty_of_one_is_off() {
        let mut p = Penalty::new(1.0, 64, 10);
        p.push(3);
        assert_eq!(p.apply(3, 4.0), 4.0);
    }

    #[test]
    fn probability_is_the_softmax_over_allowed_tokens_only() {
        let logits = [5.0, 1.0, 3.0, 3.0, 9.0];
        let mut mask = SimpleVob::alloc(5);
        for t in [1, 2, 3] {
            mask.allow_token(t);
        }
        let none = Penalty::new(1.0, 0, 5);
        // tokens 0 and 4 are not allowed: only e^1, e^3, e^3 share the mass
        let expected = (3.0f64.exp() / (1.0f64.exp() + 2.0 * 3.0f64.exp())) as f32;
        assert!((probability(&logits, &mask, &none, 2) - expected).abs() < 1e-6);
        let mut only = SimpleVob::alloc(5);
        only.allow_token(1);
        assert_eq!(
            probability(&logits, &only, &none, 1),
            1.0,
            "a forced choice is certain"
        );
        // the penalty changes the distribution the choice is made from
        let mut p = Penalty::new(2.0, 4, 5);
        p.push(2);
        let expected = (3.0f64.exp() / (1.0f64.exp() + 1.5f64.exp() + 3.0f64.exp())) as f32;
        assert!((probability(&logits, &mask, &p, 3) - expected).abs() < 1e-6);
    }

    #[test]
    fn pick_takes_the_best_allowed_token_and_the_first_of_ties() {
        let logits = [5.0, 1.0, 3.0, 3.0, 9.0];
        let mut mask = SimpleVob::alloc(5);
        for t in [1, 2, 3] {
            mask.allow_token(t);
        }
        let none = Penalty::new(1.0, 0, 5);
        assert_eq!(pick(&logits, &mask, &none), Some(2));
        let mut p = Penalty::new(2.0, 4, 5);
        p.push(2);
        assert_eq!(pick(&logits, &mask, &p), Some(3));
        assert_eq!(pick(&logits, &SimpleVob::alloc(5), &none), None);
    }
}
