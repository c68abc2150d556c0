//! The namespace: what the mount shows, and how file operations become S3 requests.
//!
//! [`Namespace`] is the FUSE-shaped API the adapter (`crate::fuse`) calls: inode
//! numbers and names in, attributes, handles, bytes and errnos out. Every call may
//! block on S3; the adapter decides which thread runs it. Each operation lives in the
//! file of its concern:
//!
//! - `paths`: object and marker keys under the mount prefix, which names S3 can hold;
//! - `inode` (the table: names, cached attributes with a TTL, remembered misses, a
//!   child index per directory, lookup counts and `forget`) and `metadata` (the
//!   `x-amz-meta-*` codec shared with s3fs and rclone);
//! - `lookup`: lookup, getattr and readdir, and when S3 is asked (the cache policy);
//! - `attributes`: what `stat` shows, and setattr;
//! - `files`: the open file's life, from create/open through writes to the close that
//!   completes its upload (state diagram there); a file being written is an
//!   [`ActiveWrite`] around a `crate::upload::writer::ObjectWriter`, which hands full
//!   parts to the upload pool, whose workers send UploadPart through the storage seam
//!   (`crate::s3::ObjectStore`);
//! - `entries`: mkdir, rmdir, unlink, symlink, readlink;
//! - `rename`: rename of files and directories as copy + delete;
//! - `write_behind` and `deletes`: what is *held* (defined there) and when it lands;
//! - `holders`: who still holds a file open, from /proc, to find the last close;
//! - `xattr`: extended attributes, in s3fs's `x-amz-meta-xattr` form.
//!
//! The fast test tier (`tests/`) drives this API on the in-memory store.

mod acl;
mod attributes;
mod deletes;
mod entries;
mod error;
mod files;
mod holders;
pub(crate) use holders::{PROC_BOUND, within as proc_within};
mod inode;
mod lookup;
mod metadata;
mod paths;
mod progress;
mod rename;
#[cfg(test)]
mod tests;
mod write_behind;
mod xattr;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use log::{debug, warn};

use crate::s3::ObjectStore;
use crate::upload::UploadContext;
use deletes::DeferredDeletes;
use files::{ActiveWrite, OpenFile};
pub(crate) use inode::Kind;
use inode::{Inode, InodeTable, ROOT_INO};
pub(crate) use xattr::CHECKSUM;

pub(crate) use error::{FsError, FsResult};
pub(crate) use progress::MountStatus;

const S_IFMT: u32 = libc::S_IFMT;
const S_IFREG: u32 = libc::S_IFREG;
const S_IFDIR: u32 = libc::S_IFDIR;
const S_IFLNK: u32 = libc::S_IFLNK;

/// What `stat` shows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attributes {
    pub(crate) ino: u64,
    pub(crate) kind: Kind,
    pub(crate) size: u64,
    pub(crate) perm: u16,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: SystemTime,
    pub(crate) atime: SystemTime,
    pub(crate) ctime: SystemTime,
    /// 0 once the name is gone (an unlinked file still open), else 1 (2 for a directory).
    pub(crate) nlink: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct NamespaceConfig {
    /// Key prefix of the mount: "" or ending in `/`.
    pub(crate) prefix: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) file_mode: u16,
    pub(crate) dir_mode: u16,
    pub(crate) attr_ttl: Duration,
    pub(crate) read_only: bool,
    /// Where the mount is (canonical), to recognise its files in /proc; None when unknown.
    pub(crate) mountpoint: Option<std::path::PathBuf>,
}

/// One name in a directory listing.
#[derive(Clone, Debug)]
pub(crate) struct DirEntry {
    pub(crate) name: String,
    pub(crate) ino: u64,
    pub(crate) kind: Kind,
}

/// Attribute changes asked for by setattr.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AttributeChanges {
    pub(crate) mode: Option<u32>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) size: Option<u64>,
    pub(crate) mtime: Option<SystemTime>,
    pub(crate) atime: Option<SystemTime>,
}

pub(crate) struct Namespace {
    config: NamespaceConfig,
    store: Arc<dyn ObjectStore>,
    uploads: Arc<UploadContext>,
    table: Mutex<InodeTable>,
    handles: Mutex<HashMap<u64, Arc<OpenFile>>>,
    next_handle: AtomicU64,
    /// Paths already reported as a file shadowed by a directory.
    shadowed_logged: Mutex<HashSet<String>>,
    /// Old keys of renamed files, deleted after the rename returned.
    deletes: Arc<DeferredDeletes>,
    /// Held by whoever writes or removes directory markers (the metadata flusher, rmdir,
    /// directory rename), so a held marker cannot land after its directory is gone.
    marker_writes: Mutex<()>,
    /// Keys the metadata flusher is copying onto themselves right now. Whatever replaces
    /// or removes such a key (a rewrite, a rename from or onto it, an unlink) first
    /// takes the held change away under the table lock, then waits here, so a self-copy
    /// of the old object can never land after the new one (audit H2).
    flushing: Mutex<HashSet<String>>,
    flushed: std::sync::Condvar,
    /// Upload failures no close() could report, by key: the next open of the file gets
    /// EIO once (audit H4).
    unreported: Mutex<HashMap<String, crate::upload::UploadError>>,
    /// Asks the kernel to drop its entry for a name (FUSE's notify_inval_entry), set
    /// once the session exists; see [`Namespace::let_go_of_idle`].
    invalidator: std::sync::OnceLock<Invalidate>,
}

