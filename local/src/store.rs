//! [`Store`]: the synchronous filesystem work on the s3s-fs layout (see the crate documentation),
//! run off the async workers. This file owns the paths (object data, sidecars), the namespace
//! lock, atomic writes, the "a key cannot be both an object and a prefix" checks, deletes, and
//! staging: uploads that s3s-fs writes to `.s3upfs-staging/` first and that are renamed over the
//! key only once verified, so a failed PutObject or CopyObject never replaces an object.
//! Markers, listings and multipart parts add their own `impl Store` blocks in their modules.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use s3s::{S3ErrorCode, S3Result};

use crate::LocalServer;
use crate::args::b64url;
use crate::checksums::md5_of_file;
use crate::error::{conflict, context, io_err, s3_err};
use crate::sidecars::InternalInfo;

/// s3s-fs "bucket" (a directory under the root) that uploads are written to before verification.
/// Not a valid bucket name, so no request can address it.
pub(crate) const STAGING: &str = ".s3upfs-staging";
/// Suffixes of the s3s-fs sidecar files.
pub(crate) const META: &str = ".metadata.json";
pub(crate) const INTERNAL: &str = ".internal.json";

pub(crate) struct Store {
    pub(crate) root: PathBuf,
    counter: AtomicU64,
    /// Serializes this crate's namespace changes (marker writes, deletes, staged commits).
    ns_lock: Mutex<()>,
}

/// A directory entry that can be part of a key: a file or a directory with a UTF-8 name.
pub(crate) struct DirItem {
    pub name: String,
    pub is_dir: bool,
    pub entry: fs::DirEntry,
}

/// The files and directories in `dir` (other kinds and names that are not UTF-8 are never keys),
/// or None if `dir` is gone or not a directory.
pub(crate) fn dir_items(
    dir: &Path,
) -> io::Result<Option<impl Iterator<Item = io::Result<DirItem>> + use<>>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if is_not_found(&e) || e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(entries.filter_map(|entry| {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => return Some(Err(e)),
        };
        let name = entry.file_name().into_string().ok()?;
        let file_type = entry.file_type().ok()?;
        (file_type.is_file() || file_type.is_dir()).then(|| {
            Ok(DirItem {
                name,
                is_dir: file_type.is_dir(),
                entry,
            })
        })
    })))
}

pub(crate) fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if !is_not_found(&e) => Err(e),
        _ => Ok(()),
    }
}

