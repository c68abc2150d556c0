//! s3upfs: a FUSE filesystem that uploads to S3 while files are being written.
//!
//! The modules follow the data path, each layer calling only the one below it:
//!
//! ```text
//! fuse     FUSE adapter: kernel requests -> namespace calls, replies (slow ones from other threads)
//!   namespace  inodes, lookup/readdir, attributes, open files, rename, held changes
//!     upload   write pipeline: part schedule, memory budget, multipart writer, upload pool
//!     read     ranged reads with readahead
//!       s3     storage seam: the ObjectStore trait, aws-sdk-s3 behind it (and an in-memory store for tests)
//! ```
//!
//! `cli` and `daemon` sit beside the stack: they parse the command line, prove the
//! bucket usable and run the mount; `admin` holds the bucket housekeeping commands
//! (cleanup, lifecycle). The embedded S3 server behind `--local` is the workspace crate
//! `s3upfs-local` (`local/`).
//!
//! Everything is private to the crate (only `cli::main` is exported, for main.rs), so
//! the compiler reports code nothing uses.

#![deny(clippy::undocumented_unsafe_blocks)]

mod admin;
pub mod cli;
mod config;
mod daemon;
mod fuse;
mod namespace;
mod read;
mod s3;
mod size;
mod status;
mod upload;
mod verify;
