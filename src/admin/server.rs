//! Connection handling of the admin server: axum routes on hyper's HTTP/1
//! connection builder, with limits so slow or stalled clients cannot hold
//! the server (axum::serve has no header-read timeout) and open descriptors
//! stay bounded:
//!
//! - a request head must arrive within `header_read_timeout` of the
//!   connection opening or of the previous answer (keep-alive);
//! - a request body within `body_read_timeout`, and after `body_grace` at
//!   no less than `min_body_rate` bytes/s (else 408), at most `max_body`
//!   bytes (413);
//! - a whole request, body and handler, within `request_timeout` (503);
//! - a write may stall for at most `write_timeout` (a client that stops
//!   reading its answer);
//! - at most `per_ip` main-pool connections from one source address. One
//!   more evicts that address's connection idle the longest (no request in
//!   progress); when all of them are mid-request it is closed at once
//!   (or served from the reserve, below);
//! - at most `max_connections` connections. One more evicts the connection
//!   that has waited longest without a request in progress (a client that
//!   has not finished its request head, or an idle keep-alive);
//! - when every connection is mid-request, the newcomer gets one of the
//!   `reserve` extra slots, which serve one health request (/livez,
//!   /readyz, /healthz and their checks by name) under a `reserve_timeout`
//!   for head and answer, and answer anything else 503 at once. A kubelet
//!   probe thus answers while clients that drip their bodies hold the whole
//!   pool. With the reserve full too, the newcomer waits up to `queue_wait`
//!   for a slot (at most MAX_WAITING such), and is closed otherwise.
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use server_admit::{is_health_path, RateLimitedWarn, Slot, Table};
use server_io::{read_body, BodyError, StallGuard};
use std::convert::Infallible;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_service::Service;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub request_timeout: Duration,
    pub write_timeout: Duration,
    pub queue_wait: Duration,
    pub max_body: usize,
    /// Main-pool connections per source address.
    pub per_ip: usize,
    /// Extra slots for health requests when the main pool is busy.
    pub reserve: usize,
    /// Head, answer and write deadline on a reserve slot.
    pub reserve_timeout: Duration,
    /// How long a body may take before the minimum rate applies.
    pub body_grace: Duration,
    /// Bytes per second a body must keep up after the grace; 0: no minimum.
    pub min_body_rate: u64,
}

pub const MAX_CONNECTIONS: usize = 64;
/// A quarter of the pool: one address cannot hold more than that, so
/// taking the whole pool needs four. In a hostNetwork DaemonSet the
/// kubelet, Prometheus and any hostNetwork pod share the node's address,
/// so this cap cannot shield the kubelet from a local client: the health
/// reserve is what guarantees its probes.
pub const PER_IP_CONNECTIONS: usize = MAX_CONNECTIONS / 4;
/// Enough for a kubelet's three probes and a few retries at once; small,
/// since each is held for at most RESERVE_TIMEOUT (twice, head and answer).
pub const HEALTH_RESERVE: usize = 8;
/// A kubelet probe gives up after 1 s by default: a reserve slot is worth
/// nothing to it later, and a short hold keeps a flood of probes churning.
pub const RESERVE_TIMEOUT: Duration = Duration::from_secs(1);
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A body's first bytes may wait this long (slow start, a stalled segment).
pub const BODY_GRACE: Duration = Duration::from_secs(2);
/// 1 KiB/s: the largest body (4 KiB) in 6 s. Orders of magnitude under any
/// real link; a client dripping a byte a second is cut at the grace.
pub const MIN_BODY_RATE: u64 = 1024;
/// Longer than the longest tunnel test (15 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections waiting for a slot at once (each holds a descriptor).
const MAX_WAITING: usize = 8;
/// hyper's read buffer per connection (its default is ~400 KiB): also the
/// largest request head.
const MAX_BUF: usize = 64 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_read_timeout: BODY_READ_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            queue_wait: Duration::from_secs(1),
            max_body: super::routes::MAX_BODY,
            per_ip: PER_IP_CONNECTIONS,
            reserve: HEALTH_RESERVE,
            reserve_timeout: RESERVE_TIMEOUT,
            body_grace: BODY_GRACE,
            min_body_rate: MIN_BODY_RATE,
        }
    }
}

