use super::*;
use axum::routing::{get, post};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};

const BIG: usize = 32 << 20;

fn limits() -> Limits {
    Limits {
        max_connections: 4,
        header_read_timeout: Duration::from_millis(400),
        body_read_timeout: Duration::from_millis(400),
        request_timeout: Duration::from_millis(1500),
        write_timeout: Duration::from_millis(400),
        queue_wait: Duration::from_secs(1),
        max_body: 4096,
        per_ip: 64,
        reserve: 0,
        reserve_timeout: Duration::from_secs(1),
        body_grace: Duration::from_secs(10),
        min_body_rate: 0,
    }
}

/// Starts a server on a loopback port in its own thread and runtime.
fn start(limits: Limits) -> (SocketAddr, Arc<ServerStats>) {
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/healthz/{name}", get(|| async { "ok" }))
        .route(
            "/sleep/{ms}",
            get(
                |axum::extract::Path(ms): axum::extract::Path<u64>| async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    "slept"
                },
            ),
        )
        .route("/big", get(|| async { vec![b'x'; BIG] }))
        .route(
            "/len",
            post(|b: axum::body::Bytes| async move { b.len().to_string() }),
        );
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let stats = Arc::new(ServerStats::default());
    let st = stats.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = TcpListener::from_std(std_listener).unwrap();
            run(l, app, limits, st).await;
        });
    });
    (addr, stats)
}

