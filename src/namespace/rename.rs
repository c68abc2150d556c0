//! Rename as copy + delete. A file: its writer simply takes the new key when nothing
//! was uploaded yet; otherwise one CopyObject carries any held attribute change, and
//! the old key is deleted after rename returns (`deletes`). A directory: every object
//! below is copied first (a few at once), the originals are deleted only once every
//! copy exists, and a failed copy takes back the copies made.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use log::error;

use super::inode::Kind;
use super::metadata::PosixMetadata;
use super::paths::{MAX_KEY_LEN, renamed_content_type};
use super::*;
use crate::s3::{ListedObject, ObjectHeaders};

/// Object copies in flight while renaming a directory.
const DIRECTORY_COPY_CONCURRENCY: usize = 8;

impl Namespace {
    pub(crate) fn rename(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        new_parent: u64,
        new_name: &std::ffi::OsStr,
        no_replace: bool,
    ) -> FsResult<()> {
        self.check_writable()?;
        let source = self.lookup(parent, name)?;
        let (_, source_path) = self.child_path(parent, name)?;
        let (new_name, target_path) = self.child_path(new_parent, new_name)?;
        if source_path == target_path {
            return Ok(());
        }
        let target = self
            .lookup(new_parent, std::ffi::OsStr::new(&new_name))
            .ok();
        if let Some(target) = target {
            if no_replace {
                return Err(libc::EEXIST.into());
            }
            match (source.kind, target.kind) {
                (Kind::Directory, Kind::Directory) => {
                    self.rmdir(new_parent, std::ffi::OsStr::new(&new_name))?
                }
                (Kind::Directory, _) => return Err(libc::ENOTDIR.into()),
                (_, Kind::Directory) => return Err(libc::EISDIR.into()),
                _ => {
                    // The replaced file's held chmod/utimes must not land on the new object,
                    // and a writer still open on it is detached as if it were unlinked
                    // (POSIX): its later writes and close succeed and go nowhere. This
                    // happens before the copy, so a close racing with us lands first and
                    // the copy replaces it.
                    let replaced_writer = self.table().get_mut(target.ino).and_then(|replaced| {
                        replaced.pending_metadata_since = None;
                        replaced.active_write.take()
                    });
                    if let Some(active) = replaced_writer {
                        active
                            .writer()
                            .discard("replaced by a rename while being written");
                    }
                    self.wait_for_flush_of(&self.object_key(&target_path));
                }
            }
        }
        let _marker_writes = if source.kind == Kind::Directory {
            let guard = self.lock_marker_writes();
            self.rename_directory(source.ino, &source_path, &target_path)?;
            Some(guard)
        } else {
            self.rename_file(source.ino, &source_path, &target_path)?;
            None
        };
        let mut table = self.table();
        table.rename(source.ino, new_parent, &new_name, target_path);
        if let Some(moved) = table.get_mut(source.ino) {
            // A rename changes the inode (a file's copy already carries it).
            moved.metadata.ctime = Some(SystemTime::now());
        }
        table.entries_changed(parent);
        table.entries_changed(new_parent);
        Ok(())
    }

