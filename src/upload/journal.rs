//! The resume journal: one small JSON file per multipart upload the mount starts,
//! written durably (fsync of the file and its directory) right after
//! CreateMultipartUpload and before the first part goes out, removed at Complete or
//! Abort. A daemon that dies leaves its entries behind, and the next mount of the bucket
//! finds them: those uploads are *parked*, and a file written again under the same key
//! continues its upload, sending only the parts S3 does not already hold (see
//! `writer::resume`). Only this journal's uploads are ever resumed, never another
//! mount's or host's. The cost is one file write and two fsyncs per multipart upload,
//! nothing per part.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use log::warn;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use crate::s3::ObjectHeaders;

/// Uploads with fewer acknowledged parts than this are aborted, not parked: re-sending
/// them costs little (8 parts of 8 MiB: 64 MiB, about a second on a fast link).
pub(crate) const PARK_MIN_PARTS: u32 = 8;

/// One multipart upload as the journal records it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Entry {
    pub(crate) bucket: String,
    pub(crate) key: String,
    pub(crate) upload_id: String,
    /// The schedule's first part size: a resume needs the same part boundaries.
    pub(crate) part_size: u64,
    /// The metadata sent at Create (corrected after Complete when the rewrite differs).
    pub(crate) metadata: HashMap<String, String>,
    pub(crate) content_type: Option<String>,
    /// Seconds since the Unix epoch when the upload was created.
    pub(crate) created: u64,
}

impl Entry {
    pub(crate) fn headers(&self) -> ObjectHeaders {
        ObjectHeaders {
            metadata: self.metadata.clone(),
            content_type: self.content_type.clone(),
        }
    }

    /// Whether it is older than `window`.
    pub(crate) fn expired(&self, window: Duration) -> bool {
        now_seconds().saturating_sub(self.created) > window.as_secs()
    }
}

pub(crate) fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The journal of one source (endpoint, bucket and prefix): its own directory below
/// `state_dir/uploads`, locked (flock) by the mount using it, so two mounts never share
/// one and a mount never reads another's entries.
#[derive(Debug)]
pub(crate) struct Journal {
    dir: PathBuf,
    bucket: String,
    part_size: u64,
    /// The lock on `dir/lock`, taken when the directory is first used.
    lock: std::sync::Mutex<Option<std::fs::File>>,
}

/// Takes `dir/lock` for this process (creating it), or says that it is held.
fn take_lock(dir: &Path) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    // SAFETY: flock on a descriptor this function owns; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(std::io::Error::other(format!(
            "{} is in use by another mount of the same source",
            dir.display()
        )));
    }
    Ok(file)
}

impl Journal {
    /// The journal of `source` (endpoint, bucket and prefix, as one string) in
    /// `state_dir/uploads/BUCKET-HASH`, made owner-only by its first entry (a mount that
    /// never starts a multipart upload leaves nothing behind). Fails when another live
    /// mount of the same source holds it.
    pub(crate) fn open(
        state_dir: &Path,
        source: &str,
        bucket: &str,
        part_size: u64,
    ) -> std::io::Result<Self> {
        if state_dir.exists() && !state_dir.is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is not a directory",
                state_dir.display()
            )));
        }
        let name: String = bucket
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
            .take(63)
            .collect();
        let dir = state_dir
            .join("uploads")
            .join(format!("{name}-{:08x}", crc32c::crc32c(source.as_bytes())));
        let lock = if dir.is_dir() {
            Some(take_lock(&dir)?)
        } else {
            None
        };
        Ok(Self {
            dir,
            bucket: bucket.to_owned(),
            part_size,
            lock: std::sync::Mutex::new(lock),
        })
    }

    /// Creates the directory (owner-only) and takes its lock, once.
    fn ensure_dir(&self) -> std::io::Result<()> {
        let mut lock = self
            .lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if lock.is_none() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)?;
            *lock = Some(take_lock(&self.dir)?);
        }
        Ok(())
    }

    /// An upload id's file: its hash, then as much of it as a file name holds.
    fn path_of(&self, upload_id: &str) -> PathBuf {
        let readable: String = utf8_percent_encode(upload_id, NON_ALPHANUMERIC)
            .to_string()
            .chars()
            .take(100)
            .collect();
        self.dir.join(format!(
            "{:08x}-{readable}.json",
            crc32c::crc32c(upload_id.as_bytes())
        ))
    }

    /// Records a new upload durably. Failing leaves the upload working, only not
    /// resumable (the caller logs it).
    pub(crate) fn record(
        &self,
        key: &str,
        upload_id: &str,
        headers: &ObjectHeaders,
    ) -> std::io::Result<()> {
        let entry = Entry {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
            part_size: self.part_size,
            metadata: headers.metadata.clone(),
            content_type: headers.content_type.clone(),
            created: now_seconds(),
        };
        let json = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        self.ensure_dir()?;
        let path = self.path_of(upload_id);
        let temporary = path.with_extension("tmp");
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// Forgets an upload (completed or aborted).
    pub(crate) fn remove(&self, upload_id: &str) {
        let path = self.path_of(upload_id);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!("could not remove journal entry {}: {e}", path.display());
        }
    }

    /// The recorded uploads of this bucket; unreadable entries are skipped (logged).
    pub(crate) fn entries(&self) -> Vec<Entry> {
        let Ok(files) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        files
            .flatten()
            .filter(|f| f.path().extension().is_some_and(|e| e == "json"))
            .filter_map(|f| {
                let text = std::fs::read(f.path()).ok()?;
                match serde_json::from_slice::<Entry>(&text) {
                    Ok(entry) => Some(entry),
                    Err(e) => {
                        warn!("skipping journal entry {}: {e}", f.path().display());
                        None
                    }
                }
            })
            .filter(|entry| entry.bucket == self.bucket)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_found_after_a_restart_until_removed_and_other_buckets_are_not_ours() {
        let dir = tempfile::tempdir().expect("tempdir");
        let headers = ObjectHeaders {
            metadata: HashMap::from([("mode".to_owned(), "33188".to_owned())]),
            content_type: Some("text/plain".to_owned()),
        };
        let journal = Journal::open(dir.path(), "e|b|", "b", 8 << 20).unwrap();
        journal.record("k", "id/1+x", &headers).unwrap();
        let other = Journal::open(dir.path(), "e|other|", "other", 8 << 20).unwrap();
        other.record("k", "id2", &headers).unwrap();
        assert!(
            Journal::open(dir.path(), "e|b|", "b", 8 << 20).is_err(),
            "a second live mount of the same source cannot share it"
        );
        drop(journal);
        let again = Journal::open(dir.path(), "e|b|", "b", 8 << 20).unwrap();
        let entries = again.entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].upload_id, "id/1+x");
        assert_eq!(entries[0].headers(), headers);
        assert!(!entries[0].expired(Duration::from_secs(60)));
        again.remove("id/1+x");
        assert!(again.entries().is_empty());
    }
}
