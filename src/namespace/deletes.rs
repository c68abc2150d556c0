//! Deletes of renamed-away keys, sent after `rename` has returned.
//!
//! A rename is CopyObject + DeleteObject. Once the copy exists the rename has happened
//! for everyone who asks us, so the delete of the old key need not hold up the caller:
//! rsync's per-file rename then costs one round trip instead of two. This module owns
//! the keys whose DeleteObject is still outstanding. The namespace hides them from
//! listings and lookups, and anything that is about to write one of them (a new file of
//! the old name, a rename onto it), list below it (rmdir, directory rename), or promise
//! durability (fsync of a directory, unmount) waits until the deletes are done.
//! A daemon killed in that window leaves the old name behind, as a kill between the two
//! requests of a synchronous rename would.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::wait_while_until;

use log::{debug, warn};

use crate::s3::{ObjectStore, retry_within};

/// Deletes queued beyond this make `rename` wait: memory and the window stay small.
const MAX_QUEUED: usize = 256;

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    /// Queued or being sent.
    outstanding: HashSet<String>,
    stopping: bool,
}

pub(crate) struct DeferredDeletes {
    state: Mutex<State>,
    changed: Condvar,
}

impl DeferredDeletes {
    /// Starts the thread that sends the deletes; it ends when `stop` is called.
    pub(crate) fn start(
        store: Arc<dyn ObjectStore>,
        retry_budget: Duration,
    ) -> std::io::Result<Arc<Self>> {
        let deletes = Arc::new(Self {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let worker = Arc::clone(&deletes);
        std::thread::Builder::new()
            .name("deferred-delete".to_owned())
            .spawn(move || worker.run(store.as_ref(), retry_budget))?;
        Ok(deletes)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed
            .wait(guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues the delete of `key` (waits while the queue is full). False once stopped:
    /// the caller deletes it itself.
    #[must_use]
    pub(crate) fn schedule(&self, key: &str) -> bool {
        let mut state = self.lock();
        while state.queue.len() >= MAX_QUEUED && !state.stopping {
            state = self.wait(state);
        }
        if state.stopping {
            return false;
        }
        if state.outstanding.insert(key.to_owned()) {
            state.queue.push_back(key.to_owned());
        }
        self.changed.notify_all();
        true
    }

    pub(crate) fn is_outstanding(&self, key: &str) -> bool {
        self.lock().outstanding.contains(key)
    }

    /// The outstanding keys that start with `prefix`. A listing sent while one of them
    /// was being deleted may still show it after the delete is done.
    pub(crate) fn outstanding_below(&self, prefix: &str) -> HashSet<String> {
        self.lock()
            .outstanding
            .iter()
            .filter(|key| key.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Makes sure no delete of `key` is pending before something new lands under it.
    /// A delete still queued is taken out of the queue and handed back: true means the
    /// caller must send it itself, now (so it does not wait behind the whole queue, and
    /// the old object is gone even if nothing new lands). One being sent is waited for
    /// (bounded by its retry budget and request timeout).
    #[must_use]
    pub(crate) fn take_or_wait(&self, key: &str) -> bool {
        let mut state = self.lock();
        if let Some(index) = state.queue.iter().position(|queued| queued == key) {
            state.queue.remove(index);
            state.outstanding.remove(key);
            self.changed.notify_all();
            return true;
        }
        while state.outstanding.contains(key) {
            state = self.wait(state);
        }
        false
    }

    /// Waits until no key below `prefix` is waiting to be deleted; false if some still
    /// are at `deadline`.
    pub(crate) fn wait_below(&self, prefix: &str, deadline: Instant) -> bool {
        let (guard, done) = wait_while_until(&self.changed, self.lock(), deadline, |state| {
            state.outstanding.iter().any(|key| key.starts_with(prefix))
        });
        drop(guard);
        done
    }

    /// Returns once every queued delete has been sent (or given up), or at `deadline`.
    pub(crate) fn wait_for_all(&self, deadline: Instant) {
        let (state, done) = wait_while_until(&self.changed, self.lock(), deadline, |state| {
            !state.outstanding.is_empty()
        });
        if !done {
            warn!(
                "{} renamed-away keys not deleted yet; they stay under their old names",
                state.outstanding.len()
            );
        }
    }

    /// Sends what is queued, then ends the worker.
    pub(crate) fn stop(&self, deadline: Instant) {
        self.wait_for_all(deadline);
        self.lock().stopping = true;
        self.changed.notify_all();
    }

    fn run(&self, store: &dyn ObjectStore, retry_budget: Duration) {
        loop {
            let key = {
                let mut state = self.lock();
                loop {
                    if let Some(key) = state.queue.pop_front() {
                        break key;
                    }
                    if state.stopping {
                        return;
                    }
                    state = self.wait(state);
                }
            };
            // The queue has room again.
            self.changed.notify_all();
            match retry_within(retry_budget, || store.delete_object(&key), || false) {
                Ok(()) => debug!("deleted {key:?} (renamed away)"),
                Err(error) => warn!(
                    "could not delete {key:?} after renaming it: {error}; it stays visible under its old name"
                ),
            }
            self.lock().outstanding.remove(&key);
            self.changed.notify_all();
        }
    }
}
