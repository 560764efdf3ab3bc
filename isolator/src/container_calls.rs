//! Which calls of a container are running, so they never overlap: an
//! `isolate` and a `cleanup` (or `check`) of one container run one after
//! the other (no DEL races an ADD of the same container), and a `cleanup`
//! that arrives while an `isolate` runs first cancels it.
//!
//! Per container: an async mutex held for the whole call, and the token of
//! the running `isolate`. `cleanup` cancels that token, then takes the
//! mutex, i.e. waits until the cancelled isolate has stopped (its plugins
//! killed, what it attached left on disk for the DEL that follows).
//! Entries go away with their last user.

use crate::types::ContainerId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Entry {
    running: Arc<tokio::sync::Mutex<()>>,
    isolate: Mutex<Option<CancellationToken>>,
}

/// The running calls of every container.
#[derive(Default)]
pub struct ContainerCalls {
    entries: Arc<Mutex<HashMap<ContainerId, Arc<Entry>>>>,
}

/// One call's turn: holds the container's mutex until dropped.
pub struct Turn {
    // Field order is drop order: the mutex is released before the entry.
    _guard: tokio::sync::OwnedMutexGuard<()>,
    _release: Release,
}

/// Removes the entry when its last user goes.
struct Release {
    entries: Arc<Mutex<HashMap<ContainerId, Arc<Entry>>>>,
    id: ContainerId,
    entry: Arc<Entry>,
    clears_isolate: bool,
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.clears_isolate {
            *lock(&self.entry.isolate) = None;
        }
        let mut entries = lock(&self.entries);
        // The map's reference and ours: nobody else waits for this container.
        if Arc::strong_count(&self.entry) <= 2 {
            entries.remove(&self.id);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ContainerCalls {
    fn entry(&self, id: &ContainerId) -> Arc<Entry> {
        lock(&self.entries).entry(id.clone()).or_default().clone()
    }

    async fn turn(&self, id: &ContainerId, entry: Arc<Entry>, clears_isolate: bool) -> Turn {
        let guard = entry.running.clone().lock_owned().await;
        Turn {
            _guard: guard,
            _release: Release {
                entries: self.entries.clone(),
                id: id.clone(),
                entry,
                clears_isolate,
            },
        }
    }

    /// An `isolate`'s turn: `cancel` becomes the container's isolate token
    /// at once (so a `cleanup` arriving while this isolate still waits for
    /// its turn cancels it too), then the turn is awaited. One isolate per
    /// container at a time, as Mesos calls it.
    pub async fn isolate(&self, id: &ContainerId, cancel: CancellationToken) -> Turn {
        let entry = self.entry(id);
        *lock(&entry.isolate) = Some(cancel);
        self.turn(id, entry, true).await
    }

    /// A `cleanup`'s turn: the running `isolate` of the container, if any,
    /// is cancelled first and then waited for (the mutex is fair: a waiting
    /// isolate goes first, sees its token cancelled and stops).
    pub async fn cleanup(&self, id: &ContainerId) -> Turn {
        let entry = self.entry(id);
        if let Some(token) = lock(&entry.isolate).as_ref() {
            token.cancel();
        }
        self.turn(id, entry, false).await
    }

    /// Any other call that must not overlap an isolate or cleanup (`check`).
    pub async fn exclusive(&self, id: &ContainerId) -> Turn {
        let entry = self.entry(id);
        self.turn(id, entry, false).await
    }

    /// Containers with a call running or waiting (for tests).
    pub fn busy(&self) -> usize {
        lock(&self.entries).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn runtime() -> tokio::runtime::Runtime {
        #[allow(clippy::unwrap_used)]
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn cleanup_cancels_the_running_isolate_and_waits_for_it() {
        runtime().block_on(async {
            let calls = Arc::new(ContainerCalls::default());
            let id = ContainerId::new("c1");
            let token = CancellationToken::new();
            let turn = calls.isolate(&id, token.clone()).await;
            let (c, i) = (calls.clone(), id.clone());
            let cleanup = tokio::spawn(async move {
                let _turn = c.cleanup(&i).await;
            });
            // The isolate sees its token cancelled while it still holds its turn.
            tokio::time::timeout(Duration::from_secs(5), token.cancelled())
                .await
                .expect("cancelled");
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!cleanup.is_finished(), "cleanup ran before the isolate stopped");
            drop(turn);
            cleanup.await.expect("cleanup finished");
            assert_eq!(calls.busy(), 0, "the entry went with its last user");
        });
    }

    #[test]
    fn other_containers_do_not_wait() {
        runtime().block_on(async {
            let calls = ContainerCalls::default();
            let token = CancellationToken::new();
            let _a = calls.isolate(&ContainerId::new("a"), token.clone()).await;
            let _b = tokio::time::timeout(Duration::from_secs(5), calls.cleanup(&ContainerId::new("b")))
                .await
                .expect("no wait for another container");
            assert!(!token.is_cancelled());
            assert_eq!(calls.busy(), 2);
        });
    }
}
