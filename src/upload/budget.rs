//! The mount-wide memory budget for part buffers.
//!
//! A writer reserves a whole part before it fills it and the reservation travels with
//! the part into the upload pool, returning to the budget when the upload is done.
//! Writers never wait while holding their own lock: they ask for memory, get told how
//! much they need, and wait here with a bound ([`MemoryBudget::reserve_waiting`]). A
//! wait ends with memory, with [`WaitFailure::Stalled`] when nothing has been given back
//! for too long (idle open files hold the budget and no upload is in flight that could
//! free it), with [`WaitFailure::Interrupted`] when the caller gave up (a signal), or
//! with [`WaitFailure::Closed`] at unmount. Never forever, never ENOMEM.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Usage {
    reserved: u64,
    high_water: u64,
    /// Bytes of reservations handed to the upload pool: they come back on their own.
    uploading: u64,
    /// Counts every release, so a waiter can tell whether memory is moving at all.
    releases: u64,
    closed: bool,
}

#[derive(Debug)]
pub(crate) struct MemoryBudget {
    limit: u64,
    usage: Mutex<Usage>,
    freed: Condvar,
}

/// Bytes held against the budget; released on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: u64,
    uploading: bool,
}

/// Why a wait for memory ended without it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WaitFailure {
    /// Nothing was given back for the whole stall bound, or nothing is being uploaded
    /// that could give memory back (open idle files hold it all).
    Stalled,
    /// The waiter's caller asked to stop (a signal to the writing process).
    Interrupted,
    /// The mount is shutting down.
    Closed,
}

/// How long a waiter with no upload in flight anywhere keeps hoping that another
/// process closes a file, before it reports the budget exhausted.
const IDLE_GRACE: Duration = Duration::from_secs(5);
/// How often a waiter looks at its cancel check.
const POLL: Duration = Duration::from_millis(100);

impl MemoryBudget {
    pub(crate) fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            usage: Mutex::new(Usage::default()),
            freed: Condvar::new(),
        })
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    fn usage(&self) -> MutexGuard<'_, Usage> {
        // A panic elsewhere must not turn every later write into a panic too.
        self.usage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reserves `bytes` if they are free right now.
    pub(crate) fn try_reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        let mut usage = self.usage();
        self.grant(&mut usage, bytes.min(self.limit))
    }

    /// Reserves `bytes` (clamped to the whole budget), waiting for uploads to give
    /// memory back. The wait fails when no memory comes back for `stall`, when nothing
    /// is uploading for [`IDLE_GRACE`] (so only a close elsewhere could help), when
    /// `cancelled` turns true, or when the budget is closed.
    pub(crate) fn reserve_waiting(
        self: &Arc<Self>,
        bytes: u64,
        stall: Duration,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Reservation, WaitFailure> {
        let bytes = bytes.min(self.limit);
        let mut usage = self.usage();
        let mut seen_releases = usage.releases;
        let mut progress_at = Instant::now();
        loop {
            if usage.closed {
                return Err(WaitFailure::Closed);
            }
            if let Some(reservation) = self.grant(&mut usage, bytes) {
                return Ok(reservation);
            }
            if usage.releases != seen_releases {
                seen_releases = usage.releases;
                progress_at = Instant::now();
            }
            let quiet = progress_at.elapsed();
            if quiet >= stall || (usage.uploading == 0 && quiet >= IDLE_GRACE.min(stall)) {
                return Err(WaitFailure::Stalled);
            }
            drop(usage);
            if cancelled() {
                return Err(WaitFailure::Interrupted);
            }
            usage = self.usage();
            if usage.releases == seen_releases && !usage.closed {
                usage = self
                    .freed
                    .wait_timeout(usage, POLL)
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .0;
            }
        }
    }

    /// Ends every wait with [`WaitFailure::Closed`] (unmount); later waits fail at once.
    pub(crate) fn close(&self) {
        self.usage().closed = true;
        self.freed.notify_all();
    }

    fn grant(self: &Arc<Self>, usage: &mut Usage, bytes: u64) -> Option<Reservation> {
        if usage.reserved + bytes > self.limit {
            return None;
        }
        usage.reserved += bytes;
        usage.high_water = usage.high_water.max(usage.reserved);
        Some(Reservation {
            budget: Arc::clone(self),
            bytes,
            uploading: false,
        })
    }

    /// Bytes reserved now (part buffers filling, queued or in flight).
    pub(crate) fn reserved(&self) -> u64 {
        self.usage().reserved
    }

    /// The most ever reserved at once since the mount started.
    pub(crate) fn high_water(&self) -> u64 {
        self.usage().high_water
    }
}

impl Reservation {
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Marks these bytes as on their way to S3: they will come back without any
    /// writer's help, so waiters keep waiting for them.
    pub(crate) fn start_upload(&mut self) {
        if !self.uploading {
            self.uploading = true;
            self.budget.usage().uploading += self.bytes;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut usage = self.budget.usage();
        usage.reserved -= self.bytes;
        if self.uploading {
            usage.uploading -= self.bytes;
        }
        usage.releases += 1;
        drop(usage);
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(30);

    #[test]
    fn reservations_beyond_the_limit_wait_until_an_upload_returns_memory() {
        let budget = MemoryBudget::new(100);
        let mut first = budget.try_reserve(60).expect("free");
        first.start_upload();
        assert!(budget.try_reserve(50).is_none());
        let waiter = {
            let budget = Arc::clone(&budget);
            std::thread::spawn(move || budget.reserve_waiting(50, LONG, &|| false).map(|r| r.bytes))
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            !waiter.is_finished(),
            "a reservation over the limit must wait while an upload is in flight"
        );
        drop(first);
        assert_eq!(waiter.join().expect("waiter thread"), Ok(50));
        assert_eq!(budget.reserved(), 0);
        assert_eq!(budget.high_water(), 60);
    }

    #[test]
    fn a_wait_that_nothing_in_flight_can_satisfy_fails_instead_of_hanging() {
        let budget = MemoryBudget::new(100);
        // Held by an idle open file: not uploading, nothing will give it back.
        let _idle = budget.try_reserve(100).expect("free");
        let started = Instant::now();
        let result = budget.reserve_waiting(10, LONG, &|| false).map(|r| r.bytes);
        assert_eq!(result, Err(WaitFailure::Stalled));
        assert!(
            started.elapsed() < LONG,
            "gave up after the idle grace, not the stall bound"
        );
    }

    #[test]
    fn a_wait_with_uploads_in_flight_that_never_finish_ends_at_the_stall_bound() {
        let budget = MemoryBudget::new(100);
        let mut stuck = budget.try_reserve(100).expect("free");
        stuck.start_upload();
        let result = budget
            .reserve_waiting(10, Duration::from_millis(300), &|| false)
            .map(|r| r.bytes);
        assert_eq!(result, Err(WaitFailure::Stalled));
    }

    #[test]
    fn a_waiter_is_released_by_its_cancel_check_and_by_close() {
        let budget = MemoryBudget::new(100);
        let mut held = budget.try_reserve(100).expect("free");
        held.start_upload();
        let result = budget.reserve_waiting(10, LONG, &|| true).map(|r| r.bytes);
        assert_eq!(result, Err(WaitFailure::Interrupted));
        let waiter = {
            let budget = Arc::clone(&budget);
            std::thread::spawn(move || budget.reserve_waiting(10, LONG, &|| false).map(|r| r.bytes))
        };
        std::thread::sleep(Duration::from_millis(200));
        budget.close();
        assert_eq!(waiter.join().expect("waiter"), Err(WaitFailure::Closed));
    }
}
