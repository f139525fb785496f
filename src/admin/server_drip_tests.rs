//! Starvation by slow clients: dripped bodies, the health reserve and the
//! per-address cap, on loopback.
use super::*;
use std::sync::atomic::AtomicBool;

/// A connection from source address `src` (any of 127.0.0.0/8 is local).
fn connect_from(src: &str, addr: SocketAddr) -> StdStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let src: SocketAddr = format!("{src}:0").parse().unwrap();
    s.bind(&src.into()).unwrap();
    s.connect(&addr.into()).unwrap();
    let s: StdStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// `status_of` from source address `src`.
fn status_from(src: &str, addr: SocketAddr, req: &[u8]) -> (String, Duration) {
    let t = Instant::now();
    let mut s = connect_from(src, addr);
    let _ = s.write_all(req);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    (text.lines().next().unwrap_or("").to_string(), t.elapsed())
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "waited 5 s for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn load(a: &AtomicUsize) -> usize {
    a.load(Ordering::Relaxed)
}

fn count(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// A client that announces a 4096-byte body and sends a byte of it every
/// `every`, until stopped or closed.
struct Dripper {
    stream: StdStream,
    stop: Arc<AtomicBool>,
    started: Instant,
}

impl Dripper {
    fn start(src: &str, addr: SocketAddr, every: Duration) -> Dripper {
        let mut stream = connect_from(src, addr);
        stream
            .write_all(b"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\nx")
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (mut w, st) = (stream.try_clone().unwrap(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                std::thread::sleep(every);
                if w.write_all(b"x").is_err() {
                    return;
                }
            }
        });
        Dripper {
            stream,
            stop,
            started: Instant::now(),
        }
    }

    /// The status line the server answered with, and when, from the start.
    fn outcome(mut self) -> (String, Duration) {
        let mut buf = Vec::new();
        let _ = self.stream.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf);
        let line = text.lines().next().unwrap_or("").to_string();
        (line, self.started.elapsed())
    }
}

impl Drop for Dripper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Four clients dripping bodies hold a pool of four, slowly enough that no
/// body limit ends them (the server's limits before the reserve).
fn held_pool(reserve: usize) -> (SocketAddr, Arc<ServerStats>, Vec<Dripper>) {
    let mut l = limits();
    l.reserve = reserve;
    l.body_read_timeout = Duration::from_secs(30);
    l.request_timeout = Duration::from_secs(30);
    l.queue_wait = Duration::from_millis(500);
    let (addr, stats) = start(l);
    let drips: Vec<_> = (0..4)
        .map(|_| Dripper::start("127.0.0.1", addr, Duration::from_millis(300)))
        .collect();
    wait_for("four requests in progress", || {
        load(&stats.in_progress) == 4
    });
    (addr, stats, drips)
}

#[test]
fn without_a_reserve_dripping_bodies_starve_health() {
    // The fault: every slot mid-request, a probe waits and is closed.
    let (addr, stats, _drips) = held_pool(0);
    let (st, t) = status_of(addr, &get_req("/livez"));
    assert_eq!(st, "", "closed without an answer");
    assert!(t >= Duration::from_millis(400), "after queue_wait: {t:?}");
    assert_eq!(count(&stats.refused), 1, "{stats:?}");
}

#[test]
fn the_reserve_answers_health_while_dripping_bodies_hold_every_slot() {
    let (addr, stats, drips) = held_pool(2);
    for path in ["/livez", "/livez", "/livez", "/healthz/ping", "/livez"] {
        let (st, t) = status_of(addr, &get_req(path));
        assert_eq!(st, "HTTP/1.1 200 OK", "{path}");
        assert!(t < Duration::from_secs(1), "{path}: {t:?}");
    }
    // Anything else on a reserve slot: 503 at once, a body not read.
    let (st, t) = status_of(addr, &get_req("/ok"));
    assert_eq!(st, "HTTP/1.1 503 Service Unavailable");
    assert!(t < Duration::from_millis(500), "{t:?}");
    let (st, _) = status_of(
        addr,
        b"POST /livez HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde",
    );
    assert_eq!(st, "HTTP/1.1 503 Service Unavailable", "health with a body");
    assert_eq!(count(&stats.reserve_served), 5, "{stats:?}");
    assert_eq!(count(&stats.reserve_refused), 2, "{stats:?}");
    assert_eq!(count(&stats.evicted), 0, "{stats:?}");
    // A reserve slot must get its head within reserve_timeout (1 s here).
    let mut slow = connect(addr);
    slow.write_all(b"GET /livez HTTP/1.1\r\n").unwrap();
    let (n, t) = until_closed(&mut slow);
    assert_eq!(n, 0);
    assert!(
        t >= Duration::from_millis(800) && t < Duration::from_millis(2500),
        "{t:?}"
    );
    assert_eq!(load(&stats.in_progress), 4, "the drippers still hold");
    assert!(load(&stats.max_open) <= 4 + 2, "{stats:?}");
    drop(drips);
    wait_for("the drippers gone", || load(&stats.open) == 0);
    let (st, _) = status_of(addr, &get_req("/ok"));
    assert_eq!(st, "HTTP/1.1 200 OK", "served normally afterwards");
}

