//! The fast tier: the namespace and the upload pipeline driven directly on the
//! in-memory store. No FUSE, no server: each test builds a namespace as the daemon
//! does (upload pool, memory budget, delete thread) over a `MemoryStore`, calls what
//! the FUSE adapter would call, and looks at the requests the store saw and what it
//! holds. What S3 or the kernel do is proven in the integration tier (tests/).
//!
//! The closing process matters to the open-file life: `me()` is this test process
//! (the opener), `OTHER` stands for another process closing a shared descriptor (a
//! dd duplicate, a forked child).

mod entries;
mod files;
mod headers;
mod lookup;
mod rename;
mod resume;
mod times;
mod uploads;
mod write_behind;
mod xattr;

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use super::{AttributeChanges, FsResult, Kind, Namespace, NamespaceConfig};
use crate::s3::ObjectStore;
use crate::s3::memory::MemoryStore;
use crate::upload::UploadContext;
use crate::upload::journal::Journal;
use crate::upload::resume::Resume;
use crate::upload::schedule::PartSchedule;

pub(super) const MIB: usize = 1 << 20;
/// The root directory's inode.
pub(super) const ROOT: u64 = super::inode::ROOT_INO;
/// A process other than the opener (init always exists).
pub(super) const OTHER: u32 = 1;

/// The errno of a failed call, for comparing with `libc::E*`.
pub(super) trait ErrnoOf {
    fn errno(self) -> Option<i32>;
}

impl<T> ErrnoOf for FsResult<T> {
    fn errno(self) -> Option<i32> {
        self.err().map(|error| error.errno())
    }
}

pub(super) fn me() -> u32 {
    std::process::id()
}

/// `len` bytes that differ from part to part.
pub(super) fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

pub(super) struct Fixture {
    pub(super) store: Arc<MemoryStore>,
    pub(super) ns: Arc<Namespace>,
}

pub(super) struct Options {
    pub(super) part_size: u64,
    pub(super) memory: u64,
    pub(super) retry_budget: Duration,
    pub(super) read_only: bool,
    pub(super) attr_ttl: Duration,
    /// A resume journal there (24 h window), as the daemon keeps one by default.
    pub(super) state_dir: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            part_size: 5 << 20,
            memory: 64 << 20,
            retry_budget: Duration::from_secs(2),
            read_only: false,
            attr_ttl: Duration::from_secs(1),
            state_dir: None,
        }
    }
}

impl Fixture {
    pub(super) fn new() -> Self {
        Self::with(Options::default())
    }

    pub(super) fn with(options: Options) -> Self {
        Self::on(Arc::new(MemoryStore::new()), options)
    }

    /// A second mount of the same bucket (another client, or the same after a restart).
    pub(super) fn on(store: Arc<MemoryStore>, options: Options) -> Self {
        let schedule = PartSchedule::new(options.part_size, options.memory).expect("schedule");
        let uploads = UploadContext::new(
            Arc::clone(&store) as Arc<dyn ObjectStore>,
            schedule,
            options.memory,
            4,
            options.retry_budget,
            options.state_dir.as_ref().map(|dir| {
                let journal =
                    Journal::open(dir, "bucket", "bucket", schedule.part_size(1)).expect("journal");
                Resume::load(
                    journal,
                    Duration::from_secs(86_400),
                    Arc::clone(&store) as Arc<dyn ObjectStore>,
                )
            }),
        )
        .expect("upload pool");
        let config = NamespaceConfig {
            prefix: String::new(),
            uid: 0,
            gid: 0,
            file_mode: 0o644,
            dir_mode: 0o755,
            attr_ttl: options.attr_ttl,
            read_only: options.read_only,
            mountpoint: None,
        };
        let ns = Arc::new(Namespace::new(config, uploads).expect("namespace"));
        Self { store, ns }
    }

    pub(super) fn create(&self, name: &str) -> (u64, u64) {
        let (attributes, fh) = self
            .ns
            .create(ROOT, OsStr::new(name), (0o644, 0), 0, 0, me())
            .expect("create");
        (attributes.ino, fh)
    }

    /// Writes all of `data` at `offset`, waiting for memory as a FUSE write does.
    pub(super) fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<()> {
        let taken = self.ns.write_waiting(fh, offset, data, &|| false)?;
        assert_eq!(taken, data.len(), "a write that waited took only part");
        Ok(())
    }

    /// close() by `pid` followed by the release of the last descriptor.
    pub(super) fn close_as(&self, fh: u64, pid: u32) -> FsResult<()> {
        let flushed = self.ns.flush(fh, pid, false);
        let released = self.ns.release(fh);
        flushed.and(released)
    }

    pub(super) fn close(&self, fh: u64) -> FsResult<()> {
        self.close_as(fh, me())
    }

    /// A whole file written and closed by its opener.
    pub(super) fn put(&self, name: &str, data: &[u8]) -> u64 {
        let (ino, fh) = self.create(name);
        self.write(fh, 0, data).expect("write");
        self.close(fh).expect("close");
        ino
    }

    pub(super) fn body(&self, key: &str) -> Option<Vec<u8>> {
        self.store.object(key).map(|object| object.body.to_vec())
    }

    pub(super) fn chmod(&self, ino: u64, mode: u32) -> FsResult<()> {
        let changes = AttributeChanges {
            mode: Some(mode),
            ..AttributeChanges::default()
        };
        self.ns.setattr(ino, changes).map(|_| ())
    }

    pub(super) fn rename(&self, from: &str, to: &str) -> FsResult<()> {
        self.ns
            .rename(ROOT, OsStr::new(from), ROOT, OsStr::new(to), false)
    }

    /// Operations the store saw, without the reads (HEAD, LIST, GET).
    pub(super) fn writes(&self) -> Vec<(&'static str, String)> {
        self.store
            .calls()
            .into_iter()
            .filter(|(op, _)| !matches!(*op, "HeadObject" | "ListObjectsV2" | "GetObject"))
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.ns.abort_all();
    }
}

/// Waits (at most 5 s) for what background threads do: the upload pool, the delete
/// thread, a background abort.
pub(super) fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
