//! Turning namespace answers into FUSE replies: attributes, errnos (each error logged
//! once, here), empty and xattr replies.

use std::time::SystemTime;

use fuser::{Errno, FileAttr, FileType, INodeNo, ReplyEmpty, ReplyXattr, TimeOrNow};

use super::BLOCK_SIZE;
use crate::namespace::{Attributes, FsError, FsResult, Kind};

/// The errno a failed operation replies, after logging why (once, here).
pub(super) fn errno(error: FsError, operation: &str) -> Errno {
    error.log(operation);
    Errno::from_i32(error.errno())
}

pub(super) fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::File => FileType::RegularFile,
        Kind::Directory => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
    }
}

pub(super) fn file_attr(attributes: &Attributes) -> FileAttr {
    FileAttr {
        ino: INodeNo(attributes.ino),
        size: attributes.size,
        blocks: attributes.size.div_ceil(512),
        atime: attributes.atime,
        mtime: attributes.mtime,
        ctime: attributes.ctime,
        crtime: attributes.mtime,
        kind: file_type(attributes.kind),
        perm: attributes.perm,
        nlink: attributes.nlink,
        uid: attributes.uid,
        gid: attributes.gid,
        rdev: 0,
        blksize: BLOCK_SIZE,
        flags: 0,
    }
}

pub(super) fn time_of(time: TimeOrNow) -> SystemTime {
    match time {
        TimeOrNow::SpecificTime(time) => time,
        TimeOrNow::Now => SystemTime::now(),
    }
}

/// An xattr value or name list: its size when asked for 0 bytes, ERANGE when it does not
/// fit what the caller offered.
pub(super) fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

pub(super) fn reply_empty(reply: ReplyEmpty, operation: &str, result: FsResult<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(code) => reply.error(errno(code, operation)),
    }
}
