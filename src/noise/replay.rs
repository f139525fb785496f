//! The sliding replay window (RFC 6479 bitmap, 8192 bits, window 8128).
//!
//! Same semantics as the kernel's `counter_validate` (receive.c): the bitmap
//! is a ring of 64-bit words; moving forward clears whole words instead of
//! shifting bits, so the usable window is one word short of the bitmap.
use super::constants::{COUNTER_BITS_TOTAL, REJECT_AFTER_MESSAGES};

const WORD_BITS: u64 = u64::BITS as u64;
const WORDS: usize = (COUNTER_BITS_TOTAL / WORD_BITS) as usize;
/// Counters this far behind the newest one are still accepted.
pub const COUNTER_WINDOW_SIZE: u64 = COUNTER_BITS_TOTAL - WORD_BITS;

pub struct ReplayWindow {
    /// One past the largest counter accepted so far (0: none yet), so that
    /// counter 0 needs no special case.
    next: u64,
    bitmap: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    pub fn new() -> Self {
        ReplayWindow {
            next: 0,
            bitmap: [0; WORDS],
        }
    }

    fn slot(shifted: u64) -> (usize, u64) {
        let word = ((shifted / WORD_BITS) as usize) & (WORDS - 1);
        (word, 1u64 << (shifted % WORD_BITS))
    }

    /// True when `counter` may still be accepted (not too old, not seen).
    /// Does not mark it: call before decrypting to drop junk cheaply.
    pub fn can_accept(&self, counter: u64) -> bool {
        if counter >= REJECT_AFTER_MESSAGES || self.next > REJECT_AFTER_MESSAGES {
            return false;
        }
        let shifted = counter + 1;
        if shifted + COUNTER_WINDOW_SIZE < self.next {
            return false;
        }
        if shifted > self.next {
            // Moving forward clears the target's word unless it is the current
            // word, whose bits above `next` are still clear: always fresh.
            return true;
        }
        let (word, bit) = Self::slot(shifted);
        self.bitmap[word] & bit == 0
    }