    pub(super) fn rename_file(
        &self,
        ino: u64,
        source_path: &str,
        target_path: &str,
    ) -> FsResult<()> {
        let source_key = self.object_key(source_path);
        let target_key = self.object_key(target_path);
        // An earlier rename away from the target name must not delete what lands there
        // (by the copy below, or by an unstarted upload that simply takes the new key).
        self.delete_before_reuse(&target_key)?;
        let (active, metadata, foreign, loaded, pending, mut size) = {
            let mut table = self.table();
            let inode = table.get_mut(ino).ok_or(libc::ENOENT)?;
            let pending = inode.pending_metadata_since.take().is_some();
            // A rename changes the inode: its ctime.
            inode.metadata.ctime = Some(SystemTime::now());
            (
                inode.active_write.clone(),
                inode.metadata,
                inode.foreign.clone(),
                inode.metadata_loaded,
                pending,
                inode.size,
            )
        };
        self.wait_for_flush_of(&source_key);
        if let Some(active) = active {
            let mut writer = active.writer();
            // Release may have detached it meanwhile (after an empty completion): then
            // nobody would complete a revived upload, and the object is what the copy
            // below moves. Checked under the writer's lock (writer, then table: the
            // order every path keeps), so release either ran before or completes after.
            let attached = self
                .table()
                .get(ino)
                .and_then(|inode| inode.active_write.as_ref())
                .is_some_and(|current| Arc::ptr_eq(current, &active));
            if attached && !writer.is_final() {
                let retyped = renamed_content_type(
                    source_path,
                    target_path,
                    writer.headers().content_type.as_deref(),
                );
                if writer.set_key(target_key.clone()) {
                    if let Some(content_type) = retyped {
                        let mut headers = writer.headers().clone();
                        headers.content_type = Some(content_type);
                        writer.set_headers(headers);
                    }
                    // Nothing uploaded yet: the object is simply created under the new
                    // name. What the source key may hold (the object an O_TRUNC open
                    // replaced, dd's empty first close) is gone with the old name.
                    drop(writer);
                    if !self.deletes.schedule(&source_key) {
                        self.store
                            .delete_object(&source_key)
                            .map_err(FsError::from)?;
                    }
                    return Ok(());
                }
                if !writer.has_failed() {
                    // Its multipart upload is bound to the old key: the parts uploaded so
                    // far move to an upload under the new key (through a short-lived
                    // object under the old one), and the writer goes on writing there.
                    // Nothing lands under the old key later, so a new file of that name
                    // (log rotation) is safe.
                    if let Some(content_type) = retyped {
                        let mut headers = writer.headers().clone();
                        headers.content_type = Some(content_type);
                        writer.set_headers(headers);
                    }
                    writer.move_started_upload(target_key.clone())?;
                    drop(writer);
                    if !self.deletes.schedule(&source_key) {
                        self.store
                            .delete_object(&source_key)
                            .map_err(FsError::from)?;
                    }
                    return Ok(());
                }
                writer.commit()?;
            }
            size = writer.size();
        }
        // When the object's headers are known (a HEAD or our own write), the copy replaces
        // them: held attribute changes, the new ctime and a Content-Type the new name
        // changes ride along, and other tools' metadata is kept. Otherwise the object's
        // own headers are copied as they are.
        let current_type = foreign.as_ref().and_then(|f| f.content_type.as_deref());
        let retyped = renamed_content_type(source_path, target_path, current_type);
        // With the headers known, the copy also carries the new ctime (same one request).
        let replaced = (pending || loaded).then(|| match &retyped {
            Some(new_type) => Self::headers_for(&metadata, foreign.as_deref(), Some(new_type)),
            None => Self::file_headers(&metadata, foreign.as_deref(), source_path),
        });
        if let Err(error) = self
            .store
            .copy(&source_key, &target_key, replaced.as_ref(), size)
        {
            if pending {
                self.table().hold(ino, Instant::now());
            }
            return Err(error.into());
        }
        if let Some(new_type) = retyped
            && let Some(inode) = self.table().get_mut(ino)
            && let Some(foreign) = &mut inode.foreign
        {
            Arc::make_mut(foreign).content_type = Some(new_type);
        }
        // The rename has happened once the copy exists; the old key goes in the background.
        if !self.deletes.schedule(&source_key) {
            self.store
                .delete_object(&source_key)
                .map_err(FsError::from)?;
        }
        Ok(())
    }

