//! Write-behind: what is *held*, when it lands, and who waits for it.
//!
//! **Held** means accepted, shown by `stat` and `readdir`, and not yet sent to S3. The
//! namespace holds three things:
//! - attribute changes (chmod, chown, utimes) on a finished object, for up to
//!   [`PENDING_METADATA_DELAY`], so that rsync's chmod + utimes + rename cost one
//!   CopyObject (the rename's) instead of three; a change with no rename to ride is
//!   sent as one CopyObject of the object onto itself;
//! - a new directory's marker, for the same delay, so mkdir + chmod + utimes cost one
//!   PutObject and a directory removed at once costs none;
//! - the old key of a renamed file, deleted by the delete thread (`deletes`) after the
//!   rename returned.
//!
//! They land on the flusher thread's next pass after the delay, at fsync of a
//! directory ([`Namespace::sync_namespace_changes`]), and at unmount. Whatever replaces
//! or removes a key takes its held change away first and waits for a self-copy in
//! flight (`wait_for_flush_of`), and a name about to be reused sends its queued delete
//! first (`delete_before_reuse`), so nothing held can land over something newer.

use std::collections::HashSet;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use log::{debug, warn};

use super::inode::Kind;
use super::metadata::PosixMetadata;
use super::*;
use crate::s3::{DIRECTORY_CONTENT_TYPE, ObjectHeaders, crc32c_base64};

/// How long chmod/chown/utimes on a finished object are held for a following rename
/// to carry them, before they are sent on their own.
pub(super) const PENDING_METADATA_DELAY: Duration = Duration::from_secs(1);

/// A held change due to be sent, as the flusher found it.
struct Due {
    ino: u64,
    since: Instant,
    path: String,
    metadata: PosixMetadata,
    foreign: Option<Arc<ObjectHeaders>>,
    size: u64,
    kind: Kind,
}

impl Namespace {
    /// Before something new lands under `key`: a delete of it still queued (a file
    /// renamed away from this name) is sent now, one in progress waited for.
    pub(super) fn delete_before_reuse(&self, key: &str) -> FsResult<()> {
        if self.deletes.take_or_wait(key) {
            self.store.delete_object(key).map_err(FsError::from)?;
        }
        Ok(())
    }

    pub(super) fn flushing_keys(&self) -> MutexGuard<'_, HashSet<String>> {
        self.flushing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until the flusher is not copying `key` onto itself (see `flushing`).
    /// Call after taking the inode's held change away under the table lock.
    pub(super) fn wait_for_flush_of(&self, key: &str) {
        let deadline = Instant::now() + self.uploads.stall_bound();
        let (guard, done) =
            wait_while_until(&self.flushed, self.flushing_keys(), deadline, |keys| {
                keys.contains(key)
            });
        drop(guard);
        if !done {
            warn!("{key:?}: its attribute change is still being applied; going ahead");
        }
    }

    pub(super) fn lock_marker_writes(&self) -> MutexGuard<'_, ()> {
        self.marker_writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn put_marker(
        &self,
        marker_key: &str,
        metadata: &PosixMetadata,
        foreign: Option<&ObjectHeaders>,
    ) -> FsResult<()> {
        self.put_small(
            marker_key,
            Bytes::new(),
            &Self::headers_for(metadata, foreign, Some(DIRECTORY_CONTENT_TYPE)),
        )
    }

    /// One PutObject of a body the namespace makes itself (marker, symlink, truncation).
    pub(super) fn put_small(
        &self,
        key: &str,
        body: Bytes,
        headers: &ObjectHeaders,
    ) -> FsResult<()> {
        let checksum = crc32c_base64(&body);
        self.store
            .put_object(key, body, &checksum, headers)
            .map_err(FsError::from)?;
        Ok(())
    }

