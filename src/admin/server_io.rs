//! The admin server's reads and writes: a request body under its limits,
//! and a stream whose stalled writes fail.
use super::Limits;
use hyper::body::Incoming;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub(super) enum BodyError {
    TooLarge,
    /// Not all there by `body_read_timeout`, or behind the minimum rate.
    TooSlow,
    /// Bad chunked encoding, or the client went away mid-body.
    Malformed,
}

/// The whole body, refused as soon as it passes `max_body` bytes or falls
/// behind: after `body_grace`, the bytes so far must keep up with
/// `min_body_rate`, so a body dripped a byte at a time is cut off early
/// instead of holding its slot for `body_read_timeout`.
pub(super) async fn read_body(mut body: Incoming, limits: &Limits) -> Result<Vec<u8>, BodyError> {
    use hyper::body::Body as _;
    let start = tokio::time::Instant::now();
    let hard = start + limits.body_read_timeout;
    let mut out = Vec::new();
    loop {
        let due = match limits.min_body_rate {
            0 => hard,
            rate => {
                let on_schedule = Duration::from_millis(out.len() as u64 * 1000 / rate);
                hard.min(start + limits.body_grace + on_schedule)
            }
        };
        let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
        let frame = match tokio::time::timeout_at(due, next).await {
            Err(_) => return Err(BodyError::TooSlow),
            Ok(None) => return Ok(out),
            Ok(Some(f)) => f.map_err(|_| BodyError::Malformed)?,
        };
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limits.max_body {
                return Err(BodyError::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
}

/// A TCP stream whose writes fail once they have been blocked for `limit`:
/// a client that never reads its answer cannot hold the connection.
pub(super) struct StallGuard {
    pub inner: TcpStream,
    pub limit: Duration,
    pub stalled: Option<Pin<Box<tokio::time::Sleep>>>,
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
