//! Embedded object store: a real S3 server (s3s, SigV4) over a directory,
//! running on the current tokio runtime and bound to loopback.
//!
//! Unlike `s3s-fs`, an upload becomes visible only after every digest the
//! client declared has been checked (Content-MD5, `x-amz-checksum-*`, and the
//! signed `x-amz-content-sha256`, which s3s verifies); a body is staged in
//! `root/staging`, synced, then renamed into place. See `layout` for the
//! directory layout. One `Store` per root directory at a time.

mod api;
mod buckets;
mod ingest;
mod layout;
mod multipart;
mod objects;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use hyper_util::rt::{TokioExecutor, TokioIo};
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::sync::{watch, RwLock, RwLockWriteGuard};
use tokio::task::{JoinHandle, JoinSet};

use self::layout::Layout;

/// How long `shutdown` lets open requests finish before cutting them off.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A staging file or multipart upload untouched this long is a leftover
/// (its writer died or gave up): MinIO's default stale-upload expiry.
const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How often a serving store looks for leftovers, as MinIO's cleanup interval.
const SWEEP_EVERY: Duration = Duration::from_secs(6 * 3600);

/// The S3 backend over one root directory. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    layout: Arc<Layout>,
    /// A writer holds its key's lock to rename data and sidecar into place
    /// together; a reader to open the data file and read its sidecar as one
    /// snapshot.
    locks: Arc<Locks>,
}

/// Stripes of locks, by object key (or multipart upload): writers of
/// different keys rarely wait on each other, while a writer and anyone else
/// on the same key always do. Steps over a whole bucket take every stripe.
struct Locks([RwLock<()>; Locks::STRIPES]);

impl Locks {
    const STRIPES: usize = 64;

    fn new() -> Locks {
        Locks(std::array::from_fn(|_| RwLock::new(())))
    }

    /// The lock of `name` in `space` (a bucket, or uploads).
    fn of(&self, space: &str, name: &str) -> &RwLock<()> {
        use std::hash::{Hash as _, Hasher as _};
        let mut hasher = std::hash::DefaultHasher::new();
        (space, name).hash(&mut hasher);
        &self.0[(hasher.finish() % Self::STRIPES as u64) as usize]
    }

    /// Every stripe, in one order (so two callers cannot deadlock).
    async fn all(&self) -> Vec<RwLockWriteGuard<'_, ()>> {
        let mut guards = Vec::with_capacity(Self::STRIPES);
        for lock in &self.0 {
            guards.push(lock.write().await);
        }
        guards
    }
}

impl Store {
    /// Open the store at `root`, creating its directories, and delete what a
    /// previous run left in `root/staging` (temp files) and `root/uploads`
    /// (multipart uploads never completed: their writers went with that run).
    pub fn open(root: &Path) -> anyhow::Result<Store> {
        let layout = Layout::new(root);
        for dir in [&layout.buckets, &layout.meta, &layout.staging, &layout.uploads] {
            std::fs::create_dir_all(dir).with_context(|| format!("create object store directory {}", dir.display()))?;
        }
        let store = Store { layout: Arc::new(layout), locks: Arc::new(Locks::new()) };
        store.sweep(Duration::ZERO).context("remove what a previous run left")?;
        Ok(store)
    }

