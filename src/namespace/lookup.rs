//! Lookup and cache policy: when a name is answered from the inode table, when S3 is
//! asked (one delimited LIST for an unknown name, a HEAD for a known kind), and how a
//! directory listing is merged with what only exists here (files being written,
//! held markers) and with names renamed away whose deletes are still queued.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use log::{debug, warn};

use super::inode::{Inode, Kind, ROOT_INO};
use super::metadata::PosixMetadata;
use super::paths::{content_type_for, is_representable, join};
use super::*;
use crate::s3::DIRECTORY_CONTENT_TYPE;

impl Namespace {
    /// Asks S3 what `path` is: a directory (a marker or anything below it), a file or
    /// symlink, or nothing. A directory wins over a file of the same name. With the kind
    /// a fresh listing showed, one request usually settles it; an unknown name takes one
    /// delimited LIST, plus a HEAD when something is there.
    pub(super) fn fetch_remote(
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
            .map_err(FsError::from)?;
        let has_object = page.objects.iter().any(|o| o.key == key);
        let mut has_directory = page.common_prefixes.contains(&marker);
        if !has_directory && page.next_token.is_some() {
            has_directory = !self
                .store
                .list_page(&marker, false, None, Some(1))
                .map_err(FsError::from)?
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

    pub(super) fn warn_shadowed_once(&self, path: &str) {
        let mut logged = self
            .shadowed_logged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if logged.insert(path.to_owned()) {
            warn!("{path:?} is both a file and a directory in the bucket; showing the directory");
        }
    }

    /// A directory's inode, with the attributes of its marker when it has one.
    pub(super) fn directory_inode(&self, parent: u64, name: &str, path: &str) -> FsResult<Inode> {
        let mut inode = self.new_inode(parent, name, path, Kind::Directory);
        if let Some(info) = self
            .store
            .head_object(&self.marker_key(path))
            .map_err(FsError::from)?
        {
            inode.metadata = PosixMetadata::decode(&info.metadata);
            inode.foreign = PosixMetadata::foreign(
                &info.metadata,
                info.content_type.as_deref(),
                DIRECTORY_CONTENT_TYPE,
            );
            inode.last_modified = info.last_modified;
        }
        inode.metadata_loaded = true;
        Ok(inode)
    }

    pub(super) fn file_inode(
        &self,
        parent: u64,
        name: &str,
        path: &str,
    ) -> FsResult<Option<Inode>> {
        let Some(info) = self
            .store
            .head_object(&self.object_key(path))
            .map_err(FsError::from)?
        else {
            return Ok(None);
        };
        let metadata = PosixMetadata::decode(&info.metadata);
        // s3fs's older directory objects have no trailing slash: `dir`, typed
        // application/x-directory (or with S_IFDIR in their mode).
        let directory_object = info
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with(DIRECTORY_CONTENT_TYPE))
            || metadata.mode.is_some_and(|m| m & S_IFMT == S_IFDIR);
        let kind = if metadata.mode.is_some_and(|m| m & S_IFMT == S_IFLNK) {
            Kind::Symlink
        } else if directory_object {
            Kind::Directory
        } else {
            Kind::File
        };
        let mut inode = self.new_inode(parent, name, path, kind);
        inode.size = info.size;
        inode.metadata = metadata;
        inode.foreign = PosixMetadata::foreign(
            &info.metadata,
            info.content_type.as_deref(),
            &content_type_for(path),
        );
        inode.last_modified = info.last_modified;
        inode.metadata_loaded = true;
        Ok(Some(inode))
    }

    pub(crate) fn lookup(&self, parent: u64, name: &std::ffi::OsStr) -> FsResult<Attributes> {
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
                        return Err(libc::ENOENT.into());
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
                return Err(libc::ENOENT.into());
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
                    Err(libc::ENOENT.into())
                }
            };
        }
    }

    pub(crate) fn getattr(&self, ino: u64) -> FsResult<Attributes> {
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
                    let earlier = std::mem::replace(&mut inode.metadata, fresh.metadata);
                    if inode.kind == Kind::Directory {
                        inode.metadata.keep_later_times(&earlier);
                    }
                    inode.foreign = fresh.foreign;
                    inode.last_modified = fresh.last_modified;
                    inode.metadata_loaded = true;
                    inode.valid_until = fresh.valid_until;
                    Ok(self.attributes(ino, inode))
                } else {
                    Err(libc::ENOENT.into())
                }
            }
            None => Err(libc::ENOENT.into()),
        }
    }

    /// The entries of a directory, from a full listing merged with our own pending files.
    pub(crate) fn list_directory(&self, ino: u64) -> FsResult<Vec<DirEntry>> {
        let path = {
            let table = self.table();
            let inode = table.get(ino).ok_or(libc::ENOENT)?;
            if inode.kind != Kind::Directory {
                return Err(libc::ENOTDIR.into());
            }
            inode.path.clone()
        };
        let prefix = self.marker_key(&path);
        let deleting = self.deletes.outstanding_below(&prefix);
        // Children this mount changes from now on are newer than the listing.
        let generation = self.table().generation();
        let listing = self.store.list_all(&prefix, true).map_err(FsError::from)?;
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
            // Changed by us after the listing was taken: what we know is newer.
            if existing.is_some_and(|e| e.changed > generation)
                && let Some(child) = table.child(ino, name)
            {
                seen.insert(name.to_owned(), child);
                continue;
            }
            // A directory object without a slash (s3fs): its HEAD said directory, and a
            // listing cannot tell; keep what the HEAD said.
            if existing.is_some_and(|e| e.kind == Kind::Directory)
                && let Some(child) = table.child(ino, name)
            {
                seen.insert(name.to_owned(), child);
                continue;
            }
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
            // Ours and not in S3 yet (being written, a held directory marker), landed
            // after the listing was taken (it cannot show it: audit, rsync under load),
            // or seen too recently to be gone.
            let keep = table.get(child).is_some_and(|c| {
                c.exists_only_locally() || c.changed > generation || c.valid_until > now
            });
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
}
