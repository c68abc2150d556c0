//! Directory handles: the listing an open directory reads from, taken at its first
//! readdir (rsync 3.5 opens every new directory to fchmod it; opening lists nothing),
//! and served from that snapshot at every offset until releasedir.

use fuser::{Errno, FileHandle, INodeNo, ReplyDirectory};

use super::FuseAdapter;
use super::reply::{errno, file_type};
use crate::namespace::{DirEntry, Kind};

impl FuseAdapter {
    pub(super) fn read_directory(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listed = match self
            .directories
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&fh.0)
        {
            None => {
                reply.error(Errno::EBADF);
                return;
            }
            Some(listed) => listed.is_some(),
        };
        if !listed {
            // The snapshot this handle reads from: one listing per opendir.
            match self.namespace.list_directory(ino.0) {
                Ok(entries) => {
                    if let Some(slot) = self
                        .directories
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .get_mut(&fh.0)
                    {
                        slot.get_or_insert(entries);
                    }
                }
                Err(code) => {
                    reply.error(errno(code, "readdir"));
                    return;
                }
            }
        }
        let directories = self
            .directories
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(Some(entries)) = directories.get(&fh.0) else {
            reply.error(Errno::EBADF);
            return;
        };
        let dots = [".", ".."].map(|name| DirEntry {
            name: name.to_owned(),
            ino: ino.0,
            kind: Kind::Directory,
        });
        for (index, entry) in dots
            .iter()
            .chain(entries.iter())
            .enumerate()
            .skip(offset as usize)
        {
            let next_offset = (index + 1) as u64;
            if reply.add(
                INodeNo(entry.ino),
                next_offset,
                file_type(entry.kind),
                &entry.name,
            ) {
                break;
            }
        }
        reply.ok();
    }
}
