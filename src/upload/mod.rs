//! The write pipeline: part schedule, memory budget, per-object writers and the
//! mount-wide upload pool they feed.

pub(crate) mod budget;
pub(crate) mod buffers;
mod error;
pub(crate) mod pool;
pub(crate) mod schedule;
pub(crate) mod writer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::s3::ObjectStore;
use budget::{MemoryBudget, Reservation, WaitFailure};
pub(crate) use error::{UploadError, upload_error};
use pool::UploadPool;
use schedule::PartSchedule;

/// What every writer of the mount shares.
pub(crate) struct UploadContext {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) pool: UploadPool,
    pub(crate) budget: Arc<MemoryBudget>,
    pub(crate) schedule: PartSchedule,
    /// How long one part (or small object) keeps being retried before the upload fails.
    pub(crate) retry_budget: Duration,
}

impl UploadContext {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        schedule: PartSchedule,
        memory_budget: u64,
        concurrency: usize,
        retry_budget: Duration,
    ) -> std::io::Result<Arc<Self>> {
        let pool = UploadPool::start(Arc::clone(&store), concurrency, retry_budget)?;
        Ok(Arc::new(Self {
            store,
            pool,
            budget: MemoryBudget::new(memory_budget),
            schedule,
            retry_budget,
        }))
    }
}

impl UploadContext {
    /// How long a blocked writer waits with no memory coming back at all: a part in
    /// flight ends (uploaded or failed) within its retry budget plus one request.
    pub(crate) fn stall_bound(&self) -> Duration {
        self.retry_budget + Duration::from_secs(30)
    }

    /// Waits, without holding any writer's lock, for what a blocked writer needs:
    /// a reservation to hand over with `give_spare`, or room in the upload backlog.
    pub(crate) fn wait_for(
        &self,
        need: writer::Need,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Option<Reservation>, WaitFailure> {
        match need {
            writer::Need::Memory(bytes) => self
                .budget
                .reserve_waiting(bytes, self.stall_bound(), cancelled)
                .map(Some),
            writer::Need::Room => {
                let deadline = Instant::now() + self.stall_bound();
                while !self.pool.wait_for_room(Duration::from_millis(100)) {
                    if cancelled() {
                        return Err(WaitFailure::Interrupted);
                    }
                    if Instant::now() >= deadline {
                        return Err(WaitFailure::Stalled);
                    }
                }
                Ok(None)
            }
        }
    }
}
