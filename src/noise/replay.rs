//! The sliding replay window (RFC 6479 bitmap, 8192 bits, window 8128).

pub struct ReplayWindow {
    // owner: fill in
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    pub fn new() -> Self {
        todo!()
    }
    /// True when `counter` may still be accepted (not too old, not seen).
    /// Does not mark it: call before decrypting to drop junk cheaply.
    pub fn can_accept(&self, counter: u64) -> bool {
        let _ = counter;
        todo!()
    }
    /// Marks `counter` as received; false if it was a replay or too old or
    /// >= REJECT_AFTER_MESSAGES. Call only after authentication succeeded.
    pub fn check_and_mark(&mut self, counter: u64) -> bool {
        let _ = counter;
        todo!()
    }
}
