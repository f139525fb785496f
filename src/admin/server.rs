//! Connection handling of the admin server: axum routes on hyper's HTTP/1
//! connection builder, with limits so slow or stalled clients cannot hold
//! the server (axum::serve has no header-read timeout) and open descriptors
//! stay bounded:
//!
//! - a request head must arrive within `header_read_timeout` of the
//!   connection opening or of the previous answer (keep-alive);
//! - a request body within `body_read_timeout` (408), at most `max_body`
//!   bytes (413);
//! - a whole request, body and handler, within `request_timeout` (503);
//! - a write may stall for at most `write_timeout` (a client that stops
//!   reading its answer);
//! - at most `max_connections` connections. One more evicts the connection
//!   that has waited longest without a request in progress (a client that
//!   has not finished its request head, or an idle keep-alive). When every
//!   connection is mid-request it waits up to `queue_wait` for one to end,
//!   and is closed otherwise.
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
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
}

pub const MAX_CONNECTIONS: usize = 64;
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longer than the longest tunnel test (15 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
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
        }
    }
}

/// What the server has done, for tests and the log.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub open: AtomicUsize,
    pub max_open: AtomicUsize,
    pub accepted: AtomicU64,
    pub evicted: AtomicU64,
    /// New connections closed because every slot was mid-request.
    pub refused: AtomicU64,
}

/// One connection's standing, for eviction.
struct Slot {
    /// Requests in progress (hyper's HTTP/1 runs one at a time).
    busy: AtomicUsize,
    /// When it last became idle (accepted, or answered), in ms since start.
    idle_since_ms: AtomicU64,
    evict: Notify,
}

struct Server {
    app: Router,
    limits: Limits,
    stats: Arc<ServerStats>,
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    epoch: Instant,
}

impl Server {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Asks the connection idle the longest to close; false if none is idle.
    fn evict_oldest_idle(&self) -> bool {
        let mut slots = self.slots.lock();
        let victim = slots
            .iter()
            .filter(|(_, s)| s.busy.load(Ordering::Acquire) == 0)
            .min_by_key(|(_, s)| s.idle_since_ms.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        // Out of the table at once, so the next eviction picks another.
        match victim.and_then(|id| slots.remove(&id)) {
            Some(s) => {
                s.evict.notify_one();
                self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

/// Serves `app` on `listener` until the runtime stops.
pub async fn run(listener: TcpListener, app: Router, limits: Limits, stats: Arc<ServerStats>) {
    let server = Arc::new(Server {
        app,
        limits,
        stats,
        slots: Mutex::new(HashMap::new()),
        epoch: Instant::now(),
    });
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut next_id = 0u64;
    let mut last_warning: Option<Instant> = None;
    let mut warn = |msg: &str| {
        if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            tracing::warn!("admin server: {msg}");
            last_warning = Some(Instant::now());
        }
    };
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors (the tunnel's own sockets and files may
                // take them): retry soon, without a log line per attempt.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) {
                    warn(&format!("cannot accept connections: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                continue;
            }
        };
        server.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                warn(&format!(
                    "{} connections open, the limit: closing the longest idle ones",
                    limits.max_connections
                ));
                server.evict_oldest_idle();
                let wait = permits.clone().acquire_owned();
                match tokio::time::timeout(limits.queue_wait, wait).await {
                    Ok(Ok(p)) => p,
                    _ => {
                        server.stats.refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
            }
        };
        next_id += 1;
        let id = next_id;
        let slot = Arc::new(Slot {
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(server.now_ms()),
            evict: Notify::new(),
        });
        server.slots.lock().insert(id, slot.clone());
        let open = server.stats.open.fetch_add(1, Ordering::Relaxed) + 1;
        server.stats.max_open.fetch_max(open, Ordering::Relaxed);
        let server = server.clone();
        tokio::spawn(async move {
            serve_connection(&server, stream, slot).await;
            server.slots.lock().remove(&id);
            server.stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

async fn serve_connection(server: &Arc<Server>, stream: TcpStream, slot: Arc<Slot>) {
    let limits = server.limits;
    let io = TokioIo::new(StallGuard {
        inner: stream,
        limit: limits.write_timeout,
        stalled: None,
    });
    let svc_server = server.clone();
    let svc_slot = slot.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        handle(svc_server.clone(), svc_slot.clone(), req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_BUF);
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
    let _busy = Busy(&server, &slot);
    let limits = server.limits;
    let work = async {
        // Read the body here, for every route, so an oversized one is
        // refused (413) whether or not its handler would read it.
        let (parts, body) = req.into_parts();
        // A Content-Length over the limit is refused before any wait.
        if hyper::body::Body::size_hint(&body).lower() > limits.max_body as u64 {
            return plain_close(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n");
        }
        let read = read_body(body, limits.max_body);
        let body = match tokio::time::timeout(limits.body_read_timeout, read).await {
            Err(_) => {
                return plain_close(
                    StatusCode::REQUEST_TIMEOUT,
                    "request body not received in time\n",
                )
            }
            Ok(Err(BodyError::TooLarge)) => {
                return plain_close(StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n")
            }
            Ok(Err(BodyError::Malformed)) => {
                return plain_close(StatusCode::BAD_REQUEST, "malformed request body\n")
            }
            Ok(Ok(b)) => b,
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

enum BodyError {
    TooLarge,
    /// Bad chunked encoding, or the client went away mid-body.
    Malformed,
}

/// The whole body, refused as soon as it passes `max` bytes.
async fn read_body(mut body: Incoming, max: usize) -> Result<Vec<u8>, BodyError> {
    use hyper::body::Body as _;
    let mut out = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|_| BodyError::Malformed)?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                return Err(BodyError::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// A TCP stream whose writes fail once they have been blocked for `limit`:
/// a client that never reads its answer cannot hold the connection.
struct StallGuard {
    inner: TcpStream,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl StallGuard {
    fn guard<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client stopped reading",
            )));
        }
        Poll::Pending
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.guard(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.guard(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.guard(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.guard(cx, r)
    }
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
