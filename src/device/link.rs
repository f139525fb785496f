//! The TUN's link state as the device last saw it, and how often the link
//! came up: the admin plane re-runs its self test when the link came back
//! (a test that overlapped a down link says nothing about the node now).
//!
//! The timer thread looks every [`super::timers::HOUSEKEEPING`]; anyone who
//! asks [`super::Device::link_state`] looks at once, and what they see
//! counts too, so a flap is noticed as soon as someone looks.
use crate::io::LinkState;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

#[derive(Debug, Default)]
pub struct LinkMonitor {
    /// The last state seen: 0 none yet, else [`code`].
    last: AtomicU8,
    /// Times the link was seen up after having been seen down (or not up).
    ups: AtomicU64,
}

fn code(s: LinkState) -> u8 {
    match s {
        LinkState::Up => 1,
        LinkState::Down => 2,
        LinkState::Gone => 3,
    }
}

impl LinkMonitor {
    /// Records a look at the link; returns it.
    pub fn observe(&self, state: LinkState) -> LinkState {
        let prev = self.last.swap(code(state), Ordering::AcqRel);
        if state == LinkState::Up && prev != code(LinkState::Up) {
            self.ups.fetch_add(1, Ordering::AcqRel);
        }
        state
    }

    /// How many times the link came up (the first look at an up link
    /// counts): changes whenever the link came back since an earlier read.
    pub fn ups(&self) -> u64 {
        self.ups.load(Ordering::Acquire)
    }

    /// The last state seen (None before the first look).
    pub fn last(&self) -> Option<LinkState> {
        match self.last.load(Ordering::Acquire) {
            1 => Some(LinkState::Up),
            2 => Some(LinkState::Down),
            3 => Some(LinkState::Gone),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_return_of_the_link() {
        let m = LinkMonitor::default();
        assert_eq!(m.last(), None);
        m.observe(LinkState::Down);
        assert_eq!(m.ups(), 0);
        m.observe(LinkState::Up);
        m.observe(LinkState::Up);
        assert_eq!(m.ups(), 1);
        m.observe(LinkState::Down);
        m.observe(LinkState::Down);
        assert_eq!(m.ups(), 1);
        assert_eq!(m.last(), Some(LinkState::Down));
        m.observe(LinkState::Up);
        assert_eq!(m.ups(), 2);
        m.observe(LinkState::Gone);
        assert_eq!(m.last(), Some(LinkState::Gone));
        assert_eq!(m.ups(), 2);
    }

    #[test]
    fn an_up_link_at_the_first_look_counts_once() {
        let m = LinkMonitor::default();
        m.observe(LinkState::Up);
        m.observe(LinkState::Up);
        assert_eq!(m.ups(), 1);
    }
}