/// Asks the kernel to drop its cached entry for `name` in directory `parent`.
pub(crate) type Invalidate =
    Box<dyn Fn(u64, &std::ffi::OsStr) -> std::io::Result<()> + Send + Sync>;

/// How long past its attributes' expiry a name the kernel holds stays unused before
/// the mount asks the kernel to let go of it (a `cp -r` of millions of files would
/// otherwise keep every one in the table: the kernel forgets only under memory
/// pressure). Its next use costs a lookup, which an expired entry costs anyway.
const LET_GO_AFTER: Duration = Duration::from_secs(10);
/// At most this many names looked at per sweep (every 5 s).
const LET_GO_BATCH: usize = 100_000;

impl Namespace {
    pub(crate) fn new(
        config: NamespaceConfig,
        uploads: Arc<UploadContext>,
    ) -> std::io::Result<Self> {
        let _now = SystemTime::now();
        // The root is always there and never expires.
        let forever = Instant::now() + Duration::from_secs(u32::MAX as u64);
        let mut root = Inode::new(ROOT_INO, "", "", Kind::Directory, forever);
        root.metadata_loaded = true;
        let deletes = DeferredDeletes::start(Arc::clone(&uploads.store), uploads.retry_budget)?;
        Ok(Self {
            store: Arc::clone(&uploads.store),
            config,
            deletes,
            uploads,
            table: Mutex::new(InodeTable::new(root)),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            shadowed_logged: Mutex::new(HashSet::new()),
            marker_writes: Mutex::new(()),
            flushing: Mutex::new(HashSet::new()),
            invalidator: std::sync::OnceLock::new(),
            flushed: std::sync::Condvar::new(),
            unreported: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn attr_ttl(&self) -> Duration {
        self.config.attr_ttl
    }

    fn table(&self) -> MutexGuard<'_, InodeTable> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.config.read_only {
            Err(libc::EROFS.into())
        } else {
            Ok(())
        }
    }

    /// Aborts every upload still open (unmount, SIGTERM): nothing half-written appears,
    /// and the writers get EIO. Idempotent; the upload pool stops afterwards.
    pub(crate) fn abort_all(&self) {
        // Uploads first: held changes and deletes may wait for the server, and a stop
        // that times out meanwhile must not leave multipart uploads behind.
        // Writers waiting for memory or pool room stop waiting now.
        self.uploads.budget.close();
        // Every open writer: those of the inodes, and those a second open of the same
        // file has replaced there (still reachable through their handles).
        let mut active = self.table().active_writes();
        for file in self
            .handles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
        {
            if let OpenFile::Writer { active: write, .. } = &**file
                && !active.iter().any(|known| Arc::ptr_eq(known, write))
            {
                active.push(Arc::clone(write));
            }
        }
        for write in active {
            let mut writer = write.writer();
            if writer.abort_unfinished("unmounted before the file was closed") {
                warn!(
                    "unmounting with {:?} still open for writing: aborting its upload",
                    writer.key()
                );
            }
        }
        self.apply_pending_metadata(Duration::ZERO);
        self.deletes
            .stop(Instant::now() + self.uploads.retry_budget);
        self.uploads.pool.shutdown();
    }

    /// The kernel holds one more entry for `ino`.
    pub(crate) fn remember_lookup(&self, ino: u64) {
        self.table().remember(ino);
    }

    /// The kernel dropped `count` entries for `ino`.
    pub(crate) fn forget(&self, ino: u64, count: u64) {
        self.table().forget(ino, count);
    }

    /// Sets how the kernel is asked to drop entries (once; later calls are ignored).
    pub(crate) fn set_invalidator(&self, invalidate: Invalidate) {
        let _ = self.invalidator.set(invalidate);
    }

    /// Asks the kernel to let go of the files it holds that nobody used for
    /// [`LET_GO_AFTER`]; their FORGETs then take them out of the table. Returns how
    /// many were asked. Called by the sweep with no lock held: the kernel takes the
    /// directory's lock to drop an entry, and a request holding it may wait for us.
    pub(crate) fn let_go_of_idle(&self) -> usize {
        let Some(invalidate) = self.invalidator.get() else {
            return 0;
        };
        let idle = self
            .table()
            .idle_entries(Instant::now(), LET_GO_AFTER, LET_GO_BATCH);
        for (parent, name) in &idle {
            if let Err(e) = invalidate(*parent, std::ffi::OsStr::new(name)) {
                // ENOENT: the kernel had dropped it already.
                debug!("could not ask the kernel to drop {name:?} in {parent}: {e}");
            }
        }
        idle.len()
    }

    /// Inodes in the table (shown at unmount: it should not grow with every name seen).
    pub(crate) fn inode_count(&self) -> usize {
        self.table().count()
    }

    pub(crate) fn memory_high_water(&self) -> u64 {
        self.uploads.budget.high_water()
    }
}

/// Waits on `changed` while `busy` holds, at most until `deadline`; true when it ended
/// because `busy` stopped holding. Every wait of the namespace has such a bound.
pub(super) fn wait_while_until<'a, T>(
    changed: &std::sync::Condvar,
    mut guard: MutexGuard<'a, T>,
    deadline: Instant,
    mut busy: impl FnMut(&T) -> bool,
) -> (MutexGuard<'a, T>, bool) {
    while busy(&guard) {
        let now = Instant::now();
        if now >= deadline {
            return (guard, false);
        }
        guard = changed
            .wait_timeout(guard, deadline - now)
            .map(|(guard, _)| guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner().0);
    }
    (guard, true)
}
