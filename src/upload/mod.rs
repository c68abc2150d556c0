//! The write pipeline: part schedule, memory budget, per-object writers and the
//! mount-wide upload pool they feed.

pub mod budget;
pub mod buffers;
pub mod pool;
pub mod schedule;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use crate::s3::S3Client;
use budget::MemoryBudget;
use pool::UploadPool;
use schedule::PartSchedule;

/// What every writer of the mount shares.
pub struct UploadContext {
    pub client: Arc<S3Client>,
    pub pool: UploadPool,
    pub budget: Arc<MemoryBudget>,
    pub schedule: PartSchedule,
    /// How long one part (or small object) keeps being retried before the upload fails.
    pub retry_budget: Duration,
}

impl UploadContext {
    pub fn new(
        client: Arc<S3Client>,
        schedule: PartSchedule,
        memory_budget: u64,
        concurrency: usize,
        retry_budget: Duration,
    ) -> std::io::Result<Arc<Self>> {
        let pool = UploadPool::start(Arc::clone(&client), concurrency, retry_budget)?;
        Ok(Arc::new(Self {
            client,
            pool,
            budget: MemoryBudget::new(memory_budget),
            schedule,
            retry_budget,
        }))
    }
}