/// What the server has done, for tests and the log.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections being served (main pool and reserve).
    pub open: AtomicUsize,
    pub max_open: AtomicUsize,
    /// Requests in progress (head read, not yet answered).
    pub in_progress: AtomicUsize,
    pub accepted: AtomicU64,
    pub evicted: AtomicU64,
    /// New connections closed because every slot was mid-request.
    pub refused: AtomicU64,
    /// New connections closed because their address had `per_ip`
    /// connections mid-request (and no reserve slot was free for it).
    pub per_ip_refused: AtomicU64,
    /// Requests answered 408 because the body came too slowly.
    pub slow_body: AtomicU64,
    /// Health requests answered on a reserve slot.
    pub reserve_served: AtomicU64,
    /// Other requests on a reserve slot, answered 503.
    pub reserve_refused: AtomicU64,
}

struct Server {
    app: Router,
    limits: Limits,
    stats: Arc<ServerStats>,
    table: Mutex<Table>,
    waiting: AtomicUsize,
    warn: RateLimitedWarn,
    epoch: Instant,
}

/// Where a new connection goes.
enum Admit {
    Main(OwnedSemaphorePermit),
    Reserve(OwnedSemaphorePermit),
    /// Wait for a main permit.
    Wait,
    /// Over its address's cap, nothing to evict, no reserve slot.
    RefuseIp,
    /// Every slot busy and MAX_WAITING already waiting.
    Refuse,
}

impl Server {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Asks the connection idle the longest (from `ip`, or from anyone) to
    /// close, and returns it.
    fn evict(&self, table: &mut Table, ip: Option<IpAddr>) -> Option<Arc<Slot>> {
        // Out of the table at once, so the next eviction picks another.
        let s = table.remove(table.oldest_idle(ip)?)?;
        s.evicted.store(true, Ordering::Release);
        s.evict.notify_one();
        self.stats.evicted.fetch_add(1, Ordering::Relaxed);
        Some(s)
    }

    fn warn_full(&self) {
        self.warn.warn("full", || {
            format!(
                "{} connections open, the limit: closing the longest idle ones; \
                 when all are mid-request, serving only health requests on the {} \
                 reserve slots",
                self.limits.max_connections, self.limits.reserve
            )
        });
    }

    fn admit(&self, ip: IpAddr, main: &Arc<Semaphore>, reserve: &Arc<Semaphore>) -> Admit {
        let mut table = self.table.lock();
        let (on_main, on_reserve) = table.count(ip);
        let mut over_ip = on_main >= self.limits.per_ip.max(1);
        if over_ip {
            if let Some(v) = self.evict(&mut table, Some(ip)) {
                if let Some(p) = v.permit.lock().take() {
                    return Admit::Main(p);
                }
                over_ip = false; // it was waiting: no permit to take over
            }
        }
        if !over_ip {
            if let Ok(p) = main.clone().try_acquire_owned() {
                return Admit::Main(p);
            }
            self.warn_full();
            if let Some(p) = self
                .evict(&mut table, None)
                .and_then(|v| v.permit.lock().take())
            {
                return Admit::Main(p);
            }
        }
        // Half the reserve per address, so one remote address cannot take
        // it all (the node's own address shares with the kubelet anyway).
        if on_reserve < self.limits.reserve.div_ceil(2) {
            if let Ok(p) = reserve.clone().try_acquire_owned() {
                return Admit::Reserve(p);
            }
        }
        if over_ip {
            Admit::RefuseIp
        } else if self.waiting.load(Ordering::Relaxed) >= MAX_WAITING {
            Admit::Refuse
        } else {
            self.wait()
        }
    }

    /// Counted here, not in the waiting task: a burst of accepts runs
    /// before any of those tasks.
    fn wait(&self) -> Admit {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        Admit::Wait
    }
}