    /// Starts the thread that sends held attribute changes once they are
    /// [`PENDING_METADATA_DELAY`] old; it ends with the namespace.
    pub(crate) fn start_metadata_flusher(namespace: &Arc<Namespace>) -> std::io::Result<()> {
        let weak = Arc::downgrade(namespace);
        std::thread::Builder::new()
            .name("metadata-flush".to_owned())
            .spawn(move || {
                let mut last_count = 0;
                for tick in 1u64.. {
                    std::thread::sleep(PENDING_METADATA_DELAY / 4);
                    let Some(namespace) = weak.upgrade() else {
                        return;
                    };
                    namespace.apply_pending_metadata(PENDING_METADATA_DELAY);
                    // Every 5 s: names listed but never looked up leave the table.
                    if tick % 20 == 0 {
                        let pruned = namespace.table().prune_unreferenced(Instant::now());
                        if pruned > 0 {
                            debug!("forgot {pruned} listed names nobody looked up");
                        }
                        if let Some(resume) = &namespace.uploads.resume {
                            resume.expire();
                        }
                        let let_go = namespace.let_go_of_idle();
                        if let_go > 0 {
                            debug!("asked the kernel to drop {let_go} idle names");
                        }
                        let count = namespace.inode_count();
                        if count != last_count {
                            debug!("{count} inodes in the table");
                            last_count = count;
                        }
                    }
                }
            })
            .map(|_| ())
    }

    /// Sends attribute changes held for at least `min_age` (CopyObject onto itself).
    pub(crate) fn apply_pending_metadata(&self, min_age: Duration) {
        let now = Instant::now();
        // The change stays held (and so what stat shows) until it has landed: a stat in
        // between must not fetch the object's old attributes over it.
        let due: Vec<Due> = {
            let mut table = self.table();
            let held = table.held();
            held.into_iter()
                .filter_map(|ino| {
                    let inode = table.get(ino)?;
                    let since = inode.pending_metadata_since?;
                    if now.duration_since(since) < min_age {
                        return None;
                    }
                    Some(Due {
                        ino,
                        since,
                        path: inode.path.clone(),
                        metadata: inode.metadata,
                        foreign: inode.foreign.clone(),
                        size: inode.size,
                        kind: inode.kind,
                    })
                })
                .collect()
        };
        for Due {
            ino,
            since,
            path,
            metadata,
            foreign,
            size,
            kind,
        } in due
        {
            let key = self.object_key(&path);
            // A marker is written under `marker_writes`, one at a time, so an rmdir or a
            // directory rename (which take it, then drop the held change) either comes
            // before (nothing left to write) or after (the marker is there to remove).
            // File copies do not take it: a slow copy never stalls rmdir.
            let _marker_writes = (kind == Kind::Directory).then(|| self.lock_marker_writes());
            // Still held (no rewrite, rename, unlink or rmdir took it since the snapshot).
            let table = self.table();
            let still_held = table
                .get(ino)
                .is_some_and(|i| i.pending_metadata_since == Some(since) && i.path == path);
            if !still_held {
                continue;
            }
            if kind != Kind::Directory {
                // Claimed under the table lock they clear the change under (audit H2).
                self.flushing_keys().insert(key.clone());
            }
            drop(table);
            let applied = if kind == Kind::Directory {
                self.store
                    .put_object(
                        &self.marker_key(&path),
                        Bytes::new(),
                        &crc32c_base64(&[]),
                        &Self::headers_for(
                            &metadata,
                            foreign.as_deref(),
                            Some(DIRECTORY_CONTENT_TYPE),
                        ),
                    )
                    .map(|_| ())
            } else {
                let headers = Self::file_headers(&metadata, foreign.as_deref(), &path);
                let copied = self.store.copy(&key, &key, Some(&headers), size);
                self.flushing_keys().remove(&key);
                self.flushed.notify_all();
                copied
            };
            let landed = match applied {
                Ok(()) => {
                    debug!("applied attribute changes of {path:?}");
                    true
                }
                // Renamed or deleted in the meantime: nothing left to change.
                Err(e) if e.kind == crate::s3::S3ErrorKind::NotFound => true,
                Err(e) => {
                    warn!("attribute change of {path:?} not applied yet: {e}");
                    false
                }
            };
            let mut table = self.table();
            if let Some(inode) = table.get_mut(ino)
                && inode.pending_metadata_since == Some(since)
            {
                // Unless a rename took the change or a newer one arrived meanwhile.
                if landed && inode.metadata == metadata {
                    inode.pending_metadata_since = None;
                    table.touch(ino);
                } else if !landed {
                    inode.pending_metadata_since = Some(Instant::now());
                }
            }
        }
    }

    /// What fsync of a directory promises: held markers and attribute changes sent, and
    /// the old keys of renamed files deleted (each bounded by the retry budget).
    pub(crate) fn sync_namespace_changes(&self) {
        self.apply_pending_metadata(Duration::ZERO);
        self.deletes
            .wait_for_all(Instant::now() + self.uploads.retry_budget);
    }
}
