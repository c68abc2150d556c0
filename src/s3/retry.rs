//! The one retry policy above the SDK's own attempts: how long an upload keeps trying.

use std::time::{Duration, Instant};

use super::S3Error;

/// Repeats `attempt` (each already retried by the SDK) while its error is worth another
/// try and `budget` has not run out since the first try: an outage shorter than the
/// budget is ridden out, and a body the server rejected as corrupted in transit
/// (BadDigest) is sent again. `abandon` stops early (the upload failed elsewhere).
pub(crate) fn retry_within<T>(
    budget: Duration,
    mut attempt: impl FnMut() -> Result<T, S3Error>,
    abandon: impl Fn() -> bool,
) -> Result<T, S3Error> {
    let deadline = Instant::now() + budget;
    let mut pause = Duration::from_millis(500);
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(error) if error.is_retryable() && Instant::now() + pause < deadline => {
                if abandon() {
                    return Err(error);
                }
                log::warn!("{error}; trying again in {} ms", pause.as_millis());
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(4));
            }
            Err(error) => return Err(error),
        }
    }
}
