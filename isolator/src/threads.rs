//! The threads of the asynchronous core, all bounded (see
//! [`crate::options::ThreadLimits`]):
//!
//! - the tokio runtime's workers (default 2): every call's future, plugin
//!   execs awaited as child processes, netlink on non-blocking sockets;
//! - tokio's blocking pool (`max_blocking_threads`, default 8): a conflist's
//!   synchronous chain (`cni::runtime`), the `cni-isolator-setup` helper,
//!   fsyncs, a caller's synchronous `Exec`;
//! - short-lived namespace threads ([`NamespaceThreads`], default at most 4
//!   at once): the only threads that call `setns`/`unshare`, each for one
//!   job (open a netlink socket inside a container's netns, the mount/UTS
//!   setup), then they exit with the namespaces they entered.
//!
//! A worker or a blocking-pool thread never changes namespace: both are
//! reused for other calls, and a plugin exec'd from a thread inherits that
//! thread's namespaces.

use crate::error::{Error, Result};
use crate::options::ThreadLimits;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Builds the runtime a handle owns (never a global one).
pub fn build_runtime(limits: ThreadLimits) -> Result<tokio::runtime::Runtime> {
    let limits = limits.resolved();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(limits.workers)
        .max_blocking_threads(limits.blocking)
        .thread_name("rcni-isolator")
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Error::io("start", std::path::Path::new("the isolator's tokio runtime"), e))
}

/// Runs jobs that enter namespaces, each on a new thread of its own, at
/// most `limit` at once; the rest wait (asynchronously) for a turn.
#[derive(Clone, Debug)]
pub struct NamespaceThreads {
    permits: Arc<Semaphore>,
}

impl NamespaceThreads {
    /// At most `limit` threads at once (0: the default).
    pub fn new(limits: ThreadLimits) -> NamespaceThreads {
        NamespaceThreads {
            permits: Arc::new(Semaphore::new(limits.resolved().namespace)),
        }
    }

    /// Runs `job` on a new thread named `name` and awaits its answer. The
    /// thread exits after the job, whatever namespaces it entered.
    pub async fn run<T: Send + 'static>(
        &self,
        name: &str,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Invalid("the namespace threads are closed".into()))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let answer = job();
                let _ = tx.send(answer);
                drop(permit);
            })
            .map_err(|e| Error::io("start a thread for", std::path::Path::new(name), e))?;
        rx.await
            .map_err(|_| Error::Invalid(format!("the {name} thread panicked")))
    }
}
