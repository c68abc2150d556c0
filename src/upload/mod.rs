//! The write pipeline: how the bytes of a FUSE write become UploadPart requests.
//!
//! A file open for writing has one [`writer::ObjectWriter`] (the namespace's `files`
//! owns it). A write copies bytes into the writer's current part buffer, sized by the
//! part [`schedule`] (5 MiB doubling every 500 parts, so 10,000 parts reach 5 TiB) and
//! paid for from the mount-wide memory [`budget`] (buffers are recycled by
//! [`buffers`]). When a buffer is full it goes to the upload [`pool`]: worker threads
//! that create the multipart upload on first need and send each part as UploadPart
//! with its CRC32C, retried within the retry budget; the memory returns when the part
//! is uploaded. Part 1 stays in memory until completion (a header may still be
//! patched), and a small file never leaves memory before its close: then
//! `writer/commit.rs` sends one PutObject, or waits for the parts and sends
//! CompleteMultipartUpload, and checks that what landed is what was written. A writer
//! that cannot get memory says what it needs, and the caller waits without holding the
//! writer's lock ([`UploadContext::wait_for`], bounded). Any failure aborts the upload,
//! so nothing half-written appears, and is an [`UploadError`] with the errno the
//! writer's close gets.

pub(crate) mod budget;
pub(crate) mod buffers;
mod error;
pub(crate) mod journal;
pub(crate) mod pool;
pub(crate) mod progress;
pub(crate) mod resume;
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
    /// What the mount uploaded, retried and failed since it was mounted.
    pub(crate) totals: Arc<progress::MountTotals>,
    /// Parked uploads and the journal, unless resuming is off.
    pub(crate) resume: Option<Arc<resume::Resume>>,
}

impl UploadContext {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        schedule: PartSchedule,
        memory_budget: u64,
        concurrency: usize,
        retry_budget: Duration,
        resume: Option<Arc<resume::Resume>>,
    ) -> std::io::Result<Arc<Self>> {
        let totals = Arc::new(progress::MountTotals::default());
        let pool = UploadPool::start(
            Arc::clone(&store),
            concurrency,
            retry_budget,
            Arc::clone(&totals),
            resume.clone(),
        )?;
        Ok(Arc::new(Self {
            store,
            pool,
            totals,
            resume,
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
