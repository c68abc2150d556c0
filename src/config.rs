//! What a mount is asked to be, once the command line is understood: the one value
//! `cli` hands to `daemon` (so neither imports the other).

use std::ffi::OsString;
use std::path::PathBuf;

use crate::upload::schedule::PartSchedule;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Source {
    Bucket { bucket: String, prefix: String },
    Local(PathBuf),
}

#[derive(Clone, Debug)]
pub(crate) struct MountConfig {
    pub(crate) source: Source,
    pub(crate) mountpoint: PathBuf,
    pub(crate) endpoint_url: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) profile: Option<String>,
    pub(crate) force_path_style: bool,
    pub(crate) foreground: bool,
    pub(crate) allow_other: bool,
    pub(crate) read_only: bool,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) file_mode: u16,
    pub(crate) dir_mode: u16,
    pub(crate) schedule: PartSchedule,
    pub(crate) max_concurrency: usize,
    pub(crate) max_memory: u64,
    pub(crate) log_level: log::LevelFilter,
    /// Where the resume journal lives.
    pub(crate) state_dir: PathBuf,
    /// How long a parked upload is kept for a rewrite to resume; None: never parked.
    pub(crate) resume_window: Option<std::time::Duration>,
    /// Where to serve Prometheus metrics, if anywhere.
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
    /// Multipart uploads under the prefix older than this are aborted at mount.
    pub(crate) sweep_orphans_after: Option<std::time::Duration>,
    pub(crate) retry_budget: std::time::Duration,
    /// How long one S3 request may go unanswered (plus 1 s per MiB it carries).
    pub(crate) request_timeout: std::time::Duration,
    /// Largest object copied with one CopyObject (`--copy-object-limit`).
    pub(crate) copy_object_limit: u64,
    /// The command line as understood (what a detached daemon is started with again).
    pub(crate) args: Vec<OsString>,
}
