//! The FUSE adapter: turns kernel requests into namespace calls and replies.
//!
//! Owns the kernel-facing details: attribute and entry TTLs, open flags, directory
//! handle snapshots, and which thread answers. Operations that can wait long (close,
//! fsync, rename, a write blocked on the memory budget) are answered from responder
//! threads (`responders`), so a slow upload never stalls `ls` or `stat` on the dispatch
//! threads. Errors are logged here, once, as they are replied (`FsError::log`).
//!
//! Which thread answers what, and the longest it may wait (every wait is bounded):
//!
//! | operation | thread | may wait for |
//! |---|---|---|
//! | lookup, getattr, opendir, readdir, readlink, statfs, forget | dispatch | one or two S3 requests (HEAD, LIST, GET), each within `--request-timeout` |
//! | read | dispatch | ranged GETs, each within the request timeout |
//! | create, open, mkdir, symlink | dispatch | a queued delete of the same name, sent at once; a held self-copy of the key in flight (the stall bound: retry budget + 30 s) |
//! | write | dispatch; a responder once it must wait | memory or pool room: EDQUOT after the stall bound, EINTR on a fatal signal, EIO at unmount |
//! | setattr, unlink, rmdir, rename | responder | S3 copies and deletes; for rmdir and a directory rename, the deletes still queued below it (the stall bound) |
//! | flush, release, fsync, fsyncdir | responder | completing an upload: its parts and Complete, each within the retry budget |
//!
//! There are 8 dispatch threads; responders start as needed (at most 32 stay idle).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};
use log::{debug, warn};

mod caller;
mod directories;
mod reply;
mod responders;

use crate::namespace::{AttributeChanges, Attributes, DirEntry, FsResult, Kind, Namespace};
use crate::upload::writer::WriteProgress;
use reply::{errno, file_attr, reply_empty, reply_xattr, time_of};
use responders::Responders;

/// `st_blksize`: makes `cp` write 1 MiB requests instead of 128 KiB.
const BLOCK_SIZE: u32 = 1 << 20;
const MAX_WRITE: u32 = 1 << 20;

pub(crate) struct FuseAdapter {
    namespace: Arc<Namespace>,
    responders: Responders,
    /// Open directory handles: the listing each reads from, taken at its first readdir.
    directories: Mutex<HashMap<u64, Option<Vec<DirEntry>>>>,
    next_directory_handle: AtomicU64,
    /// The kernel checks permissions (`default_permissions`, with `--allow-other`): it
    /// then enforces POSIX ACLs too, which the mount asks for at init.
    kernel_checks_permissions: bool,
}

impl FuseAdapter {
    pub(crate) fn new(namespace: Arc<Namespace>, kernel_checks_permissions: bool) -> Self {
        Self {
            namespace,
            kernel_checks_permissions,
            responders: Responders::default(),
            directories: Mutex::new(HashMap::new()),
            next_directory_handle: AtomicU64::new(1),
        }
    }

    fn ttl(&self) -> Duration {
        self.namespace.attr_ttl()
    }

    fn reply_entry(&self, reply: ReplyEntry, operation: &str, result: FsResult<Attributes>) {
        match result {
            Ok(attributes) => {
                self.namespace.remember_lookup(attributes.ino);
                reply.entry(&self.ttl(), &file_attr(&attributes), Generation(0))
            }
            Err(code) => reply.error(errno(code, operation)),
        }
    }
}

