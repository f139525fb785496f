//! The self test follows the TUN's link: a verdict from before the link
//! came back is not readiness's, and the test runs again at once.
use super::*;
use crate::admin::health;
use crate::device::test_node::TestNode as Node;
use crate::io::mem::MemNetwork;
use crate::io::LinkState;
use std::time::Instant;

fn admin(dev: &Arc<Device>) -> Arc<AdminState> {
    AdminState::new(
        dev.clone(),
        "pm-no-such-if",
        None,
        crate::gates::GatesConfig::default(),
    )
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A passing verdict recorded now (the in-memory node cannot pass a real
/// self test: nothing answers its loopback handshake).
fn record_pass(st: &AdminState) {
    let rep = TestReport {
        ok: true,
        link_ups: st.link_ups_now(),
        ..Default::default()
    };
    *st.self_test.lock() = Some(rep);
}

#[test]
fn readiness_waits_for_a_self_test_after_the_link_returns() {
    let net = MemNetwork::new();
    let a = Node::new(&net, "192.0.2.1", 47_200, [0x11; 32]);
    let st = admin(&a.dev);
    record_pass(&st);
    assert_eq!(health::check(&st, "self-test"), Ok(()));
    assert_eq!(health::check(&st, "tun"), Ok(()));

    a.tun.set_link_up(false);
    assert_eq!(
        health::check(&st, "tun"),
        Err("interface pm-no-such-if is down".into())
    );
    // Down, the last verdict stands (the tun check fails readiness).
    assert_eq!(health::check(&st, "self-test"), Ok(()));
    a.tun.set_link_up(true);
    assert_eq!(health::check(&st, "tun"), Ok(()));
    let e = health::check(&st, "self-test").unwrap_err();
    assert!(e.contains("link came up"), "{e}");
    // A test that starts after the link came back is the verdict again.
    record_pass(&st);
    assert_eq!(health::check(&st, "self-test"), Ok(()));
}

#[test]
fn a_returning_link_reruns_the_self_test_at_once() {
    let net = MemNetwork::new();
    let a = Node::new(&net, "192.0.2.1", 47_210, [0x11; 32]);
    // No key: each self test fails at once, so the next periodic run
    // would be 10 s away (and the interval an hour).
    a.dev
        .apply(&crate::uapi::protocol::DeviceSet {
            private_key: Some([0; 32]),
            ..Default::default()
        })
        .unwrap();
    let st = admin(&a.dev);
    spawn_self_tests(st.clone(), Duration::from_secs(3600));
    let runs = || st.tests_run.load(Ordering::Relaxed);
    wait_for("the first self test and its repeat", 5, || runs() == 2);

    a.tun.set_link_up(false);
    wait_for("the device to see the link down", 5, || {
        a.dev.last_link_state() == Some(LinkState::Down)
    });
    assert_eq!(runs(), 2, "no test while the link is merely down");
    let up_at = Instant::now();
    a.tun.set_link_up(true);
    wait_for("a self test after the link came up", 3, || runs() >= 3);
    assert!(up_at.elapsed() < Duration::from_secs(3));
    a.dev.close();
}