    /// Marks `counter` as received; false if it was a replay or too old or
    /// >= REJECT_AFTER_MESSAGES. Call only after authentication succeeded.
    pub fn check_and_mark(&mut self, counter: u64) -> bool {
        if counter >= REJECT_AFTER_MESSAGES || self.next > REJECT_AFTER_MESSAGES {
            return false;
        }
        // No overflow: counter < REJECT_AFTER_MESSAGES = 2^64 - 2^13 - 1.
        let shifted = counter + 1;
        if shifted + COUNTER_WINDOW_SIZE < self.next {
            return false;
        }
        if shifted > self.next {
            let current = self.next / WORD_BITS;
            let target = shifted / WORD_BITS;
            let clear = (target - current).min(WORDS as u64);
            for i in 1..=clear {
                self.bitmap[((current + i) as usize) & (WORDS - 1)] = 0;
            }
            self.next = shifted;
        }
        let (word, bit) = Self::slot(shifted);
        let fresh = self.bitmap[word] & bit == 0;
        self.bitmap[word] |= bit;
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Marks and cross-checks that `can_accept` predicted the outcome.
    fn t(w: &mut ReplayWindow, n: u64) -> bool {
        let predicted = w.can_accept(n);
        let got = w.check_and_mark(n);
        assert_eq!(predicted, got, "can_accept disagrees for {n}");
        got
    }

    #[test]
    fn window_size_is_8128() {
        assert_eq!(COUNTER_WINDOW_SIZE, 8128);
    }

    /// The 34 cases of the kernel's selftest/counter.c, in order.
    #[test]
    fn kernel_selftest_table() {
        const LIM: u64 = COUNTER_WINDOW_SIZE + 1;
        const R: u64 = REJECT_AFTER_MESSAGES;
        let table: [(u64, bool); 34] = [
            (0, true),
            (1, true),
            (1, false),
            (9, true),
            (8, true),
            (7, true),
            (7, false),
            (LIM, true),
            (LIM - 1, true),
            (LIM - 1, false),
            (LIM - 2, true),
            (2, true),
            (2, false),
            (LIM + 16, true),
            (3, false),
            (LIM + 16, false),
            (LIM * 4, true),
            (LIM * 4 - (LIM - 1), true),
            (10, false),
            (LIM * 4 - LIM, false),
            (LIM * 4 - (LIM + 1), false),
            (LIM * 4 - (LIM - 2), true),
            (LIM * 4 + 1 - LIM, false),
            (0, false),
            (R, false),
            (R - 1, true),
            (R, false),
            (R - 1, false),
            (R - 2, true),
            (R + 1, false),
            (R + 2, false),
            (R - 2, false),
            (R - 3, true),
            (0, false),
        ];
        let mut w = ReplayWindow::new();
        for (i, (n, want)) in table.into_iter().enumerate() {
            assert_eq!(t(&mut w, n), want, "case {} (counter {n})", i + 1);
        }
    }

    /// The kernel's sweeps that follow the table.
    #[test]
    fn kernel_selftest_sweeps() {
        const W: u64 = COUNTER_WINDOW_SIZE;

        let mut w = ReplayWindow::new();
        for i in 1..=W {
            assert!(t(&mut w, i));
        }
        assert!(t(&mut w, 0));
        assert!(!t(&mut w, 0));

        let mut w = ReplayWindow::new();
        for i in 2..=W + 1 {
            assert!(t(&mut w, i));
        }
        assert!(t(&mut w, 1));
        assert!(!t(&mut w, 0));

        let mut w = ReplayWindow::new();
        for i in (0..=W).rev() {
            assert!(t(&mut w, i));
        }

        let mut w = ReplayWindow::new();
        for i in (1..=W + 1).rev() {
            assert!(t(&mut w, i));
        }
        assert!(!t(&mut w, 0));

        let mut w = ReplayWindow::new();
        for i in (1..=W).rev() {
            assert!(t(&mut w, i));
        }
        assert!(t(&mut w, W + 1));
        assert!(!t(&mut w, 0));

        let mut w = ReplayWindow::new();
        for i in (1..=W).rev() {
            assert!(t(&mut w, i));
        }
        assert!(t(&mut w, 0));
        assert!(t(&mut w, W + 1));
    }

    /// Every counter of a full window behind a far-ahead head: accepted once,
    /// rejected the second time; one more step back is out of the window.
    #[test]
    fn full_window_sweep_at_several_offsets() {
        const W: u64 = COUNTER_WINDOW_SIZE;
        for head in [W, W + 1, 3 * W + 17, 1 << 40, REJECT_AFTER_MESSAGES - 1] {
            let mut w = ReplayWindow::new();
            assert!(t(&mut w, head));
            for n in (head - W..head).rev() {
                assert!(t(&mut w, n), "head {head} n {n} first");
                assert!(!t(&mut w, n), "head {head} n {n} replay");
            }
            assert!(!t(&mut w, head));
            if head > W {
                assert!(!t(&mut w, head - W - 1), "head {head}: just out of window");
            }
            assert!(!t(&mut w, 0));
        }
    }

    #[test]
    fn big_jumps_clear_the_bitmap() {
        let mut w = ReplayWindow::new();
        for n in 0..100 {
            assert!(t(&mut w, n));
        }
        // Jump exactly one bitmap length ahead: every word is recycled.
        let far = 99 + COUNTER_BITS_TOTAL;
        assert!(t(&mut w, far));
        // Counters that alias old bits (same ring position) are fresh again.
        for n in far - 60..far {
            assert!(t(&mut w, n));
        }
        // A huge jump.
        assert!(t(&mut w, 1 << 50));
        assert!(!t(&mut w, far));
        assert!(t(&mut w, (1 << 50) - 1));
        assert!(t(&mut w, (1 << 50) - COUNTER_WINDOW_SIZE));
        assert!(!t(&mut w, (1 << 50) - COUNTER_WINDOW_SIZE - 1));
    }

    #[test]
    fn random_order_matches_naive_oracle() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6479);
        let mut w = ReplayWindow::new();
        let mut seen = std::collections::HashSet::new();
        let mut max: Option<u64> = None;
        let mut base = 0u64;
        for _ in 0..200_000 {
            if rng.gen_ratio(1, 1000) {
                base += rng.gen_range(0..20_000);
            }
            let n = base + rng.gen_range(0..9000);
            let in_window = match max {
                None => true,
                Some(m) => n + COUNTER_WINDOW_SIZE >= m,
            };
            let want = in_window && !seen.contains(&n);
            assert_eq!(t(&mut w, n), want, "counter {n}");
            if want {
                seen.insert(n);
                max = Some(max.map_or(n, |m| m.max(n)));
            }
        }
    }
}
