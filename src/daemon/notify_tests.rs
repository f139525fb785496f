use super::*;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Records each message as sd_notify would send it ("A=1\nB=2\n").
#[derive(Clone, Default)]
struct Rec(Rc<RefCell<Vec<String>>>);

impl Sink for Rec {
    fn send(&mut self, states: &[NotifyState<'_>]) {
        let msg: String = states.iter().map(|s| format!("{s}\n")).collect();
        self.0.borrow_mut().push(msg);
    }
}

impl Rec {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

fn ok() -> Result<(), String> {
    Ok(())
}

fn notifier(watchdog: Option<Duration>) -> (Notifier<Rec>, Rec) {
    let rec = Rec::default();
    (Notifier::new(Some(rec.clone()), watchdog), rec)
}

#[test]
fn disabled_does_nothing_and_checks_nothing() {
    let mut n: Notifier<Rec> = Notifier::new(None, Some(Duration::from_secs(1)));
    assert!(!n.enabled());
    let t = Instant::now();
    for i in 0..30 {
        n.tick(
            t + Duration::from_millis(100 * i),
            || panic!("readiness evaluated"),
            || panic!("liveness evaluated"),
        );
    }
    n.reloading();
    n.reloaded("reloaded");
    n.stopping("stopping");
}

#[test]
fn ready_is_sent_once_when_readiness_first_passes() {
    let (mut n, rec) = notifier(None);
    let t = Instant::now();
    n.tick(t, || Err("self-test: not run yet".into()), ok);
    assert_eq!(rec.take(), ["STATUS=not ready: self-test: not run yet\n"]);
    // Same state: no repeat.
    n.tick(
        t + Duration::from_millis(100),
        || Err("self-test: not run yet".into()),
        ok,
    );
    assert!(rec.take().is_empty());
    assert!(!n.ready_sent());
    n.tick(t + Duration::from_millis(200), ok, ok);
    assert_eq!(rec.take(), ["READY=1\nSTATUS=ready\n"]);
    assert!(n.ready_sent());
    // Readiness lost and regained: STATUS follows, READY is not repeated.
    n.tick(
        t + Duration::from_millis(1300),
        || Err("tun: interface pm0 is down".into()),
        ok,
    );
    n.tick(t + Duration::from_millis(2400), ok, ok);
    assert_eq!(
        rec.take(),
        [
            "STATUS=not ready: tun: interface pm0 is down\n",
            "STATUS=ready\n"
        ]
    );
}

#[test]
fn readiness_is_rechecked_at_most_once_a_second_after_ready() {
    let (mut n, _rec) = notifier(None);
    let calls = Cell::new(0);
    let counted = || {
        calls.set(calls.get() + 1);
        Ok(())
    };
    let t = Instant::now();
    for i in 0..=30u64 {
        n.tick(t + Duration::from_millis(100 * i), counted, ok);
    }
    // At 0 (READY), then 1.0, 2.0 and 3.0 s.
    assert_eq!(calls.get(), 4);
}

#[test]
fn watchdog_pings_every_half_timeout_while_live() {
    let (mut n, rec) = notifier(Some(Duration::from_secs(2)));
    let t = Instant::now();
    let pings = |rec: &Rec| {
        rec.take()
            .iter()
            .filter(|m| m.contains("WATCHDOG=1"))
            .count()
    };
    n.tick(t, || Err("x".into()), ok);
    assert_eq!(pings(&rec), 1, "pinged at once, ready or not");
    n.tick(t + Duration::from_millis(900), || Err("x".into()), ok);
    assert_eq!(pings(&rec), 0, "not before 1 s");
    n.tick(t + Duration::from_millis(1000), || Err("x".into()), ok);
    assert_eq!(pings(&rec), 1);
    // Liveness failing: no ping, however long.
    for i in 1..=40u64 {
        n.tick(t + Duration::from_millis(1000 + 100 * i), ok, || {
            Err("packet-loops: no heartbeat".into())
        });
    }
    assert_eq!(pings(&rec), 0);
    // Live again: at once.
    n.tick(t + Duration::from_millis(5100), ok, ok);
    assert_eq!(pings(&rec), 1);
}

#[test]
fn no_watchdog_without_watchdog_usec() {
    for wd in [None, Some(Duration::ZERO)] {
        let (mut n, rec) = notifier(wd);
        let t = Instant::now();
        for i in 0..50u64 {
            n.tick(t + Duration::from_millis(100 * i), ok, || {
                panic!("liveness evaluated")
            });
        }
        assert!(rec.take().iter().all(|m| !m.contains("WATCHDOG")));
    }
}

#[test]
fn reload_is_framed_by_reloading_and_ready() {
    let (mut n, rec) = notifier(None);
    let t = Instant::now();
    n.tick(t, ok, ok);
    rec.take();
    n.reloading();
    n.reloaded("config reloaded, 3 peers");
    let msgs = rec.take();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs[0].starts_with("RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC="),
        "{msgs:?}"
    );
    assert_eq!(msgs[1], "READY=1\nSTATUS=ready; config reloaded, 3 peers\n");
    // The reload's outcome stays beside the readiness state.
    n.tick(
        t + Duration::from_millis(100),
        || Err("udp: no socket".into()),
        ok,
    );
    assert_eq!(
        rec.take(),
        ["STATUS=not ready: udp: no socket; config reloaded, 3 peers\n"]
    );
}

#[test]
fn reload_before_ready_does_not_claim_readiness() {
    let (mut n, rec) = notifier(None);
    n.tick(Instant::now(), || Err("config: not applied".into()), ok);
    rec.take();
    n.reloading();
    n.reloaded("reload failed: bad file");
    let msgs = rec.take();
    assert!(msgs.iter().all(|m| !m.contains("READY=1")), "{msgs:?}");
    assert_eq!(msgs[1], "STATUS=starting; reload failed: bad file\n");
}

#[test]
fn stopping_is_sent_once_and_then_nothing() {
    let (mut n, rec) = notifier(Some(Duration::from_secs(1)));
    let t = Instant::now();
    n.tick(t, ok, ok);
    rec.take();
    n.stopping("stopping: signal 15");
    n.stopping("again");
    n.tick(t + Duration::from_secs(5), ok, ok);
    assert_eq!(rec.take(), ["STOPPING=1\nSTATUS=stopping: signal 15\n"]);
}
