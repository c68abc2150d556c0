//! The namespace: what the mount shows and how file operations become S3 requests.
//!
//! Owns the inode table (names, keys, cached attributes with a TTL, remembered
//! misses), open file handles, directory listings over ListObjectsV2 with `/`
//! delimiter, directory markers and attribute changes held briefly so they fold into
//! one request, POSIX metadata, rename as copy + delete (the delete deferred, see
//! `deletes`), and when an open file's upload completes (flush of the opening process,
//! fsync, release). Every call may block on S3; the FUSE adapter decides which thread
//! runs it. Errors are errnos, with the reason logged here where the cause is known.

mod deletes;
mod holders;
pub mod inode;
pub mod metadata;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use log::{debug, error, info, warn};

use crate::read::ObjectReader;
use crate::s3::{
    DIRECTORY_CONTENT_TYPE, ListedObject, ObjectHeaders, ObjectStore, S3Error, crc32c_base64,
};
use crate::upload::UploadContext;
use crate::upload::writer::{ObjectWriter, WriteProgress};
use deletes::DeferredDeletes;
pub use inode::Kind;
use inode::{Inode, InodeTable, ROOT_INO};
use metadata::PosixMetadata;

pub type Errno = i32;
pub type FsResult<T> = Result<T, Errno>;

/// How long chmod/chown/utimes on a finished object are held for a following rename
/// to carry them, before they are sent on their own.
pub const PENDING_METADATA_DELAY: Duration = Duration::from_secs(1);
/// Object copies in flight while renaming a directory.
const DIRECTORY_COPY_CONCURRENCY: usize = 8;
/// S3's limit on key length, in bytes.
const MAX_KEY_LEN: usize = 1024;
const S_IFMT: u32 = libc::S_IFMT;
const S_IFREG: u32 = libc::S_IFREG;
const S_IFDIR: u32 = libc::S_IFDIR;
const S_IFLNK: u32 = libc::S_IFLNK;

/// What `stat` shows.
#[derive(Clone, Copy, Debug)]
pub struct Attributes {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
}

#[derive(Clone, Debug)]
pub struct NamespaceConfig {
    /// Key prefix of the mount: "" or ending in `/`.
    pub prefix: String,
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
    pub attr_ttl: Duration,
    pub read_only: bool,
    /// Where the mount is (canonical), to recognise its files in /proc; None when unknown.
    pub mountpoint: Option<std::path::PathBuf>,
}

/// One name in a directory listing.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub name: String,
    pub ino: u64,
    pub kind: Kind,
}

/// Attribute changes asked for by setattr.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttributeChanges {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub mtime: Option<SystemTime>,
}

/// A file's upload while it is open for writing, shared by its handles and its inode.
pub struct ActiveWrite {
    writer: Mutex<ObjectWriter>,
    /// Published after every write so `stat` never waits for a writer blocked on memory.
    size: AtomicU64,
    /// Process (thread group) that opened the file: its close completes the upload.
    /// (An empty completion is not final: dd closes a duplicate before writing, and the
    /// writes that follow start the object over.)
    opener_tgid: u32,
}

impl ActiveWrite {
    fn writer(&self) -> MutexGuard<'_, ObjectWriter> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }
}

enum OpenFile {
    Reader {
        ino: u64,
        reader: Mutex<ObjectReader>,
    },
    Writer {
        ino: u64,
        active: Arc<ActiveWrite>,
    },
}

pub struct Namespace {
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
}

