//! Directory entries that are not regular files being written: mkdir (a held marker),
//! rmdir (only when nothing is below, after queued deletes below it are done),
//! unlink (discarding a writer still open), symlinks (small objects with S_IFLNK in
//! their mode, as s3fs writes them) and readlink.

use std::time::{Instant, SystemTime};

use bytes::Bytes;

use super::inode::Kind;
use super::metadata::PosixMetadata;
use super::*;

impl Namespace {
    /// The name and path of a new entry: the mount is writable, the name free and one
    /// S3 can store.
    fn free_name(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<(String, String)> {
        self.check_writable()?;
        if self.lookup(parent, name).is_ok() {
            return Err(libc::EEXIST.into());
        }
        self.child_path(parent, name)
    }

    pub(crate) fn mkdir(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        (mode, umask): (u32, u32),
        uid: u32,
        gid: u32,
    ) -> FsResult<Attributes> {
        let (name, path) = self.free_name(parent, name)?;
        let (setgid, gid) = self.inherit_from(parent, gid);
        let (perm, acls) = self.inherit_acl(parent, mode, umask, Kind::Directory)?;
        let metadata = PosixMetadata {
            mode: Some(S_IFDIR | perm | setgid),
            uid: Some(uid),
            gid: Some(gid),
            ..PosixMetadata::created(SystemTime::now())
        };
        let mut inode = self.new_inode(parent, &name, &path, Kind::Directory);
        inode.metadata = metadata;
        inode.foreign = acls;
        inode.metadata_loaded = true;
        inode.listing_valid_until = Some(Instant::now() + self.config.attr_ttl);
        // The marker is held like an attribute change: rsync's mkdir + chmod + utimes
        // then cost one PutObject, and an empty directory removed at once costs none.
        inode.pending_metadata_since = Some(Instant::now());
        let mut table = self.table();
        let ino = table.upsert(inode);
        table.entries_changed(parent);
        Ok(self.attributes(ino, table.get(ino).ok_or(libc::ENOENT)?))
    }

    /// mknod of a regular file: an empty object, as create then close would make; EEXIST
    /// when the name is taken.
    pub(crate) fn mknod_file(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        mode: (u32, u32),
        uid: u32,
        gid: u32,
        pid: u32,
    ) -> FsResult<Attributes> {
        self.free_name(parent, name)?;
        let (attributes, fh) = self.create(parent, name, mode, uid, gid, pid)?;
        let completed = self.fsync(fh);
        let released = self.release(fh);
        completed.and(released)?;
        self.getattr(attributes.ino)
    }

    pub(crate) fn rmdir(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<()> {
        self.check_writable()?;
        let attributes = self.lookup(parent, name)?;
        if attributes.kind != Kind::Directory {
            return Err(libc::ENOTDIR.into());
        }
        let (name, path) = self.child_path(parent, name)?;
        let marker = self.marker_key(&path);
        // Files renamed out of it must be gone before its emptiness is judged.
        if !self
            .deletes
            .wait_below(&marker, Instant::now() + self.uploads.stall_bound())
        {
            return Err(FsError::new(
                libc::EBUSY,
                format!("{path:?}: files renamed out of it are still being deleted: EBUSY"),
            ));
        }
        let _marker_writes = self.lock_marker_writes();
        let below = self
            .store
            .list_page(&marker, false, None, Some(2))
            .map_err(FsError::from)?;
        let pending_children = {
            let table = self.table();
            table
                .children_of(attributes.ino)
                .into_iter()
                .any(|(_, child)| table.get(child).is_some_and(|c| c.exists_only_locally()))
        };
        if pending_children || below.objects.iter().any(|o| o.key != marker) {
            return Err(libc::ENOTEMPTY.into());
        }
        self.store.delete_object(&marker).map_err(FsError::from)?;
        let mut table = self.table();
        if let Some(inode) = table.get_mut(attributes.ino) {
            // A held chmod/utimes must not bring the marker back.
            inode.pending_metadata_since = None;
        }
        table.unlink(parent, &name);
        table.entries_changed(parent);
        Ok(())
    }

    pub(crate) fn unlink(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<()> {
        self.check_writable()?;
        let attributes = self.lookup(parent, name)?;
        if attributes.kind == Kind::Directory {
            return Err(libc::EISDIR.into());
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
            .map_err(FsError::from)?;
        let mut table = self.table();
        table.unlink(parent, &name);
        table.entries_changed(parent);
        Ok(())
    }

    pub(crate) fn symlink(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
        target: &std::path::Path,
        uid: u32,
        gid: u32,
    ) -> FsResult<Attributes> {
        let (name, path) = self.free_name(parent, name)?;
        let target = target.to_str().ok_or(libc::EINVAL)?;
        self.delete_before_reuse(&self.object_key(&path))?;
        let metadata = PosixMetadata {
            mode: Some(S_IFLNK | 0o777),
            uid: Some(uid),
            gid: Some(gid),
            ..PosixMetadata::created(SystemTime::now())
        };
        let body = Bytes::copy_from_slice(target.as_bytes());
        self.put_small(
            &self.object_key(&path),
            body.clone(),
            &Self::headers_for(&metadata, None, None),
        )?;
        let mut inode = self.new_inode(parent, &name, &path, Kind::Symlink);
        inode.metadata = metadata;
        inode.metadata_loaded = true;
        inode.size = body.len() as u64;
        let mut table = self.table();
        let ino = table.upsert(inode);
        table.touch(ino);
        table.entries_changed(parent);
        Ok(self.attributes(ino, table.get(ino).ok_or(libc::ENOENT)?))
    }

    pub(crate) fn readlink(&self, ino: u64) -> FsResult<Bytes> {
        let path = {
            let table = self.table();
            let inode = table.get(ino).ok_or(libc::ENOENT)?;
            if inode.kind != Kind::Symlink {
                return Err(libc::EINVAL.into());
            }
            inode.path.clone()
        };
        self.store
            .get_object(&self.object_key(&path), None)
            .map_err(FsError::from)
    }
}