    pub(super) fn rename_directory(
        &self,
        ino: u64,
        source_path: &str,
        target_path: &str,
    ) -> FsResult<()> {
        let source_prefix = self.marker_key(source_path);
        let target_prefix = self.marker_key(target_path);
        if target_prefix.starts_with(&source_prefix) {
            return Err(libc::EINVAL.into());
        }
        let active_writes = self.table().active_writes();
        let writing_below = active_writes.iter().any(|active| {
            let writer = active.writer();
            writer.key().starts_with(&source_prefix) && !writer.is_completed()
        });
        if writing_below {
            return Err(FsError::new(
                libc::EBUSY,
                format!(
                    "{source_path:?}: renaming a directory with files still being written is not supported: EBUSY"
                ),
            ));
        }
        // Files renamed out of it must not be copied along, nor files renamed into it missed.
        let deadline = Instant::now() + self.uploads.stall_bound();
        if !self.deletes.wait_below(&source_prefix, deadline)
            || !self.deletes.wait_below(&target_prefix, deadline)
        {
            return Err(FsError::new(
                libc::EBUSY,
                format!("{source_path:?}: files renamed out of it are still being deleted: EBUSY"),
            ));
        }
        // A held marker (new directory, chmod/utimes) is written once, at the new name.
        let (marker, pending) = {
            let mut table = self.table();
            let inode = table.get_mut(ino).ok_or(libc::ENOENT)?;
            (
                (inode.metadata, inode.foreign.clone()),
                inode.pending_metadata_since.take().is_some(),
            )
        };
        let result = self.move_directory_objects(&source_prefix, &target_prefix, marker, pending);
        if result.is_err() && pending {
            self.table().hold(ino, Instant::now());
        }
        result
    }

    /// Copies every object below `source_prefix` to `target_prefix`, then deletes the
    /// originals. The target's marker carries `marker` (our attributes and the foreign
    /// headers, xattrs among them) when the change was held or the source had no
    /// objects at all.
    pub(super) fn move_directory_objects(
        &self,
        source_prefix: &str,
        target_prefix: &str,
        (metadata, foreign): (PosixMetadata, Option<Arc<ObjectHeaders>>),
        metadata_pending: bool,
    ) -> FsResult<()> {
        let listing = self
            .store
            .list_all(source_prefix, false)
            .map_err(FsError::from)?;
        // Every new key is known before anything is copied: one too long for S3 fails
        // the rename up front (ENAMETOOLONG), with nothing copied.
        let mut to_copy: Vec<(&ListedObject, String)> = Vec::new();
        for object in &listing.objects {
            if metadata_pending && object.key == source_prefix {
                continue;
            }
            let Some(rest) = object.key.strip_prefix(source_prefix) else {
                continue;
            };
            let target = format!("{target_prefix}{rest}");
            if target.len() >= MAX_KEY_LEN {
                return Err(FsError::new(
                    libc::ENAMETOOLONG,
                    format!(
                        "renaming {source_prefix:?} would give {:?} a key over S3's 1024 bytes: ENAMETOOLONG",
                        object.key
                    ),
                ));
            }
            to_copy.push((object, target));
        }
        let copied = Mutex::new(Vec::new());
        // Copy everything first (a few copies in flight); the originals go only once
        // every copy exists, so a failed copy leaves the directory intact.
        let failure = Mutex::new(None);
        let next = AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..DIRECTORY_COPY_CONCURRENCY.min(to_copy.len()) {
                scope.spawn(|| {
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                        let Some((object, target)) = to_copy.get(index) else {
                            return;
                        };
                        let has_failed = failure
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .is_some();
                        if has_failed {
                            return;
                        }
                        match self.store.copy(&object.key, target, None, object.size) {
                            Ok(()) => copied
                                .lock()
                                .unwrap_or_else(|poisoned| poisoned.into_inner())
                                .push(target.clone()),
                            Err(e) => {
                                failure
                                    .lock()
                                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                                    .get_or_insert(e);
                            }
                        }
                    }
                });
            }
        });
        if let Some(error) = failure
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
        {
            // The source is intact: take back the copies made, so no half tree is left
            // under the new name.
            let copied = copied
                .into_inner()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let left: Vec<&String> = copied
                .iter()
                .filter(|key| self.store.delete_object(key).is_err())
                .collect();
            if !left.is_empty() {
                error!(
                    "directory rename to {target_prefix:?} failed and {} of its copies could not be removed: {left:?}",
                    left.len()
                );
            }
            return Err(error.into());
        }
        if metadata_pending || listing.objects.is_empty() {
            self.put_marker(target_prefix, &metadata, foreign.as_deref())?;
        }
        for object in &listing.objects {
            self.store
                .delete_object(&object.key)
                .map_err(FsError::from)?;
        }
        Ok(())
    }
}