impl Filesystem for FuseAdapter {
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.namespace.forget(ino.0, nlookup);
    }

    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // O_TRUNC arrives with open instead of as a separate truncate.
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC) {
            warn!("kernel lacks capabilities {missing:?}");
        }
        // POSIX ACLs, enforced by the kernel where it checks permissions; the mode of a
        // new name then comes unmasked with the umask beside it (a default ACL
        // replaces the umask). Without them the kernel answers ACL calls EOPNOTSUPP.
        if self.kernel_checks_permissions
            && let Err(missing) =
                config.add_capabilities(InitFlags::FUSE_POSIX_ACL | InitFlags::FUSE_DONT_MASK)
        {
            warn!("kernel lacks capabilities {missing:?}: no POSIX ACLs");
        }
        if let Err(max) = config.set_max_write(MAX_WRITE) {
            debug!("kernel limits writes to {max} bytes");
        }
        Ok(())
    }

    fn destroy(&mut self) {
        self.namespace.abort_all();
        let high_water = self.namespace.memory_high_water();
        let inodes = self.namespace.inode_count();
        log::info!(
            "unmounted; part buffers peaked at {high_water} bytes; {inodes} inodes in the table"
        );
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.reply_entry(reply, "lookup", self.namespace.lookup(parent.0, name));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.namespace.getattr(ino.0) {
            Ok(attributes) => reply.attr(&self.ttl(), &file_attr(&attributes)),
            Err(code) => reply.error(errno(code, "getattr")),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let changes = AttributeChanges {
            mode,
            uid,
            gid,
            size,
            mtime: mtime.map(time_of),
            atime: atime.map(time_of),
        };
        let namespace = Arc::clone(&self.namespace);
        let ttl = self.ttl();
        self.responders
            .run("setattr", move || match namespace.setattr(ino.0, changes) {
                Ok(attributes) => reply.attr(&ttl, &file_attr(&attributes)),
                Err(code) => reply.error(errno(code, "setattr")),
            });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.namespace.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(code) => reply.error(errno(code, "readlink")),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let kind = mode & libc::S_IFMT;
        if kind != libc::S_IFREG && kind != 0 {
            warn!(
                "mknod {name:?} (mode {mode:o}): device nodes, FIFOs and sockets cannot be stored in S3: EPERM"
            );
            reply.error(Errno::EPERM);
            return;
        }
        // A regular file: an empty object, as create and close would make.
        let result = self.namespace.mknod_file(
            parent.0,
            name,
            (mode & 0o7777, umask),
            req.uid(),
            req.gid(),
            req.pid(),
        );
        self.reply_entry(reply, "mknod", result);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let result = self
            .namespace
            .mkdir(parent.0, name, (mode, umask), req.uid(), req.gid());
        self.reply_entry(reply, "mkdir", result);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let namespace = Arc::clone(&self.namespace);
        let name = name.to_owned();
        self.responders.run("unlink", move || {
            reply_empty(reply, "unlink", namespace.unlink(parent.0, &name))
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        // May wait for deletes of files renamed out of the directory.
        let namespace = Arc::clone(&self.namespace);
        let name = name.to_owned();
        self.responders.run("rmdir", move || {
            reply_empty(reply, "rmdir", namespace.rmdir(parent.0, &name))
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let result = self
            .namespace
            .symlink(parent.0, link_name, target, req.uid(), req.gid());
        self.reply_entry(reply, "symlink", result);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            warn!(
                "rename {name:?} with RENAME_EXCHANGE: S3 cannot swap two keys atomically: EINVAL"
            );
            reply.error(Errno::EINVAL);
            return;
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let namespace = Arc::clone(&self.namespace);
        let (name, newname) = (name.to_owned(), newname.to_owned());
        self.responders.run("rename", move || {
            reply_empty(
                reply,
                "rename",
                namespace.rename(parent.0, &name, newparent.0, &newname, no_replace),
            )
        });
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        warn!("link {newname:?}: hard links cannot be represented in S3: EPERM");
        reply.error(Errno::EPERM);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let raw_flags = flags.0;
        let pid = req.pid();
        // Asked only when the file has set-ID bits (a /proc read per open otherwise).
        let kill_setid = || !caller::keeps_setid_bits(pid);
        match self.namespace.open(ino.0, raw_flags, pid, &kill_setid) {
            Ok(fh) => {
                let open_flags = if raw_flags & libc::O_ACCMODE == libc::O_RDONLY {
                    FopenFlags::empty()
                } else {
                    // Writes skip the page cache: each byte is copied once, into a part.
                    FopenFlags::FOPEN_DIRECT_IO
                };
                reply.opened(FileHandle(fh), open_flags)
            }
            Err(code) => reply.error(errno(code, "open")),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.namespace.read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(code) => reply.error(errno(code, "read")),
        }
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.namespace.write(fh.0, offset, data) {
            Ok(WriteProgress::Done) => reply.written(data.len() as u32),
            Ok(WriteProgress::NeedsMemory { written, .. }) => {
                // Back-pressure: wait for the budget on another thread, so this
                // dispatch thread stays free for other requests. The wait ends when
                // the writing thread gets a signal: it can always be killed.
                let rest = data[written..].to_vec();
                let namespace = Arc::clone(&self.namespace);
                let tid = req.pid();
                self.responders.run("write-wait", move || {
                    let cancelled = || caller::interrupted(tid);
                    match namespace.write_waiting(fh.0, offset + written as u64, &rest, &cancelled)
                    {
                        Ok(more) => reply.written((written + more) as u32),
                        Err(_) if written > 0 => reply.written(written as u32),
                        Err(code) => reply.error(errno(code, "write")),
                    }
                });
            }
            Err(code) => reply.error(errno(code, "write")),
        }
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let namespace = Arc::clone(&self.namespace);
        let pid = req.pid();
        // Checked here, while the closing thread is surely still exiting.
        let killed = caller::killed(pid);
        self.responders.run("flush", move || {
            if killed {
                // The process is dying and can take no answer, but its exit waits for
                // this one: answer first, then complete (the log has the result), so a
                // writer is killable even with the server frozen.
                reply.ok();
                let _ = namespace.flush(fh.0, pid, killed);
            } else {
                reply_empty(reply, "flush", namespace.flush(fh.0, pid, killed))
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let namespace = Arc::clone(&self.namespace);
        self.responders.run("release", move || {
            reply_empty(reply, "release", namespace.release(fh.0))
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let namespace = Arc::clone(&self.namespace);
        self.responders.run("fsync", move || {
            reply_empty(reply, "fsync", namespace.fsync(fh.0))
        });
    }

    /// Opening a directory lists nothing yet: programs open directories for fchmod,
    /// fchdir or fsync as often as to read them (rsync 3.5 opens each new directory to
    /// set its mode). The first readdir lists.
    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.namespace.getattr(ino.0) {
            Ok(attributes) if attributes.kind != Kind::Directory => reply.error(Errno::ENOTDIR),
            Ok(_) => {
                let fh = self.next_directory_handle.fetch_add(1, Ordering::Relaxed);
                self.directories
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert(fh, None);
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(code) => reply.error(errno(code, "opendir")),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        self.read_directory(ino, fh, offset, reply);
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.directories
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Held directory markers, attribute changes and deletes of renamed-away keys.
        let namespace = Arc::clone(&self.namespace);
        self.responders.run("fsyncdir", move || {
            namespace.sync_namespace_changes();
            reply.ok();
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        if position != 0 {
            reply.error(Errno::EINVAL);
            return;
        }
        let result = self.namespace.setxattr(ino.0, name, value, flags);
        reply_empty(reply, "setxattr", result);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.namespace.getxattr(ino.0, name) {
            Ok(value) => reply_xattr(reply, size, &value),
            Err(error) => reply.error(errno(error, "getxattr")),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.namespace.listxattr(ino.0) {
            Ok(names) => reply_xattr(reply, size, &names),
            Err(error) => reply.error(errno(error, "listxattr")),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = self.namespace.removexattr(ino.0, name);
        reply_empty(reply, "removexattr", result);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // S3 has no capacity limit; report 1 PiB free so tools that check space proceed.
        const BLOCKS: u64 = 1 << 30;
        reply.statfs(
            BLOCKS,
            BLOCKS,
            BLOCKS,
            1 << 32,
            1 << 32,
            BLOCK_SIZE,
            255,
            BLOCK_SIZE,
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.namespace.create(
            parent.0,
            name,
            (mode, umask),
            req.uid(),
            req.gid(),
            req.pid(),
        ) {
            Ok((attributes, fh)) => {
                self.namespace.remember_lookup(attributes.ino);
                reply.created(
                    &self.ttl(),
                    &file_attr(&attributes),
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::FOPEN_DIRECT_IO,
                )
            }
            Err(code) => reply.error(errno(code, "create")),
        }
    }
}
