//! Extended attributes, stored as s3fs stores them, so `rsync -aX`, `cp --preserve=all`
//! and `setfattr`/`getfattr` work and an s3fs mount of the same bucket sees the same:
//! all of an object's attributes in one `x-amz-meta-xattr` header, the URL-encoded text
//! `{"name":"<base64 of the value>",...}`.
//!
//! A change is an attribute change like chmod: it rides with an upload in progress,
//! otherwise it is held (see `write_behind`) and lands in the next copy of the object.
//! S3 allows 2 KB of user metadata per object, so a set that would not fit beside our
//! other metadata is E2BIG.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::acl;
use super::*;
use crate::s3::ObjectHeaders;

/// The read-only attribute showing the object's CRC32C (of its bytes, as S3 keeps it
/// for what we write), so `getfattr` and `s3upfs verify` compare without a download.
pub(crate) const CHECKSUM: &str = "user.s3upfs.crc32c";
/// Our own computed attributes: not stored, not settable, not listed (so `rsync -X`
/// and `cp --preserve=all` do not carry them elsewhere).
const OWN: &str = "user.s3upfs.";
/// The metadata name (without `x-amz-meta-`) holding all extended attributes.
const HEADER: &str = "xattr";
/// Room for the encoded attributes: S3's 2 KB of user metadata, less what ours take.
const MAX_ENCODED: usize = 2048 - 256;
/// What s3fs leaves unencoded: letters, digits and `-_.~`.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(super) type Xattrs = BTreeMap<String, Vec<u8>>;

/// Reads the header's value; pairs that do not parse are skipped (another tool wrote them).
fn decode(header: &str) -> Xattrs {
    let text = percent_decode_str(header).decode_utf8_lossy();
    let body = text.trim().trim_start_matches('{').trim_end_matches('}');
    body.split(',')
        .filter_map(|pair| {
            let (name, value) = pair.split_once("\":\"")?;
            let name = name.trim().strip_prefix('"')?;
            let value = value.trim().strip_suffix('"')?;
            let value = aws_smithy_types::base64::decode(value).ok()?;
            Some((name.to_owned(), value))
        })
        .collect()
}

/// The header's value, or None when there are no attributes.
fn encode(xattrs: &Xattrs) -> Option<String> {
    if xattrs.is_empty() {
        return None;
    }
    let pairs: Vec<String> = xattrs
        .iter()
        .map(|(name, value)| format!("\"{name}\":\"{}\"", aws_smithy_types::base64::encode(value)))
        .collect();
    let text = format!("{{{}}}", pairs.join(","));
    Some(utf8_percent_encode(&text, ENCODED).to_string())
}

/// XATTR_CREATE on a name that exists is EEXIST, XATTR_REPLACE on one that does not
/// ENODATA.
pub(super) fn check_flags(xattrs: &Xattrs, name: &str, flags: i32) -> FsResult<()> {
    let exists = xattrs.contains_key(name);
    if flags & libc::XATTR_CREATE != 0 && exists {
        return Err(libc::EEXIST.into());
    }
    if flags & libc::XATTR_REPLACE != 0 && !exists {
        return Err(libc::ENODATA.into());
    }
    Ok(())
}

/// The headers carrying `xattrs` alone (for a new object), or None when empty.
pub(super) fn headers_with(xattrs: &Xattrs) -> Option<ObjectHeaders> {
    let mut headers = ObjectHeaders::default();
    headers.metadata.insert(HEADER.to_owned(), encode(xattrs)?);
    Some(headers)
}

/// The attributes `headers` carry.
pub(super) fn decoded(headers: &ObjectHeaders) -> Xattrs {
    headers
        .metadata
        .get(HEADER)
        .map(|header| decode(header))
        .unwrap_or_default()
}

fn name_of(name: &std::ffi::OsStr) -> FsResult<&str> {
    name.to_str()
        .filter(|n| !n.is_empty() && !n.contains(['"', ',']))
        .ok_or_else(|| {
            FsError::new(
                libc::EINVAL,
                format!("extended attribute name {name:?} cannot be stored (not UTF-8, or holds '\"' or ','): EINVAL"),
            )
        })
}

/// EPERM for our own attributes: they are computed, not stored.
fn own_is_read_only(name: &str) -> FsResult<&str> {
    if name.starts_with(OWN) {
        return Err(FsError::new(
            libc::EPERM,
            format!("{name} is computed by s3upfs and cannot be set or removed: EPERM"),
        ));
    }
    Ok(name)
}

impl Namespace {
    pub(crate) fn getxattr(&self, ino: u64, name: &std::ffi::OsStr) -> FsResult<Vec<u8>> {
        let name = name_of(name)?;
        if name == CHECKSUM {
            return self.object_checksum(ino);
        }
        self.xattrs_of(ino)?
            .remove(name)
            .ok_or_else(|| libc::ENODATA.into())
    }

    /// The names, each followed by a NUL, as listxattr(2) returns them.
    pub(crate) fn listxattr(&self, ino: u64) -> FsResult<Vec<u8>> {
        let mut names = Vec::new();
        for name in self.xattrs_of(ino)?.keys() {
            names.extend_from_slice(name.as_bytes());
            names.push(0);
        }
        Ok(names)
    }

