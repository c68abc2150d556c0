//! s3upfs: a FUSE filesystem that uploads to S3 while files are being written.
//!
//! The modules follow the data path, each layer calling only the one below it:
//!
//! ```text
//! fuse     FUSE adapter: kernel requests -> namespace calls, replies (slow ones from other threads)
//!   fs     namespace: inodes, lookup/readdir, attributes, open handles, POSIX metadata
//!     upload   write pipeline: part schedule, memory budget, multipart writer, upload pool
//!     read     ranged reads with readahead
//!       s3     S3 client: blocking facade over aws-sdk-s3 on a shared tokio runtime
//! ```
//!
//! `cli` and `daemon` sit beside the stack: they parse the command line, prove the
//! bucket usable and run the mount; `admin` holds the bucket housekeeping commands
//! (cleanup, lifecycle). The embedded S3 server behind `--local` is the workspace crate
//! `s3upfs-local` (`local/`).

pub mod admin;
pub mod cli;
pub mod daemon;
pub mod fs;
pub mod fuse;
pub mod read;
pub mod s3;
pub mod size;
pub mod upload;
