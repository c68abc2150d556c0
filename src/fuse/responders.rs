//! The threads that answer FUSE requests which may wait: close, fsync, rename, setattr,
//! unlink, a write blocked on the memory budget.
//!
//! An idle thread is reused: starting one per request cost more than a small file's
//! chmod itself on these machines (rsync sends three setattrs, a close and a rename per
//! file). When none is idle a new one starts, so a request never queues behind another
//! that blocks (a writer waiting for memory, a close waiting for S3). At most
//! [`MAX_KEPT`] threads stay around; the rest end after their request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender};
use log::error;

type Job = Box<dyn FnOnce() + Send>;

const MAX_KEPT: usize = 32;

pub(crate) struct Responders {
    jobs: Sender<Job>,
    waiting: Receiver<Job>,
    /// Threads blocked (or about to block) on `waiting`; a job is sent only after one of
    /// them has been claimed by decrementing this.
    idle: Arc<AtomicUsize>,
    kept: Arc<AtomicUsize>,
}

impl Default for Responders {
    fn default() -> Self {
        let (jobs, waiting) = crossbeam_channel::unbounded();
        Self {
            jobs,
            waiting,
            idle: Arc::new(AtomicUsize::new(0)),
            kept: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Responders {
    /// Runs `job` on an idle responder thread, or on a new one. If no thread can be
    /// started the job is dropped, which answers its request with EIO.
    pub(crate) fn run(&self, what: &'static str, job: impl FnOnce() + Send + 'static) {
        let claimed = self
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |idle| {
                idle.checked_sub(1)
            })
            .is_ok();
        if claimed {
            match self.jobs.send(Box::new(job)) {
                Ok(()) => return,
                Err(returned) => return self.spawn(what, returned.into_inner()),
            }
        }
        self.spawn(what, Box::new(job));
    }

    fn spawn(&self, what: &'static str, first: Job) {
        let keep = self
            .kept
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |kept| {
                (kept < MAX_KEPT).then_some(kept + 1)
            })
            .is_ok();
        let waiting = self.waiting.clone();
        let idle = Arc::clone(&self.idle);
        let kept = Arc::clone(&self.kept);
        let started = std::thread::Builder::new()
            .name(format!("fuse-{what}"))
            .spawn(move || {
                first();
                if !keep {
                    return;
                }
                loop {
                    idle.fetch_add(1, Ordering::AcqRel);
                    match waiting.recv() {
                        Ok(job) => job(),
                        Err(_) => break,
                    }
                }
                kept.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = started {
            if keep {
                self.kept.fetch_sub(1, Ordering::AcqRel);
            }
            error!("could not start a thread for {what}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_blocked_job_never_holds_up_the_next_one() {
        let responders = Responders::default();
        let (release, blocked) = mpsc::channel::<()>();
        responders.run("blocked", move || {
            let _ = blocked.recv();
        });
        let (done, finished) = mpsc::channel();
        responders.run("next", move || {
            let _ = done.send(());
        });
        assert!(
            finished.recv_timeout(Duration::from_secs(5)).is_ok(),
            "the second job waited for the first"
        );
        let _ = release.send(());
    }

    #[test]
    fn idle_threads_are_reused() {
        let responders = Responders::default();
        let (done, finished) = mpsc::channel();
        for _ in 0..50 {
            let done = done.clone();
            responders.run("job", move || {
                let _ = done.send(std::thread::current().id());
            });
            finished
                .recv_timeout(Duration::from_secs(5))
                .expect("job ran");
            // Let the thread get back to waiting before the next job is handed out.
            while responders.idle.load(Ordering::Acquire) == 0 {
                std::thread::yield_now();
            }
        }
        assert!(
            responders.kept.load(Ordering::Acquire) <= 2,
            "50 sequential jobs started {} threads",
            responders.kept.load(Ordering::Acquire)
        );
    }
}