    pub(crate) fn setxattr(
        &self,
        ino: u64,
        name: &std::ffi::OsStr,
        value: &[u8],
        flags: i32,
    ) -> FsResult<()> {
        self.check_writable()?;
        let name = own_is_read_only(name_of(name)?)?;
        if name == acl::ACCESS || name == acl::DEFAULT {
            return self.set_acl(ino, name, value, flags);
        }
        let mut xattrs = self.xattrs_of(ino)?;
        check_flags(&xattrs, name, flags)?;
        xattrs.insert(name.to_owned(), value.to_vec());
        self.store_xattrs(ino, &xattrs)
    }

    pub(crate) fn removexattr(&self, ino: u64, name: &std::ffi::OsStr) -> FsResult<()> {
        self.check_writable()?;
        let name = own_is_read_only(name_of(name)?)?;
        let mut xattrs = self.xattrs_of(ino)?;
        if xattrs.remove(name).is_none() {
            return Err(libc::ENODATA.into());
        }
        self.store_xattrs(ino, &xattrs)
    }

    /// [`CHECKSUM`]: the full-object CRC32C the server reports (one HEAD). ENODATA for
    /// what has none: a directory, a file still being written, an object another tool
    /// wrote without one, or a composite checksum (not comparable with a file's CRC32C).
    fn object_checksum(&self, ino: u64) -> FsResult<Vec<u8>> {
        self.getattr(ino)?;
        let path = {
            let table = self.table();
            let inode = table.get(ino).ok_or(libc::ENOENT)?;
            if inode.kind != Kind::File || inode.is_being_written() {
                return Err(libc::ENODATA.into());
            }
            inode.path.clone()
        };
        let info = self
            .store
            .head_object(&self.object_key(&path))
            .map_err(FsError::from)?
            .ok_or(libc::ENODATA)?;
        match info.checksum_crc32c {
            Some(crc) if crate::s3::decode_crc32c(&crc).is_some() => Ok(crc.into_bytes()),
            _ => Err(libc::ENODATA.into()),
        }
    }

    /// The attributes the object carries, its headers fetched first when not known.
    pub(super) fn xattrs_of(&self, ino: u64) -> FsResult<Xattrs> {
        self.getattr(ino)?;
        let table = self.table();
        let inode = table.get(ino).ok_or(libc::ENOENT)?;
        Ok(inode.foreign.as_deref().map(decoded).unwrap_or_default())
    }

    /// Records the new set: with an upload in progress it rides along, otherwise the
    /// change is held like chmod's.
    pub(super) fn store_xattrs(&self, ino: u64, xattrs: &Xattrs) -> FsResult<()> {
        if ino == super::inode::ROOT_INO {
            // The mount's root has no object of its own to carry them.
            return Err(FsError::new(
                libc::EOPNOTSUPP,
                "the mount's root has no object to keep extended attributes in: EOPNOTSUPP",
            ));
        }
        let encoded = encode(xattrs);
        if encoded.as_ref().is_some_and(|e| e.len() > MAX_ENCODED) {
            return Err(FsError::new(
                libc::E2BIG,
                format!(
                    "inode {ino}: extended attributes over {MAX_ENCODED} bytes encoded do not fit in S3's 2 KB of metadata: E2BIG"
                ),
            ));
        }
        let with = |headers: &mut ObjectHeaders| match &encoded {
            Some(value) => {
                headers.metadata.insert(HEADER.to_owned(), value.clone());
            }
            None => {
                headers.metadata.remove(HEADER);
            }
        };
        let active = self.table().get(ino).and_then(|i| i.active_write.clone());
        let riding = active.is_some_and(|active| {
            let mut writer = active.writer();
            if !writer.is_writing() {
                return false;
            }
            let mut headers = writer.headers().clone();
            with(&mut headers);
            writer.set_headers(headers);
            true
        });
        let mut table = self.table();
        if !riding {
            table.hold(ino, Instant::now());
        }
        let inode = table.get_mut(ino).ok_or(libc::ENOENT)?;
        with(Arc::make_mut(
            inode.foreign.get_or_insert_with(Default::default),
        ));
        inode.metadata.ctime = Some(SystemTime::now());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_s3fs_writes_and_writes_what_it_reads() {
        // s3fs's form for user.a = "1" and user.b = "\0x".
        let header = "%7B%22user.a%22%3A%22MQ%3D%3D%22%2C%22user.b%22%3A%22AHg%3D%22%7D";
        let decoded = decode(header);
        assert_eq!(decoded["user.a"], b"1");
        assert_eq!(decoded["user.b"], b"\0x");
        assert_eq!(encode(&decoded).as_deref(), Some(header));
        assert_eq!(encode(&Xattrs::new()), None);
    }

    #[test]
    fn pairs_another_tool_mangled_are_skipped() {
        let decoded = decode("%7B%22ok%22%3A%22MQ%3D%3D%22%2Cgarbage%7D");
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded["ok"], b"1");
    }
}
