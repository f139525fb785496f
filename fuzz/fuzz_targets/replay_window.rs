//! The replay window against a naive model (differential): a set of every
//! counter accepted and the largest one. A counter is fresh when it is below
//! REJECT_AFTER_MESSAGES, no more than COUNTER_WINDOW_SIZE behind the
//! largest accepted, and not accepted before.
#![no_main]
use libfuzzer_sys::fuzz_target;
use phantommesh::noise::constants::REJECT_AFTER_MESSAGES;
use phantommesh::noise::replay::{ReplayWindow, COUNTER_WINDOW_SIZE};
use std::collections::HashSet;

#[derive(Default)]
struct Model {
    seen: HashSet<u64>,
    /// One past the largest accepted counter (0: none yet).
    next: u64,
}

impl Model {
    fn fresh(&self, c: u64) -> bool {
        c < REJECT_AFTER_MESSAGES
            && c + 1 + COUNTER_WINDOW_SIZE >= self.next
            && !self.seen.contains(&c)
    }
    fn mark(&mut self, c: u64) -> bool {
        if !self.fresh(c) {
            return false;
        }
        self.seen.insert(c);
        self.next = self.next.max(c + 1);
        true
    }
}

fuzz_target!(|ops: Vec<(u8, u16)>| {
    let mut w = ReplayWindow::new();
    let mut m = Model::default();
    let mut last = 0u64;
    for (op, arg) in ops {
        let arg = u64::from(arg);
        // Counters near the last one (both ways), far jumps and the edges.
        let c = match op % 8 {
            0 => last.wrapping_add(arg),
            1 => last.saturating_sub(arg),
            2 => last.wrapping_add(arg << 4),
            3 => last.saturating_sub(arg % 64 + COUNTER_WINDOW_SIZE - 32),
            4 => REJECT_AFTER_MESSAGES
                .wrapping_sub(arg % 4096)
                .wrapping_add(2048),
            5 => arg.wrapping_mul(0x1_0000_0001),
            6 => last
                .wrapping_add(COUNTER_WINDOW_SIZE + arg % 128)
                .wrapping_sub(64),
            _ => arg,
        };
        let want = m.fresh(c);
        assert_eq!(w.can_accept(c), want, "can_accept({c}) next={}", m.next);
        if op & 0x80 != 0 {
            // A check without marking: the next mark must agree again.
            continue;
        }
        let got = w.check_and_mark(c);
        assert_eq!(got, m.mark(c), "check_and_mark({c}) next={}", m.next);
        last = c;
    }
});
