//! The mount-wide memory budget for part buffers.
//!
//! A writer reserves a whole part before it fills it and the reservation travels with
//! the part into the upload pool, returning to the budget when the upload is done.
//! Because a writer only ever waits while holding no unfilled reservation, every byte
//! of the budget is either being filled by a running writer or being uploaded, so
//! waiting writers always make progress: back-pressure, never deadlock, never ENOMEM.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Usage {
    reserved: u64,
    high_water: u64,
}

#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    usage: Mutex<Usage>,
    freed: Condvar,
}

/// Bytes held against the budget; released on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl MemoryBudget {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            usage: Mutex::new(Usage::default()),
            freed: Condvar::new(),
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn usage(&self) -> MutexGuard<'_, Usage> {
        // A panic elsewhere must not turn every later write into a panic too.
        self.usage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reserves `bytes` if they are free right now.
    pub fn try_reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        let mut usage = self.usage();
        self.grant(&mut usage, bytes)
    }

    /// Reserves `bytes`, waiting for uploads to give memory back.
    /// `bytes` above the whole budget are clamped to it (the schedule never asks for that).
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Reservation {
        let bytes = bytes.min(self.limit);
        let mut usage = self.usage();
        loop {
            if let Some(reservation) = self.grant(&mut usage, bytes) {
                return reservation;
            }
            usage = self
                .freed
                .wait(usage)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
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
        })
    }

    pub fn reserved(&self) -> u64 {
        self.usage().reserved
    }

    /// The most ever reserved at once since the mount started.
    pub fn high_water(&self) -> u64 {
        self.usage().high_water
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut usage = self.budget.usage();
        usage.reserved -= self.bytes;
        drop(usage);
        self.budget.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reservations_beyond_the_limit_wait_until_memory_is_returned() {
        let budget = MemoryBudget::new(100);
        let first = budget.reserve(60);
        assert!(budget.try_reserve(50).is_none());
        let waiter = {
            let budget = Arc::clone(&budget);
            std::thread::spawn(move || budget.reserve(50).bytes)
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !waiter.is_finished(),
            "a reservation over the limit must wait"
        );
        drop(first);
        assert_eq!(waiter.join().expect("waiter thread"), 50);
        assert_eq!(budget.reserved(), 0);
        assert_eq!(budget.high_water(), 60);
    }
}