#[test]
fn a_dripped_body_gets_408_after_the_grace() {
    let mut l = limits();
    l.body_grace = Duration::from_millis(500);
    l.min_body_rate = 1000;
    l.body_read_timeout = Duration::from_secs(10);
    l.request_timeout = Duration::from_secs(30);
    let (addr, stats) = start(l);
    let (st, t) = Dripper::start("127.0.0.1", addr, Duration::from_millis(200)).outcome();
    assert_eq!(st, "HTTP/1.1 408 Request Timeout");
    assert!(
        t >= Duration::from_millis(450) && t < Duration::from_millis(2500),
        "cut near the grace, not the 10 s body timeout: {t:?}"
    );
    assert_eq!(count(&stats.slow_body), 1, "{stats:?}");
    // A body at a fair pace (4 KiB in about 0.5 s) is read whole.
    let mut s = connect(addr);
    s.write_all(
        b"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(150));
        s.write_all(&[b'y'; 1024]).unwrap();
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.ends_with("4096"), "{text}");
    assert_eq!(count(&stats.slow_body), 1, "{stats:?}");
}

#[test]
fn a_dripped_head_makes_way_when_the_pool_is_full() {
    let mut l = limits();
    l.max_connections = 2;
    l.header_read_timeout = Duration::from_secs(30);
    let (addr, stats) = start(l);
    let heads: Vec<_> = (0..2)
        .map(|_| {
            let mut s = connect(addr);
            s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Drip: ")
                .unwrap();
            let mut w = s.try_clone().unwrap();
            std::thread::spawn(move || {
                while w.write_all(b"a").is_ok() {
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            s
        })
        .collect();
    wait_for("two open", || load(&stats.open) == 2);
    let (st, t) = status_of(addr, &get_req("/ok"));
    assert_eq!(st, "HTTP/1.1 200 OK");
    assert!(t < Duration::from_millis(900), "{t:?}");
    assert_eq!(count(&stats.evicted), 1, "{stats:?}");
    drop(heads);
}

#[test]
fn one_address_is_capped_and_others_are_not() {
    let mut l = limits();
    l.max_connections = 8;
    l.per_ip = 3;
    l.reserve = 2; // one reserve slot per address
    l.queue_wait = Duration::from_millis(500);
    l.body_read_timeout = Duration::from_secs(30);
    l.request_timeout = Duration::from_secs(30);
    let (addr, stats) = start(l);
    let mut drips: Vec<_> = (0..3)
        .map(|_| Dripper::start("127.0.0.1", addr, Duration::from_millis(300)))
        .collect();
    wait_for("three requests in progress", || {
        load(&stats.in_progress) == 3
    });
    let (st, _) = status_from("127.0.0.2", addr, &get_req("/ok"));
    assert_eq!(st, "HTTP/1.1 200 OK", "another address is not capped");
    // Over the cap with every connection mid-request: the reserve serves
    // health only.
    let (st, t) = status_from("127.0.0.1", addr, &get_req("/livez"));
    assert_eq!(st, "HTTP/1.1 200 OK");
    assert!(t < Duration::from_secs(1), "{t:?}");
    let (st, _) = status_from("127.0.0.1", addr, &get_req("/ok"));
    assert_eq!(st, "HTTP/1.1 503 Service Unavailable");
    // With that address's reserve share taken too: closed at once.
    let mut holder = connect_from("127.0.0.1", addr);
    wait_for("the reserve slot taken", || load(&stats.open) == 4);
    let (st, t) = status_from("127.0.0.1", addr, &get_req("/ok"));
    assert_eq!(st, "", "closed without an answer");
    assert!(t < Duration::from_millis(300), "at once: {t:?}");
    assert_eq!(count(&stats.per_ip_refused), 1, "{stats:?}");
    assert_eq!(count(&stats.refused), 0, "{stats:?}");
    until_closed(&mut holder);
    // An idle connection of that address makes way for its newcomer.
    drop(drips.pop());
    wait_for("two requests in progress", || load(&stats.in_progress) == 2);
    let mut idle = connect_from("127.0.0.1", addr);
    idle.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    wait_for("three open", || load(&stats.open) == 3);
    let (st, _) = status_from("127.0.0.1", addr, &get_req("/ok"));
    assert_eq!(st, "HTTP/1.1 200 OK");
    assert_eq!(count(&stats.evicted), 1, "{stats:?}");
    assert_eq!(until_closed(&mut idle).0, 0, "the idle one closed");
    assert_eq!(count(&stats.per_ip_refused), 1, "{stats:?}");
}

#[test]
fn a_burst_of_stalled_connections_from_one_address_stays_capped() {
    let mut l = limits();
    l.max_connections = 64;
    l.per_ip = 16;
    l.reserve = 8;
    l.header_read_timeout = Duration::from_secs(10);
    let (addr, stats) = start(l);
    let mut held = Vec::new();
    for _ in 0..300 {
        let mut s = connect(addr);
        s.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n").unwrap();
        held.push(s);
    }
    for _ in 0..5 {
        let (st, t) = status_of(addr, &get_req("/livez"));
        assert_eq!(st, "HTTP/1.1 200 OK");
        assert!(t < Duration::from_secs(1), "{t:?}");
    }
    // The accepts do not outrun the closing of the evicted (descriptors).
    assert!(load(&stats.max_open) <= 20, "{stats:?}");
    assert!(count(&stats.evicted) >= 300 - 16, "{stats:?}");
    assert_eq!(count(&stats.refused) + count(&stats.per_ip_refused), 0);
}
