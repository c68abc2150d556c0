//! What `stat` shows and how it changes: attributes from an inode (configured defaults
//! for what the object does not say), new inodes, the POSIX metadata headers an
//! object is written with, set-group-ID inheritance, and setattr (chmod, chown,
//! utimes, truncate), whose changes are held (see `write_behind`) or ride with an
//! upload in progress.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::inode::{Inode, Kind, ROOT_INO};
use super::metadata::PosixMetadata;
use super::paths::content_type_for;
use super::*;
use crate::s3::ObjectHeaders;
use crate::upload::writer::WriteProgress;

impl Namespace {
    pub(super) fn attributes(&self, ino: u64, inode: &Inode) -> Attributes {
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
            atime: inode
                .metadata
                .atime
                .or(inode.metadata.mtime)
                .unwrap_or(inode.last_modified),
            ctime: inode
                .metadata
                .ctime
                .or(inode.metadata.mtime)
                .unwrap_or(inode.last_modified),
            nlink: match (inode.unlinked, inode.kind) {
                (true, _) => 0,
                (false, Kind::Directory) => 2,
                (false, _) => 1,
            },
        }
    }

    pub(super) fn new_inode(&self, parent: u64, name: &str, path: &str, kind: Kind) -> Inode {
        Inode::new(
            parent,
            name,
            path,
            kind,
            Instant::now() + self.config.attr_ttl,
        )
    }

    /// The headers an object is written or copied with: `base` (what the object
    /// carries that is not ours: other tools' metadata, its Content-Type) with our
    /// POSIX attributes over it, and `content_type` when given.
    pub(super) fn headers_for(
        metadata: &PosixMetadata,
        base: Option<&ObjectHeaders>,
        content_type: Option<&str>,
    ) -> ObjectHeaders {
        let mut headers = base.cloned().unwrap_or_default();
        if let Some(content_type) = content_type {
            headers.content_type = Some(content_type.to_owned());
        }
        metadata.encode_into(&mut headers.metadata);
        headers
    }

    /// The headers a file's object is rewritten with (a copy onto itself, a rename, a
    /// truncation): its foreign headers kept, its Content-Type kept or, when it has
    /// none we know of, the one its name gives.
    pub(super) fn file_headers(
        metadata: &PosixMetadata,
        foreign: Option<&ObjectHeaders>,
        path: &str,
    ) -> ObjectHeaders {
        let known = foreign.is_some_and(|f| f.content_type.is_some());
        let guessed = (!known).then(|| content_type_for(path));
        Self::headers_for(metadata, foreign, guessed.as_deref())
    }

    pub(crate) fn setattr(&self, ino: u64, changes: AttributeChanges) -> FsResult<Attributes> {
        self.check_writable()?;
        let current = self.getattr(ino)?;
        let (path, kind, active, mut metadata, foreign) = {
            let table = self.table();
            let inode = table.get(ino).ok_or(libc::ENOENT)?;
            (
                inode.path.clone(),
                inode.kind,
                inode.active_write.clone(),
                inode.metadata,
                inode.foreign.clone(),
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
        metadata.atime = changes.atime.or(metadata.atime).or(Some(current.atime));
        let metadata_changed = changes.mode.is_some()
            || changes.uid.is_some()
            || changes.gid.is_some()
            || changes.mtime.is_some()
            || changes.atime.is_some();
        // Any change to the inode is a change of its ctime (POSIX), truncation too.
        if metadata_changed || changes.size.is_some() {
            metadata.ctime = Some(SystemTime::now());
        }

        let mut riding = false;
        if let Some(active) = active {
            if let Some(size) = changes.size {
                self.truncate_writer(&active, &path, size)?;
            }
            let mut writer = active.writer();
            let headers = Self::headers_for(&metadata, Some(writer.headers()), None);
            writer.set_headers(headers);
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
                        &Self::file_headers(&metadata, foreign.as_deref(), &path),
                    )?;
                } else if size != current.size {
                    return Err(FsError::new(
                        libc::EOPNOTSUPP,
                        format!(
                            "{path:?}: truncate of a finished object to {size} bytes is not supported (only to 0): EOPNOTSUPP"
                        ),
                    ));
                }
            }
        }
        let mut table = self.table();
        if metadata_changed && !riding && ino != ROOT_INO {
            // Held briefly: rsync's chmod + utimes + rename then cost one copy, not three
            // (for a directory: one marker PUT).
            table.hold(ino, Instant::now());
        }
        let inode = table.get_mut(ino).ok_or(libc::ENOENT)?;
        inode.metadata = metadata;
        inode.metadata_loaded = true;
        if let Some(size) = changes.size
            && inode.active_write.is_none()
        {
            inode.size = size;
        }
        inode.valid_until = Instant::now() + self.config.attr_ttl;
        let attributes = self.attributes(ino, inode);
        drop(table);
        if let Some(mode) = changes.mode {
            self.chmod_acl(ino, mode)?;
        }
        Ok(attributes)
    }

    /// Truncates a file being written, waiting for memory (bounded) when it grows.
    pub(super) fn truncate_writer(
        &self,
        active: &ActiveWrite,
        path: &str,
        size: u64,
    ) -> FsResult<()> {
        loop {
            let progress = {
                let mut writer = active.writer();
                let result = writer.truncate(size);
                active.size.store(writer.size(), Ordering::Release);
                result.map_err(|e| {
                    FsError::new(
                        e.errno(),
                        format!("{path:?}: truncate to {size} refused: {e:?}"),
                    )
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

    /// What a new entry inherits from a set-group-ID parent directory, as on a local
    /// filesystem: the parent's group, and for directories the set-group-ID bit itself.
    pub(super) fn inherit_from(&self, parent: u64, gid: u32) -> (u32, u32) {
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
}