/// Serves `app` on `listener` until the runtime stops.
pub async fn run(listener: TcpListener, app: Router, limits: Limits, stats: Arc<ServerStats>) {
    let server = Arc::new(Server {
        app,
        limits,
        stats,
        table: Mutex::new(Table::default()),
        waiting: AtomicUsize::new(0),
        warn: RateLimitedWarn::new(),
        epoch: Instant::now(),
    });
    let main = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let reserve = Arc::new(Semaphore::new(limits.reserve));
    let mut next_id = 0u64;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors (the tunnel's own sockets and files may
                // take them): retry soon, without a log line per attempt.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) {
                    server
                        .warn
                        .warn("accept", || format!("cannot accept connections: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        let stats = &server.stats;
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let ip = peer.ip().to_canonical();
        let admit = server.admit(ip, &main, &reserve);
        let (main_permit, reserve_permit, wait) = match admit {
            Admit::Main(p) => (Some(p), None, false),
            Admit::Reserve(p) => (None, Some(p), false),
            Admit::Wait => (None, None, true),
            Admit::RefuseIp => {
                stats.per_ip_refused.fetch_add(1, Ordering::Relaxed);
                server.warn.warn("per-ip", || {
                    format!(
                        "{ip} has {} connections mid-request, the limit per address: \
                         closing its new ones ({} so far)",
                        limits.per_ip,
                        stats.per_ip_refused.load(Ordering::Relaxed)
                    )
                });
                continue;
            }
            Admit::Refuse => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        next_id += 1;
        let id = next_id;
        let reserved = reserve_permit.is_some();
        let slot = Arc::new(Slot::new(ip, reserved, main_permit, server.now_ms()));
        server.table.lock().insert(id, slot.clone());
        let server = server.clone();
        let main = main.clone();
        tokio::spawn(async move {
            if !wait || wait_for_slot(&server, &main, &slot).await {
                let open = server.stats.open.fetch_add(1, Ordering::Relaxed) + 1;
                server.stats.max_open.fetch_max(open, Ordering::Relaxed);
                serve_connection(&server, stream, slot.clone()).await;
                server.stats.open.fetch_sub(1, Ordering::Relaxed);
            }
            server.table.lock().remove(id);
            // Frees the slot's permit, unless an eviction took it over.
            drop(slot.permit.lock().take());
            drop(reserve_permit);
        });
        // Let the connections just evicted close (and the new one start)
        // before the next accept: in a burst, accepts would otherwise
        // outrun them and spend descriptors on the dying.
        tokio::task::yield_now().await;
    }
}

/// Waits up to `queue_wait` for a main-pool permit, unless evicted
/// meanwhile; true when the connection got one.
async fn wait_for_slot(server: &Server, main: &Arc<Semaphore>, slot: &Slot) -> bool {
    let got = tokio::select! {
        r = tokio::time::timeout(server.limits.queue_wait, main.clone().acquire_owned()) => {
            r.ok().and_then(|r| r.ok())
        }
        _ = slot.evict.notified() => None,
    };
    server.waiting.fetch_sub(1, Ordering::Relaxed);
    // Under the table's lock: an eviction cannot come in between.
    let _table = server.table.lock();
    if slot.evicted.load(Ordering::Acquire) {
        return false;
    }
    match got {
        Some(p) => {
            *slot.permit.lock() = Some(p);
            true
        }
        None => {
            server.stats.refused.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

async fn serve_connection(server: &Arc<Server>, stream: TcpStream, slot: Arc<Slot>) {
    let limits = server.limits;
    let io = TokioIo::new(StallGuard {
        inner: stream,
        limit: if slot.reserve {
            limits.reserve_timeout
        } else {
            limits.write_timeout
        },
        stalled: None,
    });
    let svc_server = server.clone();
    let svc_slot = slot.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        handle(svc_server.clone(), svc_slot.clone(), req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).max_buf_size(MAX_BUF);
    if slot.reserve {
        // One request, its head in time for a probe.
        builder
            .header_read_timeout(limits.reserve_timeout)
            .keep_alive(false);
    } else {
        builder.header_read_timeout(limits.header_read_timeout);
    }
    let conn = builder.serve_connection(io, svc);
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::trace!(error = %e, "admin connection ended");
            }
        }
        _ = slot.evict.notified() => {}
    }
}

/// Marks a connection busy while a request is in progress.
struct Busy<'a>(&'a Server, &'a Slot);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.1
            .idle_since_ms
            .store(self.0.now_ms(), Ordering::Relaxed);
        self.1.busy.fetch_sub(1, Ordering::Release);
        self.0.stats.in_progress.fetch_sub(1, Ordering::Relaxed);
    }
}

fn plain_close(status: StatusCode, msg: &'static str) -> Response {
    // The connection cannot carry another request after an unread body.
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CONNECTION, "close"),
        ],
        msg,
    )
        .into_response()
}

