//! Names and keys: the object key and directory-marker key of a path under the mount
//! prefix, and which names S3 can store and a directory entry can show.

use super::inode::Kind;
use super::*;

/// S3's limit on key length, in bytes.
/// The longest name in a directory, as statfs reports it.
const NAME_MAX: usize = 255;
pub(super) const MAX_KEY_LEN: usize = 1024;

impl Namespace {
    pub(super) fn object_key(&self, path: &str) -> String {
        format!("{}{}", self.config.prefix, path)
    }

    pub(super) fn marker_key(&self, path: &str) -> String {
        if path.is_empty() {
            self.config.prefix.clone()
        } else {
            format!("{}{}/", self.config.prefix, path)
        }
    }

    /// The path of `name` under `parent`, checked to be a name S3 can store.
    pub(super) fn child_path(
        &self,
        parent: u64,
        name: &std::ffi::OsStr,
    ) -> FsResult<(String, String)> {
        let name = name.to_str().ok_or_else(|| {
            FsError::new(
                libc::EINVAL,
                format!("name {name:?} is not UTF-8, which S3 keys must be: EINVAL"),
            )
        })?;
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(libc::EINVAL.into());
        }
        // NAME_MAX, as statfs reports it (the kernel leaves the check to us).
        if name.len() > NAME_MAX {
            return Err(FsError::new(
                libc::ENAMETOOLONG,
                format!("name {name:?} is longer than {NAME_MAX} bytes: ENAMETOOLONG"),
            ));
        }
        let table = self.table();
        let parent_inode = table.get(parent).ok_or(libc::ENOENT)?;
        if parent_inode.kind != Kind::Directory {
            return Err(libc::ENOTDIR.into());
        }
        let path = if parent_inode.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", parent_inode.path)
        };
        // +1 for the `/` of a directory marker.
        if self.config.prefix.len() + path.len() + 1 > MAX_KEY_LEN {
            return Err(FsError::new(
                libc::ENAMETOOLONG,
                format!("{path:?}: key would exceed S3's 1024 bytes: ENAMETOOLONG"),
            ));
        }
        Ok((name.to_owned(), path))
    }
}

/// The Content-Type a new object gets from its name, as s3fs sets it; what the name
/// does not tell is `application/octet-stream`.
pub(super) fn content_type_for(path: &str) -> String {
    mime_guess::from_path(path)
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_owned()
}

/// The Content-Type an object renamed from `old` to `new` should have, when it changes:
/// the one its new name gives, unless another tool set one deliberately (anything but
/// what we would have chosen for the old name or a generic binary type). `current`
/// None means the one we chose for the old name.
pub(super) fn renamed_content_type(old: &str, new: &str, current: Option<&str>) -> Option<String> {
    let chosen = content_type_for(old);
    let current = current.unwrap_or(&chosen);
    let ours =
        matches!(current, "application/octet-stream" | "binary/octet-stream") || current == chosen;
    let wanted = content_type_for(new);
    (ours && current != wanted).then_some(wanted)
}

pub(super) fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}

/// Keys whose names a directory entry cannot show (and that could escape the prefix).
pub(super) fn is_representable(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}
