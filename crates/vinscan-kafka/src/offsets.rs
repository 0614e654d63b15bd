//! Per-partition offset bookkeeping for at-least-once delivery: offsets are handed out in
//! order, finish in any order, and the commit position only advances over a contiguous run of
//! finished offsets. A slow job holds back later offsets; nothing is ever committed past an
//! unfinished one. (Kafka commits the *next* offset to read: finishing 0, 1, 2 commits 3.)

use std::collections::BTreeSet;

#[derive(Debug, Clone, Default)]
pub struct PartitionOffsets {
    /// Next offset to commit (everything below it is finished).
    committed: Option<i64>,
    in_flight: BTreeSet<i64>,
    finished: BTreeSet<i64>,
}

impl PartitionOffsets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `offset` was taken from the partition. Offsets must increase.
    pub fn start(&mut self, offset: i64) {
        if self.committed.is_none() {
            self.committed = Some(offset);
        }
        self.in_flight.insert(offset);
    }

    /// Records that `offset`'s outcome (output or dead letter) is durable; returns the new
    /// commit position when it advanced.
    pub fn finish(&mut self, offset: i64) -> Option<i64> {
        if !self.in_flight.remove(&offset) {
            return None;
        }
        self.finished.insert(offset);
        let mut next = self.committed?;
        let before = next;
        // advance over finished offsets; skip gaps that were never started (compacted or
        // filtered offsets) only when nothing earlier is still in flight
        loop {
            if self.finished.remove(&next) {
                next += 1;
                continue;
            }
            match (self.in_flight.first(), self.finished.first()) {
                (Some(&f), _) if f <= next => break,
                (in_flight, Some(&done)) if done > next && in_flight.is_none_or(|&f| f > done) => {
                    next = done;
                }
                _ => break,
            }
        }
        self.committed = Some(next);
        (next != before).then_some(next)
    }

    /// The position to commit (all offsets below it are finished), if any offset was seen.
    pub fn committable(&self) -> Option<i64> {
        self.committed
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The partition was revoked: forget unfinished work (it will be redelivered to the new
    /// owner from the last commit).
    pub fn revoke(&mut self) -> Option<i64> {
        self.in_flight.clear();
        self.finished.clear();
        self.committed.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slow_job_holds_back_later_offsets() {
        let mut p = PartitionOffsets::new();
        for o in 10..14 {
            p.start(o);
        }
        assert_eq!(p.finish(11), None);
        assert_eq!(p.finish(12), None);
        assert_eq!(p.committable(), Some(10));
        assert_eq!(p.finish(10), Some(13));
        assert_eq!(p.finish(13), Some(14));
        assert_eq!(p.finish(13), None, "finishing twice changes nothing");
    }

    #[test]
    fn gaps_in_offsets_are_crossed() {
        let mut p = PartitionOffsets::new();
        for o in [5, 8, 9] {
            p.start(o);
        }
        assert_eq!(p.finish(5), Some(6));
        assert_eq!(p.finish(9), None);
        assert_eq!(p.finish(8), Some(10));
    }

    proptest! {
        /// Whatever order jobs finish in, the commit position never passes an unfinished
        /// offset, and once everything is finished it is one past the last offset.
        #[test]
        fn never_commits_past_unfinished(
            start in 0i64..1000,
            gaps in prop::collection::vec(1i64..4, 1..60),
            seed in any::<u64>(),
        ) {
            let mut offsets = Vec::new();
            let mut o = start;
            for g in &gaps {
                offsets.push(o);
                o += g;
            }
            let mut p = PartitionOffsets::new();
            for &o in &offsets {
                p.start(o);
            }
            let mut pending = offsets.clone();
            let mut rng = seed | 1;
            while !pending.is_empty() {
                rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
                let i = (rng % pending.len() as u64) as usize;
                let done = pending.swap_remove(i);
                p.finish(done);
                let c = p.committable().expect("position");
                if let Some(&min_pending) = pending.iter().min() {
                    prop_assert!(c <= min_pending, "committed {} past unfinished {}", c, min_pending);
                }
            }
            prop_assert_eq!(p.committable(), Some(offsets[offsets.len() - 1] + 1));
            prop_assert_eq!(p.in_flight(), 0);
        }
    }
}
