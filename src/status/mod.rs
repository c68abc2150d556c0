//! `s3upfs status`: what a running mount is uploading, how far each file has got, and
//! what failed. The daemon answers on a Unix socket only its user can open (mode 0600
//! in a 0700 directory: `/run/s3upfs` for root, `$XDG_RUNTIME_DIR/s3upfs` or
//! `/tmp/s3upfs-UID` otherwise), one JSON [`Report`] per connection, and optionally
//! on a Prometheus text endpoint (`--metrics-addr`). The client finds every socket of
//! its user, so `s3upfs status` with no mountpoint shows all of them.

pub(crate) mod client;
mod metrics;
pub(crate) mod server;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::namespace::MountStatus;

/// One mount's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Report {
    /// Absolute path of the mountpoint.
    pub(crate) mountpoint: String,
    /// `s3://BUCKET/PREFIX/` (or the `--local` directory).
    pub(crate) source: String,
    pub(crate) pid: u32,
    #[serde(flatten)]
    pub(crate) status: MountStatus,
}

/// Where this user's mounts put their status sockets.
pub(crate) fn socket_dir() -> PathBuf {
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    if uid == 0 {
        return PathBuf::from("/run/s3upfs");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("s3upfs"),
        _ => PathBuf::from(format!("/tmp/s3upfs-{uid}")),
    }
}