/// The thread group of `pid` (FUSE reports thread ids; a process's threads share a group).
fn thread_group_of(pid: u32) -> u32 {
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

fn log_s3(error: &S3Error) -> Errno {
    warn!("{error}");
    error.errno()
}

impl Namespace {
    pub fn new(config: NamespaceConfig, uploads: Arc<UploadContext>) -> std::io::Result<Self> {
        let now = SystemTime::now();
        let root = Inode {
            parent: ROOT_INO,
            name: String::new(),
            path: String::new(),
            kind: Kind::Directory,
            size: 0,
            metadata: PosixMetadata::default(),
            last_modified: now,
            metadata_loaded: true,
            valid_until: Instant::now() + Duration::from_secs(u32::MAX as u64),
            listing_valid_until: None,
            lookups: 0,
            active_write: None,
            pending_metadata_since: None,
        };
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
            flushed: std::sync::Condvar::new(),
        })
    }

    pub fn attr_ttl(&self) -> Duration {
        self.config.attr_ttl
    }

    fn table(&self) -> MutexGuard<'_, InodeTable> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn handle(&self, fh: u64) -> FsResult<Arc<OpenFile>> {
        self.handles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&fh)
            .cloned()
            .ok_or(libc::EBADF)
    }

    fn register(&self, file: OpenFile) -> u64 {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(fh, Arc::new(file));
        fh
    }

    fn object_key(&self, path: &str) -> String {
        format!("{}{}", self.config.prefix, path)
    }

    fn marker_key(&self, path: &str) -> String {
        if path.is_empty() {
            self.config.prefix.clone()
        } else {
            format!("{}{}/", self.config.prefix, path)
        }
    }

    /// The path of `name` under `parent`, checked to be a name S3 can store.
    fn child_path(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<(String, String)> {
        let name = name.to_str().ok_or_else(|| {
            warn!("name {name:?} is not UTF-8, which S3 keys must be: EINVAL");
            libc::EINVAL
        })?;
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(libc::EINVAL);
        }
        let table = self.table();
        let parent_inode = table.get(parent).ok_or(libc::ENOENT)?;
        if parent_inode.kind != Kind::Directory {
            return Err(libc::ENOTDIR);
        }
        let path = if parent_inode.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", parent_inode.path)
        };
        // +1 for the `/` of a directory marker.
        if self.config.prefix.len() + path.len() + 1 > MAX_KEY_LEN {
            warn!("{path:?}: key would exceed S3's 1024 bytes: ENAMETOOLONG");
            return Err(libc::ENAMETOOLONG);
        }
        Ok((name.to_owned(), path))
    }

    fn attributes(&self, ino: u64, inode: &Inode) -> Attributes {
        let default_mode = match inode.kind {
            Kind::Directory => self.config.dir_mode,
            Kind::File => self.config.file_mode,
            Kind::Symlink => 0o777,
        };
        let size = match &inode.active_write {
            Some(active) => active.size(),
            None => inode.size,
        };
        Attributes {
            ino,
            kind: inode.kind,
            size,
            perm: inode
                .metadata
                .mode
                .map_or(default_mode, |mode| (mode & 0o7777) as u16),
            uid: inode.metadata.uid.unwrap_or(self.config.uid),
            gid: inode.metadata.gid.unwrap_or(self.config.gid),
            mtime: inode.metadata.mtime.unwrap_or(inode.last_modified),
        }
    }

    fn new_inode(&self, parent: u64, name: &str, path: &str, kind: Kind) -> Inode {
        Inode {
            parent,
            name: name.to_owned(),
            path: path.to_owned(),
            kind,
            size: 0,
            metadata: PosixMetadata::default(),
            last_modified: SystemTime::now(),
            metadata_loaded: false,
            valid_until: Instant::now() + self.config.attr_ttl,
            listing_valid_until: None,
            lookups: 0,
            active_write: None,
            pending_metadata_since: None,
        }
    }

    /// Asks S3 what `path` is: a directory (a marker or anything below it), a file or
    /// symlink, or nothing. A directory wins over a file of the same name. With the kind
    /// a fresh listing showed, one request usually settles it; an unknown name takes one
    /// delimited LIST, plus a HEAD when something is there.
    fn fetch_remote(
        &self,
        parent: u64,
        name: &str,
        path: &str,
        known: Option<Kind>,
    ) -> FsResult<Option<Inode>> {
        let key = self.object_key(path);
        let marker = self.marker_key(path);
        match known {
            Some(Kind::Directory) => return self.directory_inode(parent, name, path).map(Some),
            Some(Kind::File | Kind::Symlink) => {
                if let Some(inode) = self.file_inode(parent, name, path)? {
                    return Ok(Some(inode));
                }
            }
            None => {}
        }
        let page = self
            .store
            .list_page(&key, true, None, Some(100))
            .map_err(|e| log_s3(&e))?;
        let has_object = page.objects.iter().any(|o| o.key == key);
        let mut has_directory = page.common_prefixes.contains(&marker);
        if !has_directory && page.next_token.is_some() {
            has_directory = !self
                .store
                .list_page(&marker, false, None, Some(1))
                .map_err(|e| log_s3(&e))?
                .objects
                .is_empty();
        }
        if has_directory {
            if has_object {
                self.warn_shadowed_once(path);
            }
            return self.directory_inode(parent, name, path).map(Some);
        }
        if has_object {
            return self.file_inode(parent, name, path);
        }
        Ok(None)
    }

    fn warn_shadowed_once(&self, path: &str) {
        let mut logged = self
            .shadowed_logged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if logged.insert(path.to_owned()) {
            warn!("{path:?} is both a file and a directory in the bucket; showing the directory");
        }
    }

    /// A directory's inode, with the attributes of its marker when it has one.
    fn directory_inode(&self, parent: u64, name: &str, path: &str) -> FsResult<Inode> {
        let mut inode = self.new_inode(parent, name, path, Kind::Directory);
        if let Some(info) = self
            .store
            .head_object(&self.marker_key(path))
            .map_err(|e| log_s3(&e))?
        {
            inode.metadata = PosixMetadata::decode(&info.metadata);
            inode.last_modified = info.last_modified;
        }
        inode.metadata_loaded = true;
        Ok(inode)
    }

    fn file_inode(&self, parent: u64, name: &str, path: &str) -> FsResult<Option<Inode>> {
        let Some(info) = self
            .store
            .head_object(&self.object_key(path))
            .map_err(|e| log_s3(&e))?
        else {
            return Ok(None);
        };
        let metadata = PosixMetadata::decode(&info.metadata);
        let kind = if metadata.mode.is_some_and(|m| m & S_IFMT == S_IFLNK) {
            Kind::Symlink
        } else {
            Kind::File
        };
        let mut inode = self.new_inode(parent, name, path, kind);
        inode.size = info.size;
        inode.metadata = metadata;
        inode.last_modified = info.last_modified;
        inode.metadata_loaded = true;
        Ok(Some(inode))
    }

    pub fn lookup(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<Attributes> {
        let (name, path) = self.child_path(parent, name)?;
        let mut relisted = false;
        loop {
            let now = Instant::now();
            let known = {
                let table = self.table();
                let child = table
                    .child(parent, &name)
                    .and_then(|c| Some((c, table.get(c)?)));
                if let Some((ino, inode)) = child
                    && (inode.exists_only_locally()
                        || (inode.is_fresh(now) && inode.metadata_loaded))
                {
                    return Ok(self.attributes(ino, inode));
                }
                let parent_inode = table.get(parent);
                let listed_complete = parent_inode
                    .and_then(|p| p.listing_valid_until)
                    .is_some_and(|until| until > now);
                match child {
                    Some((_, inode)) => Some(inode.kind),
                    None if listed_complete || table.is_known_absent(parent, &name, now) => {
                        return Err(libc::ENOENT);
                    }
                    // A small directory listed before: one LIST re-validates all its names.
                    None if !relisted
                        && parent_inode.is_some_and(|p| p.listing_valid_until.is_some())
                        && !table.has_children(parent, 1000) =>
                    {
                        None
                    }
                    None => {
                        relisted = true;
                        None
                    }
                }
            };
            if known.is_none() && !relisted {
                relisted = true;
                self.list_directory(parent)?;
                continue;
            }
            if known.is_none() && self.deletes.is_outstanding(&self.object_key(&path)) {
                // Renamed away a moment ago; S3 may still show it.
                return Err(libc::ENOENT);
            }
            return match self.fetch_remote(parent, &name, &path, known)? {
                Some(mut inode) => {
                    // Fresh from now (the fetch may have been slow): the kernel's count
                    // of it is taken after we answer, and forget spares fresh inodes.
                    inode.valid_until = Instant::now() + self.config.attr_ttl;
                    let mut table = self.table();
                    let ino = table.upsert(inode);
                    let inode = table.get(ino).ok_or(libc::ENOENT)?;
                    Ok(self.attributes(ino, inode))
                }
                None => {
                    let mut table = self.table();
                    match table.child(parent, &name) {
                        Some(ino) if table.get(ino).is_some_and(|i| i.is_being_written()) => {}
                        Some(_) => {
                            table.unlink(parent, &name);
                        }
                        None => {
                            table.remember_absent(parent, &name, now + self.config.attr_ttl);
                        }
                    }
                    Err(libc::ENOENT)
                }
            };
        }
    }

    pub fn getattr(&self, ino: u64) -> FsResult<Attributes> {
        let now = Instant::now();
        let (parent, name, path, kind) = {
            let table = self.table();
            let inode = table.get(ino).ok_or(libc::ENOENT)?;
            if ino == ROOT_INO
                || inode.exists_only_locally()
                || (inode.is_fresh(now) && inode.metadata_loaded)
            {
                return Ok(self.attributes(ino, inode));
            }
            (
                inode.parent,
                inode.name.clone(),
                inode.path.clone(),
                inode.kind,
            )
        };
        match self.fetch_remote(parent, &name, &path, Some(kind))? {
            Some(fresh) => {
                let mut table = self.table();
                let inode = table.get_mut(ino).ok_or(libc::ENOENT)?;
                if inode.kind == fresh.kind {
                    inode.size = fresh.size;
                    inode.metadata = fresh.metadata;
                    inode.last_modified = fresh.last_modified;
                    inode.metadata_loaded = true;
                    inode.valid_until = fresh.valid_until;
                    Ok(self.attributes(ino, inode))
                } else {
                    Err(libc::ENOENT)
                }
            }
            None => Err(libc::ENOENT),
        }
    }

    /// The entries of a directory, from a full listing merged with our own pending files.
    pub fn list_directory(&self, ino: u64) -> FsResult<Vec<DirEntry>> {
        let path = {
            let table = self.table();
            let inode = table.get(ino).ok_or(libc::ENOENT)?;
            if inode.kind != Kind::Directory {
                return Err(libc::ENOTDIR);
            }
            inode.path.clone()
        };
        let prefix = self.marker_key(&path);
        let deleting = self.deletes.outstanding_below(&prefix);
        let listing = self.store.list_all(&prefix, true).map_err(|e| log_s3(&e))?;
        let now = Instant::now();
        let mut table = self.table();
        let mut seen: HashMap<String, u64> = HashMap::new();
        for common in &listing.common_prefixes {
            let Some(name) = common
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix('/'))
            else {
                continue;
            };
            if !is_representable(name) {
                continue;
            }
            let child_path = join(&path, name);
            let mut inode = self.new_inode(ino, name, &child_path, Kind::Directory);
            if let Some(existing) = table.child(ino, name).and_then(|c| table.get(c))
                && existing.kind == Kind::Directory
            {
                inode.metadata = existing.metadata;
                inode.metadata_loaded = existing.metadata_loaded;
                inode.last_modified = existing.last_modified;
                // The listing shows the directory exists, not what its marker holds now
                // (another mount may have sent it since): the attributes expire as before.
                inode.valid_until = existing.valid_until;
            }
            let child = table.upsert(inode);
            seen.insert(name.to_owned(), child);
        }
        for object in &listing.objects {
            let Some(name) = object.key.strip_prefix(&prefix) else {
                continue;
            };
            let renamed_away =
                deleting.contains(&object.key) || self.deletes.is_outstanding(&object.key);
            if name.is_empty() || !is_representable(name) || renamed_away {
                continue;
            }
            if seen.contains_key(name) {
                debug!(
                    "{:?} is shadowed by a directory of the same name",
                    object.key
                );
                continue;
            }
            let child_path = join(&path, name);
            let existing = table.child(ino, name).and_then(|c| table.get(c));
            let unchanged = existing.filter(|e| {
                e.kind != Kind::Directory
                    && e.size == object.size
                    && e.metadata_loaded
                    && e.last_modified <= object.last_modified + Duration::from_secs(1)
                    && object.last_modified <= e.last_modified + Duration::from_secs(1)
            });
            let child = match unchanged {
                Some(_) => table.child(ino, name).unwrap_or(0),
                None => {
                    let kind = existing
                        .map(|e| e.kind)
                        .filter(|k| *k != Kind::Directory)
                        .unwrap_or(Kind::File);
                    let mut inode = self.new_inode(ino, name, &child_path, kind);
                    inode.size = object.size;
                    inode.last_modified = object.last_modified;
                    table.upsert(inode)
                }
            };
            seen.insert(name.to_owned(), child);
        }
        for (name, child) in table.children_of(ino) {
            if seen.contains_key(&name) {
                continue;
            }
            // Ours and not in S3 yet (being written, a held directory marker), or seen
            // too recently to be gone.
            let keep = table
                .get(child)
                .is_some_and(|c| c.exists_only_locally() || c.valid_until > now);
            if keep {
                seen.insert(name, child);
            } else {
                table.unlink(ino, &name);
            }
        }
        if let Some(dir) = table.get_mut(ino) {
            dir.listing_valid_until = Some(now + self.config.attr_ttl);
        }
        let mut entries: Vec<DirEntry> = seen
            .into_iter()
            .filter_map(|(name, ino)| {
                table.get(ino).map(|c| DirEntry {
                    name,
                    ino,
                    kind: c.kind,
                })
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn headers_for(metadata: &PosixMetadata, content_type: Option<&str>) -> ObjectHeaders {
        let mut headers = ObjectHeaders {
            content_type: content_type.map(str::to_owned),
            ..ObjectHeaders::default()
        };
        metadata.encode_into(&mut headers.metadata);
        headers
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.config.read_only {
            Err(libc::EROFS)
        } else {
            Ok(())
        }
    }

    pub fn create(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        mode: u32,
        uid: u32,
        gid: u32,
        pid: u32,
    ) -> FsResult<(Attributes, u64)> {
        self.check_writable()?;
        let (name, path) = self.child_path(parent, name)?;
        // A file just renamed away from this name: its delete must not hit the new one.
        self.delete_before_reuse(&self.object_key(&path))?;
        let (_, gid) = self.inherit_from(parent, gid);
        let metadata = PosixMetadata {
            mode: Some(S_IFREG | (mode & 0o7777)),
            uid: Some(uid),
            gid: Some(gid),
            mtime: Some(SystemTime::now()),
        };
        let active = Arc::new(ActiveWrite {
            writer: Mutex::new(ObjectWriter::new(
                Arc::clone(&self.uploads),
                self.object_key(&path),
                Self::headers_for(&metadata, None),
            )),
            size: AtomicU64::new(0),
            opener_tgid: thread_group_of(pid),
        });
        let mut inode = self.new_inode(parent, &name, &path, Kind::File);
        inode.metadata = metadata;
        inode.metadata_loaded = true;
        inode.active_write = Some(Arc::clone(&active));
        let mut table = self.table();
        if let Some(existing) = table.child(parent, &name).and_then(|c| table.get(c))
            && existing.kind == Kind::Directory
        {
            return Err(libc::EISDIR);
        }
        let ino = table.upsert(inode);
        if let Some(stored) = table.get_mut(ino) {
            stored.active_write = Some(Arc::clone(&active));
        }
        let attributes = self.attributes(ino, table.get(ino).ok_or(libc::ENOENT)?);
        drop(table);
        let fh = self.register(OpenFile::Writer { ino, active });
        Ok((attributes, fh))
    }

    pub fn open(&self, ino: u64, flags: i32, pid: u32) -> FsResult<u64> {
        let attributes = self.getattr(ino)?;
        if attributes.kind == Kind::Directory {
            return Err(libc::EISDIR);
        }
        let (path, metadata, being_written) = {
            let table = self.table();
            let inode = table.get(ino).ok_or(libc::ENOENT)?;
            (
                inode.path.clone(),
                inode.metadata,
                inode.active_write.clone(),
            )
        };
        let key = self.object_key(&path);
        if flags & libc::O_ACCMODE == libc::O_RDONLY {
            // Never waits for the writer's lock (a commit may hold it while Complete is
            // sent): a writer that is busy is still being written.
            if let Some(active) = being_written
                && active.writer.try_lock().map_or(true, |w| !w.is_completed())
            {
                warn!(
                    "{path:?} is being written; reading it before its upload completes is not supported: EBUSY"
                );
                return Err(libc::EBUSY);
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
            warn!("{path:?}: appending to an existing object is not supported yet: EOPNOTSUPP");
            return Err(libc::EOPNOTSUPP);
        }
        if flags & libc::O_TRUNC == 0 && attributes.size > 0 {
            warn!(
                "{path:?}: rewriting part of an existing object is not supported; open it with O_TRUNC to replace it: EOPNOTSUPP"
            );
            return Err(libc::EOPNOTSUPP);
        }
        let metadata = PosixMetadata {
            mtime: Some(SystemTime::now()),
            ..metadata
        };
        let active = Arc::new(ActiveWrite {
            writer: Mutex::new(ObjectWriter::new(
                Arc::clone(&self.uploads),
                key,
                Self::headers_for(&metadata, None),
            )),
            size: AtomicU64::new(0),
            opener_tgid: thread_group_of(pid),
        });
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

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
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
                reader.read(offset, size).map_err(|e| log_s3(&e))
            }
            OpenFile::Writer { ino, .. } => {
                warn!(
                    "inode {ino}: reading through a handle opened for writing is not supported: EBADF"
                );
                Err(libc::EBADF)
            }
        }
    }

    /// Writes through a handle without waiting: `NeedsMemory` says what the rest of
    /// `data` waits for (see [`Namespace::write_waiting`]).
    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<WriteProgress> {
        let file = self.handle(fh)?;
        let OpenFile::Writer { active, .. } = &*file else {
            return Err(libc::EBADF);
        };
        Self::write_once(active, offset, data)
    }

    fn write_once(active: &ActiveWrite, offset: u64, data: &[u8]) -> FsResult<WriteProgress> {
        let mut writer = active.writer();
        let result = writer.write(offset, data);
        active.size.store(writer.size(), Ordering::Release);
        result.map_err(|error| {
            match &error {
                crate::upload::writer::WriteError::TooLarge { max } => warn!(
                    "{:?}: write past {max} bytes, the largest file the part schedule reaches: EFBIG",
                    writer.key()
                ),
                crate::upload::writer::WriteError::Completed => warn!(
                    "{:?}: write after the upload was completed (fsync or close); appending is not supported: EIO",
                    writer.key()
                ),
                crate::upload::writer::WriteError::Failed(reason) => {
                    debug!("{:?}: write refused, upload failed: {reason}", writer.key())
                }
                crate::upload::writer::WriteError::AlreadyUploaded { .. } => {}
            }
            error.errno()
        })
    }

    /// Writes through a handle, waiting for memory as long as memory comes back, without
    /// holding the writer's lock while it waits (so close, unlink and unmount never queue
    /// behind it). Returns how many bytes were taken: all, or those taken before a wait
    /// ended early. A wait that ends with nothing taken is an error: EINTR when
    /// `cancelled` (the writer got a signal), EDQUOT when the memory budget is held by
    /// open files that nothing is uploading, EIO at unmount.
    pub fn write_waiting(
        &self,
        fh: u64,
        offset: u64,
        data: &[u8],
        cancelled: &dyn Fn() -> bool,
    ) -> FsResult<usize> {
        let file = self.handle(fh)?;
        let OpenFile::Writer { active, .. } = &*file else {
            return Err(libc::EBADF);
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
    fn wait_for_need(
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
                Err(libc::EINTR)
            }
            Err(WaitFailure::Closed) => Err(libc::EIO),
            Err(WaitFailure::Stalled) => {
                warn!(
                    "write refused (EDQUOT): the memory budget (--max-memory {} bytes) is held by \
                     files open for writing and no upload is freeing any; close some files or \
                     raise --max-memory",
                    self.uploads.budget.limit()
                );
                Err(libc::EDQUOT)
            }
        }
    }

    /// Completes the upload and refreshes the inode from the result.
    fn complete(&self, ino: u64, active: &ActiveWrite) -> FsResult<()> {
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
                Ok(())
            }
            Err(_) => Err(libc::EIO),
        }
    }

    /// close() of one descriptor. Only the opening process's close completes the
    /// upload: duplicates (dd), forked children and shell subprocesses close theirs
    /// earlier, and completing then would cut the file short.
    ///
    /// `killed`: the closing process is exiting by a signal (SIGKILL, Ctrl-C), so the
    /// kernel closes its files and what it wrote is unfinished: the opener's upload is
    /// aborted, never published under the file's name.
    pub fn flush(&self, fh: u64, pid: u32, killed: bool) -> FsResult<()> {
        let file = self.handle(fh)?;
        let OpenFile::Writer { ino, active } = &*file else {
            return Ok(());
        };
        let tgid = thread_group_of(pid);
        let opener = tgid == active.opener_tgid;
        if killed && (opener || !self.held_elsewhere(*ino, opener)) {
            let mut writer = active.writer();
            if writer.abort_unfinished("the writing process was killed") {
                warn!(
                    "{:?}: its writer was killed by a signal before closing it: upload aborted, nothing published",
                    writer.key()
                );
            }
            return Ok(());
        }
        // The last close completes the upload and gets its result. The opener's close is
        // the last unless it handed the descriptor to a child that still holds it; a
        // close from another process is the last when nobody holds the file any more.
        let may_be_held = !opener || holders::has_children(tgid);
        if may_be_held && self.held_elsewhere(*ino, opener) {
            debug!(
                "inode {ino}: closed by process {tgid} (opener {}), still open elsewhere: \
                 completing at the last close",
                active.opener_tgid
            );
            return if active.writer().has_failed() {
                Err(libc::EIO)
            } else {
                Ok(())
            };
        }
        self.complete(*ino, active)
    }

    /// Whether some process still has the file `ino` open. Without a known mountpoint:
    /// assume so for a close from another process, not for the opener's (as before).
    fn held_elsewhere(&self, ino: u64, opener: bool) -> bool {
        let path = self.table().get(ino).map(|inode| inode.path.clone());
        match (&self.config.mountpoint, path) {
            (Some(mountpoint), Some(path)) => holders::held_open(&mountpoint.join(path)),
            _ => !opener,
        }
    }

    pub fn fsync(&self, fh: u64) -> FsResult<()> {
        let file = self.handle(fh)?;
        match &*file {
            OpenFile::Writer { ino, active } => self.complete(*ino, active),
            OpenFile::Reader { .. } => {
                self.apply_pending_metadata(Duration::ZERO);
                Ok(())
            }
        }
    }

    /// The last close: completes what the flushes left open, and forgets the handle.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let file = self
            .handles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&fh)
            .ok_or(libc::EBADF)?;
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

    pub fn setattr(&self, ino: u64, changes: AttributeChanges) -> FsResult<Attributes> {
        self.check_writable()?;
        let current = self.getattr(ino)?;
        let (path, kind, active, mut metadata) = {
            let table = self.table();
            let inode = table.get(ino).ok_or(libc::ENOENT)?;
            (
                inode.path.clone(),
                inode.kind,
                inode.active_write.clone(),
                inode.metadata,
            )
        };
        // A finished upload still attached to its inode (closed, not yet released) takes
        // no more metadata: the change goes the way of any finished object's. Checked
        // outside the table lock: the writer may be waiting for memory.
        let active = active.filter(|a| !a.writer().is_final());
        let type_bits = match kind {
            Kind::Directory => S_IFDIR,
            Kind::File => S_IFREG,
            Kind::Symlink => S_IFLNK,
        };
        if let Some(mode) = changes.mode {
            metadata.mode = Some(type_bits | (mode & 0o7777));
        } else if metadata.mode.is_none() {
            metadata.mode = Some(type_bits | u32::from(current.perm));
        }
        metadata.uid = changes.uid.or(metadata.uid).or(Some(current.uid));
        metadata.gid = changes.gid.or(metadata.gid).or(Some(current.gid));
        metadata.mtime = changes.mtime.or(metadata.mtime).or(Some(current.mtime));
        let metadata_changed = changes.mode.is_some()
            || changes.uid.is_some()
            || changes.gid.is_some()
            || changes.mtime.is_some();

        let mut riding = false;
        if let Some(active) = active {
            if let Some(size) = changes.size {
                self.truncate_writer(&active, &path, size)?;
            }
            let mut writer = active.writer();
            let content_type = writer.headers().content_type.clone();
            writer.set_headers(Self::headers_for(&metadata, content_type.as_deref()));
            // An empty completion (dd's first close) that nothing restarted is not
            // uploaded again: put the empty object again with the change, now (holding
            // it for the flusher could race with writes that restart the upload).
            // (A failed writer takes nothing: the change is held for the old object.)
            riding = writer.is_writing();
            if metadata_changed && writer.is_empty_completion() {
                let headers = writer.headers().clone();
                drop(writer);
                self.put_small(&self.object_key(&path), Bytes::new(), &headers)?;
                riding = true;
            }
        } else if kind != Kind::Directory {
            // (A directory's change is only held below: its marker PUT comes later.)
            if let Some(size) = changes.size {
                if size == 0 && current.size > 0 {
                    self.put_small(
                        &self.object_key(&path),
                        Bytes::new(),
                        &Self::headers_for(&metadata, None),
                    )?;
                } else if size != current.size {
                    warn!(
                        "{path:?}: truncate of a finished object to {size} bytes is not supported (only to 0): EOPNOTSUPP"
                    );
                    return Err(libc::EOPNOTSUPP);
                }
            }
        }
        let mut table = self.table();
        let inode = table.get_mut(ino).ok_or(libc::ENOENT)?;
        if metadata_changed && !riding && ino != ROOT_INO {
            // Held briefly: rsync's chmod + utimes + rename then cost one copy, not three
            // (for a directory: one marker PUT).
            inode
                .pending_metadata_since
                .get_or_insert_with(Instant::now);
        }
        inode.metadata = metadata;
        inode.metadata_loaded = true;
        if let Some(size) = changes.size
            && inode.active_write.is_none()
        {
            inode.size = size;
        }
        inode.valid_until = Instant::now() + self.config.attr_ttl;
        Ok(self.attributes(ino, inode))
    }

    /// Truncates a file being written, waiting for memory (bounded) when it grows.
    fn truncate_writer(&self, active: &ActiveWrite, path: &str, size: u64) -> FsResult<()> {
        loop {
            let progress = {
                let mut writer = active.writer();
                let result = writer.truncate(size);
                active.size.store(writer.size(), Ordering::Release);
                result.map_err(|e| {
                    warn!("{path:?}: truncate to {size} refused: {e:?}");
                    e.errno()
                })?
            };
            match progress {
                WriteProgress::Done => return Ok(()),
                WriteProgress::NeedsMemory { need, .. } => {
                    self.wait_for_need(active, need, &|| false)?
                }
            }
        }
    }

    /// Before something new lands under `key`: a delete of it still queued (a file
    /// renamed away from this name) is sent now, one in progress waited for.
    fn delete_before_reuse(&self, key: &str) -> FsResult<()> {
        if self.deletes.take_or_wait(key) {
            self.store.delete_object(key).map_err(|e| log_s3(&e))?;
        }
        Ok(())
    }

    fn flushing_keys(&self) -> MutexGuard<'_, HashSet<String>> {
        self.flushing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until the flusher is not copying `key` onto itself (see `flushing`).
    /// Call after taking the inode's held change away under the table lock.
    fn wait_for_flush_of(&self, key: &str) {
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

    fn lock_marker_writes(&self) -> MutexGuard<'_, ()> {
        self.marker_writes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn put_marker(&self, marker_key: &str, metadata: &PosixMetadata) -> FsResult<()> {
        self.put_small(
            marker_key,
            Bytes::new(),
            &Self::headers_for(metadata, Some(DIRECTORY_CONTENT_TYPE)),
        )
    }

    /// One PutObject of a body the namespace makes itself (marker, symlink, truncation).
    fn put_small(&self, key: &str, body: Bytes, headers: &ObjectHeaders) -> FsResult<()> {
        let checksum = crc32c_base64(&body);
        self.store
            .put_object(key, body, &checksum, headers)
            .map_err(|e| log_s3(&e))?;
        Ok(())
    }

    /// What a new entry inherits from a set-group-ID parent directory, as on a local
    /// filesystem: the parent's group, and for directories the set-group-ID bit itself.
    fn inherit_from(&self, parent: u64, gid: u32) -> (u32, u32) {
        let table = self.table();
        let Some(parent) = table.get(parent) else {
            return (0, gid);
        };
        match parent.metadata.mode {
            Some(mode) if mode & libc::S_ISGID != 0 => (
                libc::S_ISGID,
                parent.metadata.gid.unwrap_or(self.config.gid),
            ),
            _ => (0, gid),
        }
    }

    pub fn mkdir(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> FsResult<Attributes> {
        self.check_writable()?;
        if self.lookup(parent, name).is_ok() {
            return Err(libc::EEXIST);
        }
        let (name, path) = self.child_path(parent, name)?;
        let (setgid, gid) = self.inherit_from(parent, gid);
        let metadata = PosixMetadata {
            mode: Some(S_IFDIR | (mode & 0o7777) | setgid),
            uid: Some(uid),
            gid: Some(gid),
            mtime: Some(SystemTime::now()),
        };
        let mut inode = self.new_inode(parent, &name, &path, Kind::Directory);
        inode.metadata = metadata;
        inode.metadata_loaded = true;
        inode.listing_valid_until = Some(Instant::now() + self.config.attr_ttl);
        // The marker is held like an attribute change: rsync's mkdir + chmod + utimes
        // then cost one PutObject, and an empty directory removed at once costs none.
        inode.pending_metadata_since = Some(Instant::now());
        let mut table = self.table();
        let ino = table.upsert(inode);
        Ok(self.attributes(ino, table.get(ino).ok_or(libc::ENOENT)?))
    }

    pub fn rmdir(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<()> {
        self.check_writable()?;
        let attributes = self.lookup(parent, name)?;
        if attributes.kind != Kind::Directory {
            return Err(libc::ENOTDIR);
        }
        let (name, path) = self.child_path(parent, name)?;
        let marker = self.marker_key(&path);
        // Files renamed out of it must be gone before its emptiness is judged.
        if !self
            .deletes
            .wait_below(&marker, Instant::now() + self.uploads.stall_bound())
        {
            warn!("{path:?}: files renamed out of it are still being deleted: EBUSY");
            return Err(libc::EBUSY);
        }
        let _marker_writes = self.lock_marker_writes();
        let below = self
            .store
            .list_page(&marker, false, None, Some(2))
            .map_err(|e| log_s3(&e))?;
        let pending_children = {
            let table = self.table();
            table
                .children_of(attributes.ino)
                .into_iter()
                .any(|(_, child)| table.get(child).is_some_and(|c| c.exists_only_locally()))
        };
        if pending_children || below.objects.iter().any(|o| o.key != marker) {
            return Err(libc::ENOTEMPTY);
        }
        self.store.delete_object(&marker).map_err(|e| log_s3(&e))?;
        let mut table = self.table();
        if let Some(inode) = table.get_mut(attributes.ino) {
            // A held chmod/utimes must not bring the marker back.
            inode.pending_metadata_since = None;
        }
        table.unlink(parent, &name);
        Ok(())
    }

    pub fn unlink(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<()> {
        self.check_writable()?;
        let attributes = self.lookup(parent, name)?;
        if attributes.kind == Kind::Directory {
            return Err(libc::EISDIR);
        }
        let (name, path) = self.child_path(parent, name)?;
        let active = self
            .table()
            .get(attributes.ino)
            .and_then(|inode| inode.active_write.clone());
        if let Some(active) = active {
            active.writer().discard("unlinked while being written");
        }
        if let Some(inode) = self.table().get_mut(attributes.ino) {
            inode.pending_metadata_since = None;
        }
        self.wait_for_flush_of(&self.object_key(&path));
        self.store
            .delete_object(&self.object_key(&path))
            .map_err(|e| log_s3(&e))?;
        self.table().unlink(parent, &name);
        Ok(())
    }

    pub fn symlink(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        target: &std::path::Path,
        uid: u32,
        gid: u32,
    ) -> FsResult<Attributes> {
        self.check_writable()?;
        if self.lookup(parent, name).is_ok() {
            return Err(libc::EEXIST);
        }
        let (name, path) = self.child_path(parent, name)?;
        let target = target.to_str().ok_or(libc::EINVAL)?;
        self.delete_before_reuse(&self.object_key(&path))?;
        let metadata = PosixMetadata {
            mode: Some(S_IFLNK | 0o777),
            uid: Some(uid),
            gid: Some(gid),
            mtime: Some(SystemTime::now()),
        };
        let body = Bytes::copy_from_slice(target.as_bytes());
        self.put_small(
            &self.object_key(&path),
            body.clone(),
            &Self::headers_for(&metadata, None),
        )?;
        let mut inode = self.new_inode(parent, &name, &path, Kind::Symlink);
        inode.metadata = metadata;
        inode.metadata_loaded = true;
        inode.size = body.len() as u64;
        let mut table = self.table();
        let ino = table.upsert(inode);
        Ok(self.attributes(ino, table.get(ino).ok_or(libc::ENOENT)?))
    }

    pub fn readlink(&self, ino: u64) -> FsResult<Bytes> {
        let path = {
            let table = self.table();
            let inode = table.get(ino).ok_or(libc::ENOENT)?;
            if inode.kind != Kind::Symlink {
                return Err(libc::EINVAL);
            }
            inode.path.clone()
        };
        self.store
            .get_object(&self.object_key(&path), None)
            .map_err(|e| log_s3(&e))
    }

    pub fn rename(
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
                return Err(libc::EEXIST);
            }
            match (source.kind, target.kind) {
                (Kind::Directory, Kind::Directory) => {
                    self.rmdir(new_parent, std::ffi::OsStr::new(&new_name))?
                }
                (Kind::Directory, _) => return Err(libc::ENOTDIR),
                (_, Kind::Directory) => return Err(libc::EISDIR),
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
        self.table()
            .rename(source.ino, new_parent, &new_name, target_path);
        Ok(())
    }

    fn rename_file(&self, ino: u64, source_path: &str, target_path: &str) -> FsResult<()> {
        let source_key = self.object_key(source_path);
        let target_key = self.object_key(target_path);
        // An earlier rename away from the target name must not delete what lands there
        // (by the copy below, or by an unstarted upload that simply takes the new key).
        self.delete_before_reuse(&target_key)?;
        let (active, metadata, pending, mut size) = {
            let mut table = self.table();
            let inode = table.get_mut(ino).ok_or(libc::ENOENT)?;
            let pending = inode.pending_metadata_since.take().is_some();
            (
                inode.active_write.clone(),
                inode.metadata,
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
                if writer.set_key(target_key.clone()) {
                    // Nothing uploaded yet: the object is simply created under the new
                    // name. What the source key may hold (the object an O_TRUNC open
                    // replaced, dd's empty first close) is gone with the old name.
                    drop(writer);
                    if !self.deletes.schedule(&source_key) {
                        self.store
                            .delete_object(&source_key)
                            .map_err(|e| log_s3(&e))?;
                    }
                    return Ok(());
                }
                if !writer.has_failed() {
                    // Its multipart upload is bound to the old key: completing it early
                    // would publish a partial file under the new name, completing it
                    // later at the old key could overwrite a new file of that name.
                    drop(writer);
                    if pending && let Some(inode) = self.table().get_mut(ino) {
                        inode
                            .pending_metadata_since
                            .get_or_insert_with(Instant::now);
                    }
                    warn!(
                        "{source_path:?} is being written and its upload has started: \
                         rename it once it is closed (EBUSY)"
                    );
                    return Err(libc::EBUSY);
                }
                writer.commit().map_err(|_| libc::EIO)?;
            }
            size = writer.size();
        }
        // Pending attribute changes ride along with the copy; otherwise the object's own
        // metadata (including keys other tools wrote) is copied as it is.
        let replaced = pending.then(|| Self::headers_for(&metadata, None));
        if let Err(error) = self
            .store
            .copy(&source_key, &target_key, replaced.as_ref(), size)
        {
            if pending && let Some(inode) = self.table().get_mut(ino) {
                inode.pending_metadata_since = Some(Instant::now());
            }
            return Err(log_s3(&error));
        }
        // The rename has happened once the copy exists; the old key goes in the background.
        if !self.deletes.schedule(&source_key) {
            self.store
                .delete_object(&source_key)
                .map_err(|e| log_s3(&e))?;
        }
        Ok(())
    }

    fn rename_directory(&self, ino: u64, source_path: &str, target_path: &str) -> FsResult<()> {
        let source_prefix = self.marker_key(source_path);
        let target_prefix = self.marker_key(target_path);
        if target_prefix.starts_with(&source_prefix) {
            return Err(libc::EINVAL);
        }
        let active_writes = self.table().active_writes();
        let writing_below = active_writes.iter().any(|active| {
            let writer = active.writer();
            writer.key().starts_with(&source_prefix) && !writer.is_completed()
        });
        if writing_below {
            warn!(
                "{source_path:?}: renaming a directory with files still being written is not supported: EBUSY"
            );
            return Err(libc::EBUSY);
        }
        // Files renamed out of it must not be copied along, nor files renamed into it missed.
        let deadline = Instant::now() + self.uploads.stall_bound();
        if !self.deletes.wait_below(&source_prefix, deadline)
            || !self.deletes.wait_below(&target_prefix, deadline)
        {
            warn!("{source_path:?}: files renamed out of it are still being deleted: EBUSY");
            return Err(libc::EBUSY);
        }
        // A held marker (new directory, chmod/utimes) is written once, at the new name.
        let (metadata, pending) = {
            let mut table = self.table();
            let inode = table.get_mut(ino).ok_or(libc::ENOENT)?;
            (
                inode.metadata,
                inode.pending_metadata_since.take().is_some(),
            )
        };
        let result = self.move_directory_objects(&source_prefix, &target_prefix, metadata, pending);
        if result.is_err()
            && pending
            && let Some(inode) = self.table().get_mut(ino)
        {
            inode.pending_metadata_since = Some(Instant::now());
        }
        result
    }

    /// Copies every object below `source_prefix` to `target_prefix`, then deletes the
    /// originals. The target's marker carries `metadata` when the change was held or the
    /// source had no objects at all.
    fn move_directory_objects(
        &self,
        source_prefix: &str,
        target_prefix: &str,
        metadata: PosixMetadata,
        metadata_pending: bool,
    ) -> FsResult<()> {
        let listing = self
            .store
            .list_all(source_prefix, false)
            .map_err(|e| log_s3(&e))?;
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
                warn!(
                    "renaming {source_prefix:?} would give {:?} a key over S3's 1024 bytes: ENAMETOOLONG",
                    object.key
                );
                return Err(libc::ENAMETOOLONG);
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
            return Err(log_s3(&error));
        }
        if metadata_pending || listing.objects.is_empty() {
            self.put_marker(target_prefix, &metadata)?;
        }
        for object in &listing.objects {
            self.store
                .delete_object(&object.key)
                .map_err(|e| log_s3(&e))?;
        }
        Ok(())
    }

    /// Starts the thread that sends held attribute changes once they are
    /// [`PENDING_METADATA_DELAY`] old; it ends with the namespace.
    pub fn start_metadata_flusher(namespace: &Arc<Namespace>) -> std::io::Result<()> {
        let weak = Arc::downgrade(namespace);
        std::thread::Builder::new()
            .name("metadata-flush".to_owned())
            .spawn(move || {
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
                    }
                }
            })
            .map(|_| ())
    }

    /// Sends attribute changes held for at least `min_age` (CopyObject onto itself).
    pub fn apply_pending_metadata(&self, min_age: Duration) {
        // Taken before the changes are: a directory rmdir'd or renamed meanwhile has no
        // held marker left to write at its old name.
        let _marker_writes = self.lock_marker_writes();
        let now = Instant::now();
        // The change stays held (and so what stat shows) until it has landed: a stat in
        // between must not fetch the object's old attributes over it.
        let due: Vec<(u64, Instant, String, PosixMetadata, u64, Kind)> = {
            let table = self.table();
            table
                .inodes()
                .filter_map(|(ino, inode)| {
                    let since = inode.pending_metadata_since?;
                    if now.duration_since(since) < min_age {
                        return None;
                    }
                    Some((
                        *ino,
                        since,
                        inode.path.clone(),
                        inode.metadata,
                        inode.size,
                        inode.kind,
                    ))
                })
                .collect()
        };
        for (ino, since, path, metadata, size, kind) in due {
            let key = self.object_key(&path);
            if kind != Kind::Directory {
                // Still held (no rewrite, rename or unlink took it since the snapshot):
                // claim the key, under the table lock they clear the change under.
                let table = self.table();
                let still_held = table
                    .get(ino)
                    .is_some_and(|i| i.pending_metadata_since == Some(since) && i.path == path);
                if !still_held {
                    continue;
                }
                self.flushing_keys().insert(key.clone());
                drop(table);
            }
            let applied = if kind == Kind::Directory {
                self.store
                    .put_object(
                        &self.marker_key(&path),
                        Bytes::new(),
                        &crc32c_base64(&[]),
                        &Self::headers_for(&metadata, Some(DIRECTORY_CONTENT_TYPE)),
                    )
                    .map(|_| ())
            } else {
                let copied =
                    self.store
                        .copy(&key, &key, Some(&Self::headers_for(&metadata, None)), size);
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
                } else if !landed {
                    inode.pending_metadata_since = Some(Instant::now());
                }
            }
        }
    }

    /// What fsync of a directory promises: held markers and attribute changes sent, and
    /// the old keys of renamed files deleted (each bounded by the retry budget).
    pub fn sync_namespace_changes(&self) {
        self.apply_pending_metadata(Duration::ZERO);
        self.deletes
            .wait_for_all(Instant::now() + self.uploads.retry_budget);
    }

    /// Aborts every upload still open (unmount, SIGTERM): nothing half-written appears,
    /// and the writers get EIO. Idempotent; the upload pool stops afterwards.
    pub fn abort_all(&self) {
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
    pub fn remember_lookup(&self, ino: u64) {
        self.table().remember(ino);
    }

    /// The kernel dropped `count` entries for `ino`.
    pub fn forget(&self, ino: u64, count: u64) {
        self.table().forget(ino, count);
    }

    /// Inodes in the table (shown at unmount: it should not grow with every name seen).
    pub fn inode_count(&self) -> usize {
        self.table().count()
    }

    pub fn memory_high_water(&self) -> u64 {
        self.uploads.budget.high_water()
    }
}

/// Waits on `changed` while `busy` holds, at most until `deadline`; true when it ended
/// because `busy` stopped holding. Every wait of the namespace has such a bound.
fn wait_while_until<'a, T>(
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

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

/// Keys whose names a directory entry cannot show (and that could escape the prefix).
fn is_representable(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}