    /// Remove the entries of `staging/` (temp files of uploads in flight)
    /// and `uploads/` (multipart uploads) not modified for `older_than`:
    /// every one at open, where no writer can be left; then, while serving,
    /// those older than [`STALE_AFTER`]. A staging file's time moves as its
    /// body is written, an upload folder's as each part lands. Returns how
    /// many it removed.
    fn sweep(&self, older_than: Duration) -> anyhow::Result<usize> {
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        for dir in [&self.layout.staging, &self.layout.uploads] {
            for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
                let entry = entry?;
                let path = entry.path();
                let modified = match entry.metadata().and_then(|m| m.modified()) {
                    Ok(modified) => modified,
                    // Gone meanwhile: committed, or aborted.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e).with_context(|| format!("stat {}", path.display())),
                };
                if now.duration_since(modified).unwrap_or_default() < older_than {
                    continue;
                }
                let gone = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
                match gone {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).with_context(|| format!("remove {}", path.display())),
                }
            }
        }
        Ok(removed)
    }

    /// Create `bucket` unless it exists.
    pub fn ensure_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        if !s3s::path::check_bucket_name(bucket) {
            bail!("`{bucket}` is not a valid S3 bucket name (3-63 chars of a-z, 0-9, `-`, `.`)");
        }
        self.create_bucket_dirs(bucket).with_context(|| format!("create bucket `{bucket}`"))?;
        Ok(())
    }

    /// Open the store at `root` and serve it on `addr` (a loopback address; port 0
    /// picks a free one), requiring SigV4 requests signed with the given key pair.
    /// Must be called inside a tokio runtime; the server runs as a task on it.
    pub fn start(root: &Path, addr: SocketAddr, access_key: &str, secret_key: &str) -> anyhow::Result<RunningStore> {
        Store::open(root)?.serve(addr, access_key, secret_key)
    }

    /// Serve this store on `addr`; see [`Store::start`].
    pub fn serve(self, addr: SocketAddr, access_key: &str, secret_key: &str) -> anyhow::Result<RunningStore> {
        if !addr.ip().is_loopback() {
            bail!("object store address {addr} is not a loopback address; it must bind 127.0.0.1");
        }
        let runtime = tokio::runtime::Handle::try_current().context("the object store must start inside a tokio runtime")?;
        let listener = std::net::TcpListener::bind(addr).with_context(|| format!("bind object store to {addr}"))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let listener = {
            let _enter = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };

        let mut service = S3ServiceBuilder::new(self.clone());
        service.set_auth(SimpleAuth::from_single(access_key, secret_key));
        let (stop, stopped) = watch::channel(false);
        let task = runtime.spawn(serve(listener, service.build(), stopped.clone()));
        runtime.spawn(self.clone().sweep_periodically(stopped));
        tracing::info!(%addr, "object store listening");
        Ok(RunningStore { addr, store: self, stop, task: Some(task) })
    }
}

impl Store {
    /// Every [`SWEEP_EVERY`], remove leftovers older than [`STALE_AFTER`], until told to stop.
    async fn sweep_periodically(self, mut stop: watch::Receiver<bool>) {
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => {
                    let store = self.clone();
                    match tokio::task::spawn_blocking(move || store.sweep(STALE_AFTER)).await {
                        Ok(Ok(0)) => {}
                        Ok(Ok(removed)) => tracing::info!(removed, "object store: removed stale staging files and uploads"),
                        Ok(Err(e)) => tracing::warn!("object store: sweeping stale uploads failed: {e:#}"),
                        Err(e) => tracing::warn!(%e, "object store: the sweep task failed"),
                    }
                }
                () = stopped(&mut stop) => return,
            }
        }
    }
}

/// A store serving HTTP. Dropping it stops the server without waiting.
pub struct RunningStore {
    addr: SocketAddr,
    store: Store,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl RunningStore {
    /// The bound address (with the real port when started with port 0).
    #[cfg(test)]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the endpoint for S3 clients (path-style requests).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Create `bucket` unless it exists.
    pub fn ensure_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        self.store.ensure_bucket(bucket)
    }

    /// Stop accepting connections, let open requests finish (up to 10 s), then return.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            task.await.context("object store server task failed")?;
        }
        Ok(())
    }
}

impl Drop for RunningStore {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// Accept connections until told to stop, then drain them.
async fn serve(listener: tokio::net::TcpListener, service: S3Service, mut stop: watch::Receiver<bool>) {
    let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let conn = http.serve_connection(TokioIo::new(stream), service.clone()).into_owned();
                    let mut stop = stop.clone();
                    connections.spawn(async move {
                        tokio::pin!(conn);
                        let result = tokio::select! {
                            result = conn.as_mut() => result,
                            () = stopped(&mut stop) => {
                                conn.as_mut().graceful_shutdown();
                                conn.await
                            }
                        };
                        if let Err(e) = result {
                            tracing::debug!(%e, "object store connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(%e, "object store could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = stopped(&mut stop) => break,
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("object store: requests still open after {DRAIN_TIMEOUT:?}, aborting them");
        connections.abort_all();
    }
}

/// Resolves once `stop` says so, or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
