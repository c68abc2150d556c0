//! What `s3upfs status` asks the namespace: the files being written now (through the
//! open handles, never the whole inode table) and the mount's totals.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::files::OpenFile;
use super::*;
use crate::upload::progress::{FileSnapshot, TotalsSnapshot};
use crate::upload::resume::ParkedSnapshot;

/// The mount's state at one moment, as the status socket sends it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct MountStatus {
    pub(crate) writing: Vec<FileSnapshot>,
    /// Interrupted uploads kept for a rewrite to resume (see `upload::resume`).
    pub(crate) parked: Vec<ParkedSnapshot>,
    pub(crate) totals: TotalsSnapshot,
    pub(crate) memory_in_use: u64,
    pub(crate) memory_limit: u64,
    pub(crate) inodes: usize,
}

impl Namespace {
    pub(crate) fn status(&self) -> MountStatus {
        let writers: Vec<(u64, Arc<ActiveWrite>)> = self
            .handles
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
            .filter_map(|file| match file.as_ref() {
                OpenFile::Writer { ino, active } => Some((*ino, Arc::clone(active))),
                OpenFile::Reader { .. } => None,
            })
            .collect();
        let mut seen = HashSet::new();
        let mut writing: Vec<FileSnapshot> = {
            let table = self.table();
            writers
                .into_iter()
                .filter(|(ino, _)| seen.insert(*ino))
                .map(|(ino, active)| {
                    let key = table
                        .get(ino)
                        .map_or_else(String::new, |inode| self.object_key(&inode.path));
                    active.progress.snapshot(key, active.size())
                })
                .collect()
        };
        writing.sort_by(|a, b| a.key.cmp(&b.key));
        MountStatus {
            writing,
            parked: self
                .uploads
                .resume
                .as_ref()
                .map(|r| r.snapshot())
                .unwrap_or_default(),
            totals: self.uploads.totals.snapshot(),
            memory_in_use: self.uploads.budget.reserved(),
            memory_limit: self.uploads.budget.limit(),
            inodes: self.inode_count(),
        }
    }
}