impl Store {
    /// Creates the bucket directory if missing and drops what a previous run left behind.
    pub(crate) fn open(root: PathBuf) -> io::Result<Store> {
        let store = Store {
            root,
            counter: AtomicU64::new(0),
            ns_lock: Mutex::new(()),
        };
        let bucket = store.root.join(LocalServer::BUCKET);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&bucket)
            .map_err(|e| {
                context(
                    e,
                    format!("cannot create bucket directory {}", bucket.display()),
                )
            })?;
        store.reset_staging().map_err(|e| {
            context(
                e,
                format!("cannot clean {}", store.root.join(STAGING).display()),
            )
        })?;
        store.clean_orphan_part_records().map_err(|e| {
            context(
                e,
                format!("cannot clean part records in {}", store.root.display()),
            )
        })?;
        Ok(store)
    }

    /// Drops whatever a previous run left half-written in staging.
    fn reset_staging(&self) -> io::Result<()> {
        let staging = self.root.join(STAGING);
        match fs::remove_dir_all(&staging) {
            Err(e) if !is_not_found(&e) => return Err(e),
            _ => {}
        }
        fs::create_dir(&staging)?;
        self.remove_root_files(&format!(".bucket-{}.object-", b64url(STAGING)))
    }

    /// The files and directories directly in the root, where the sidecars live.
    pub(crate) fn root_items(&self) -> io::Result<Vec<DirItem>> {
        match dir_items(&self.root)? {
            Some(items) => items.collect(),
            None => Ok(Vec::new()),
        }
    }

    /// Removes the files in the root whose names start with `prefix`.
    pub(crate) fn remove_root_files(&self, prefix: &str) -> io::Result<()> {
        for item in self.root_items()? {
            if item.name.starts_with(prefix) {
                remove_if_exists(&item.entry.path())?;
            }
        }
        Ok(())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        self.ns_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_id(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.join(bucket)
    }

    /// The file (object) or directory (marker) of a validated key.
    pub(crate) fn data_path(&self, bucket: &str, key: &str) -> PathBuf {
        let rel = key.strip_suffix('/').unwrap_or(key);
        let mut path = self.bucket_dir(bucket);
        if !rel.is_empty() {
            path.push(rel);
        }
        path
    }

    /// The s3s-fs sidecar of `key` ending in `kind` ([`META`] or [`INTERNAL`]).
    pub(crate) fn sidecar(&self, bucket: &str, key: &str, kind: &str) -> PathBuf {
        self.root.join(format!(
            ".bucket-{}.object-{}{kind}",
            b64url(bucket),
            b64url(key)
        ))
    }

    pub(crate) fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        if self.bucket_dir(bucket).is_dir() {
            Ok(())
        } else {
            Err(s3_err(
                S3ErrorCode::NoSuchBucket,
                format!("the bucket `{bucket}` does not exist"),
            ))
        }
    }

    fn write_atomic(&self, dest: &Path, data: &[u8]) -> io::Result<()> {
        // `.tmp.*.internal.part` in the root: s3s-fs deletes leftovers of that shape at start.
        let tmp = self.root.join(format!(
            ".tmp.s3upfs-{}-{}.internal.part",
            std::process::id(),
            self.next_id()
        ));
        let result = File::create(&tmp)
            .and_then(|mut f| f.write_all(data))
            .and_then(|()| fs::rename(&tmp, dest));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Writes a sidecar or part record whole (temp file, then rename).
    pub(crate) fn write_sidecar(&self, dest: &Path, data: &[u8]) -> S3Result<()> {
        self.write_atomic(dest, data)
            .map_err(|e| io_err(&format!("cannot write {}", dest.display()), e))
    }

    /// No ancestor of `key` may be an object (a file).
    pub(crate) fn check_no_file_ancestor(&self, bucket: &str, key: &str) -> S3Result<()> {
        let rel = key.strip_suffix('/').unwrap_or(key);
        let segments: Vec<&str> = rel.split('/').collect();
        let mut path = self.bucket_dir(bucket);
        for i in 0..segments.len().saturating_sub(1) {
            path.push(segments[i]);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    let ancestor = segments[..=i].join("/");
                    return Err(conflict(key, &format!("the object `{ancestor}` exists")));
                }
                Err(_) => return Ok(()),
            }
        }
        Ok(())
    }

    /// Checks that the object `key` can be written; with `clean`, removes an empty leftover
    /// directory (no keys under it) that occupies its path.
    pub(crate) fn prepare_object_path(&self, bucket: &str, key: &str, clean: bool) -> S3Result<()> {
        self.check_no_file_ancestor(bucket, key)?;
        let path = self.data_path(bucket, key);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                let dir_key = format!("{key}/");
                let used = self
                    .subtree_has_key(bucket, &dir_key, &path)
                    .map_err(|e| io_err("cannot read directory", e))?;
                if used {
                    return Err(conflict(
                        key,
                        &format!("`{dir_key}` is a directory marker or has keys under it"),
                    ));
                }
                if clean {
                    fs::remove_dir_all(&path)
                        .map_err(|e| io_err("cannot remove an empty leftover directory", e))?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Whether any object or marker lives at or under the directory `key_dir` (`a/b/`).
    pub(crate) fn subtree_has_key(
        &self,
        bucket: &str,
        key_dir: &str,
        path: &Path,
    ) -> io::Result<bool> {
        let mut stack = vec![(key_dir.to_owned(), path.to_owned())];
        while let Some((key_dir, dir)) = stack.pop() {
            if !key_dir.is_empty() && self.sidecar(bucket, &key_dir, INTERNAL).is_file() {
                return Ok(true);
            }
            let Some(items) = dir_items(&dir)? else {
                continue;
            };
            for item in items {
                let item = item?;
                if !item.is_dir {
                    return Ok(true);
                }
                stack.push((format!("{key_dir}{}/", item.name), item.entry.path()));
            }
        }
        Ok(false)
    }

    /// A fresh name under [`STAGING`] for one upload.
    pub(crate) fn stage_key(&self) -> String {
        format!("{}-{}", std::process::id(), self.next_id())
    }

    pub(crate) fn discard_staged(&self, stage: &str) {
        let _ = fs::remove_file(self.data_path(STAGING, stage));
        let _ = fs::remove_file(self.sidecar(STAGING, stage, META));
        let _ = fs::remove_file(self.sidecar(STAGING, stage, INTERNAL));
    }

    /// Moves a verified staged object (data, then sidecars) over `key`.
    pub(crate) fn commit_staged(&self, stage: &str, bucket: &str, key: &str) -> S3Result<()> {
        let result = self.commit_staged_inner(stage, bucket, key);
        if result.is_err() {
            self.discard_staged(stage);
        }
        result
    }

    fn commit_staged_inner(&self, stage: &str, bucket: &str, key: &str) -> S3Result<()> {
        let _guard = self.lock();
        self.require_bucket(bucket)?;
        self.prepare_object_path(bucket, key, true)?;
        let dest = self.data_path(bucket, key);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| io_err("cannot create directories", e))?;
        }
        fs::rename(self.data_path(STAGING, stage), &dest)
            .map_err(|e| io_err("cannot move the verified object into place", e))?;
        for kind in [META, INTERNAL] {
            let target = self.sidecar(bucket, key, kind);
            match fs::rename(self.sidecar(STAGING, stage, kind), &target) {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => remove_if_exists(&target)
                    .map_err(|e| io_err("cannot remove stale metadata", e))?,
                Err(e) => return Err(io_err("cannot move object metadata into place", e)),
            }
        }
        Ok(())
    }

    /// Deletes the object or marker `key`; a missing key, or a directory that is not a
    /// marker, is deleted already.
    pub(crate) fn delete_key(&self, bucket: &str, key: &str) -> S3Result<()> {
        let _guard = self.lock();
        self.require_bucket(bucket)?;
        let path = self.data_path(bucket, key);
        let remove_sidecars = || -> S3Result<()> {
            for kind in [INTERNAL, META] {
                remove_if_exists(&self.sidecar(bucket, key, kind))
                    .map_err(|e| io_err("cannot remove object metadata", e))?;
            }
            Ok(())
        };
        if key.ends_with('/') {
            if self.is_marker(bucket, key) {
                remove_sidecars()?;
                // Keeps the directory if keys still live under it.
                let _ = fs::remove_dir(&path);
            }
            return Ok(());
        }
        match fs::symlink_metadata(&path) {
            Ok(m) if !m.is_dir() => {
                remove_if_exists(&path).map_err(|e| io_err("cannot delete the object", e))?;
                remove_sidecars()
            }
            // A directory is not an object; a missing key is deleted already.
            _ => Ok(()),
        }
    }

    /// The ETag s3s-fs recorded for `key`, if any.
    pub(crate) fn stored_etag(&self, bucket: &str, key: &str) -> Option<String> {
        InternalInfo::read(&self.sidecar(bucket, key, INTERNAL))?.e_tag
    }

    /// The ETag of the object `key` (stored, else the MD5 of its data), None if it does not exist.
    pub(crate) fn current_etag(&self, bucket: &str, key: &str) -> S3Result<Option<String>> {
        let path = self.data_path(bucket, key);
        if !path.is_file() {
            return Ok(None);
        }
        if let Some(etag) = self.stored_etag(bucket, key) {
            return Ok(Some(etag));
        }
        md5_of_file(&path)
            .map(Some)
            .map_err(|e| io_err("cannot read the object", e))
    }
}
