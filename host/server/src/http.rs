//! Serving HTTP/1.1 connections with bounds an outsider cannot stretch: a
//! request's head must arrive within the header timeout, a connection on
//! which no byte moves is closed after the idle timeout, at most
//! `max_connections` are open at once (further ones wait in the listen
//! queue), and a stop waits for requests in flight at most the shutdown
//! timeout. The request body's own timeout is applied where bodies are read
//! ([`super::body`]).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

/// The HTTP server's bounds (`ServeOptions::http`).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// A request's head (request line and headers) must arrive within this
    /// of its first byte; otherwise the connection is closed.
    pub header_timeout: Duration,
    /// A request's body must arrive whole within this of the handler
    /// starting to read it; otherwise `408 body_timeout`.
    pub body_timeout: Duration,
    /// A connection on which no byte moves either way for this long is
    /// closed: a keep-alive connection waiting for its next request, or a
    /// client that stopped reading its answer.
    pub idle_timeout: Duration,
    /// Connections open at once; further ones wait in the listen queue
    /// until one closes.
    pub max_connections: usize,
    /// On stop, requests in flight get this long to finish; then their
    /// connections are closed.
    pub shutdown_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            shutdown_timeout: Duration::from_secs(20),
        }
    }
}

/// Serves `app` on `listener` until `stop` turns true, then stops
/// accepting, lets the requests in flight finish within the shutdown
/// timeout, and returns.
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        // A free connection first, then the next connection: beyond the
        // limit, clients wait in the kernel's listen queue.
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => permit.map_err(std::io::Error::other)?,
            _ = stopped(&mut stop) => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: the connections
                    // already open are still served; try again shortly.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let (app, stop) = (app.clone(), stop.clone());
        connections.spawn(async move {
            connection(stream, app, limits, stop).await;
            drop(permit);
        });
        // Reap the finished ones so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            timeout_ms = limits.shutdown_timeout.as_millis() as u64,
            "closing connections still open at the shutdown timeout"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Resolves when the service stops.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard it returns must not live across an await.
    let _ = stop.wait_for(|s| *s).await;
}

/// One connection: hyper's HTTP/1.1 over a socket whose traffic is watched.
async fn connection(
    stream: TcpStream,
    app: Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let requests = activity.clone();
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let (app, activity) = (app.clone(), requests.clone());
            async move {
                let busy = activity.request_started();
                let response = app
                    .oneshot(request.map(Body::new))
                    .await
                    .unwrap_or_else(|never: Infallible| match never {});
                // The request counts as in flight until its body is sent.
                Ok::<_, Infallible>(response.map(|body| Body::new(Tracked { body, _busy: busy })))
            }
        });
    let conn = hyper::server::conn::http1::Builder::new()
        // Bounded here instead: hyper's would also count the wait between
        // requests, which is the idle timeout's.
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let wake = activity.deadline(&limits);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stopped(&mut stop), if !stopping => {
                // Finish the request in flight, then close; an idle
                // connection closes at once.
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(wake) => {
                match activity.overdue(&limits) {
                    // Closes at once, unless a request has just begun.
                    Some(Overdue::Idle) if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    Some(Overdue::Idle) => return,
                    Some(Overdue::Header | Overdue::Stalled) => {
                        tracing::debug!("closing a connection that stopped moving");
                        return;
                    }
                    None => {}
                }
            }
        }
    }
}

/// Where a connection stands, as its traffic and requests show.
struct Activity {
    state: Mutex<State>,
}

struct State {
    /// Requests whose answers are not sent in full yet.
    in_flight: usize,
    /// When the current phase started, or (in flight) when a byte last moved.
    since: Instant,
    /// A request's head is awaited: the connection is new, or bytes of a
    /// next request have arrived.
    reading_head: bool,
}

enum Overdue {
    /// Nothing moved between requests.
    Idle,
    /// A request's head is late.
    Header,
    /// A request is in flight and nothing moved.
    Stalled,
}

impl Activity {
    fn new() -> Self {
        Activity {
            state: Mutex::new(State {
                in_flight: 0,
                since: Instant::now(),
                reading_head: true,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) {
        let mut s = self.lock();
        if s.in_flight > 0 {
            s.since = Instant::now();
        } else if !s.reading_head {
            // The head's time runs from its first byte.
            s.reading_head = true;
            s.since = Instant::now();
        }
    }

    fn wrote(&self) {
        let mut s = self.lock();
        if s.in_flight > 0 {
            s.since = Instant::now();
        }
    }

    fn request_started(self: &Arc<Self>) -> Busy {
        let mut s = self.lock();
        s.in_flight += 1;
        s.reading_head = false;
        s.since = Instant::now();
        Busy(self.clone())
    }

    /// When the current phase's limit runs out.
    fn deadline(&self, limits: &HttpLimits) -> Instant {
        let s = self.lock();
        s.since
            + if s.reading_head && s.in_flight == 0 {
                limits.header_timeout
            } else {
                limits.idle_timeout
            }
    }

    fn overdue(&self, limits: &HttpLimits) -> Option<Overdue> {
        let s = self.lock();
        let waited = s.since.elapsed();
        if s.in_flight > 0 {
            (waited >= limits.idle_timeout).then_some(Overdue::Stalled)
        } else if s.reading_head {
            (waited >= limits.header_timeout).then_some(Overdue::Header)
        } else {
            (waited >= limits.idle_timeout).then_some(Overdue::Idle)
        }
    }
}

/// A request in flight; dropped when its answer's body is sent or dropped.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        s.since = Instant::now();
    }
}

/// A response body that keeps its request in flight until it is done.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A socket that reports every byte moved to its connection's [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
