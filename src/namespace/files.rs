//! The open file's life: create and open, writes into the upload, and which close
//! completes it.
//!
//! ```text
//!  create, open(O_WRONLY|O_TRUNC)
//!        |
//!        v              write: part 1 stays in memory (a header may still change),
//!    Writing  <-------  parts 2.. go to the upload pool as they fill
//!     |  |  |
//!     |  |  +-- unlink, or a rename onto it --> Discarded
//!     |  |        (later writes and the close succeed; the bytes go nowhere)
//!     |  |
//!     |  +-- the last close, fsync --> Completed (PutObject, or Complete of the
//!     |        multipart upload)  --- empty, and written again (dd closed a
//!     |                               duplicate first) ---> back to Writing
//!     |
//!     +-- a part or Complete failed past the retry budget, unmount
//!           --> Failed (upload aborted; writes, close and fsync get EIO)
//! ```
//!
//! A writer killed by a signal closes its files through the kernel: its file keeps
//! what it wrote, as on a local disk (audit M8, POSIX as the issue chose).
//!
//! Which close completes (FUSE sends FLUSH for every close and RELEASE after the last,
//! and an error from RELEASE reaches no program): the opener's close, unless it has
//! children and the file is still held open (`holders`); a close from another process
//! when nobody holds the file any more; otherwise the release. A writer blocked on the
//! memory budget waits without holding the writer's lock, bounded (EDQUOT) and
//! interruptible (EINTR).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use log::{debug, info};

use super::inode::Kind;
use super::metadata::PosixMetadata;
use super::paths::content_type_for;
use super::*;
use crate::read::ObjectReader;
use crate::s3::ObjectHeaders;
use crate::upload::UploadError;

/// Upload failures kept for the next open at most (then all are forgotten; the log
/// has every one).
const MAX_UNREPORTED: usize = 1024;
use crate::upload::writer::{ObjectWriter, WriteError, WriteProgress};

/// A file's upload while it is open for writing, shared by its handles and its inode.
pub(crate) struct ActiveWrite {
    pub(super) writer: Mutex<ObjectWriter>,
    /// Published after every write so `stat` never waits for a writer blocked on memory.
    pub(super) size: AtomicU64,
    /// Process (thread group) that opened the file: its close completes the upload.
    /// (An empty completion is not final: dd closes a duplicate before writing, and the
    /// writes that follow start the object over.)
    pub(super) opener_tgid: u32,
    /// A close or fsync has returned the upload's failure to a program (audit H4: a
    /// failure nobody was told goes to the next open of the file).
    pub(super) reported: std::sync::atomic::AtomicBool,
    /// The upload's counters, read by `status` without the writer's lock.
    pub(super) progress: Arc<crate::upload::progress::FileProgress>,
}

impl ActiveWrite {
    pub(super) fn writer(&self) -> MutexGuard<'_, ObjectWriter> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }
}

pub(super) enum OpenFile {
    Reader {
        ino: u64,
        reader: Mutex<ObjectReader>,
    },
    Writer {
        ino: u64,
        active: Arc<ActiveWrite>,
    },
}

/// The thread group of `pid` (FUSE reports thread ids; a process's threads share a
/// group); `pid` itself when not known within [`holders::PROC_BOUND`].
fn thread_group_of(pid: u32) -> u32 {
    holders::within(holders::PROC_BOUND, pid, move || thread_group_now(pid))
}

fn thread_group_now(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Tgid:"))
                .and_then(|tgid| tgid.trim().parse().ok())
        })
        .unwrap_or(pid)
}

