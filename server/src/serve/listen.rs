//! Accepting connections for `cria serve`, within limits a client cannot
//! talk its way past: at most [`Limits::max_connections`] at once, request
//! headers within [`Limits::header_timeout`], and a connection with no
//! request in flight closed after [`Limits::idle_timeout`]. When the cap is
//! reached the connection idle the longest is closed to make room (a
//! half-sent header counts as idle: that is what a slowloris client holds);
//! when every connection has a request in flight, the new one is refused.
//! Both are logged, at most once per [`LOG_EVERY`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceExt;

/// How `cria serve` bounds its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Time a client has to send a request's body.
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// Log lines about the cap come at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// One open connection, as the registry sees it.
#[derive(Debug)]
struct Conn {
    /// Requests in flight (their answers not yet sent).
    busy: usize,
    /// When it last started or finished a request (or was accepted).
    last_active: Instant,
    close: Arc<Notify>,
}

/// The open connections.
#[derive(Debug, Default)]
struct Registry {
    conns: HashMap<u64, Conn>,
}

impl Registry {
    /// The connection to close to make room: idle the longest, if any is idle.
    fn evictable(&self) -> Option<u64> {
        self.conns.iter().filter(|(_, c)| c.busy == 0).min_by_key(|(id, c)| (c.last_active, **id)).map(|(id, _)| *id)
    }

    /// Connections idle for longer than `idle` at `now`.
    fn expired(&self, now: Instant, idle: Duration) -> Vec<u64> {
        self.conns.iter().filter(|(_, c)| c.busy == 0 && now.duration_since(c.last_active) > idle).map(|(id, _)| *id).collect()
    }

    fn touch(&mut self, id: u64, busy_change: isize) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.busy = c.busy.saturating_add_signed(busy_change);
            c.last_active = Instant::now();
        }
    }
}

type Shared = Arc<Mutex<Registry>>;

fn lock(registry: &Shared) -> std::sync::MutexGuard<'_, Registry> {
    registry.lock().unwrap_or_else(|p| p.into_inner())
}

/// Marks a request in flight until dropped (when its answer was sent, or
/// the connection closed).
struct InFlight {
    registry: Shared,
    id: u64,
}

impl InFlight {
    fn new(registry: &Shared, id: u64) -> Self {
        lock(registry).touch(id, 1);
        Self { registry: registry.clone(), id }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.registry).touch(self.id, -1);
    }
}

/// An answer's body that keeps its request marked in flight until sent.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A rate-limited log line: `Some(n)` when it may be written, `n` being
/// how many were left out since the last one.
struct Every {
    last: Mutex<Option<Instant>>,
    left_out: AtomicU64,
}

impl Every {
    const fn new() -> Self {
        Self { last: Mutex::new(None), left_out: AtomicU64::new(0) }
    }

    fn check(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last.is_some_and(|l| now.duration_since(l) < LOG_EVERY) {
            self.left_out.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.left_out.swap(0, Ordering::Relaxed))
    }
}

static AT_CAP: Every = Every::new();
static ACCEPT_FAILED: Every = Every::new();

/// Serves `app` on `listener` within `limits`, until the process ends.
pub async fn run(listener: TcpListener, app: Router, limits: Limits) {
    let registry: Shared = Arc::default();
    tokio::spawn(reap(registry.clone(), limits.idle_timeout));
    let mut next_id = 0u64;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it
                // was accepted: wait a little and go on.
                if let Some(left_out) = ACCEPT_FAILED.check() {
                    tracing::warn!(left_out, "cria serve: accepting a connection failed: {e}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !make_room(&registry, limits.max_connections, peer) {
            drop(stream);
            continue;
        }
        next_id += 1;
        let id = next_id;
        let close = Arc::new(Notify::new());
        lock(&registry).conns.insert(id, Conn { busy: 0, last_active: Instant::now(), close: close.clone() });
        let (app, registry, header_timeout) = (app.clone(), registry.clone(), limits.header_timeout);
        tokio::spawn(async move {
            let tracker = registry.clone();
            let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                let in_flight = InFlight::new(&tracker, id);
                request.extensions_mut().insert(ConnectInfo(peer));
                let app = app.clone();
                async move {
                    let response = app.oneshot(request).await?;
                    Ok::<_, std::convert::Infallible>(response.map(|body| Tracked { body, _in_flight: in_flight }))
                }
            });
            let _ = stream.set_nodelay(true);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = close.notified() => {}
            }
            lock(&registry).conns.remove(&id);
        });
    }
}

/// Makes room for a new connection from `peer`; false when it must be refused.
fn make_room(registry: &Shared, max: usize, peer: SocketAddr) -> bool {
    let mut registry = lock(registry);
    if registry.conns.len() < max {
        return true;
    }
    match registry.evictable() {
        Some(id) => {
            if let Some(conn) = registry.conns.remove(&id) {
                conn.close.notify_one();
            }
            if let Some(left_out) = AT_CAP.check() {
                tracing::warn!(left_out, "cria serve: {max} connections open (the cap); closing the one idle the longest for a new one from {peer}");
            }
            true
        }
        None => {
            if let Some(left_out) = AT_CAP.check() {
                tracing::warn!(left_out, "cria serve: {max} connections open (the cap), all with a request in flight; refusing a new one from {peer}");
            }
            false
        }
    }
}

/// Closes connections idle past `idle`, once a second.
async fn reap(registry: Shared, idle: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(1).min(idle));
    loop {
        tick.tick().await;
        let mut registry = lock(&registry);
        for id in registry.expired(Instant::now(), idle) {
            if let Some(conn) = registry.conns.remove(&id) {
                conn.close.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(busy: usize, last_active: Instant) -> Conn {
        Conn { busy, last_active, close: Arc::new(Notify::new()) }
    }

    #[test]
    fn the_connection_idle_the_longest_makes_room_and_busy_ones_stay() {
        let t0 = Instant::now();
        let mut registry = Registry::default();
        registry.conns.insert(1, conn(1, t0));
        registry.conns.insert(2, conn(0, t0 + Duration::from_secs(2)));
        registry.conns.insert(3, conn(0, t0 + Duration::from_secs(1)));
        assert_eq!(registry.evictable(), Some(3));
        registry.conns.retain(|id, _| *id == 1);
        assert_eq!(registry.evictable(), None, "a connection with a request in flight is never closed for room");
    }

    #[test]
    fn only_idle_connections_expire() {
        let t0 = Instant::now();
        let mut registry = Registry::default();
        registry.conns.insert(1, conn(1, t0));
        registry.conns.insert(2, conn(0, t0));
        registry.conns.insert(3, conn(0, t0 + Duration::from_secs(30)));
        assert_eq!(registry.expired(t0 + Duration::from_secs(61), Duration::from_secs(60)), vec![2]);
    }

    #[tokio::test]
    async fn the_cap_is_held_and_refusals_are_counted() {
        let registry: Shared = Arc::default();
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let now = Instant::now();
        for id in 0..3 {
            lock(&registry).conns.insert(id, conn(1, now));
        }
        assert!(!make_room(&registry, 3, peer), "all busy: refused");
        lock(&registry).conns.get_mut(&1).unwrap().busy = 0;
        assert!(make_room(&registry, 3, peer), "room made");
        assert_eq!(lock(&registry).conns.len(), 2);
    }
}
