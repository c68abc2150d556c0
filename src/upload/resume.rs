//! Parked uploads: multipart uploads of this mount's journal that were stopped before
//! Complete (the daemon died, the network stayed down past the retry budget, the
//! writer failed or its file was unlinked) with at least [`PARK_MIN_PARTS`] parts in
//! S3. They are kept for `--resume-window` so a rewrite of the same key can continue
//! them, then aborted by the mount: every upload it starts still ends in Complete or
//! Abort. What the registry holds is what the journal holds, by key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use log::{info, warn};
use serde::{Deserialize, Serialize};

use super::journal::{Entry, Journal, PARK_MIN_PARTS};
use crate::s3::ObjectStore;

/// `(directory prefix, final name)` when `key` is an rsync temporary name
/// `DIR/.NAME.XXXXXX` (mkstemp's six letters or digits).
fn rsync_temporary(key: &str) -> Option<(&str, &str)> {
    let (dir, name) = key.rsplit_once('/').unwrap_or(("", key));
    let (stem, suffix) = name.strip_prefix('.')?.rsplit_once('.')?;
    (suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_alphanumeric()) && !stem.is_empty())
        .then_some((dir, stem))
}

pub(crate) struct Resume {
    journal: Journal,
    window: Duration,
    parked: Mutex<HashMap<String, Entry>>,
    store: Arc<dyn ObjectStore>,
}

/// A parked upload as `status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ParkedSnapshot {
    pub(crate) key: String,
    pub(crate) upload_id: String,
    /// Seconds until the mount aborts it.
    pub(crate) expires_in: u64,
}

impl Resume {
    /// The journal's uploads: those older than `window` are aborted now, the rest parked.
    pub(crate) fn load(
        journal: Journal,
        window: Duration,
        store: Arc<dyn ObjectStore>,
    ) -> Arc<Self> {
        let resume = Arc::new(Self {
            journal,
            window,
            parked: Mutex::new(HashMap::new()),
            store: Arc::clone(&store),
        });
        for entry in resume.journal.entries() {
            if entry.expired(window) {
                resume.abort(&entry, "its resume window passed");
                continue;
            }
            // A daemon that died leaves every upload it had started; only those with
            // enough parts in S3 are worth keeping.
            let parts = match store.list_parts(&entry.key, &entry.upload_id) {
                Ok(parts) => parts.len() as u32,
                Err(e) if e.kind == crate::s3::S3ErrorKind::NotFound => {
                    resume.journal.remove(&entry.upload_id);
                    continue;
                }
                Err(e) => {
                    warn!(
                        "cannot list the parts of the upload of {:?}: {e}",
                        entry.key
                    );
                    continue;
                }
            };
            if !resume.parks(parts) {
                resume.abort(&entry, "too few parts in S3 to be worth resuming");
            } else {
                info!(
                    "parked upload of {:?} ({}) found: writing the file again resumes it",
                    entry.key, entry.upload_id
                );
                resume.parked().insert(entry.key.clone(), entry);
            }
        }
        resume
    }

    fn parked(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.parked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Whether an upload stopped with `parts_done` parts in S3 is parked, not aborted.
    pub(crate) fn parks(&self, parts_done: u32) -> bool {
        parts_done >= PARK_MIN_PARTS
    }

    /// Parks a stopped upload: its journal entry stays, and a rewrite of `key` finds it.
    /// False when the journal does not know it (its entry could not be written, or a
    /// rename made it): the caller aborts it then.
    pub(crate) fn park(&self, key: &str, upload_id: &str) -> bool {
        let Some(entry) = self
            .journal
            .entries()
            .into_iter()
            .find(|e| e.upload_id == upload_id)
        else {
            return false;
        };
        info!(
            "parked the upload of {key:?} ({upload_id}) for {} s: writing it again resumes it",
            self.window.as_secs()
        );
        let replaced = self.parked().insert(key.to_owned(), entry);
        if let Some(older) = replaced.filter(|older| older.upload_id != upload_id) {
            self.abort(&older, "a newer upload of the same key was parked");
        }
        true
    }

    /// The parked upload of `key`, now owned by the caller (a rewrite resuming it).
    /// For an rsync temporary name (`dir/.NAME.XXXXXX`), one parked under another
    /// temporary name of the same file counts too: a re-run of rsync picks a new
    /// random suffix. Which parts are reused is decided by content (size and CRC32C of
    /// each part), so a wrong guess costs only what it always costs: the upload.
    pub(crate) fn take(&self, key: &str) -> Option<Entry> {
        let mut parked = self.parked();
        if let Some(entry) = parked.remove(key) {
            return Some(entry);
        }
        let wanted = rsync_temporary(key)?;
        let sibling = parked
            .keys()
            .find(|other| rsync_temporary(other) == Some(wanted))?
            .clone();
        // Completing it lands on the sibling's key: only if nothing is there (it is a
        // temporary name nobody finished, not a file that happens to look like one).
        if !matches!(self.store.head_object(&sibling), Ok(None)) {
            return None;
        }
        parked.remove(&sibling)
    }

    /// Aborts a parked upload that cannot be used, and forgets it; false when the
    /// abort failed (the journal keeps it, so it is tried again).
    pub(crate) fn abort(&self, entry: &Entry, why: &str) -> bool {
        match self
            .store
            .abort_multipart_upload(&entry.key, &entry.upload_id)
        {
            Ok(()) => {
                info!("aborted the parked upload of {:?} ({why})", entry.key);
                self.journal.remove(&entry.upload_id);
                true
            }
            Err(e) if e.kind == crate::s3::S3ErrorKind::NotFound => {
                self.journal.remove(&entry.upload_id);
                true
            }
            Err(e) => {
                warn!(
                    "could not abort the parked upload of {:?} ({e}); trying again later",
                    entry.key
                );
                false
            }
        }
    }

    /// Aborts the parked uploads whose window has passed (the sweep calls it).
    pub(crate) fn expire(&self) {
        let expired: Vec<Entry> = {
            let mut parked = self.parked();
            let keys: Vec<String> = parked
                .iter()
                .filter(|(_, e)| e.expired(self.window))
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| parked.remove(k)).collect()
        };
        for entry in expired {
            if !self.abort(&entry, "its resume window passed") {
                // The server did not answer: the next sweep tries again.
                self.parked().entry(entry.key.clone()).or_insert(entry);
            }
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<ParkedSnapshot> {
        let now = super::journal::now_seconds();
        let mut parked: Vec<ParkedSnapshot> = self
            .parked()
            .values()
            .map(|e| ParkedSnapshot {
                key: e.key.clone(),
                upload_id: e.upload_id.clone(),
                expires_in: (e.created + self.window.as_secs()).saturating_sub(now),
            })
            .collect();
        parked.sort_by(|a, b| a.key.cmp(&b.key));
        parked
    }
}

#[cfg(test)]
mod tests {
    use super::rsync_temporary;

    #[test]
    fn rsync_temporary_names_are_recognised_by_their_final_name_and_directory() {
        assert_eq!(rsync_temporary("d/.big.bin.a1B2c3"), Some(("d", "big.bin")));
        assert_eq!(rsync_temporary(".x.Zz9999"), Some(("", "x")));
        assert_eq!(rsync_temporary("d/big.bin.a1b2c3"), None, "no leading dot");
        assert_eq!(
            rsync_temporary("d/.big.bin.a1b2"),
            None,
            "not six characters"
        );
        assert_eq!(rsync_temporary("d/.big.bin.a1b2-3"), None);
    }
}
