//! What the write pipeline reports while it works, for `s3upfs status` and the metrics
//! endpoint: per file ([`FileProgress`], shared by the writer, its multipart upload and
//! the namespace's open file, all atomics so a status request never waits on a writer)
//! and per mount ([`MountTotals`]). Nothing here decides anything: it only counts.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

/// How many recent failures the mount remembers for `status`.
const RECENT_FAILURES: usize = 20;

/// Where one file's upload stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FileState {
    Writing,
    Completing,
    Completed,
    Failed,
}

/// One file's counters.
#[derive(Debug)]
pub(crate) struct FileProgress {
    started: Instant,
    state: AtomicU8,
    /// Bytes of parts S3 has acknowledged (UploadPart answered, or the PutObject).
    acknowledged: AtomicU64,
    parts_done: AtomicU32,
    in_flight: AtomicU32,
    /// Parts in flight that failed at least once and are being tried again.
    retrying: AtomicU32,
    failure: Mutex<Option<String>>,
}

impl Default for FileProgress {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            state: AtomicU8::new(FileState::Writing as u8),
            acknowledged: AtomicU64::new(0),
            parts_done: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            retrying: AtomicU32::new(0),
            failure: Mutex::new(None),
        }
    }
}

/// A file's counters at one moment, as `status` shows them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct FileSnapshot {
    pub(crate) key: String,
    pub(crate) state: FileState,
    pub(crate) bytes_written: u64,
    pub(crate) bytes_acknowledged: u64,
    pub(crate) parts_done: u32,
    pub(crate) parts_in_flight: u32,
    pub(crate) parts_retrying: u32,
    /// Acknowledged bytes per second since the file was opened.
    pub(crate) bytes_per_second: u64,
    pub(crate) seconds: f64,
    pub(crate) failure: Option<String>,
}

impl FileProgress {
    pub(crate) fn set_state(&self, state: FileState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, why: &str) {
        *self
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(why.to_owned());
        self.set_state(FileState::Failed);
    }

    pub(crate) fn part_sent(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn part_retried(&self, first_retry: bool) {
        if first_retry {
            self.retrying.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A part is no longer in flight: `bytes` acknowledged, or None when it failed.
    pub(crate) fn part_done(&self, bytes: Option<u64>, was_retrying: bool) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        if was_retrying {
            self.retrying.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(bytes) = bytes {
            self.parts_done.fetch_add(1, Ordering::Relaxed);
            self.acknowledged.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self, key: String, bytes_written: u64) -> FileSnapshot {
        let state = match self.state.load(Ordering::Relaxed) {
            s if s == FileState::Completing as u8 => FileState::Completing,
            s if s == FileState::Completed as u8 => FileState::Completed,
            s if s == FileState::Failed as u8 => FileState::Failed,
            _ => FileState::Writing,
        };
        let seconds = self.started.elapsed().as_secs_f64();
        let acknowledged = self.acknowledged.load(Ordering::Relaxed);
        FileSnapshot {
            key,
            state,
            bytes_written,
            bytes_acknowledged: acknowledged,
            parts_done: self.parts_done.load(Ordering::Relaxed),
            parts_in_flight: self.in_flight.load(Ordering::Relaxed),
            parts_retrying: self.retrying.load(Ordering::Relaxed),
            bytes_per_second: (acknowledged as f64 / seconds.max(1e-3)) as u64,
            seconds,
            failure: self
                .failure
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        }
    }
}

/// A failure as `status` lists it: enough to act on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct FailureRecord {
    pub(crate) key: String,
    pub(crate) error: String,
    /// Seconds since the Unix epoch.
    pub(crate) at: u64,
}

/// The mount's counters since it was mounted.
#[derive(Debug)]
pub(crate) struct MountTotals {
    started: Instant,
    bytes_uploaded: AtomicU64,
    objects_uploaded: AtomicU64,
    retries: AtomicU64,
    failures: AtomicU64,
    recent_failures: Mutex<VecDeque<FailureRecord>>,
}

impl Default for MountTotals {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            bytes_uploaded: AtomicU64::new(0),
            objects_uploaded: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            recent_failures: Mutex::new(VecDeque::new()),
        }
    }
}

/// The totals at one moment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TotalsSnapshot {
    pub(crate) seconds: f64,
    pub(crate) bytes_uploaded: u64,
    pub(crate) objects_uploaded: u64,
    /// Bytes uploaded per second since the mount.
    pub(crate) bytes_per_second: u64,
    pub(crate) retries: u64,
    pub(crate) failures: u64,
    pub(crate) recent_failures: Vec<FailureRecord>,
}

impl MountTotals {
    /// Bytes S3 acknowledged (a part, or a whole small object).
    pub(crate) fn uploaded(&self, bytes: u64) {
        self.bytes_uploaded.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn object_completed(&self) {
        self.objects_uploaded.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, key: &str, error: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut recent = self
            .recent_failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if recent.len() == RECENT_FAILURES {
            recent.pop_front();
        }
        recent.push_back(FailureRecord {
            key: key.to_owned(),
            error: error.to_owned(),
            at,
        });
    }

    pub(crate) fn snapshot(&self) -> TotalsSnapshot {
        let seconds = self.started.elapsed().as_secs_f64();
        let bytes = self.bytes_uploaded.load(Ordering::Relaxed);
        TotalsSnapshot {
            seconds,
            bytes_uploaded: bytes,
            objects_uploaded: self.objects_uploaded.load(Ordering::Relaxed),
            bytes_per_second: (bytes as f64 / seconds.max(1e-3)) as u64,
            retries: self.retries.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            recent_failures: self
                .recent_failures
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .iter()
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_retried_then_done_counts_once_and_leaves_no_retrying_part() {
        let file = FileProgress::default();
        file.part_sent();
        file.part_sent();
        file.part_retried(true);
        let during = file.snapshot("k".to_owned(), 10);
        assert_eq!((during.parts_in_flight, during.parts_retrying), (2, 1));
        file.part_done(Some(5), true);
        file.part_done(None, false);
        let after = file.snapshot("k".to_owned(), 10);
        assert_eq!(
            (
                after.parts_done,
                after.parts_in_flight,
                after.parts_retrying
            ),
            (1, 0, 0)
        );
        assert_eq!(after.bytes_acknowledged, 5);
    }

    #[test]
    fn only_the_last_failures_are_kept() {
        let totals = MountTotals::default();
        for i in 0..(RECENT_FAILURES + 5) {
            totals.failed(&format!("k{i}"), "boom");
        }
        let snapshot = totals.snapshot();
        assert_eq!(snapshot.failures, (RECENT_FAILURES + 5) as u64);
        assert_eq!(snapshot.recent_failures.len(), RECENT_FAILURES);
        assert_eq!(snapshot.recent_failures[0].key, "k5");
    }
}