async fn handle(
    server: Arc<Server>,
    slot: Arc<Slot>,
    req: Request<Incoming>,
) -> Result<Response, Infallible> {
    slot.busy.fetch_add(1, Ordering::AcqRel);
    server.stats.in_progress.fetch_add(1, Ordering::Relaxed);
    let _busy = Busy(&server, &slot);
    if slot.reserve {
        return Ok(handle_reserved(&server, req).await);
    }
    let limits = server.limits;
    let work = async {
        // Read the body here, for every route, so an oversized one is
        // refused (413) whether or not its handler would read it.
        let (parts, body) = req.into_parts();
        // A Content-Length over the limit is refused before any wait.
        if hyper::body::Body::size_hint(&body).lower() > limits.max_body as u64 {
            return plain_close(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
        }
        let body = match read_body(body, &limits).await {
            Err(BodyError::TooSlow) => {
                let stats = &server.stats;
                stats.slow_body.fetch_add(1, Ordering::Relaxed);
                server.warn.warn("slow-body", || {
                    format!(
                        "request body from {} too slow, answered 408 ({} so far)",
                        slot.ip,
                        stats.slow_body.load(Ordering::Relaxed)
                    )
                });
                return plain_close(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body not received in time\n",
                );
            }
            Err(BodyError::TooLarge) => {
                return plain_close(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
            }
            Err(BodyError::Malformed) => {
                return plain_close(StatusCode::BAD_REQUEST, "malformed request body\n")
            }
            Ok(b) => b,
        };
        let mut app = server.app.clone();
        match app.call(Request::from_parts(parts, Body::from(body))).await {
            Ok(r) => r,
            Err(e) => match e {},
        }
    };
    Ok(
        match tokio::time::timeout(limits.request_timeout, work).await {
            Ok(r) => r,
            Err(_) => plain_close(StatusCode::SERVICE_UNAVAILABLE, "request timed out\n"),
        },
    )
}

/// A request on a reserve slot: a health request without a body is
/// served, anything else answered 503 without reading its body.
async fn handle_reserved(server: &Server, req: Request<Incoming>) -> Response {
    let (parts, body) = req.into_parts();
    let bodyless = hyper::body::Body::size_hint(&body).upper() == Some(0);
    if !bodyless || !is_health_path(parts.uri.path()) {
        server.stats.reserve_refused.fetch_add(1, Ordering::Relaxed);
        let mut r = plain_close(
            StatusCode::SERVICE_UNAVAILABLE,
            "admin server busy: only health requests are served now\n",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    }
    server.stats.reserve_served.fetch_add(1, Ordering::Relaxed);
    let mut app = server.app.clone();
    let call = app.call(Request::from_parts(parts, Body::empty()));
    match tokio::time::timeout(server.limits.reserve_timeout, call).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => match e {},
        Err(_) => plain_close(StatusCode::SERVICE_UNAVAILABLE, "request timed out\n"),
    }
}

#[path = "server_io.rs"]
mod server_io;

#[path = "server_admit.rs"]
mod server_admit;

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
