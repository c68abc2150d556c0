//! The embedded server through the real aws-sdk-s3 client, as the mount talks to it: one small
//! test per behaviour, grouped by concern. Each test starts its own server in its own temporary
//! data directory.

mod checksums;
mod common;
mod listing;
mod markers;
mod multipart;
mod objects;
mod server;