fn connect(addr: SocketAddr) -> StdStream {
    let s = StdStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Sends `req` on a new connection; returns the status line (or "" when
/// the connection closed without an answer) and the time it took.
fn status_of(addr: SocketAddr, req: &[u8]) -> (String, Duration) {
    let t = Instant::now();
    let mut s = connect(addr);
    s.write_all(req).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    (text.lines().next().unwrap_or("").to_string(), t.elapsed())
}

fn get_req(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Reads until the server closes; returns the bytes read and the time.
fn until_closed(s: &mut StdStream) -> (usize, Duration) {
    let t = Instant::now();
    let mut buf = [0u8; 65536];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return (total, t.elapsed()),
            Ok(n) => total += n,
        }
    }
}

#[test]
fn a_request_head_that_never_ends_is_cut_off() {
    let (addr, _) = start(limits());
    let mut s = connect(addr);
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        .unwrap();
    let (_, waited) = until_closed(&mut s);
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );
    // A silent connection too, and an idle keep-alive after its answer.
    let mut silent = connect(addr);
    let (n, waited) = until_closed(&mut silent);
    assert_eq!(n, 0);
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    let mut ka = connect(addr);
    ka.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (n, waited) = until_closed(&mut ka);
    assert!(n > 0, "the answer came first");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

#[test]
fn slow_bodies_get_408_and_slow_handlers_503() {
    let (addr, _) = start(limits());
    let (st, t) = status_of(
        addr,
        b"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
    );
    assert_eq!(st, "HTTP/1.1 408 Request Timeout");
    assert!(t < Duration::from_secs(2), "{t:?}");
    let (st, _) = status_of(
        addr,
        b"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(st, "HTTP/1.1 413 Payload Too Large");
    let (st, _) = status_of(
        addr,
        b"POST /len HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n",
    );
    assert_eq!(st, "HTTP/1.1 408 Request Timeout", "chunked, stalled");
    let (st, _) = status_of(
        addr,
        b"POST /len HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n",
    );
    assert_eq!(st, "HTTP/1.1 400 Bad Request", "bad chunk size");
    let mut chunked =
        b"POST /len HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"800\r\n");
        chunked.extend_from_slice(&[b'x'; 0x800]);
        chunked.extend_from_slice(b"\r\n");
    }
    let (st, _) = status_of(addr, &chunked);
    assert_eq!(st, "HTTP/1.1 413 Payload Too Large", "6 KiB chunked");
    let (st, t) = status_of(addr, &get_req("/sleep/5000"));
    assert_eq!(st, "HTTP/1.1 503 Service Unavailable");
    assert!(
        t >= Duration::from_millis(1400) && t < Duration::from_secs(4),
        "{t:?}"
    );
    // Within the limits, everything answers.
    let (st, _) = status_of(addr, &get_req("/sleep/100"));
    assert_eq!(st, "HTTP/1.1 200 OK");
    let (st, _) = status_of(
        addr,
        b"POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    assert_eq!(st, "HTTP/1.1 200 OK");
}

#[test]
fn a_client_that_stops_reading_is_dropped() {
    let (addr, stats) = start(limits());
    let mut s = connect(addr);
    s.write_all(&get_req("/big")).unwrap();
    // Read nothing until the server's writes have stalled past the limit.
    std::thread::sleep(Duration::from_millis(1500));
    let (n, _) = until_closed(&mut s);
    assert!(n < BIG, "only what the socket buffers held arrived: {n}");
    let t = Instant::now();
    while stats.open.load(Ordering::Relaxed) > 0 && t.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stats.open.load(Ordering::Relaxed), 0);
    // A reader gets all of it.
    let mut s = connect(addr);
    s.write_all(&get_req("/big")).unwrap();
    let (n, _) = until_closed(&mut s);
    assert!(n > BIG, "{n}");
}

#[test]
fn idle_connections_make_way_and_the_count_stays_capped() {
    let mut l = limits();
    l.header_read_timeout = Duration::from_secs(30);
    let (addr, stats) = start(l);
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut s = connect(addr);
        s.write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        stalled.push(s);
        std::thread::sleep(Duration::from_millis(5));
    }
    let (st, t) = status_of(addr, &get_req("/ok"));
    assert_eq!(st, "HTTP/1.1 200 OK");
    assert!(t < Duration::from_millis(900), "{t:?}");
    assert!(stats.max_open.load(Ordering::Relaxed) <= 4, "{stats:?}");
    assert_eq!(stats.evicted.load(Ordering::Relaxed), 17, "{stats:?}");
    // Oldest first: the first stalled client is gone, the newest three
    // still get their answer once they finish their request.
    let mut oldest = stalled.remove(0);
    assert_eq!(until_closed(&mut oldest).0, 0, "oldest closed unanswered");
    for mut s in stalled.drain(16..) {
        s.write_all(b"a\r\nConnection: close\r\n\r\n").unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        assert!(buf.starts_with(b"HTTP/1.1 200 OK"), "{buf:?}");
    }
    // More probes keep getting through.
    for _ in 0..5 {
        let (st, t) = status_of(addr, &get_req("/ok"));
        assert_eq!(st, "HTTP/1.1 200 OK");
        assert!(t < Duration::from_millis(900), "{t:?}");
    }
    assert!(stats.max_open.load(Ordering::Relaxed) <= 4, "{stats:?}");
}

#[test]
fn requests_in_progress_are_never_evicted() {
    let mut l = limits();
    l.max_connections = 2;
    l.request_timeout = Duration::from_secs(5);
    l.queue_wait = Duration::from_secs(3);
    let (addr, stats) = start(l);
    let slow: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || status_of(addr, &get_req("/sleep/600"))))
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    // Both slots are mid-request: this one waits for a free slot.
    let (st, t) = status_of(addr, &get_req("/ok"));
    assert_eq!(st, "HTTP/1.1 200 OK");
    assert!(t >= Duration::from_millis(300), "it waited: {t:?}");
    for h in slow {
        assert_eq!(h.join().unwrap().0, "HTTP/1.1 200 OK");
    }
    assert_eq!(stats.evicted.load(Ordering::Relaxed), 0);
    assert_eq!(stats.refused.load(Ordering::Relaxed), 0);
    assert!(stats.max_open.load(Ordering::Relaxed) <= 2);
}

#[path = "server_drip_tests.rs"]
mod drip;