impl Namespace {
    pub(super) fn handle(&self, fh: u64) -> FsResult<Arc<OpenFile>> {
        self.handles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&fh)
            .cloned()
            .ok_or(FsError::from(libc::EBADF))
    }

    pub(super) fn register(&self, file: OpenFile) -> u64 {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(fh, Arc::new(file));
        fh
    }

    /// A new upload for an open file; the opening process's close completes it.
    fn start_write(&self, key: String, headers: ObjectHeaders, pid: u32) -> Arc<ActiveWrite> {
        // A parked upload of the same key (an interrupted copy of this file) is continued.
        let parked = self.uploads.resume.as_ref().and_then(|r| r.take(&key));
        let writer = match parked {
            Some(entry) => ObjectWriter::resuming(Arc::clone(&self.uploads), key, headers, entry),
            None => ObjectWriter::new(Arc::clone(&self.uploads), key, headers),
        };
        Arc::new(ActiveWrite {
            progress: writer.progress(),
            writer: Mutex::new(writer),
            size: AtomicU64::new(0),
            opener_tgid: thread_group_of(pid),
            reported: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub(crate) fn create(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        (mode, umask): (u32, u32),
        uid: u32,
        gid: u32,
        pid: u32,
    ) -> FsResult<(Attributes, u64)> {
        self.check_writable()?;
        let (name, path) = self.child_path(parent, name)?;
        self.take_unreported(&self.object_key(&path), &path)?;
        // A file just renamed away from this name: its delete must not hit the new one.
        self.delete_before_reuse(&self.object_key(&path))?;
        let (_, gid) = self.inherit_from(parent, gid);
        let (perm, acls) = self.inherit_acl(parent, mode, umask, Kind::File)?;
        let metadata = PosixMetadata {
            mode: Some(S_IFREG | perm),
            uid: Some(uid),
            gid: Some(gid),
            ..PosixMetadata::created(SystemTime::now())
        };
        let headers = Self::headers_for(&metadata, acls.as_deref(), Some(&content_type_for(&path)));
        let active = self.start_write(self.object_key(&path), headers, pid);
        let mut inode = self.new_inode(parent, &name, &path, Kind::File);
        inode.metadata = metadata;
        inode.foreign = acls;
        inode.metadata_loaded = true;
        inode.active_write = Some(Arc::clone(&active));
        let mut table = self.table();
        if let Some(existing) = table.child(parent, &name).and_then(|c| table.get(c))
            && existing.kind == Kind::Directory
        {
            return Err(libc::EISDIR.into());
        }
        let ino = table.upsert(inode);
        if let Some(stored) = table.get_mut(ino) {
            stored.active_write = Some(Arc::clone(&active));
        }
        table.entries_changed(parent);
        let attributes = self.attributes(ino, table.get(ino).ok_or(libc::ENOENT)?);
        drop(table);
        let fh = self.register(OpenFile::Writer { ino, active });
        Ok((attributes, fh))
    }

    /// An upload that failed after its last close (at release, or after its writer
    /// was killed): no program was told, so the next open of the file is.
    fn remember_unreported(&self, key: String, failure: UploadError) {
        let mut unreported = self
            .unreported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if unreported.len() >= MAX_UNREPORTED {
            unreported.clear();
        }
        unreported.insert(key, failure);
    }

    /// The failure [`Self::remember_unreported`] kept for `key`, once, as an error.
    fn take_unreported(&self, key: &str, path: &str) -> FsResult<()> {
        let failure = self
            .unreported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(key);
        match failure {
            None => Ok(()),
            Some(failure) => Err(FsError::new(
                libc::EIO,
                format!(
                    "{path:?}: its last upload failed after its last close, so this open reports it: {failure}: EIO"
                ),
            )),
        }
    }

    /// Opens `ino`. `kill_setid` says whether the opener may not keep set-user-ID and
    /// set-group-ID bits on what it writes (no CAP_FSETID); asked only when the file has
    /// them. The new content then goes without them, as Linux clears them on write
    /// (set-group-ID only with group execute, as Linux does).
    pub(crate) fn open(
        &self,
        ino: u64,
        flags: i32,
        pid: u32,
        kill_setid: &dyn Fn() -> bool,
    ) -> FsResult<u64> {
        let attributes = self.getattr(ino)?;
        if attributes.kind == Kind::Directory {
            return Err(libc::EISDIR.into());
        }
        let (path, metadata, foreign, being_written) = {
            let table = self.table();
            let inode = table.get(ino).ok_or(libc::ENOENT)?;
            (
                inode.path.clone(),
                inode.metadata,
                inode.foreign.clone(),
                inode.active_write.clone(),
            )
        };
        let key = self.object_key(&path);
        self.take_unreported(&key, &path)?;
        if flags & libc::O_ACCMODE == libc::O_RDONLY {
            // Never waits for the writer's lock (a commit may hold it while Complete is
            // sent): a writer that is busy is still being written.
            if let Some(active) = being_written
                && active.writer.try_lock().map_or(true, |w| !w.is_completed())
            {
                return Err(FsError::new(
                    libc::EBUSY,
                    format!(
                        "{path:?} is being written; reading it before its upload completes is not supported: EBUSY"
                    ),
                ));
            }
            let reader = ObjectReader::new(
                Arc::clone(&self.store),
                key,
                attributes.size,
                self.config.attr_ttl,
            );
            return Ok(self.register(OpenFile::Reader {
                ino,
                reader: Mutex::new(reader),
            }));
        }
        self.check_writable()?;
        if flags & libc::O_APPEND != 0 && attributes.size > 0 {
            return Err(FsError::new(
                libc::EOPNOTSUPP,
                format!(
                    "{path:?}: appending to an existing object is not supported yet: EOPNOTSUPP"
                ),
            ));
        }
        if flags & libc::O_TRUNC == 0 && attributes.size > 0 {
            return Err(FsError::new(
                libc::EOPNOTSUPP,
                format!(
                    "{path:?}: rewriting part of an existing object is not supported; open it with O_TRUNC to replace it: EOPNOTSUPP"
                ),
            ));
        }
        let now = SystemTime::now();
        let mut metadata = PosixMetadata {
            mtime: Some(now),
            ctime: Some(now),
            ..metadata
        };
        if let Some(mode) = metadata.mode {
            let group_exec = mode & libc::S_IXGRP != 0;
            let killed = libc::S_ISUID | if group_exec { libc::S_ISGID } else { 0 };
            if mode & killed != 0 && kill_setid() {
                metadata.mode = Some(mode & !killed);
            }
        }
        // The new content keeps what other tools set on the object (as a local file
        // keeps its extended attributes through O_TRUNC), and its Content-Type.
        let guessed = content_type_for(&path);
        let keeps_type = foreign.as_ref().is_some_and(|f| f.content_type.is_some());
        let content_type = (!keeps_type).then_some(guessed.as_str());
        let headers = Self::headers_for(&metadata, foreign.as_deref(), content_type);
        let active = self.start_write(key, headers, pid);
        if let Some(inode) = self.table().get_mut(ino) {
            inode.active_write = Some(Arc::clone(&active));
            inode.metadata = metadata;
            // The held change rides with the new upload; no self-copy of the old object
            // may land after it.
            inode.pending_metadata_since = None;
        }
        self.wait_for_flush_of(&self.object_key(&path));
        Ok(self.register(OpenFile::Writer { ino, active }))
    }

    pub(crate) fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        match &*self.handle(fh)? {
            OpenFile::Reader { ino, reader } => {
                // An open file survives a rename: read from wherever it is now.
                let key = self
                    .table()
                    .get(*ino)
                    .map(|inode| self.object_key(&inode.path));
                let mut reader = reader
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if let Some(key) = key {
                    reader.follow(&key);
                }
                reader.read(offset, size).map_err(FsError::from)
            }
            OpenFile::Writer { ino, .. } => Err(FsError::new(
                libc::EBADF,
                format!(
                    "inode {ino}: reading through a handle opened for writing is not supported: EBADF"
                ),
            )),
        }
    }

    /// Writes through a handle without waiting: `NeedsMemory` says what the rest of
    /// `data` waits for (see [`Namespace::write_waiting`]).
    pub(crate) fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<WriteProgress> {
        let file = self.handle(fh)?;
        let OpenFile::Writer { active, .. } = &*file else {
            return Err(libc::EBADF.into());
        };
        Self::write_once(active, offset, data)
    }

    pub(super) fn write_once(
        active: &ActiveWrite,
        offset: u64,
        data: &[u8],
    ) -> FsResult<WriteProgress> {
        let mut writer = active.writer();
        let result = writer.write(offset, data);
        active.size.store(writer.size(), Ordering::Release);
        let key = writer.key();
        result.map_err(|error| match error {
            WriteError::TooLarge { max } => FsError::new(
                libc::EFBIG,
                format!("{key:?}: write past {max} bytes, the largest file the part schedule reaches: EFBIG"),
            ),
            WriteError::Completed => FsError::new(
                libc::EIO,
                format!("{key:?}: write after the upload was completed (fsync or close); appending is not supported: EIO"),
            ),
            // The writer logged why.
            WriteError::Failed(reason) => reason.into(),
            WriteError::AlreadyUploaded { .. } => error.errno().into(),
        })
    }

    /// Writes through a handle, waiting for memory as long as memory comes back, without
    /// holding the writer's lock while it waits (so close, unlink and unmount never queue
    /// behind it). Returns how many bytes were taken: all, or those taken before a wait
    /// ended early. A wait that ends with nothing taken is an error: EINTR when
    /// `cancelled` (the writer got a signal), EDQUOT when the memory budget is held by
    /// open files that nothing is uploading, EIO at unmount.
    pub(crate) fn write_waiting(
        &self,
        fh: u64,
        offset: u64,
        data: &[u8],
        cancelled: &dyn Fn() -> bool,
    ) -> FsResult<usize> {
        let file = self.handle(fh)?;
        let OpenFile::Writer { active, .. } = &*file else {
            return Err(libc::EBADF.into());
        };
        let mut taken = 0usize;
        loop {
            match Self::write_once(active, offset + taken as u64, &data[taken..])? {
                WriteProgress::Done => return Ok(data.len()),
                WriteProgress::NeedsMemory { written, need } => {
                    taken += written;
                    if let Err(code) = self.wait_for_need(active, need, cancelled) {
                        return if taken > 0 { Ok(taken) } else { Err(code) };
                    }
                }
            }
        }
    }

    /// Waits for what a blocked writer needs and hands it over; the errno says why not.
    pub(super) fn wait_for_need(
        &self,
        active: &ActiveWrite,
        need: crate::upload::writer::Need,
        cancelled: &dyn Fn() -> bool,
    ) -> FsResult<()> {
        use crate::upload::budget::WaitFailure;
        match self.uploads.wait_for(need, cancelled) {
            Ok(Some(reservation)) => {
                active.writer().give_spare(reservation);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(WaitFailure::Interrupted) => {
                debug!("a write waiting for memory was interrupted by a signal: EINTR");
                Err(libc::EINTR.into())
            }
            Err(WaitFailure::Closed) => Err(libc::EIO.into()),
            Err(WaitFailure::Stalled) => Err(FsError::new(
                libc::EDQUOT,
                format!(
                    "write refused (EDQUOT): the memory budget (--max-memory {} bytes) is held by \
                     files open for writing and no upload is freeing any; close some files or \
                     raise --max-memory",
                    self.uploads.budget.limit()
                ),
            )),
        }
    }

    /// Completes the upload and refreshes the inode from the result.
    pub(super) fn complete(&self, ino: u64, active: &ActiveWrite) -> FsResult<()> {
        let mut writer = active.writer();
        let result = writer.commit();
        active.size.store(writer.size(), Ordering::Release);
        let size = writer.size();
        drop(writer);
        match result {
            Ok(()) => {
                let mut table = self.table();
                if let Some(inode) = table.get_mut(ino) {
                    inode.size = size;
                    inode.last_modified = SystemTime::now();
                    inode.valid_until = Instant::now() + self.config.attr_ttl;
                }
                table.touch(ino);
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// close() of one descriptor. Only the opening process's close completes the
    /// upload: duplicates (dd), forked children and shell subprocesses close theirs
    /// earlier, and completing then would cut the file short.
    ///
    /// `killed`: the closing process is exiting by a signal (SIGKILL, Ctrl-C), so the
    /// kernel closes its files. As on a local disk, the file then holds what the process
    /// wrote: the upload completes with it (and the log says so).
    pub(crate) fn flush(&self, fh: u64, pid: u32, killed: bool) -> FsResult<()> {
        let file = self.handle(fh)?;
        let OpenFile::Writer { ino, active } = &*file else {
            return Ok(());
        };
        // Nothing of the closing thread's own /proc entries is read here: a child
        // closing at exec blocks their readers until it has our answer.
        let opener = holders::in_thread_group(pid, active.opener_tgid);
        if killed {
            info!(
                "inode {ino}: process of thread {pid} was killed by a signal with the file \
                 open: the file keeps what it wrote, as on a local disk"
            );
        }
        // The last close completes the upload and gets its result. The opener's close is
        // the last unless it handed the descriptor to a child that still holds it; a
        // close from another process is the last when nobody holds the file any more.
        let may_be_held = !opener || holders::has_children(active.opener_tgid);
        if may_be_held && self.held_elsewhere(*ino, opener, pid) {
            debug!(
                "inode {ino}: closed by thread {pid} (opener {}), still open elsewhere: \
                 completing at the last close",
                active.opener_tgid
            );
            if !active.writer().has_failed() {
                return Ok(());
            }
            active.reported.store(!killed, Ordering::Release);
            return Err(libc::EIO.into());
        }
        let result = self.complete(*ino, active);
        // A killed process got its answer before this completion: it was told nothing.
        if result.is_err() && !killed {
            active.reported.store(true, Ordering::Release);
        }
        result
    }

    /// Whether some process still has the file `ino` open. Without a known mountpoint:
    /// assume so for a close from another process, not for the opener's (as before).
    pub(super) fn held_elsewhere(&self, ino: u64, opener: bool, closing: u32) -> bool {
        let path = self.table().get(ino).map(|inode| inode.path.clone());
        match (&self.config.mountpoint, path) {
            (Some(mountpoint), Some(path)) => {
                holders::held_open_by_any(&mountpoint.join(path), closing)
            }
            _ => !opener,
        }
    }

    pub(crate) fn fsync(&self, fh: u64) -> FsResult<()> {
        let file = self.handle(fh)?;
        match &*file {
            OpenFile::Writer { ino, active } => {
                let result = self.complete(*ino, active);
                if result.is_err() {
                    active.reported.store(true, Ordering::Release);
                }
                result
            }
            OpenFile::Reader { .. } => {
                self.apply_pending_metadata(Duration::ZERO);
                Ok(())
            }
        }
    }

    /// The last close: completes what the flushes left open, and forgets the handle.
    pub(crate) fn release(&self, fh: u64) -> FsResult<()> {
        let file = self
            .handles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&fh)
            .ok_or(FsError::from(libc::EBADF))?;
        let OpenFile::Writer { ino, active } = &*file else {
            return Ok(());
        };
        let needs_completion = {
            let writer = active.writer();
            !writer.is_completed() && writer.failure().is_none()
        };
        let result = if needs_completion {
            info!(
                "inode {ino}: completing the upload at release (its opener did not close it last)"
            );
            self.complete(*ino, active)
        } else {
            Ok(())
        };
        let failure = active.writer().failure().cloned();
        if let Some(failure) = failure
            && !active.reported.load(Ordering::Acquire)
        {
            let key = active.writer().key().to_owned();
            self.remember_unreported(key, failure);
        }
        let mut table = self.table();
        if let Some(inode) = table.get_mut(*ino)
            && inode
                .active_write
                .as_ref()
                .is_some_and(|current| Arc::ptr_eq(current, active))
        {
            inode.active_write = None;
            inode.size = active.size();
        }
        result
    }
}
